//! Guest accesses outside the guest's memory: what they hit, and a tally.
//!
//! Stage 2 maps only the guest's RAM and its passthrough devices, so any other IPA the
//! guest touches takes a stage-2 translation fault to EL2; the hypervisor answers with a
//! synchronous external abort in the guest. Which host memory sat behind the IPA (the
//! guest's IPA space is the identity of the host's physical one) says what the guest
//! was after: the hypervisor's image, its pool (heap and page tables), the crash region,
//! the host device tree, other host RAM, or nothing at all. The log names the target,
//! once per kind, so a probing guest cannot flood the console, and the tally keeps every
//! attempt countable.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use arrayvec::ArrayVec;
use platform::info::{MAX_MEMORY_BANKS, PhysRange};

/// What lies behind an IPA the guest may not reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForeignTarget {
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
    /// No RAM at all: a hole, a device not given to the guest, or beyond the end.
    OutsideRam,
}

impl ForeignTarget {
    pub const ALL: [ForeignTarget; 6] = [
        Self::HypervisorImage,
        Self::HypervisorPool,
        Self::CrashRegion,
        Self::HostDeviceTree,
        Self::OtherHostRam,
        Self::OutsideRam,
    ];

    /// A short name for logs and tallies (`foreign-access: image=...`).
    pub const fn key(self) -> &'static str {
        match self {
            Self::HypervisorImage => "image",
            Self::HypervisorPool => "pool",
            Self::CrashRegion => "crash",
            Self::HostDeviceTree => "dtb",
            Self::OtherHostRam => "host_ram",
            Self::OutsideRam => "outside_ram",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ForeignTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::HypervisorImage => "the hypervisor's image",
            Self::HypervisorPool => "the hypervisor's pool (heap and page tables)",
            Self::CrashRegion => "the crash region",
            Self::HostDeviceTree => "the host device tree",
            Self::OtherHostRam => "host RAM that is not the guest's",
            Self::OutsideRam => "no RAM (a hole, an unassigned device or beyond the end)",
        })
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
}

impl HostMemoryMap {
    /// What lies at `pa`. The specific regions win over plain host RAM; they never
    /// overlap one another (the memory plan keeps them apart).
    pub fn classify(&self, pa: u64) -> ForeignTarget {
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
        if self.ram.iter().any(|bank| bank.contains(pa)) {
            ForeignTarget::OtherHostRam
        } else {
            ForeignTarget::OutsideRam
        }
    }
}

/// Counts refused accesses per target; tells the caller which one is the first of its
/// kind (and so worth a log line). Lock-free: vCPUs fault concurrently.
pub struct ForeignAccessTally {
    counts: [AtomicU64; ForeignTarget::ALL.len()],
}

impl ForeignAccessTally {
    pub const fn new() -> Self {
        Self {
            counts: [const { AtomicU64::new(0) }; ForeignTarget::ALL.len()],
        }
    }

    /// Records one refused access; `true` if it is the first to `target`.
    pub fn record(&self, target: ForeignTarget) -> bool {
        self.counts[target.index()].fetch_add(1, Ordering::Relaxed) == 0
    }

    pub fn count(&self, target: ForeignTarget) -> u64 {
        self.counts[target.index()].load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        ForeignTarget::ALL.iter().map(|&t| self.count(t)).sum()
    }
}

impl Default for ForeignAccessTally {
    fn default() -> Self {
        Self::new()
    }
}

/// `image=2 pool=2 crash=0 dtb=0 host_ram=0 outside_ram=4`.
impl fmt::Display for ForeignAccessTally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, target) in ForeignTarget::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}={}", target.key(), self.count(*target))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn tally_reports_the_first_of_each_kind_once() {
        let tally = ForeignAccessTally::new();
        assert!(tally.record(ForeignTarget::CrashRegion));
        assert!(!tally.record(ForeignTarget::CrashRegion));
        assert!(tally.record(ForeignTarget::OutsideRam));
        assert!(!tally.record(ForeignTarget::CrashRegion));
        assert_eq!(tally.count(ForeignTarget::CrashRegion), 3);
        assert_eq!(tally.total(), 4);
        assert_eq!(
            tally.to_string(),
            "image=0 pool=0 crash=3 dtb=0 host_ram=0 outside_ram=1"
        );
    }
}
