//! Guest accesses outside the guest's memory: what they hit, and a tally.
//!
//! Stage 2 maps only the guest's RAM and its passthrough devices, so any other IPA the
//! guest touches takes a stage-2 translation fault to EL2; the hypervisor answers with a
//! synchronous external abort in the guest. Which host memory sat behind the IPA (the
//! guest's IPA space is the identity of the host's physical one) says what the guest
//! was after: the hypervisor's image, its pool (heap and page tables), the crash region,
//! the host device tree, other host RAM, a host device the guest was not given (named by
//! its node in the host DT), or nothing at all. The log names the target once per kind,
//! and a device once per node path (up to [`MAX_NAMED_DEVICES`] of them), so a probing
//! guest cannot flood the console yet each device it reached is named; the tally keeps
//! every attempt countable.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use arrayvec::ArrayVec;
use guest_loader::passthrough::{PassthroughError, named_device_regions};
use hyp_abi::console::foreign_access as keys;
use platform::info::{MAX_MEMORY_BANKS, PhysRange};

/// How many distinct devices the log names; accesses to further ones are only counted.
/// Above QEMU virt's ~40 device nodes (32 of them virtio-mmio slots), so a guest probing
/// the whole board sees every device named.
pub const MAX_NAMED_DEVICES: usize = 64;

/// What the tally counts: one `foreign-access:` key each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForeignKind {
    HypervisorImage,
    HypervisorPool,
    CrashRegion,
    HostDeviceTree,
    OtherHostRam,
    OutsideRam,
    Device,
    OtherGuest,
}

impl ForeignKind {
    /// In the order printed (new kinds go last, so the line only grows).
    pub const ALL: [ForeignKind; 8] = [
        Self::HypervisorImage,
        Self::HypervisorPool,
        Self::CrashRegion,
        Self::HostDeviceTree,
        Self::OtherHostRam,
        Self::OutsideRam,
        Self::Device,
        Self::OtherGuest,
    ];

    /// The tally key (`foreign-access: image=...`), as `hyp_abi` lists it.
    pub const fn key(self) -> &'static str {
        match self {
            Self::HypervisorImage => keys::IMAGE,
            Self::HypervisorPool => keys::POOL,
            Self::CrashRegion => keys::CRASH,
            Self::HostDeviceTree => keys::DTB,
            Self::OtherHostRam => keys::HOST_RAM,
            Self::OutsideRam => keys::OUTSIDE_RAM,
            Self::Device => keys::DEVICE,
            Self::OtherGuest => keys::OTHER_GUEST,
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// A host device an access hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceHit<'m> {
    /// The device's place in [`HostMemoryMap::devices`]: what the tally remembers it by.
    pub index: usize,
    /// Its node path in the host DT, `/fw-cfg@9020000`.
    pub path: &'m str,
    /// The guest has emulated frames of it (see [`HostDevice::partly_emulated`]).
    pub partly_emulated: bool,
}

/// What lies behind an IPA the guest may not reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForeignTarget<'m> {
    /// The hypervisor's own image (text, data, stacks).
    HypervisorImage,
    /// The hypervisor's pool: its heap and page tables.
    HypervisorPool,
    /// The crash region (`crashkernel=`).
    CrashRegion,
    /// The device tree the hypervisor was booted with.
    HostDeviceTree,
    /// Host RAM that is none of the above and not the guest's.
    OtherHostRam,
    /// Neither RAM nor a device of the host DT: a hole, or beyond the end.
    OutsideRam,
    /// A device of the host DT the guest was not given.
    Device(DeviceHit<'m>),
    /// RAM of the guest with this number.
    OtherGuest(u16),
}

impl<'m> ForeignTarget<'m> {
    pub const fn kind(&self) -> ForeignKind {
        match self {
            Self::HypervisorImage => ForeignKind::HypervisorImage,
            Self::HypervisorPool => ForeignKind::HypervisorPool,
            Self::CrashRegion => ForeignKind::CrashRegion,
            Self::HostDeviceTree => ForeignKind::HostDeviceTree,
            Self::OtherHostRam => ForeignKind::OtherHostRam,
            Self::OutsideRam => ForeignKind::OutsideRam,
            Self::Device(_) => ForeignKind::Device,
            Self::OtherGuest(_) => ForeignKind::OtherGuest,
        }
    }

    /// What the log calls the target in short ("further accesses to {key} are counted,
    /// not logged"): its kind's tally key, but a device's node path, since each device is
    /// logged once on its own.
    pub const fn key(&self) -> &'m str {
        match self {
            Self::Device(hit) => hit.path,
            _ => self.kind().key(),
        }
    }
}

impl fmt::Display for ForeignTarget<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::HypervisorImage => "the hypervisor's image",
            Self::HypervisorPool => "the hypervisor's pool (heap and page tables)",
            Self::CrashRegion => "the crash region",
            Self::HostDeviceTree => "the host device tree",
            Self::OtherHostRam => "host RAM that is not the guest's",
            Self::OutsideRam => {
                "neither RAM nor a device of the host DT (a hole or beyond the end)"
            }
            Self::Device(hit) => return hit.fmt(f),
            Self::OtherGuest(number) => return write!(f, "guest {number}'s RAM"),
        })
    }
}

/// `device /fw-cfg@9020000`.
impl fmt::Display for DeviceHit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "device {}", self.path)?;
        // The emulated frames never fault: this access hit one of the device's others.
        if self.partly_emulated {
            f.write_str(" (not emulated for this guest)")?;
        }
        Ok(())
    }
}

/// One device of the host DT: its node and the CPU physical ranges its `reg` entries
/// (and a PCI host bridge's windows) cover, exactly as the DT states them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostDevice {
    pub path: String,
    pub windows: Vec<PhysRange>,
    /// Some of its windows overlap the guest's emulated frames (the GIC: its distributor
    /// and the guest's vCPUs' redistributors). Those trap as MMIO and never reach
    /// [`HostMemoryMap::classify`]; an access that does hit another frame (a
    /// redistributor beyond the guest's vCPUs, say), which the log says.
    pub partly_emulated: bool,
}

impl HostDevice {
    /// The devices of the host DT `dtb` ([`named_device_regions`]), grouped as
    /// [`Self::group`] does with `emulated`, the guest's emulated frames.
    ///
    /// # Errors
    ///
    /// A blob `named_device_regions` cannot read.
    pub fn from_dtb(
        dtb: &[u8],
        emulated: &[PhysRange],
    ) -> Result<Vec<HostDevice>, PassthroughError> {
        Ok(Self::group(named_device_regions(dtb)?, emulated))
    }

    /// The devices of `(path, window)` pairs ([`named_device_regions`]), one per path in first-seen order, each marked
    /// [`Self::partly_emulated`] when a window overlaps one of `emulated`.
    pub fn group(
        windows: impl IntoIterator<Item = (String, PhysRange)>,
        emulated: &[PhysRange],
    ) -> Vec<HostDevice> {
        let mut devices: Vec<HostDevice> = Vec::new();
        for (path, window) in windows {
            let device = match devices.iter().position(|d| d.path == path) {
                Some(at) => &mut devices[at],
                None => {
                    devices.push(HostDevice {
                        path,
                        windows: Vec::new(),
                        partly_emulated: false,
                    });
                    let last = devices.len() - 1;
                    &mut devices[last]
                }
            };
            device.partly_emulated |= emulated.iter().any(|e| e.overlaps(&window));
            device.windows.push(window);
        }
        devices
    }
}

/// The host's physical memory as far as telling foreign accesses apart needs it.
#[derive(Clone, Debug, Default)]
pub struct HostMemoryMap {
    pub image: Option<PhysRange>,
    pub pool: Option<PhysRange>,
    pub crash: Option<PhysRange>,
    pub dtb: Option<PhysRange>,
    /// All RAM banks of the host.
    pub ram: ArrayVec<PhysRange, MAX_MEMORY_BANKS>,
    /// The host DT's devices ([`HostDevice::group`]).
    pub devices: Vec<HostDevice>,
    /// The other guests' RAM (physical), by guest number.
    pub guests: Vec<(u16, PhysRange)>,
}

impl HostMemoryMap {
    /// What lies at `pa`. The specific regions win over plain host RAM; they never
    /// overlap one another (the memory plan keeps them apart). RAM wins over a device, so
    /// that a DT node describing RAM cannot mislabel it.
    pub fn classify(&self, pa: u64) -> ForeignTarget<'_> {
        let named = [
            (self.image, ForeignTarget::HypervisorImage),
            (self.pool, ForeignTarget::HypervisorPool),
            (self.crash, ForeignTarget::CrashRegion),
            (self.dtb, ForeignTarget::HostDeviceTree),
        ];
        for (range, target) in named {
            if range.is_some_and(|r| r.contains(pa)) {
                return target;
            }
        }
        if let Some(&(number, _)) = self.guests.iter().find(|(_, ram)| ram.contains(pa)) {
            return ForeignTarget::OtherGuest(number);
        }
        if self.ram.iter().any(|bank| bank.contains(pa)) {
            return ForeignTarget::OtherHostRam;
        }
        self.device_at(pa)
            .map_or(ForeignTarget::OutsideRam, ForeignTarget::Device)
    }

    /// The device with the smallest window holding `pa`: a bus's own registers may
    /// enclose its children's, and the child is the better name.
    fn device_at(&self, pa: u64) -> Option<DeviceHit<'_>> {
        self.devices
            .iter()
            .enumerate()
            .filter_map(|(index, device)| {
                let size = device
                    .windows
                    .iter()
                    .filter(|w| w.contains(pa))
                    .map(|w| w.size)
                    .min()?;
                Some((size, index, device))
            })
            .min_by_key(|&(size, ..)| size)
            .map(|(_, index, device)| DeviceHit {
                index,
                path: &device.path,
                partly_emulated: device.partly_emulated,
            })
    }
}

/// Counts refused accesses per kind; tells the caller which one is the first of its
/// kind, or for a device the first to that device (and so worth a log line). Lock-free:
/// vCPUs fault concurrently.
pub struct ForeignAccessTally {
    counts: [AtomicU64; ForeignKind::ALL.len()],
    /// The devices already logged, as their [`DeviceHit::index`] + 1, filled from the
    /// front (0: free). A slot, once set, never changes, so two vCPUs racing for the
    /// same device meet at the same slot and only one claims it.
    named: [AtomicUsize; MAX_NAMED_DEVICES],
}

impl ForeignAccessTally {
    pub const fn new() -> Self {
        Self {
            counts: [const { AtomicU64::new(0) }; ForeignKind::ALL.len()],
            named: [const { AtomicUsize::new(0) }; MAX_NAMED_DEVICES],
        }
    }

    /// Records one refused access; `true` if it is the first to `target`'s kind, or for
    /// a device the first to that device while fewer than [`MAX_NAMED_DEVICES`] were.
    pub fn record(&self, target: ForeignTarget<'_>) -> bool {
        let kind = target.kind();
        let first_of_kind = self.counts[kind.index()].fetch_add(1, Ordering::Relaxed) == 0;
        match target {
            ForeignTarget::Device(hit) => self.claim_name(hit.index),
            _ => first_of_kind,
        }
    }

    /// `true` if device `index` was not logged yet and a slot was free for it.
    fn claim_name(&self, index: usize) -> bool {
        let tag = index.saturating_add(1);
        for slot in &self.named {
            match slot.compare_exchange(0, tag, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(held) if held == tag => return false,
                Err(_) => {}
            }
        }
        false
    }

    pub fn count(&self, kind: ForeignKind) -> u64 {
        self.counts[kind.index()].load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        ForeignKind::ALL.iter().map(|&k| self.count(k)).sum()
    }
}

impl Default for ForeignAccessTally {
    fn default() -> Self {
        Self::new()
    }
}

/// `image=2 pool=2 crash=0 dtb=0 host_ram=0 outside_ram=4 device=6`.
impl fmt::Display for ForeignAccessTally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, kind) in ForeignKind::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}={}", kind.key(), self.count(*kind))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    const MIB: u64 = 1 << 20;

    fn range(base: u64, size: u64) -> PhysRange {
        PhysRange::new(base, size).expect("test range")
    }

    /// QEMU virt, 2 GiB, a 32 MiB crash region at the top: the layout a real boot logs.
    fn qemu_2g() -> HostMemoryMap {
        let mut ram = ArrayVec::new();
        ram.push(range(0x4000_0000, 2048 * MIB));
        HostMemoryMap {
            image: Some(range(0x4020_0000, 2 * MIB)),
            pool: Some(range(0xba00_0000, 64 * MIB)),
            crash: Some(range(0xbe00_0000, 32 * MIB)),
            dtb: Some(range(0x4800_0000, MIB)),
            ram,
            devices: Vec::new(),
            guests: Vec::new(),
        }
    }

    /// The guest's emulated frames on QEMU virt with 2 vCPUs: GICD, two GICR pairs, PL011.
    fn emulated_2_vcpus() -> [PhysRange; 3] {
        [
            range(0x800_0000, 0x1_0000),
            range(0x80a_0000, 0x4_0000),
            range(0x900_0000, 0x1000),
        ]
    }

    /// Part of QEMU virt's host DT as `named_device_regions` gives it.
    fn qemu_devices() -> Vec<HostDevice> {
        let windows = [
            ("/fw-cfg@9020000", 0x902_0000, 0x18),
            ("/virtio_mmio@a000000", 0xa00_0000, 0x200),
            ("/virtio_mmio@a000200", 0xa00_0200, 0x200),
            ("/pcie@10000000", 0x40_1000_0000, 0x1000_0000),
            ("/pcie@10000000", 0x1000_0000, 0x2eff_0000),
            ("/pl011@9000000", 0x900_0000, 0x1000),
            ("/intc@8000000", 0x800_0000, 0x1_0000),
            ("/intc@8000000", 0x80a_0000, 0xf6_0000),
            ("/intc@8000000/its@8080000", 0x808_0000, 0x2_0000),
            ("/flash@0", 0x0, 0x400_0000),
            ("/flash@0", 0x400_0000, 0x400_0000),
        ]
        .map(|(path, base, size)| (path.to_string(), range(base, size)));
        HostDevice::group(windows, &emulated_2_vcpus())
    }

    fn qemu_2g_with_devices() -> HostMemoryMap {
        HostMemoryMap {
            devices: qemu_devices(),
            guests: Vec::new(),
            ..qemu_2g()
        }
    }

    fn device_path(target: ForeignTarget<'_>) -> Option<&str> {
        match target {
            ForeignTarget::Device(hit) => Some(hit.path),
            _ => None,
        }
    }

    #[test]
    fn each_region_is_named_at_both_ends() {
        let map = qemu_2g();
        for (range, target) in [
            (map.image, ForeignTarget::HypervisorImage),
            (map.pool, ForeignTarget::HypervisorPool),
            (map.crash, ForeignTarget::CrashRegion),
            (map.dtb, ForeignTarget::HostDeviceTree),
        ] {
            let r = range.expect("region");
            assert_eq!(map.classify(r.base), target);
            assert_eq!(map.classify(r.end() - 1), target);
            assert_ne!(map.classify(r.end()), target, "{target:?} end is exclusive");
        }
    }

    #[test]
    fn other_ram_and_no_ram() {
        let map = qemu_2g();
        assert_eq!(map.classify(0x5000_0000), ForeignTarget::OtherHostRam);
        assert_eq!(map.classify(0xc000_0000), ForeignTarget::OutsideRam);
        assert_eq!(map.classify(0x0900_0000), ForeignTarget::OutsideRam);
        assert_eq!(map.classify(u64::MAX), ForeignTarget::OutsideRam);
    }

    #[test]
    fn a_map_without_regions_knows_only_ram() {
        let map = HostMemoryMap::default();
        assert_eq!(map.classify(0x4020_0000), ForeignTarget::OutsideRam);
    }

    #[test]
    fn grouping_keeps_one_device_per_path_in_dt_order() {
        let devices = qemu_devices();
        let paths: Vec<&str> = devices.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/fw-cfg@9020000",
                "/virtio_mmio@a000000",
                "/virtio_mmio@a000200",
                "/pcie@10000000",
                "/pl011@9000000",
                "/intc@8000000",
                "/intc@8000000/its@8080000",
                "/flash@0",
            ]
        );
        assert_eq!(devices[3].windows.len(), 2);
        let partly: Vec<&str> = devices
            .iter()
            .filter(|d| d.partly_emulated)
            .map(|d| d.path.as_str())
            .collect();
        assert_eq!(partly, ["/pl011@9000000", "/intc@8000000"]);
    }

    #[test]
    fn devices_are_named_by_path_at_both_ends_of_each_window() {
        let map = qemu_2g_with_devices();
        for device in &map.devices {
            for window in &device.windows {
                for pa in [window.base, window.end() - 4] {
                    assert_eq!(
                        device_path(map.classify(pa)),
                        Some(device.path.as_str()),
                        "{pa:#x}"
                    );
                }
            }
        }
        // Between and beyond the windows: nothing the DT names.
        for pa in [0x902_0018, 0xa00_0400, 0x3f00_0000, 0xc00_0000] {
            assert_eq!(map.classify(pa), ForeignTarget::OutsideRam, "{pa:#x}");
        }
        // The neighbouring virtio-mmio slots share a page but not a name.
        assert_eq!(
            device_path(map.classify(0xa00_01fc)),
            Some("/virtio_mmio@a000000")
        );
        assert_eq!(
            device_path(map.classify(0xa00_0200)),
            Some("/virtio_mmio@a000200")
        );
    }

    #[test]
    fn the_gics_other_frames_say_they_are_not_emulated() {
        let map = qemu_2g_with_devices();
        // A redistributor beyond the guest's two vCPUs.
        let target = map.classify(0x80e_0000);
        assert_eq!(
            target.to_string(),
            "device /intc@8000000 (not emulated for this guest)"
        );
        assert_eq!(target.key(), "/intc@8000000");
        // The ITS is a device of its own, not emulated at all.
        let its = map.classify(0x808_0000);
        assert_eq!(its.to_string(), "device /intc@8000000/its@8080000");
        assert_eq!(its.kind(), ForeignKind::Device);
    }

    #[test]
    fn ram_and_the_hypervisors_regions_win_over_a_device() {
        let mut map = qemu_2g();
        map.devices = HostDevice::group(
            [
                (
                    "/sram@40000000".to_string(),
                    range(0x4000_0000, 0x1000_0000),
                ),
                ("/bus@0".to_string(), range(0, 0x1000_0000)),
                ("/bus@0/dev@1000".to_string(), range(0x1000, 0x100)),
            ],
            &[],
        );
        assert_eq!(map.classify(0x4020_0000), ForeignTarget::HypervisorImage);
        assert_eq!(map.classify(0x4100_0000), ForeignTarget::OtherHostRam);
        // The smallest window wins: the child inside its bus's registers.
        assert_eq!(device_path(map.classify(0x1010)), Some("/bus@0/dev@1000"));
        assert_eq!(device_path(map.classify(0x2000)), Some("/bus@0"));
    }

    /// The whole board from QEMU's own DT: every device window is named, the GIC as
    /// partly emulated, fw-cfg's 0x18 bytes exactly.
    #[test]
    fn qemu_virt_devices_from_its_dtb() {
        let dtb = include_bytes!("../../../guest-loader/tests/fixtures/qemu-virt-smp4-2g.dtb");
        let map = HostMemoryMap {
            devices: HostDevice::from_dtb(dtb, &emulated_2_vcpus()).expect("fixture"),
            guests: Vec::new(),
            ..qemu_2g()
        };
        // fw-cfg, 32 virtio-mmio, pl061, pcie, pl031, pl011, intc, its, flash.
        assert_eq!(map.devices.len(), 40);
        for (pa, named) in [
            (0x902_0014, "device /fw-cfg@9020000"),
            (0xa00_3e00, "device /virtio_mmio@a003e00"),
            (0x808_0000, "device /intc@8000000/its@8080000"),
            (
                0x8ff_fffc,
                "device /intc@8000000 (not emulated for this guest)",
            ),
            (0x3eff_0000, "device /pcie@10000000"),
            (0x40_1000_0000, "device /pcie@10000000"),
            (0xff_ffff_fffc, "device /pcie@10000000"),
            (0x7ff_fffc, "device /flash@0"),
        ] {
            assert_eq!(map.classify(pa).to_string(), named, "{pa:#x}");
        }
        assert_eq!(map.classify(0x902_0018), ForeignTarget::OutsideRam);
        assert!(HostDevice::from_dtb(&dtb[..8], &[]).is_err());
    }

    #[test]
    fn tally_reports_the_first_of_each_kind_once() {
        let tally = ForeignAccessTally::new();
        assert!(tally.record(ForeignTarget::CrashRegion));
        assert!(!tally.record(ForeignTarget::CrashRegion));
        assert!(tally.record(ForeignTarget::OutsideRam));
        assert!(!tally.record(ForeignTarget::CrashRegion));
        assert_eq!(tally.count(ForeignKind::CrashRegion), 3);
        assert_eq!(tally.total(), 4);
        assert_eq!(
            tally.to_string(),
            "image=0 pool=0 crash=3 dtb=0 host_ram=0 outside_ram=1 device=0 other_guest=0"
        );
    }

    #[test]
    fn tally_names_each_device_once_and_counts_every_access() {
        let map = qemu_2g_with_devices();
        let tally = ForeignAccessTally::new();
        let pas = [
            0x902_0000, 0x902_0014, 0xa00_0000, 0x80e_0000, 0x8ff_fffc, 0xa00_0000,
        ];
        let first: Vec<bool> = pas
            .iter()
            .map(|&pa| tally.record(map.classify(pa)))
            .collect();
        assert_eq!(first, [true, false, true, true, false, false]);
        assert_eq!(tally.count(ForeignKind::Device), 6);
        assert!(
            tally
                .to_string()
                .ends_with(" outside_ram=0 device=6 other_guest=0")
        );
    }

    #[test]
    fn tally_names_at_most_max_named_devices_then_only_counts() {
        let tally = ForeignAccessTally::new();
        let hit = |index| {
            ForeignTarget::Device(DeviceHit {
                index,
                path: "/d",
                partly_emulated: false,
            })
        };
        for index in 0..MAX_NAMED_DEVICES {
            assert!(tally.record(hit(index)), "{index}");
        }
        assert!(!tally.record(hit(MAX_NAMED_DEVICES)));
        assert!(!tally.record(hit(0)));
        assert_eq!(
            tally.count(ForeignKind::Device),
            MAX_NAMED_DEVICES as u64 + 2
        );
    }

    #[test]
    fn tally_names_a_device_once_under_concurrent_faults() {
        let tally = ForeignAccessTally::new();
        let firsts = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for index in 0..MAX_NAMED_DEVICES + 8 {
                        let hit = DeviceHit {
                            index,
                            path: "/d",
                            partly_emulated: false,
                        };
                        if tally.record(ForeignTarget::Device(hit)) {
                            firsts.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(firsts.load(Ordering::Relaxed), MAX_NAMED_DEVICES as u64);
        assert_eq!(
            tally.count(ForeignKind::Device),
            8 * (MAX_NAMED_DEVICES as u64 + 8)
        );
    }

    #[test]
    fn tally_keys_are_the_abis() {
        let ours: Vec<&str> = ForeignKind::ALL.iter().map(|k| k.key()).collect();
        assert_eq!(ours, keys::ALL);
    }

    #[test]
    fn another_guests_ram_is_named_before_plain_host_ram() {
        let mut map = qemu_2g();
        map.guests
            .push((2, PhysRange::new(0x6000_0000, 0x1000_0000).unwrap()));
        assert_eq!(map.classify(0x6000_0000), ForeignTarget::OtherGuest(2));
        assert_eq!(map.classify(0x6fff_ffff), ForeignTarget::OtherGuest(2));
        assert_eq!(map.classify(0x7000_0000), ForeignTarget::OtherHostRam);
        assert_eq!(ForeignTarget::OtherGuest(2).to_string(), "guest 2's RAM");
        assert_eq!(ForeignTarget::OtherGuest(2).key(), "other_guest");
    }
}
