//! The host devices the hypervisor emulates in place: the GICv3 (the first `arm,gic-v3`
//! node in DT order, as `platform::dt` takes it) and the console (the `arm,pl011` that
//! `/chosen/stdout-path` names). Each keeps its host node, so its addresses and, for the
//! PL011, its interrupt stay the host's.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use dtoolkit::Node;
use dtoolkit::Property;
use dtoolkit::fdt::FdtNode;

use super::assignment::{EmulatedDevice, EmulatedKind};
use super::classify::{is_gic_v3, is_pl011};
use super::interrupts::spi_intids;
use super::problems::{DeviceError, InterruptProblem};
use super::tree::HostTree;
use crate::passthrough::{MmioMap, NodeMmio};

/// One GICv3 redistributor: RD_base and SGI_base frames, 64 KiB each.
pub const REDISTRIBUTOR_FRAMES_SIZE: u64 = 0x2_0000;

/// The first `arm,gic-v3` node in DT order.
pub(crate) fn find_gic(tree: &HostTree<'_>) -> Option<usize> {
    tree.indices()
        .find(|&index| tree.node(index).is_some_and(|node| is_gic_v3(&node)))
}

/// `/chosen/stdout-path` as written (or the older `linux,stdout-path`).
pub(crate) fn stdout_path<'a>(tree: &HostTree<'a>) -> Option<&'a str> {
    let chosen = tree.node(tree.resolve("/chosen")?)?;
    ["stdout-path", "linux,stdout-path"]
        .iter()
        .find_map(|name| {
            let value = chosen.property(name)?.value_as::<&'a [u8]>().ok()?;
            first_string(value)
        })
}

/// A string property's text up to its first NUL, as `platform::dt` reads it (so the
/// hypervisor's console and the guest's are the same node even when the property
/// carries bytes after the terminator).
fn first_string(value: &[u8]) -> Option<&str> {
    let text = value.split(|&byte| byte == 0).next().unwrap_or_default();
    core::str::from_utf8(text).ok()
}

/// The node `stdout-path` names: `/path`, `alias` or `alias/sub/path`, each with
/// optional `:options` (Linux's `of_find_node_opts_by_path`). An alias must hold an
/// absolute path, so an alias never leads to another.
pub(crate) fn console_node(tree: &HostTree<'_>, stdout_path: &str) -> Option<usize> {
    let path = stdout_path.split(':').next().unwrap_or(stdout_path);
    if path.starts_with('/') {
        return tree.resolve(path);
    }
    let (alias, sub_path) = path.split_once('/').unwrap_or((path, ""));
    if alias.is_empty() {
        return None;
    }
    let aliases = tree.node(tree.resolve("/aliases")?)?;
    let target = aliases.property(alias)?.value_as::<&[u8]>().ok()?;
    let target = first_string(target)?;
    if !target.starts_with('/') {
        return None;
    }
    if sub_path.is_empty() {
        tree.resolve(target)
    } else {
        tree.resolve(&alloc::format!(
            "{}/{sub_path}",
            target.trim_end_matches('/')
        ))
    }
}

/// The emulated GIC at `index` for `vcpus` vCPUs, and its `reg` as the guest's DT
/// writes it (in the GIC's parent bus addresses): the distributor, then ONE
/// redistributor region at the host's first redistributor region base, sized for the
/// vCPUs. The GICv2-compatible frames and any further redistributor regions are gone.
pub(crate) fn emulated_gic(
    tree: &HostTree<'_>,
    mmio: &MmioMap,
    index: usize,
    vcpus: usize,
) -> Result<(EmulatedDevice, Vec<u8>), DeviceError> {
    const KIND: EmulatedKind = EmulatedKind::GicV3;
    let path = tree.path(index).to_string();
    let node = tree.node(index);
    let record = emulated_record(mmio, KIND, &path)?;
    let gic_reg = |detail| DeviceError::GicReg {
        path: path.clone(),
        detail,
    };
    let regions = match node
        .as_ref()
        .and_then(|n| n.property("#redistributor-regions"))
    {
        None => 1,
        Some(property) => match <[u8; 4]>::try_from(property.value()).map(u32::from_be_bytes) {
            Ok(regions @ 1..) => regions as usize,
            _ => {
                return Err(gic_reg(
                    "#redistributor-regions is not one cell of at least 1",
                ));
            }
        },
    };
    let (Some(Some(distributor)), Some(Some(redistributors))) =
        (record.reg.first(), record.reg.get(1))
    else {
        return Err(gic_reg(
            "reg lacks the distributor or the first redistributor region",
        ));
    };
    if record.reg.len() < 1 + regions {
        return Err(gic_reg(
            "reg has fewer entries than the distributor plus #redistributor-regions",
        ));
    }
    let too_large = DeviceError::RedistributorsTooLarge { vcpus };
    let size = u64::try_from(vcpus)
        .ok()
        .and_then(|n| n.checked_mul(REDISTRIBUTOR_FRAMES_SIZE))
        .ok_or(too_large.clone())?;
    let redistributor = mmio
        .map_for(record, redistributors.bus, size)
        .map_err(|error| DeviceError::EmulatedMmio { kind: KIND, error })?
        .ok_or(too_large.clone())?;
    let (address_cells, size_cells) = record.parent_cells();
    let mut reg = Vec::new();
    for (bus, size) in [
        (distributor.bus, distributor.cpu.size),
        (redistributor.bus, redistributor.cpu.size),
    ] {
        encode(&mut reg, bus, address_cells).ok_or(too_large.clone())?;
        encode(&mut reg, size, size_cells).ok_or(too_large.clone())?;
    }
    let device = EmulatedDevice {
        kind: KIND,
        path,
        regions: alloc::vec![distributor.cpu, redistributor.cpu],
        intid: None,
    };
    Ok((device, reg))
}

/// The emulated PL011 standing in for the console at `index`, and why its interrupt
/// could not be read, if it could not (like `platform::dt`, which leaves the console's
/// `intid` out then: the console works without it).
pub(crate) fn emulated_pl011(
    tree: &HostTree<'_>,
    mmio: &MmioMap,
    gic: Option<usize>,
    index: usize,
) -> Result<(EmulatedDevice, Option<InterruptProblem>), DeviceError> {
    const KIND: EmulatedKind = EmulatedKind::Pl011;
    let path = tree.path(index).to_string();
    let record = emulated_record(mmio, KIND, &path)?;
    let (intids, problem) = match spi_intids(tree, gic, index) {
        Ok(intids) => (intids, None),
        Err(problem) => (Vec::new(), Some(problem)),
    };
    let regions: Vec<_> = record.cpu_ranges().collect();
    if regions.is_empty() {
        return Err(DeviceError::EmulatedNotMemoryMapped { kind: KIND, path });
    }
    let device = EmulatedDevice {
        kind: KIND,
        regions,
        intid: intids.first().copied(),
        path,
    };
    Ok((device, problem))
}

/// The console node, when it is a PL011.
pub(crate) fn pl011_console(tree: &HostTree<'_>) -> Option<usize> {
    let index = console_node(tree, stdout_path(tree)?)?;
    tree.node(index)
        .is_some_and(|node: FdtNode<'_>| is_pl011(&node))
        .then_some(index)
}

fn emulated_record<'m>(
    mmio: &'m MmioMap,
    kind: EmulatedKind,
    path: &str,
) -> Result<&'m NodeMmio, DeviceError> {
    let record = mmio
        .node(path)
        .filter(|record| record.available)
        .ok_or_else(|| DeviceError::EmulatedNotMemoryMapped {
            kind,
            path: String::from(path),
        })?;
    match &record.error {
        Some(error) => Err(DeviceError::EmulatedMmio {
            kind,
            error: error.clone(),
        }),
        None => Ok(record),
    }
}

/// Appends `value` as `cells` big-endian cells (1 or 2); `None` when it does not fit.
fn encode(out: &mut Vec<u8>, value: u64, cells: u32) -> Option<()> {
    match cells {
        1 => out.extend_from_slice(&u32::try_from(value).ok()?.to_be_bytes()),
        2 => out.extend_from_slice(&value.to_be_bytes()),
        _ => return None,
    }
    Some(())
}
