//! The portable half of the DMA tests' virtio-blk driver (`guest/virtio_blk.rs`): the
//! PCI host bridge the DT describes (`pci-host-ecam-generic`), ECAM offsets, BAR
//! placement, the virtio PCI capabilities (virtio 1.0, 4.1.4), the `dma_probe=` bootarg.

use crate::fixed::List;
use crate::layout::Range;

/// The ECAM host bridge the guest's DT gives it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PciHost {
    /// Config space of `bus_start` and the buses after it (1 MiB each).
    pub ecam: Range,
    pub bus_start: u8,
    /// The 32-bit memory window (`ranges` space code 2), if any.
    pub mmio32: Option<Window>,
}

/// A `ranges` entry: PCI bus address `pci` is CPU physical `cpu`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub pci: u64,
    pub cpu: u64,
    pub size: u64,
}

impl PciHost {
    /// The first enabled `pci-host-ecam-generic` node.
    pub fn parse(fdt: &crate::fdt::Fdt<'_>) -> Option<Self> {
        let node = fdt
            .nodes()
            .find(|n| n.is_compatible(b"pci-host-ecam-generic") && n.is_enabled())?;
        let (base, size) = node.reg().next()?;
        let bus_start = node
            .property(b"bus-range")
            .and_then(|r| crate::fdt::read_cells(r, 1))
            .unwrap_or(0) as u8;
        let parent = node.parent_cells.address as usize;
        let own_size = node.cells().size as usize;
        let entry = (3 + parent + own_size) * 4;
        let ranges = node.property(b"ranges").unwrap_or(&[]);
        let mmio32 = ranges.chunks_exact(entry).find_map(|e| {
            let hi = crate::fdt::read_cells(e, 1)?;
            if (hi >> 24) & 3 != 2 {
                return None;
            }
            let pci = crate::fdt::read_cells(e.get(4..)?, 2)?;
            let cpu = crate::fdt::read_cells(e.get(12..)?, parent as u32)?;
            let size = crate::fdt::read_cells(e.get(12 + parent * 4..)?, own_size as u32)?;
            Some(Window { pci, cpu, size })
        });
        Some(Self {
            ecam: Range::new(base, size),
            bus_start,
            mmio32,
        })
    }

    /// The config space of `bus`:`device`.`function`, if ECAM covers it.
    pub fn config(&self, bus: u8, device: u8, function: u8) -> Option<u64> {
        let offset = (u64::from(bus.checked_sub(self.bus_start)?) << 20)
            | (u64::from(device & 31) << 15)
            | (u64::from(function & 7) << 12);
        (offset + 0x1000 <= self.ecam.size).then_some(self.ecam.base + offset)
    }
}

/// Hands out naturally aligned BAR addresses from a window, lowest first.
#[derive(Clone, Copy, Debug)]
pub struct BarAllocator {
    next: u64,
    end: u64,
}

impl BarAllocator {
    pub fn new(window: Window) -> Self {
        Self {
            next: window.pci,
            end: window.pci.saturating_add(window.size),
        }
    }

    /// A PCI bus address for a BAR of `size` bytes (a power of two), aligned to it.
    pub fn alloc(&mut self, size: u64) -> Option<u64> {
        if !size.is_power_of_two() {
            return None;
        }
        let at = self.next.checked_next_multiple_of(size)?;
        let end = at.checked_add(size)?;
        (end <= self.end).then(|| {
            self.next = end;
            at
        })
    }
}

/// The size a memory BAR decodes, from what it reads back after all ones were written
/// (`low` the BAR, `high` the next one for a 64-bit BAR).
pub fn bar_size(low: u32, high: Option<u32>) -> u64 {
    let mask = (u64::from(high.unwrap_or(0xffff_ffff)) << 32) | u64::from(low & !0xf);
    (!mask).wrapping_add(1)
        & if high.is_some() {
            u64::MAX
        } else {
            0xffff_ffff
        }
}

/// `cfg_type` of a virtio PCI capability.
pub const VIRTIO_CAP_COMMON: u8 = 1;
pub const VIRTIO_CAP_NOTIFY: u8 = 2;
pub const VIRTIO_CAP_ISR: u8 = 3;
pub const VIRTIO_CAP_DEVICE: u8 = 4;
/// The vendor-specific capability ID virtio uses.
pub const CAP_VENDOR: u8 = 0x09;

/// A virtio PCI capability (`struct virtio_pci_cap`, plus the notify multiplier).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioCap {
    pub cfg_type: u8,
    pub bar: u8,
    pub offset: u32,
    pub length: u32,
    /// `notify_off_multiplier` (notify capability only).
    pub multiplier: u32,
}

/// Decodes the capability whose first five dwords are `dwords` (the fifth only matters
/// for the notify capability); `None` when it is not a virtio one.
pub fn decode_virtio_cap(dwords: [u32; 5]) -> Option<VirtioCap> {
    let [d0, d1, offset, length, multiplier] = dwords;
    if d0 as u8 != CAP_VENDOR || ((d0 >> 16) as u8) < 16 {
        return None;
    }
    let cfg_type = (d0 >> 24) as u8;
    Some(VirtioCap {
        cfg_type,
        bar: d1 as u8,
        offset,
        length,
        multiplier: if cfg_type == VIRTIO_CAP_NOTIFY {
            multiplier
        } else {
            0
        },
    })
}

/// The bootarg naming addresses outside the guest's RAM a device must not reach by DMA
/// (the hypervisor's pool, the crash region: `hyp-facts: pool_base= crash_base=`).
const DMA_PROBE_OPTION: &[u8] = b"dma_probe=";
pub const MAX_DMA_PROBES: usize = 4;

/// The page-aligned addresses of every `dma_probe=A[,B...]`; malformed items are dropped.
pub fn parse_dma_probes(bootargs: &[u8]) -> List<u64, MAX_DMA_PROBES> {
    let mut out = List::new();
    for value in bootargs
        .split(|b| b.is_ascii_whitespace())
        .filter_map(|o| o.strip_prefix(DMA_PROBE_OPTION))
    {
        for item in value.split(|&b| b == b',') {
            let digits = item.strip_prefix(b"0x").unwrap_or(item);
            let parsed = (!digits.is_empty() && digits.len() <= 16)
                .then(|| {
                    digits.iter().try_fold(0u64, |v, &c| {
                        Some((v << 4) | u64::from((c as char).to_digit(16)?))
                    })
                })
                .flatten();
            if let Some(address) = parsed
                && address.is_multiple_of(4096)
            {
                let _ = out.push(address);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdt::Fdt;
    use crate::fdt::builder::{Builder, Value};

    #[test]
    fn qemu_virt_host_bridge() {
        let blob = Builder::new()
            .begin("")
            .prop("#address-cells", Value::U32(2))
            .prop("#size-cells", Value::U32(2))
            .begin("pcie@10000000")
            .prop("compatible", Value::Str("pci-host-ecam-generic"))
            .prop("#address-cells", Value::U32(3))
            .prop("#size-cells", Value::U32(2))
            .prop("bus-range", Value::Cells(&[0, 0xff]))
            .prop("reg", Value::Cells(&[0x40, 0x1000_0000, 0, 0x1000_0000]))
            .prop(
                "ranges",
                Value::Cells(&[
                    0x0100_0000,
                    0,
                    0,
                    0,
                    0x3eff_0000,
                    0,
                    0x1_0000, //
                    0x0200_0000,
                    0,
                    0x1000_0000,
                    0,
                    0x1000_0000,
                    0,
                    0x2eff_0000, //
                    0x0300_0000,
                    0x80,
                    0,
                    0x80,
                    0,
                    0x80,
                    0,
                ]),
            )
            .end()
            .end()
            .finish();
        let host = PciHost::parse(&Fdt::new(&blob).unwrap()).unwrap();
        assert_eq!(host.ecam, Range::new(0x40_1000_0000, 0x1000_0000));
        assert_eq!(
            host.mmio32,
            Some(Window {
                pci: 0x1000_0000,
                cpu: 0x1000_0000,
                size: 0x2eff_0000
            })
        );
        assert_eq!(host.config(0, 1, 0), Some(0x40_1000_8000));
        assert_eq!(host.config(1, 0, 0), Some(0x40_1010_0000));
    }

    #[test]
    fn bars_are_aligned_and_bounded() {
        let mut a = BarAllocator::new(Window {
            pci: 0x1000_0000,
            cpu: 0x1000_0000,
            size: 0x10000,
        });
        assert_eq!(a.alloc(0x1000), Some(0x1000_0000));
        assert_eq!(a.alloc(0x4000), Some(0x1000_4000));
        assert_eq!(a.alloc(0x3000), None);
        assert_eq!(a.alloc(0x10000), None);
        assert_eq!(bar_size(0xffff_c00c, Some(0xffff_ffff)), 0x4000);
        assert_eq!(bar_size(0xffff_f000, None), 0x1000);
    }

    #[test]
    fn virtio_caps() {
        let notify = decode_virtio_cap([0x0214_4009, 4, 0x3000, 0x1000, 4]).unwrap();
        assert_eq!(
            notify,
            VirtioCap {
                cfg_type: VIRTIO_CAP_NOTIFY,
                bar: 4,
                offset: 0x3000,
                length: 0x1000,
                multiplier: 4
            }
        );
        assert_eq!(decode_virtio_cap([0x0110_4011, 0, 0, 0, 0]), None);
        assert_eq!(
            decode_virtio_cap([0x0110_0009, 4, 0, 0x1000, 7])
                .unwrap()
                .multiplier,
            0
        );
    }

    #[test]
    fn dma_probe_bootarg() {
        let p = parse_dma_probes(b"quiet dma_probe=0xbc800000,be000000,0x123 x=1");
        assert_eq!(p.as_slice(), [0xbc80_0000, 0xbe00_0000]);
        assert!(parse_dma_probes(b"isolation_probe=0x1000").is_empty());
    }
}
