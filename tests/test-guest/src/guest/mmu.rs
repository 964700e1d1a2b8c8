//! Turning the EL1 MMU on with the identity map of `stage1.rs`.
//!
//! The tables are built with the MMU off (plain stores go straight to memory), the
//! image's lines are invalidated so no stale cache line can shadow what those stores
//! wrote, then MAIR/TCR/TTBR0 are set and SCTLR_EL1 turns on the MMU with the data and
//! instruction caches.

use core::cell::UnsafeCell;

use super::cpu::{self, read_sysreg, write_sysreg};
use crate::dtinfo::GuestInfo;
use crate::fixed::List;
use crate::layout::{self, AddressProbes, IsolationProbes, MAX_PROBE_ARGS, Own, OwnRange, Range};
use crate::stage1::{self, Builder, DEVICE_BLOCK, NORMAL_BLOCK, Stage1Error, Table};

/// Page-table pages: the root, a level-1 table per 512 GiB touched, a level-2 table per
/// GiB that is not one block (RAM, the console and the GIC, the isolation windows: a few
/// with the windows the guest generates), and for the `isolation_probe=` pages a level-3
/// table per 2 MiB they are in, with a level-2 (and level-1) table where they are far
/// from the rest: 40, plus two per address (QEMU's virt board, 86 addresses in 14 2 MiB
/// blocks, takes 18 more: 14 level-3, 3 level-2, 1 level-1).
const POOL_TABLES: usize = 40 + 2 * MAX_PROBE_ARGS;

#[repr(C, align(4096))]
struct Pool(UnsafeCell<[Table; POOL_TABLES]>);

// SAFETY: written once by the boot CPU before any other CPU runs, read only by the
// table walkers afterwards.
unsafe impl Sync for Pool {}

static POOL: Pool = Pool(UnsafeCell::new([[0; stage1::ENTRIES]; POOL_TABLES]));

/// SCTLR_EL1 bits that are RES1 in Armv8.0 (11, 20, 22, 23, 28, 29); with them set the
/// later meanings (EOS, TSCXT, EIS, SPAN, nTLSMD, LSMAOE) are the Armv8.0 behaviour.
const SCTLR_RES1: u64 = (1 << 11) | (1 << 20) | (1 << 22) | (1 << 23) | (1 << 28) | (1 << 29);
const SCTLR_M: u64 = 1 << 0;
const SCTLR_C: u64 = 1 << 2;
const SCTLR_SA: u64 = 1 << 3;
const SCTLR_I: u64 = 1 << 12;
/// MMU, data and instruction caches and SP alignment checking on; no alignment checks,
/// WXN off (the tests execute code they wrote), little-endian.
pub const SCTLR_ON: u64 = SCTLR_RES1 | SCTLR_M | SCTLR_C | SCTLR_SA | SCTLR_I;

/// The translation controls the boot CPU used, for the secondary to copy.
#[derive(Clone, Copy, Debug)]
pub struct MmuConfig {
    pub mair: u64,
    pub tcr: u64,
    pub ttbr0: u64,
    pub sctlr: u64,
    pub tables_used: usize,
    /// Why the isolation windows are not (all) mapped, if they are not.
    pub probe_map_error: Option<Stage1Error>,
    /// Why the `isolation_probe=` pages are not (all) mapped, if they are not.
    pub address_map_error: Option<Stage1Error>,
}

/// One past the highest address this CPU's stage-1 map can output
/// (ID_AA64MMFR0_EL1.PARange, at most 48 bits).
pub fn address_limit() -> u64 {
    stage1::output_limit(read_sysreg!("id_aa64mmfr0_el1") & 0xf)
}

/// The console UART's frame.
const UART_FRAME: u64 = 0x1000;

/// The isolation test's windows for this guest: the same for the map and the test.
pub fn isolation_probes(info: &GuestInfo) -> IsolationProbes {
    let console = info.console_base().map(|base| Range::new(base, UART_FRAME));
    layout::isolation_probes(info.ram.as_slice(), console.as_slice(), address_limit())
}

/// Every RAM range, the distributor, the redistributor regions and the UART.
const OWN_RANGES: usize =
    crate::dtinfo::MAX_RAM_RANGES + 2 + crate::gic_dt::MAX_REDISTRIBUTOR_REGIONS;

/// What is the guest's own, as its DT says: RAM, the GIC distributor, the redistributor
/// region (the hypervisor sizes it for the guest's vCPUs), the console UART.
pub fn own_ranges(info: &GuestInfo) -> List<OwnRange, OWN_RANGES> {
    let mut own = List::new();
    let ram = info.ram.iter().map(|range| (range, Own::Ram));
    let distributor = info.gic.distributor.map(|range| (range, Own::Distributor));
    let redistributors = info
        .gic
        .redistributors
        .iter()
        .map(|r| (r, Own::Redistributors));
    let console = info
        .console_base()
        .map(|base| (Range::new(base, UART_FRAME), Own::Console));
    for (range, what) in ram.chain(distributor).chain(redistributors).chain(console) {
        // OWN_RANGES has room for them all.
        let _ = own.push(OwnRange { range, what });
    }
    own
}

/// The `isolation_probe=` addresses this guest probes: the same for the map and the test.
pub fn address_probes(info: &GuestInfo) -> AddressProbes {
    layout::address_probes(
        own_ranges(info).as_slice(),
        address_limit(),
        info.probe_args.as_slice(),
    )
}

/// Builds the identity map of guest RAM (or, without any memory node, of the image and
/// the DTB), the console UART and the GIC, and turns the MMU on.
///
/// # Safety
/// Boot CPU only, once, with the MMU off and no other CPU running.
pub unsafe fn enable(info: &GuestInfo, image: Range, dtb: Range) -> Result<MmuConfig, Stage1Error> {
    // SAFETY: only this CPU exists and nothing else refers to the pool.
    let tables = unsafe { &mut *POOL.0.get() };
    let pool_pa = tables.as_ptr() as u64;
    let mut builder = Builder::new(tables, pool_pa)?;
    if let Some(uart) = info.console_base() {
        builder.map(Range::new(uart, 0x1000), DEVICE_BLOCK)?;
    }
    // The GIC's distributor and redistributor frames, for the vGIC tests (gic.rs).
    for frames in info.gic.ranges() {
        builder.map(frames, DEVICE_BLOCK)?;
    }
    if info.ram.is_empty() {
        builder.map(image, NORMAL_BLOCK)?;
        builder.map(dtb, NORMAL_BLOCK)?;
    }
    for ram in info.ram.iter() {
        builder.map(ram, NORMAL_BLOCK)?;
    }
    // The passed-through PCI host bridge, for the DMA tests' virtio-blk driver
    // (virtio_blk.rs): bus 0's config space and the start of the 32-bit window, where
    // it places the BARs, as Device memory.
    if let Some(pci) = info.pci {
        builder.map(Range::new(pci.ecam.base, 1 << 20), DEVICE_BLOCK)?;
        if let Some(window) = pci.mmio32 {
            builder.map(
                Range::new(window.cpu, super::virtio_blk::BAR_SPAN.min(window.size)),
                DEVICE_BLOCK,
            )?;
        }
    }
    // The isolation test's probes: memory that is not the guest's, mapped at stage 1 so
    // only stage 2 can refuse the access. Whole runs of windows, so aligned GiBs become
    // 1 GiB blocks. A failure here leaves the rest of the map intact; the isolation test
    // reports it.
    let probe_map_error = isolation_probes(info)
        .spans
        .iter()
        .try_for_each(|span| builder.map(span, NORMAL_BLOCK))
        .err();
    // The `isolation_probe=` addresses: each its own 4 KiB Device page (device windows lie
    // next to the console and the GIC, whose 2 MiB blocks are split around such a page),
    // last, so running out of tables leaves everything else mapped.
    let address_map_error = address_probes(info)
        .addresses
        .iter()
        .try_for_each(|address| builder.map_page(address, DEVICE_BLOCK))
        .err();
    let config = MmuConfig {
        mair: stage1::MAIR,
        tcr: stage1::tcr(read_sysreg!("id_aa64mmfr0_el1") & 0xf),
        ttbr0: builder.root_pa(),
        sctlr: SCTLR_ON,
        tables_used: builder.tables_used(),
        probe_map_error,
        address_map_error,
    };
    cpu::invalidate_dcache(image.base, image.size);
    write_sysreg!("mair_el1", config.mair);
    write_sysreg!("tcr_el1", config.tcr);
    write_sysreg!("ttbr0_el1", config.ttbr0);
    cpu::isb();
    // SAFETY: invalidates this CPU's EL1 TLB entries; nothing is mapped yet.
    unsafe { core::arch::asm!("tlbi vmalle1", "dsb nsh", "isb", options(nostack)) };
    write_sysreg!("sctlr_el1", config.sctlr);
    cpu::isb();
    // SAFETY: invalidates the instruction cache, which may hold lines fetched with
    // different attributes while the MMU was off.
    unsafe { core::arch::asm!("ic iallu", "dsb nsh", "isb", options(nostack)) };
    Ok(config)
}
