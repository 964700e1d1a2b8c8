//! What a host node is, as far as giving it to a guest goes: part of the machine every
//! guest gets (timer, PMU, PSCI), the hypervisor's own, a kind of device that is never
//! given, or none of these.

use dtoolkit::fdt::FdtNode;
use dtoolkit::{Node, Property};

use super::problems::Refusal;

/// The strings of a string-list property (empty when absent).
pub(crate) fn strings<'a>(node: &FdtNode<'a>, name: &str) -> impl Iterator<Item = &'a [u8]> {
    node.property(name)
        .and_then(|property| property.value_as::<&'a [u8]>().ok())
        .unwrap_or(&[])
        .split(|&byte| byte == 0)
        .filter(|s| !s.is_empty())
}

pub(crate) fn is_compatible(node: &FdtNode<'_>, compatible: &[u8]) -> bool {
    strings(node, "compatible").any(|s| s == compatible)
}

pub(crate) fn has(node: &FdtNode<'_>, property: &str) -> bool {
    node.property(property).is_some()
}

pub(crate) fn is_gic_v3(node: &FdtNode<'_>) -> bool {
    is_compatible(node, b"arm,gic-v3")
}

pub(crate) fn is_its(node: &FdtNode<'_>) -> bool {
    is_compatible(node, b"arm,gic-v3-its")
}

pub(crate) fn is_pl011(node: &FdtNode<'_>) -> bool {
    is_compatible(node, b"arm,pl011")
}

/// An SMMU: the IOMMU the hypervisor would program to make DMA safe, so never a guest's.
pub(crate) fn is_iommu(node: &FdtNode<'_>) -> bool {
    strings(node, "compatible").any(|s| {
        matches!(
            s,
            b"arm,smmu-v3"
                | b"arm,smmu-v2"
                | b"arm,smmu-v1"
                | b"arm,mmu-400"
                | b"arm,mmu-401"
                | b"arm,mmu-500"
        )
    })
}

/// Part of every guest's machine, reached through system registers or a trap rather
/// than MMIO: what it is, for messages.
pub(crate) fn architected(node: &FdtNode<'_>) -> Option<&'static str> {
    if strings(node, "compatible")
        .any(|s| matches!(s, b"arm,psci" | b"arm,psci-0.2" | b"arm,psci-1.0"))
    {
        return Some("PSCI (the hypervisor implements it for every guest)");
    }
    if strings(node, "compatible").any(|s| s == b"arm,armv8-timer" || s == b"arm,armv7-timer") {
        return Some("the architected timer (every guest has it)");
    }
    if is_system_register_pmu(node) {
        return Some("the PMU (every guest has it)");
    }
    None
}

/// The CPUs' own PMU, described without MMIO: `arm,armv8-pmuv3` or a core's
/// `arm,cortex-a*-pmu`, `arm,cortex-x*-pmu`, `arm,neoverse-*-pmu`. A PMU with a `reg`
/// (an uncore or a memory-mapped one) is an ordinary device.
fn is_system_register_pmu(node: &FdtNode<'_>) -> bool {
    let core_pmu = |s: &[u8]| {
        s == b"arm,armv8-pmuv3"
            || (s.ends_with(b"-pmu")
                && (s.starts_with(b"arm,cortex-a")
                    || s.starts_with(b"arm,cortex-x")
                    || s.starts_with(b"arm,neoverse-")))
    };
    !has(node, "reg") && strings(node, "compatible").any(core_pmu)
}

/// `status` when present and not `"okay"`/`"ok"` (the node is then not in use).
pub(crate) fn disabled_status<'a>(node: &FdtNode<'a>) -> Option<&'a str> {
    let property = node.property("status")?;
    let value = property.value_as::<&'a [u8]>().ok()?;
    let value = value.strip_suffix(b"\0").unwrap_or(value);
    if value == b"okay" || value == b"ok" {
        None
    } else {
        Some(core::str::from_utf8(value).unwrap_or("?"))
    }
}

/// The kinds of device never given to a guest, whatever asks for them, with why.
pub(crate) fn refused_kind(node: &FdtNode<'_>) -> Option<Refusal> {
    if is_compatible(node, b"qemu,fw-cfg-mmio") {
        return Some(Refusal::FirmwareConfig);
    }
    if strings(node, "compatible").any(|s| {
        matches!(
            s,
            b"cfi-flash" | b"jedec-flash" | b"arm,vexpress-flash" | b"mtd-rom"
        )
    }) {
        return Some(Refusal::Flash);
    }
    dma_evidence(node).map(|evidence| Refusal::DmaWithoutIommu { evidence })
}

/// What says a node can master DMA. Without an IOMMU the hypervisor controls, such a
/// device could read and write any physical address, the hypervisor's included (a PCI
/// host bridge behind a driven SMMU is decided before this, in `pci`).
fn dma_evidence(node: &FdtNode<'_>) -> Option<&'static str> {
    if is_compatible(node, b"virtio,mmio") {
        return Some(
            "a virtio-mmio transport (virtio devices read and write the memory their driver names)",
        );
    }
    if strings(node, "device_type").any(|s| s == b"pci" || s == b"pciex") {
        return Some("a PCI host bridge (the devices behind it are bus masters)");
    }
    const DMA_PROPERTIES: [(&str, &str); 5] = [
        ("iommus", "it has `iommus`: it masters DMA through an IOMMU"),
        (
            "iommu-map",
            "it has `iommu-map`: its devices master DMA through an IOMMU",
        ),
        ("dma-coherent", "it has `dma-coherent`: it masters DMA"),
        (
            "msi-parent",
            "it has `msi-parent`: it writes MSIs, which are DMA",
        ),
        (
            "msi-map",
            "it has `msi-map`: its devices write MSIs, which are DMA",
        ),
    ];
    DMA_PROPERTIES
        .iter()
        .find(|(property, _)| has(node, property))
        .map(|&(_, evidence)| evidence)
}
