//! Hostile DMA: a minimal virtio 1.0 (modern PCI) block driver for the disk on the PCI
//! host bridge the hypervisor passes through (`passthrough=/pcie@10000000`, run.sh
//! `selftest --disk`), and the tests that aim the device's DMA at memory it must not
//! reach: the hypervisor's pool and crash region (`dma_probe=` bootarg), a page of the
//! guest's RAM it made read-only or no-access with MEM_PROTECT. The SMMU translates the
//! device's accesses through the guest's stage 2, so each such access must fault there.
//!
//! One split virtqueue of [`QUEUE_SIZE`] entries, polled (no interrupts), on one CPU.
//! Its rings, the request header and status byte live in [`DMA`], a page of the image
//! (guest RAM, IPA = PA: the SMMU's stage 2 is the guest's). The guest's RAM is Normal
//! write-back at stage 1; QEMU's device DMA is coherent with the CPUs, so no cache
//! maintenance is needed, only ordering (barriers below).
//!
//! What QEMU 10 does when a descriptor's buffer cannot be translated: see
//! [`Outcome`] and the notes the tests print.

use core::cell::UnsafeCell;
use core::fmt;

use super::Env;
use super::cpu::{self, Deadline};
use super::tests::{check_page, fill_page, protect};
use crate::abi::{PAGE_SIZE, PERM_ALL, PERM_READ};
use crate::pci::{self, BarAllocator, PciHost, VirtioCap};
use crate::report::{Failure, TestResult};
use crate::{ensure, failed, text};

/// How much of the 32-bit window the guest maps (mmu.rs) and places BARs in.
pub const BAR_SPAN: u64 = 2 << 20;

const VENDOR_VIRTIO: u32 = 0x1af4;
/// virtio 1.0 block device (0x1040 + 2): modern only.
const DEVICE_BLOCK_MODERN: u32 = 0x1042;

// Common configuration (virtio 1.0, 4.1.4.3) offsets.
const DEVICE_FEATURE_SELECT: u64 = 0x00;
const DEVICE_FEATURE: u64 = 0x04;
const DRIVER_FEATURE_SELECT: u64 = 0x08;
const DRIVER_FEATURE: u64 = 0x0c;
const DEVICE_STATUS: u64 = 0x14;
const QUEUE_SELECT: u64 = 0x16;
const QUEUE_SIZE_REG: u64 = 0x18;
const QUEUE_ENABLE: u64 = 0x1c;
const QUEUE_NOTIFY_OFF: u64 = 0x1e;
const QUEUE_DESC: u64 = 0x20;
const QUEUE_DRIVER: u64 = 0x28;
const QUEUE_DEVICE: u64 = 0x30;

// device_status bits.
const ACKNOWLEDGE: u8 = 1;
const DRIVER: u8 = 2;
const DRIVER_OK: u8 = 4;
const FEATURES_OK: u8 = 8;
const NEEDS_RESET: u8 = 0x40;
const FAILED: u8 = 0x80;

/// VIRTIO_F_ACCESS_PLATFORM (feature 33) in the high feature word.
const ACCESS_PLATFORM_HIGH: u32 = 1 << 1;

// Descriptor flags.
const DESC_NEXT: u16 = 1;
const DESC_WRITE: u16 = 2;

// virtio_blk_outhdr types and status values.
const VIRTIO_BLK_T_IN: u32 = 0;
const VIRTIO_BLK_S_OK: u8 = 0;
/// What the driver puts in the status byte before a request: no device value.
const STATUS_UNSET: u8 = 0xee;

const QUEUE_SIZE: u16 = 8;
/// Offsets in [`DMA`]: descriptors (16 bytes each), avail ring, used ring, request
/// header (16 bytes), status byte.
const DESC_AT: u64 = 0;
const AVAIL_AT: u64 = 0x200;
const USED_AT: u64 = 0x400;
const HEADER_AT: u64 = 0x800;
const STATUS_AT: u64 = 0x900;

/// The bytes one request reads: 8 sectors, one page.
const READ_LEN: u32 = PAGE_SIZE as u32;
/// The ext4 superblock's magic (0xEF53, little-endian) at byte 1080 of the disk.
const EXT4_MAGIC_AT: u64 = 1080;
const EXT4_MAGIC: u16 = 0xef53;

/// How long a request may take.
const REQUEST_MS: u64 = 3000;

#[repr(C, align(4096))]
struct Page(UnsafeCell<[u8; PAGE_SIZE as usize]>);

// SAFETY: used by the boot CPU alone (the DMA tests run on it, one at a time), and by
// the device, which the driver hands the page only while a request is in flight.
unsafe impl Sync for Page {}

/// The virtqueue's rings, the request header and the status byte.
static DMA: Page = Page(UnsafeCell::new([0; PAGE_SIZE as usize]));
/// The data buffer of the good requests.
static DATA: Page = Page(UnsafeCell::new([0; PAGE_SIZE as usize]));

fn page_pa(page: &Page) -> u64 {
    // Identity map: the VA is the PA (and the IPA the device uses).
    page.0.get() as u64
}

// Plain memory the device shares, accessed volatile so every access happens where the
// barriers put it.
fn mem_w<T>(addr: u64, value: T) {
    // SAFETY: `addr` is in DMA, DATA or a test page of guest RAM, aligned for T,
    // mapped Normal; nothing else in the guest uses it during the DMA tests.
    unsafe { (addr as *mut T).write_volatile(value) }
}

fn mem_r<T>(addr: u64) -> T {
    // SAFETY: as in `mem_w`.
    unsafe { (addr as *const T).read_volatile() }
}

// Device registers: ECAM config space and the BARs, mapped Device-nGnRE (mmu.rs).
fn reg_w<T>(addr: u64, value: T) {
    // SAFETY: `addr` is a register of the passed-through host bridge's config space or
    // of a BAR this driver placed, aligned for T, mapped as Device memory.
    unsafe { (addr as *mut T).write_volatile(value) }
}

fn reg_r<T>(addr: u64) -> T {
    // SAFETY: as in `reg_w`.
    unsafe { (addr as *const T).read_volatile() }
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The used ring returned it: the status byte and the length the device wrote.
    Completed { status: u8, written: u32 },
    /// The device set DEVICE_NEEDS_RESET (QEMU's `virtio_error`: it could not map a
    /// descriptor's buffer) and returns nothing.
    NeedsReset { device_status: u8 },
    /// Neither within [`REQUEST_MS`].
    TimedOut { device_status: u8 },
}

impl Outcome {
    fn is_ok(&self) -> bool {
        matches!(
            self,
            Outcome::Completed {
                status: VIRTIO_BLK_S_OK,
                ..
            }
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Completed { status, written } => {
                write!(f, "completed, status {status:#x}, {written} bytes")
            }
            Outcome::NeedsReset { device_status } => {
                write!(
                    f,
                    "DEVICE_NEEDS_RESET (status {device_status:#x}), no completion"
                )
            }
            Outcome::TimedOut { device_status } => {
                write!(
                    f,
                    "no completion in {REQUEST_MS} ms (status {device_status:#x})"
                )
            }
        }
    }
}

/// The virtio-blk function, its BARs placed and its queue set up.
struct Blk {
    common: u64,
    /// The notify capability's start and `notify_off_multiplier`.
    notify_base: u64,
    notify_multiplier: u32,
    /// Queue 0's notify register.
    notify: u64,
    /// VIRTIO_F_ACCESS_PLATFORM negotiated: the device's DMA goes through the SMMU.
    access_platform: bool,
    queue_size: u16,
    avail_idx: u16,
    used_seen: u16,
}

fn skipped(why: fmt::Arguments<'_>) -> Failure {
    Failure::Skipped(text!("{why}"))
}

/// Finds the virtio-blk function on bus 0, places its BARs, enables it, reads its
/// capabilities; then `init`.
fn open(env: &Env) -> Result<Blk, Failure> {
    let host: PciHost = env.info.pci.ok_or_else(|| {
        skipped(format_args!(
            "no pci-host-ecam-generic in the DT (run.sh selftest --disk --append passthrough=/pcie@10000000)"
        ))
    })?;
    let window = host
        .mmio32
        .ok_or_else(|| failed!("the host bridge has no 32-bit memory window"))?;
    ensure!(
        env.mmu.is_some(),
        "the EL1 MMU is off: the ECAM is not mapped"
    );
    let config = (0..32)
        .filter_map(|device| host.config(host.bus_start, device, 0))
        .find(|&cfg| reg_r::<u32>(cfg) == (DEVICE_BLOCK_MODERN << 16) | VENDOR_VIRTIO)
        .ok_or_else(|| {
            skipped(format_args!(
                "no modern virtio-blk (1af4:1042) on bus {} (run.sh selftest --disk)",
                host.bus_start
            ))
        })?;
    // Memory decode off while the BARs move.
    let command = reg_r::<u32>(config + 4) & 0xffff;
    reg_w::<u32>(config + 4, command & !0x7);
    let mut bars = [None::<u64>; 6];
    let mut alloc = BarAllocator::new(pci::Window {
        size: window.size.min(BAR_SPAN),
        ..window
    });
    let mut i = 0;
    while i < 6 {
        let at = config + 0x10 + 4 * i as u64;
        let original = reg_r::<u32>(at);
        if original & 1 != 0 {
            i += 1;
            continue; // I/O space: not used.
        }
        let is64 = (original >> 1) & 3 == 2;
        reg_w::<u32>(at, 0xffff_ffff);
        let low = reg_r::<u32>(at);
        let high = is64.then(|| {
            reg_w::<u32>(at + 4, 0xffff_ffff);
            reg_r::<u32>(at + 4)
        });
        let size = if low & !0xf == 0 && high.unwrap_or(0) == 0 {
            0
        } else {
            pci::bar_size(low, high)
        };
        if size != 0 {
            let bus = alloc.alloc(size.max(PAGE_SIZE)).ok_or_else(|| {
                failed!(
                    "BAR{i} of {size:#x} bytes does not fit the first {BAR_SPAN:#x} of the window"
                )
            })?;
            reg_w::<u32>(at, bus as u32);
            if is64 {
                reg_w::<u32>(at + 4, (bus >> 32) as u32);
            }
            bars[i] = Some(window.cpu + (bus - window.pci));
        } else {
            reg_w::<u32>(at, 0);
            if is64 {
                reg_w::<u32>(at + 4, 0);
            }
        }
        i += if is64 { 2 } else { 1 };
    }
    // Memory space and bus master on: from here the device may DMA.
    reg_w::<u32>(config + 4, (command & !0x1) | 0x6);

    let status = reg_r::<u32>(config + 4) >> 16;
    ensure!(status & 0x10 != 0, "the function has no capability list");
    let mut caps = [None::<VirtioCap>; 5];
    let mut next = reg_r::<u32>(config + 0x34) & 0xfc;
    for _ in 0..48 {
        if next == 0 {
            break;
        }
        let at = config + u64::from(next);
        let dwords = core::array::from_fn(|k| reg_r::<u32>(at + 4 * k as u64));
        if let Some(cap) = pci::decode_virtio_cap(dwords)
            && let Some(slot) = caps.get_mut(usize::from(cap.cfg_type))
            && slot.is_none()
        {
            *slot = Some(cap);
        }
        next = (dwords[0] >> 8) & 0xfc;
    }
    let place = |cfg_type: u8| -> Result<(u64, VirtioCap), Failure> {
        let cap = caps[usize::from(cfg_type)]
            .ok_or_else(|| failed!("no virtio capability of type {cfg_type}"))?;
        let bar = bars
            .get(usize::from(cap.bar))
            .copied()
            .flatten()
            .ok_or_else(|| failed!("virtio capability {cfg_type} names unplaced BAR{}", cap.bar))?;
        Ok((bar + u64::from(cap.offset), cap))
    };
    let (common, _) = place(pci::VIRTIO_CAP_COMMON)?;
    let (notify, notify_cap) = place(pci::VIRTIO_CAP_NOTIFY)?;
    place(pci::VIRTIO_CAP_ISR)?;
    place(pci::VIRTIO_CAP_DEVICE)?;
    let mut blk = Blk {
        common,
        notify_base: notify,
        notify_multiplier: notify_cap.multiplier,
        notify,
        access_platform: false,
        queue_size: 0,
        avail_idx: 0,
        used_seen: 0,
    };
    blk.init()?;
    Ok(blk)
}

impl Blk {
    fn status(&self) -> u8 {
        reg_r::<u8>(self.common + DEVICE_STATUS)
    }

    fn reset(&self) -> Result<(), Failure> {
        reg_w::<u8>(self.common + DEVICE_STATUS, 0);
        let deadline = Deadline::after_ms(1000);
        while self.status() != 0 {
            ensure!(
                !deadline.passed(),
                "the device did not reset (status {:#x})",
                self.status()
            );
        }
        Ok(())
    }

    /// Reset, VIRTIO_F_VERSION_1 only, queue 0, DRIVER_OK.
    fn init(&mut self) -> Result<(), Failure> {
        let c = self.common;
        self.reset()?;
        reg_w::<u8>(c + DEVICE_STATUS, ACKNOWLEDGE);
        reg_w::<u8>(c + DEVICE_STATUS, ACKNOWLEDGE | DRIVER);
        reg_w::<u32>(c + DEVICE_FEATURE_SELECT, 1);
        let high = reg_r::<u32>(c + DEVICE_FEATURE);
        ensure!(
            high & 1 != 0,
            "the device lacks VIRTIO_F_VERSION_1 (features 63..32 {high:#x})"
        );
        // VIRTIO_F_ACCESS_PLATFORM (bit 33) when offered (QEMU refuses FEATURES_OK
        // without it then): QEMU's virtio devices go through the IOMMU only with it,
        // else they DMA straight to guest-physical memory.
        self.access_platform = high & ACCESS_PLATFORM_HIGH != 0;
        reg_w::<u32>(c + DRIVER_FEATURE_SELECT, 0);
        reg_w::<u32>(c + DRIVER_FEATURE, 0);
        reg_w::<u32>(c + DRIVER_FEATURE_SELECT, 1);
        reg_w::<u32>(c + DRIVER_FEATURE, 1 | (high & ACCESS_PLATFORM_HIGH));
        reg_w::<u8>(c + DEVICE_STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
        let status = self.status();
        ensure!(
            status & FEATURES_OK != 0,
            "FEATURES_OK did not stick (status {status:#x})"
        );

        reg_w::<u16>(c + QUEUE_SELECT, 0);
        let max = reg_r::<u16>(c + QUEUE_SIZE_REG);
        ensure!(max != 0, "queue 0 does not exist");
        self.queue_size = max.min(QUEUE_SIZE);
        reg_w::<u16>(c + QUEUE_SIZE_REG, self.queue_size);
        let dma = page_pa(&DMA);
        for offset in (0..PAGE_SIZE).step_by(8) {
            mem_w::<u64>(dma + offset, 0);
        }
        for (reg, at) in [
            (QUEUE_DESC, DESC_AT),
            (QUEUE_DRIVER, AVAIL_AT),
            (QUEUE_DEVICE, USED_AT),
        ] {
            reg_w::<u32>(c + reg, (dma + at) as u32);
            reg_w::<u32>(c + reg + 4, ((dma + at) >> 32) as u32);
        }
        let notify_off = reg_r::<u16>(c + QUEUE_NOTIFY_OFF);
        self.notify = self.notify_base + u64::from(notify_off) * u64::from(self.notify_multiplier);
        // The ring's zeroes must be in memory before the device starts using it.
        cpu::dsb_sy();
        reg_w::<u16>(c + QUEUE_ENABLE, 1);
        reg_w::<u8>(
            c + DEVICE_STATUS,
            ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK,
        );
        self.avail_idx = 0;
        self.used_seen = 0;
        let status = self.status();
        ensure!(
            status & (NEEDS_RESET | FAILED) == 0 && status & DRIVER_OK != 0,
            "device status {status:#x} after DRIVER_OK"
        );
        Ok(())
    }

    /// One request of three descriptors: the header at `header` (device-readable),
    /// `len` bytes at `data` (device-writable for a read), the status byte.
    fn submit(&mut self, header: u64, data: u64, len: u32) -> Outcome {
        let dma = page_pa(&DMA);
        let status_at = dma + STATUS_AT;
        mem_w::<u8>(status_at, STATUS_UNSET);
        let chain: [(u64, u32, u16); 3] = [
            (header, 16, DESC_NEXT),
            (data, len, DESC_NEXT | DESC_WRITE),
            (status_at, 1, DESC_WRITE),
        ];
        for (i, (addr, length, flags)) in chain.into_iter().enumerate() {
            let d = dma + DESC_AT + 16 * i as u64;
            mem_w::<u64>(d, addr);
            mem_w::<u32>(d + 8, length);
            mem_w::<u16>(d + 12, flags);
            mem_w::<u16>(
                d + 14,
                if flags & DESC_NEXT != 0 {
                    i as u16 + 1
                } else {
                    0
                },
            );
        }
        let slot = self.avail_idx % self.queue_size;
        mem_w::<u16>(dma + AVAIL_AT + 4 + 2 * u64::from(slot), 0);
        // The descriptors and the ring entry before the index that publishes them.
        // SAFETY: a barrier.
        unsafe { core::arch::asm!("dmb ishst", options(nostack, preserves_flags)) };
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem_w::<u16>(dma + AVAIL_AT + 2, self.avail_idx);
        // The device must see the descriptors and the avail index (Normal memory) before
        // the notify write (Device memory) makes it look: a DSB, not just a DMB.
        cpu::dsb_sy();
        reg_w::<u16>(self.notify, 0);

        let deadline = Deadline::after_ms(REQUEST_MS);
        loop {
            let used = mem_r::<u16>(dma + USED_AT + 2);
            if used != self.used_seen {
                // The used element and the status byte after the index that says they
                // are there.
                // SAFETY: a barrier.
                unsafe { core::arch::asm!("dmb ishld", options(nostack, preserves_flags)) };
                let elem = dma + USED_AT + 4 + 8 * u64::from(self.used_seen % self.queue_size);
                let written = mem_r::<u32>(elem + 4);
                self.used_seen = self.used_seen.wrapping_add(1);
                return Outcome::Completed {
                    status: mem_r::<u8>(status_at),
                    written,
                };
            }
            let device_status = self.status();
            if device_status & NEEDS_RESET != 0 {
                return Outcome::NeedsReset { device_status };
            }
            if deadline.passed() {
                return Outcome::TimedOut { device_status };
            }
            core::hint::spin_loop();
        }
    }

    /// Reads [`READ_LEN`] bytes from sector 0 into `data`, the header in [`DMA`].
    fn read_sector0(&mut self, data: u64) -> Outcome {
        let header = page_pa(&DMA) + HEADER_AT;
        write_header(header);
        self.submit(header, data, READ_LEN)
    }

    /// After a stopped request: the device reset and set up again.
    fn recover(&mut self) -> Result<(), Failure> {
        self.init()
    }
}

/// A VIRTIO_BLK_T_IN header for sector 0 at `at`.
fn write_header(at: u64) {
    write_header_for(at, 0);
}

/// A VIRTIO_BLK_T_IN header for `sector` at `at`.
fn write_header_for(at: u64, sector: u64) {
    mem_w::<u32>(at, VIRTIO_BLK_T_IN);
    mem_w::<u32>(at + 4, 0);
    mem_w::<u64>(at + 8, sector);
}

fn magic_at(buffer: u64) -> u16 {
    mem_r::<u16>(buffer + EXT4_MAGIC_AT)
}

/// A good read into [`DATA`]: completed OK, the ext4 magic at byte 1080.
fn good_read(blk: &mut Blk) -> Result<Outcome, Failure> {
    let data = page_pa(&DATA);
    for a in (data..data + PAGE_SIZE).step_by(8) {
        mem_w::<u64>(a, 0xa5a5_a5a5_a5a5_a5a5);
    }
    let outcome = blk.read_sector0(data);
    ensure!(
        outcome.is_ok(),
        "the read of sectors 0..7 into {data:#x}: {outcome}"
    );
    let magic = magic_at(data);
    ensure!(
        magic == EXT4_MAGIC,
        "sectors 0..7 read ({outcome}) but byte {EXT4_MAGIC_AT} holds {magic:#x}, not the ext4 magic {EXT4_MAGIC:#x}"
    );
    Ok(outcome)
}

pub fn dma_read_into_own_ram(env: &Env) -> TestResult {
    let mut s = open(env)?;
    let outcome = good_read(&mut s)?;
    Ok(text!(
        "sectors 0..7 into {:#x}: {outcome}; ext4 magic {EXT4_MAGIC:#x} at byte {EXT4_MAGIC_AT}; VIRTIO_F_ACCESS_PLATFORM {}",
        page_pa(&DATA),
        if s.access_platform {
            "on (through the SMMU)"
        } else {
            "off (QEMU bypasses the SMMU)"
        }
    ))
}

/// `open` for a test that aims the device's DMA where it must not go: only when the
/// device goes through the IOMMU, else the DMA would land (QEMU's virtio bypass).
fn open_hostile(env: &Env) -> Result<Blk, Failure> {
    let blk = open(env)?;
    ensure!(
        blk.access_platform,
        "the device does not offer VIRTIO_F_ACCESS_PLATFORM: QEMU would DMA past the SMMU, not run (run.sh selftest --disk adds iommu_platform=on)"
    );
    Ok(blk)
}

/// A request that must be stopped: not completed OK. Then the device is reset and a
/// good read must work again.
fn stopped_then_good(s: &mut Blk, target: u64, outcome: Outcome) -> Result<(), Failure> {
    // QEMU 10 maps a buffer its IOMMU refuses through a bounce buffer: the request
    // completes (status OK) and the device's writes, each refused by the SMMU (an event
    // each), are dropped. What the guest can check is that the device goes on.
    let _ = outcome;
    s.recover()?;
    good_read(s).map_err(|f| match f {
        Failure::Failed(why) => {
            failed!("after the stopped DMA into {target:#x} and a reset: {why}")
        }
        other => other,
    })?;
    Ok(())
}

pub fn dma_write_outside_own_ram_is_stopped(env: &Env) -> TestResult {
    let probes = env.info.dma_probes;
    if probes.is_empty() {
        return Err(skipped(format_args!(
            "no dma_probe= in the bootargs (the hypervisor's pool_base, crash_base)"
        )));
    }
    let mut s = open_hostile(env)?;
    let mut note = text!("");
    for target in probes.iter() {
        ensure!(
            !env.info.ram.iter().any(|r| r.contains(target)),
            "dma_probe {target:#x} is in the guest's RAM"
        );
        let outcome = s.read_sector0(target);
        stopped_then_good(&mut s, target, outcome).map_err(|f| annotate(f, target, outcome))?;
        use core::fmt::Write;
        let _ = write!(note, "{target:#x}: {outcome}; ");
    }
    let _ = core::fmt::Write::write_str(&mut note, "a good read after each reset");
    Ok(note)
}

fn annotate(failure: Failure, target: u64, outcome: Outcome) -> Failure {
    match failure {
        Failure::Failed(why) => failed!("{target:#x} ({outcome}): {why}"),
        other => other,
    }
}

/// A page of the test region the other tests leave alone.
fn test_page(env: &Env) -> Result<u64, Failure> {
    let l = env
        .layout
        .map_err(|error| failed!("no test region: {error}"))?;
    Ok(l.page + 4 * PAGE_SIZE)
}

const GEN_DMA: u64 = 0xd0a0;

pub fn dma_to_a_protected_page_is_stopped(env: &Env) -> TestResult {
    let mut s = open_hostile(env)?;
    let page = test_page(env)?;
    fill_page(page, GEN_DMA);
    protect(page, PAGE_SIZE, PERM_READ)?;
    let outcome = s.read_sector0(page);
    let changed = check_page(page, GEN_DMA);
    protect(page, PAGE_SIZE, PERM_ALL)?;
    ensure!(
        changed == 0,
        "{changed} words of read-only {page:#x} changed under the DMA ({outcome})"
    );
    // Restored: the same DMA now lands.
    s.recover()?;
    let again = s.read_sector0(page);
    ensure!(
        again.is_ok(),
        "after MEM_PROTECT rwx the read into {page:#x}: {again}"
    );
    ensure!(
        magic_at(page) == EXT4_MAGIC,
        "after MEM_PROTECT rwx the read into {page:#x} ({again}) has {:#x} at byte {EXT4_MAGIC_AT}",
        magic_at(page)
    );
    Ok(text!(
        "read-only {page:#x}: {outcome}, page unchanged; restored: {again}"
    ))
}

/// The sector the header in the no-access page asks for: the superblock's magic then
/// lies at byte 1080 - 1024 of the data, not 1080 (what a header of zeroes reads).
const NO_ACCESS_SECTOR: u64 = 2;

pub fn dma_from_a_no_access_page_is_stopped(env: &Env) -> TestResult {
    let mut s = open_hostile(env)?;
    let page = test_page(env)?;
    fill_page(page, GEN_DMA);
    // The request header the device must read lies in the page made no-access.
    write_header_for(page, NO_ACCESS_SECTOR);
    let data = page_pa(&DATA);
    let magic_if_read = EXT4_MAGIC_AT - 512 * NO_ACCESS_SECTOR;
    let clear = |data: u64| {
        for a in (data..data + PAGE_SIZE).step_by(8) {
            mem_w::<u64>(a, 0x5a5a_5a5a_5a5a_5a5a);
        }
    };
    clear(data);
    protect(page, PAGE_SIZE, 0)?;
    let outcome = s.submit(page, data, READ_LEN);
    protect(page, PAGE_SIZE, PERM_ALL)?;
    // QEMU 10: the refused read returns zeroes through its bounce buffer, so the device
    // sees a header for sector 0, not the one in the page.
    let header_seen = outcome.is_ok() && mem_r::<u16>(data + magic_if_read) == EXT4_MAGIC;
    ensure!(
        !header_seen,
        "the request whose header is in no-access {page:#x} read sector {NO_ACCESS_SECTOR} ({outcome}): the device read the page"
    );
    s.recover()?;
    clear(data);
    let again = s.submit(page, data, READ_LEN);
    ensure!(
        again.is_ok() && mem_r::<u16>(data + magic_if_read) == EXT4_MAGIC,
        "after MEM_PROTECT rwx the request with its header in {page:#x}: {again}, {:#x} at byte {magic_if_read}",
        mem_r::<u16>(data + magic_if_read)
    );
    Ok(text!(
        "header (sector {NO_ACCESS_SECTOR}) in no-access {page:#x}: {outcome}, the device did not see it; restored: {again}, sector {NO_ACCESS_SECTOR} read"
    ))
}
