//! The bare-metal guest: entry (head.S), vectors (vectors.S), setup and the test run.

mod concurrent;
pub(crate) mod console;
mod cpu;
mod every_gib;
mod exceptions;
mod gic;
mod mmu;
mod runner;
mod secondary;
mod stress;
mod sysregs;
mod tests;
mod vgic_registers;
mod vgic_sgi;
mod vgic_smp;
mod vgic_timer;
mod virtio_blk;
mod walk_faults;

use core::panic::PanicInfo;

use console::say;

use crate::abi::{self, Query};
use crate::dtinfo::{Console, GuestInfo};
use crate::fdt::{self, Fdt, FdtError};
use crate::fixed::List;
use crate::layout::{self, Layout, LayoutError, Range};
use crate::report::PREFIX;

core::arch::global_asm!(include_str!("head.S"));
core::arch::global_asm!(include_str!("vectors.S"));

/// CPU slots: 0 the boot CPU, 1 the secondary the concurrency test starts.
pub const MAX_SLOTS: usize = 2;

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// What the tests share: the DT's facts, the memory layout, the state at the start.
pub struct Env {
    pub info: GuestInfo,
    pub layout: Result<Layout, LayoutError>,
    pub mmu: Option<mmu::MmuConfig>,
    pub own_mpidr: u64,
    /// MEM_QUERY of the test page and of the `outside` page before any test ran.
    pub baseline: Query,
    pub outside_baseline: Option<Query>,
    /// RAM the guest uses or must not touch: its image, its DTB, the reserved ranges.
    pub busy: List<Range, { crate::dtinfo::MAX_RESERVED + 2 }>,
}

fn image_range() -> Range {
    // Taking the address of a linker symbol reads nothing.
    let start = core::ptr::addr_of!(__image_start) as u64;
    let end = core::ptr::addr_of!(__image_end) as u64;
    Range::new(start, end - start)
}

/// The DTB the loader passed in x0, bounds taken from its header.
fn device_tree(dtb_pa: u64) -> Result<Fdt<'static>, FdtError> {
    if dtb_pa == 0 || !dtb_pa.is_multiple_of(8) {
        return Err(FdtError::Truncated);
    }
    // SAFETY: the boot protocol puts an 8-byte aligned DTB at x0 in RAM, left alone
    // for the guest's lifetime; the header is read first and bounds the rest.
    let header = unsafe { core::slice::from_raw_parts(dtb_pa as *const u8, fdt::HEADER_SIZE) };
    let size = fdt::total_size(header)?;
    // SAFETY: as above; `total_size` checked `size` (at most 2 MiB).
    let blob = unsafe { core::slice::from_raw_parts(dtb_pa as *const u8, size) };
    Fdt::new(blob)
}

/// Entered from head.S on the boot CPU: MMU off, stack, .bss zeroed, relocated,
/// VBAR_EL1 set.
#[unsafe(no_mangle)]
extern "C" fn primary_main(dtb_pa: u64) -> ! {
    let image = image_range();
    let fdt = device_tree(dtb_pa);
    let info = fdt.as_ref().map(GuestInfo::parse).unwrap_or_default();
    let dtb = Range::new(dtb_pa, fdt.as_ref().map_or(0, |f| f.size() as u64));
    console::init(info.console_base());
    runner::set_conduit(info.conduit);
    say!(
        "{PREFIX}test guest {} at EL{} on MPIDR {:#x}, image {image}",
        env!("CARGO_PKG_VERSION"),
        cpu::current_el(),
        cpu::mpidr()
    );
    if let Err(error) = &fdt {
        say!("{PREFIX}device tree at {dtb_pa:#x}: {error}");
    }
    if cpu::current_el() != 1 {
        runner::fatal(
            "wrong exception level",
            format_args!(
                "entered at EL{}: the test guest runs at EL1 (under the hypervisor, or QEMU without virtualization=on)",
                cpu::current_el()
            ),
        );
    }
    // SAFETY: the boot CPU, once, MMU off, no other CPU running.
    let mmu = match unsafe { mmu::enable(&info, image, dtb) } {
        Ok(config) => {
            console::enable_lock();
            Some(config)
        }
        Err(error) => {
            say!("{PREFIX}EL1 MMU stays off: {error}");
            None
        }
    };
    let env = setup(info, image, dtb, mmu);
    for &(name, test) in tests::TESTS {
        runner::run(name, &env, test);
    }
    runner::finish()
}

fn setup(info: GuestInfo, image: Range, dtb: Range, mmu: Option<mmu::MmuConfig>) -> Env {
    for problem in info.problems.iter() {
        say!("{PREFIX}device tree: {problem}");
    }
    let console = match info.console {
        Console::Pl011 {
            base,
            from_stdout_path: true,
        } => crate::text!("PL011 {base:#x} (stdout-path)"),
        Console::Pl011 { base, .. } => crate::text!("PL011 {base:#x} (first arm,pl011)"),
        Console::None => crate::text!("none"),
    };
    say!(
        "{PREFIX}dtb {dtb}, {} cpu(s), PSCI over {}, console {console}",
        info.cpus.len(),
        info.conduit
    );
    for (i, ram) in info.ram.iter().enumerate() {
        say!("{PREFIX}guest RAM {i}: {ram}");
    }
    for r in info.reserved.iter() {
        say!("{PREFIX}reserved: {r}");
    }
    match &mmu {
        Some(c) => say!(
            "{PREFIX}EL1 MMU on: identity map, RAM normal write-back in 1G/2M blocks, UART device; {} table pages, TCR_EL1 {:#x}",
            c.tables_used,
            c.tcr
        ),
        None => say!("{PREFIX}EL1 MMU off: all accesses are Device-nGnRnE"),
    }

    let mut busy: List<Range, { crate::dtinfo::MAX_RESERVED + 2 }> = List::new();
    busy.push(image);
    busy.push(dtb);
    for r in info.reserved.iter() {
        busy.push(r);
    }
    let layout = layout::choose(info.ram.as_slice(), busy.as_slice());
    let query = |ipa: u64| Query::from_regs(cpu::hvc(abi::MEM_QUERY, ipa, 0, 0));
    let (baseline, outside_baseline) = match &layout {
        Ok(l) => {
            say!(
                "{PREFIX}test region {} ({}), changed 2M block {:#x}, read-only page {:#x}, no-execute page {:#x}, other 2M page {}",
                l.region,
                if l.is_gigabyte() { "1 GiB" } else { "2 MiB" },
                l.chunk,
                l.page,
                l.exec_page,
                match l.outside {
                    Some(o) => crate::text!("{o:#x}"),
                    None => crate::text!("none"),
                }
            );
            let baseline = query(l.page);
            let outside = l.outside.map(query);
            say!(
                "{PREFIX}stage 2 at the start: page {}{}",
                baseline,
                match outside {
                    Some(q) => crate::text!(", other 2M page {q}"),
                    None => crate::text!(""),
                }
            );
            (baseline, outside)
        }
        Err(error) => {
            say!("{PREFIX}no test region: {error}");
            (Query::from_regs([abi::NOT_SUPPORTED as u64, 0, 0, 0]), None)
        }
    };
    Env {
        info,
        layout,
        mmu,
        own_mpidr: cpu::mpidr(),
        baseline,
        outside_baseline,
        busy,
    }
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    runner::fatal("panic", format_args!("panic: {info}"))
}
