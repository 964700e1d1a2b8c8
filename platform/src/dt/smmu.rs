//! `arm,smmu-v3` nodes (bindings/iommu/arm,smmu-v3.yaml): the registers, the phandle
//! that `iommu-map` entries name, the wired interrupts and coherency.

use arrayvec::ArrayVec;

use super::DtError;
use super::bytes::string_list;
use super::interrupts::interrupt_ids;
use super::memory::range;
use super::node::Node;
use crate::info::SmmuV3;

/// The binding's interrupt order when `interrupt-names` is absent.
const BINDING_ORDER: [&[u8]; 4] = [b"eventq", b"gerror", b"priq", b"cmdq-sync"];

pub(super) fn is_smmu_v3(node: &Node<'_, '_, '_>) -> bool {
    node.is_compatible("arm,smmu-v3")
}

/// Reads an SMMUv3 node; `None` when it is disabled (Linux does not probe it, and
/// neither does the hypervisor).
///
/// # Errors
/// A missing or malformed `reg`, a `#iommu-cells` other than 1 (StreamIDs are one
/// cell, and `iommu-map` entries are decoded so), malformed `interrupts`, or
/// `interrupt-names` that does not name each interrupt.
pub(super) fn read_smmu(node: &Node<'_, '_, '_>) -> Result<Option<SmmuV3>, DtError> {
    if !node.is_available() {
        return Ok(None);
    }
    let (base, size) = node
        .cpu_reg()?
        .and_then(|mut reg| reg.next())
        .ok_or_else(|| node.missing("reg"))?;
    match node.u32_property("#iommu-cells")? {
        Some(1) => {}
        Some(_) => {
            return Err(node.malformed("#iommu-cells", "is not 1 (an SMMUv3 StreamID is one cell)"));
        }
        None => return Err(node.missing("#iommu-cells")),
    }
    let mut smmu = SmmuV3 {
        regs: range(node.path(), base, size)?,
        path: node.path(),
        phandle: node.phandle()?,
        event_intid: None,
        gerror_intid: None,
        priq_intid: None,
        cmdq_sync_intid: None,
        coherent: node.property("dma-coherent").is_some(),
    };
    read_interrupts(node, &mut smmu)?;
    Ok(Some(smmu))
}

/// Fills the INTIDs by `interrupt-names`, else in binding order. QEMU names them
/// `eventq`, `priq`, `cmdq-sync`, `gerror`: not the binding's order, so the names rule.
fn read_interrupts(node: &Node<'_, '_, '_>, smmu: &mut SmmuV3) -> Result<(), DtError> {
    let Some(value) = node.property("interrupts") else {
        // Without wired interrupts an SMMU signals by MSI; the hypervisor then polls.
        return Ok(());
    };
    let mut ids: ArrayVec<u32, 4> = ArrayVec::new();
    for id in interrupt_ids(node, value)? {
        ids.try_push(id?)
            .map_err(|_| node.malformed("interrupts", "more than the four an SMMUv3 has"))?;
    }
    let names: ArrayVec<&[u8], 4> = match node.property("interrupt-names") {
        Some(names) => {
            let mut list = ArrayVec::new();
            for name in string_list(names) {
                list.try_push(name)
                    .map_err(|_| node.malformed("interrupt-names", "more names than interrupts"))?;
            }
            if list.len() != ids.len() {
                return Err(node.malformed(
                    "interrupt-names",
                    "does not name each interrupt exactly once",
                ));
            }
            list
        }
        None => BINDING_ORDER.iter().copied().take(ids.len()).collect(),
    };
    for (name, intid) in names.into_iter().zip(ids) {
        let slots: &mut [&mut Option<u32>] = match name {
            b"eventq" => &mut [&mut smmu.event_intid],
            b"gerror" => &mut [&mut smmu.gerror_intid],
            b"priq" => &mut [&mut smmu.priq_intid],
            b"cmdq-sync" => &mut [&mut smmu.cmdq_sync_intid],
            // One line for the event queue, global errors and the PRI queue (Linux's
            // `arm_smmu_combined_irq_handler` serves those three).
            b"combined" => &mut [
                &mut smmu.event_intid,
                &mut smmu.gerror_intid,
                &mut smmu.priq_intid,
            ],
            // A name a later binding may add: not one the hypervisor uses.
            _ => &mut [],
        };
        for slot in slots {
            **slot = Some(intid);
        }
    }
    Ok(())
}
