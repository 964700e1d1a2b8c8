//! What the device tree says about the interrupt controller: the GICv3's distributor and
//! redistributor regions (the `arm,gic-v3` node's `reg`: distributor first, then
//! `#redistributor-regions` redistributor regions) and the INTIDs of the two interrupts
//! the vGIC tests use, the console PL011's SPI and the virtual timer's PPI.
//!
//! Interrupt specifiers are read as the GIC binding's three cells (type, number, flags):
//! the guest's tree has one interrupt controller, so `interrupt-parent` is not followed.
//! Missing or malformed parts leave the fields empty; parsing never fails.

use crate::fdt::{Fdt, Node, read_cells};
use crate::fixed::List;
use crate::gicv3::{FIRST_SPI, LAST_SPI};
use crate::layout::Range;

/// Redistributor regions the guest tracks (QEMU has 1, or 2 with more than 123 CPUs).
pub const MAX_REDISTRIBUTOR_REGIONS: usize = 4;

/// `interrupts` index of the virtual timer in an `arm,armv8-timer` node: secure
/// physical, non-secure physical, virtual, hypervisor.
const TIMER_VIRTUAL_INDEX: usize = 2;

#[derive(Clone, Copy, Debug, Default)]
pub struct GicInfo {
    /// GICD: the first `reg` entry of the first enabled `arm,gic-v3` node.
    pub distributor: Option<Range>,
    pub redistributors: List<Range, MAX_REDISTRIBUTOR_REGIONS>,
    /// The console PL011's interrupt (an SPI in the guest's tree).
    pub console_intid: Option<u32>,
    /// The virtual timer's PPI (27 on every GICv3 system the binding describes).
    pub virtual_timer_intid: Option<u32>,
}

impl GicInfo {
    /// Reads the GIC node, the timer node and the PL011 whose registers are at
    /// `console_base` (the console `dtinfo` chose).
    pub fn parse(fdt: &Fdt<'_>, console_base: Option<u64>) -> Self {
        let mut info = Self::default();
        for node in fdt.nodes() {
            if info.distributor.is_none() && node.is_compatible(b"arm,gic-v3") && node.is_enabled()
            {
                info.read_gic(&node);
            }
            if info.virtual_timer_intid.is_none() && node.is_compatible(b"arm,armv8-timer") {
                info.virtual_timer_intid = interrupt(&node, TIMER_VIRTUAL_INDEX);
            }
            if info.console_intid.is_none()
                && console_base.is_some()
                && node.is_compatible(b"arm,pl011")
                && node.reg().next().map(|(base, _)| base) == console_base
            {
                info.console_intid = interrupt(&node, 0);
            }
        }
        info
    }

    fn read_gic(&mut self, node: &Node<'_>) {
        let regions = node.u32_property(b"#redistributor-regions").unwrap_or(1);
        let mut reg = node.reg();
        self.distributor = reg.next().map(|(base, size)| Range::new(base, size));
        for (base, size) in reg.take(regions as usize) {
            if size > 0 {
                // More regions than the guest tracks: the rest are ignored (the guest's
                // own redistributor is in the first on every tree it meets).
                let _ = self.redistributors.push(Range::new(base, size));
            }
        }
    }

    /// Every GIC range the guest's stage-1 map must cover.
    pub fn ranges(&self) -> impl Iterator<Item = Range> + '_ {
        self.distributor
            .into_iter()
            .chain(self.redistributors.iter())
    }
}

/// The INTID of the `index`th interrupt of `node`.
fn interrupt(node: &Node<'_>, index: usize) -> Option<u32> {
    gic_intid(node.property(b"interrupts")?, index)
}

/// The INTID of the `index`th three-cell GIC interrupt specifier in `interrupts`: type 0
/// (SPI) number n is INTID 32 + n, type 1 (PPI) number n is INTID 16 + n.
pub fn gic_intid(interrupts: &[u8], index: usize) -> Option<u32> {
    let start = index.checked_mul(12)?;
    let specifier = interrupts.get(start..start.checked_add(12)?)?;
    let kind = read_cells(specifier, 1)?;
    let number = u32::try_from(read_cells(specifier.get(4..)?, 1)?).ok()?;
    match kind {
        0 if number <= LAST_SPI - FIRST_SPI => Some(FIRST_SPI + number),
        1 if number < 16 => Some(16 + number),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdt::builder::{Builder, Value};

    fn ranges<const N: usize>(list: &List<Range, N>) -> Vec<(u64, u64)> {
        list.iter().map(|r| (r.base, r.size)).collect()
    }

    #[test]
    fn qemu_virt_host_tree() {
        let path = format!(
            "{}/fixtures/qemu-2g-smp2-max.dtb",
            env!("CARGO_MANIFEST_DIR")
        );
        let blob = std::fs::read(&path).unwrap();
        let info = GicInfo::parse(&Fdt::new(&blob).unwrap(), Some(0x0900_0000));
        assert_eq!(info.distributor, Some(Range::new(0x0800_0000, 0x1_0000)));
        // The ITS child's `reg` is not the GIC's.
        assert_eq!(ranges(&info.redistributors), [(0x080a_0000, 0xf6_0000)]);
        assert_eq!(info.console_intid, Some(33));
        assert_eq!(info.virtual_timer_intid, Some(27));
        assert_eq!(info.ranges().count(), 2);
    }

    /// The hypervisor's guest tree: the emulated GIC with one redistributor frame pair
    /// per vCPU, the PL011 at SPI 1, the timer.
    fn guest_tree(gic_reg: &[u32], regions: Option<u32>) -> Vec<u8> {
        let mut b = Builder::new();
        b.begin("")
            .prop("#address-cells", Value::U32(2))
            .prop("#size-cells", Value::U32(2))
            .begin("intc@8000000")
            .prop("compatible", Value::Str("arm,gic-v3"))
            .prop("#interrupt-cells", Value::U32(3))
            .prop("interrupt-controller", Value::Bytes(&[]))
            .prop("reg", Value::Cells(gic_reg));
        if let Some(regions) = regions {
            b.prop("#redistributor-regions", Value::U32(regions));
        }
        b.end()
            .begin("timer")
            .prop("compatible", Value::Str("arm,armv8-timer\0arm,armv7-timer"))
            .prop(
                "interrupts",
                Value::Cells(&[1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]),
            )
            .end()
            .begin("pl011@9000000")
            .prop("compatible", Value::Str("arm,pl011\0arm,primecell"))
            .prop("reg", Value::Cells(&[0, 0x0900_0000, 0, 0x1000]))
            .prop("interrupts", Value::Cells(&[0, 1, 4]))
            .end()
            .end()
            .finish()
    }

    /// `reg` cells (2 address, 2 size) for these (base, size) pairs.
    fn reg(pairs: &[(u64, u64)]) -> Vec<u32> {
        pairs
            .iter()
            .flat_map(|&(b, s)| [(b >> 32) as u32, b as u32, (s >> 32) as u32, s as u32])
            .collect()
    }

    #[test]
    fn guest_tree_two_vcpus() {
        let gic = reg(&[(0x0800_0000, 0x1_0000), (0x080a_0000, 0x4_0000)]);
        let blob = guest_tree(&gic, None);
        let info = GicInfo::parse(&Fdt::new(&blob).unwrap(), Some(0x0900_0000));
        assert_eq!(info.distributor, Some(Range::new(0x0800_0000, 0x1_0000)));
        assert_eq!(ranges(&info.redistributors), [(0x080a_0000, 0x4_0000)]);
        assert_eq!(info.console_intid, Some(33));
        assert_eq!(info.virtual_timer_intid, Some(27));
        // Another console: its interrupt is not looked up.
        let info = GicInfo::parse(&Fdt::new(&blob).unwrap(), Some(0x0a00_0000));
        assert_eq!(info.console_intid, None);
    }

    #[test]
    fn redistributor_regions_follow_the_count() {
        let gic = reg(&[
            (0x0800_0000, 0x1_0000),
            (0x080a_0000, 0xf6_0000),
            (0x1_0000_0000, 0x2_0000),
            (0x0801_0000, 0x1_0000),
        ]);
        let info = GicInfo::parse(&Fdt::new(&guest_tree(&gic, Some(2))).unwrap(), None);
        assert_eq!(
            ranges(&info.redistributors),
            [(0x080a_0000, 0xf6_0000), (0x1_0000_0000, 0x2_0000)],
            "the GICv2-compatible frames after the regions are not redistributors"
        );
        let info = GicInfo::parse(&Fdt::new(&guest_tree(&gic[..4], None)).unwrap(), None);
        assert!(info.distributor.is_some() && info.redistributors.is_empty());
    }

    #[test]
    fn interrupt_specifiers() {
        let cells = |c: &[u32]| c.iter().flat_map(|c| c.to_be_bytes()).collect::<Vec<u8>>();
        assert_eq!(gic_intid(&cells(&[0, 1, 4]), 0), Some(33));
        assert_eq!(gic_intid(&cells(&[0, 987, 4]), 0), Some(1019));
        assert_eq!(
            gic_intid(&cells(&[0, 988, 4]), 0),
            None,
            "past the SPI range"
        );
        assert_eq!(gic_intid(&cells(&[1, 9, 4]), 0), Some(25));
        assert_eq!(gic_intid(&cells(&[1, 16, 4]), 0), None, "no PPI 16");
        assert_eq!(gic_intid(&cells(&[2, 1, 4]), 0), None, "LPI/extended types");
        assert_eq!(gic_intid(&cells(&[0, 1, 4, 1, 11]), 1), None, "truncated");
        assert_eq!(gic_intid(&cells(&[0, 1, 4]), usize::MAX), None);
    }
}
