//! `/cpus/cpu@*`: each CPU's MPIDR.

use arrayvec::ArrayVec;

use super::DtError;
use super::node::Node;
use crate::info::{Cpu, MAX_CPUS};

/// The MPIDR affinity fields Aff3 (bits 39:32) and Aff2..Aff0 (bits 23:0), the bits a
/// cpu node's `reg` may set (Linux MPIDR_HWID_BITMASK).
const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// Reads the CPU nodes of `/cpus`: children named `cpu` or `cpu@...` with
/// `device_type = "cpu"`, in DT order. Their `reg` (in `/cpus`' cells, 1 or 2 address
/// cells) is the MPIDR.
///
/// # Errors
/// [`DtError::NoCpus`], [`DtError::DuplicateMpidr`], [`DtError::TooMany`], and `reg`
/// errors naming the node.
pub(super) fn read_cpus(cpus: &Node<'_, '_, '_>) -> Result<ArrayVec<Cpu, MAX_CPUS>, DtError> {
    let mut found: ArrayVec<Cpu, MAX_CPUS> = ArrayVec::new();
    for child in cpus.children() {
        let child = child?;
        let is_cpu = child.name().split('@').next() == Some("cpu") && child.device_type_is("cpu");
        if !is_cpu {
            continue;
        }
        let (mpidr, _) = child
            .reg()?
            .and_then(|mut reg| reg.next())
            .ok_or_else(|| child.missing("reg"))?;
        if mpidr & !MPIDR_AFFINITY_MASK != 0 {
            return Err(child.malformed("reg", "MPIDR has bits outside Aff3..Aff0"));
        }
        if found.iter().any(|cpu| cpu.mpidr == mpidr) {
            return Err(DtError::DuplicateMpidr {
                node: child.path(),
                mpidr,
            });
        }
        found
            .try_push(Cpu { mpidr })
            .map_err(|_| DtError::TooMany {
                what: "CPUs",
                limit: MAX_CPUS,
            })?;
    }
    if found.is_empty() {
        return Err(DtError::NoCpus);
    }
    Ok(found)
}
