//! The assignment itself, step by step (the rules are in [`crate::devices`]' docs):
//! the emulated devices, the architected ones, the requested ones (each checked, then
//! all checked against their neighbours' pages), what the kept nodes refer to, and the
//! ancestors that hold them.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use dtoolkit::fdt::Fdt;
use dtoolkit::{Node, Property};

use super::DeviceRequest;
use super::assignment::{
    DeviceAssignment, EmulatedDevice, EmulatedKind, GuestTreeLayout, NodeRole, PassthroughDevice,
    RefusedDevice, StreamRange, fingerprint, merge_streams,
};
use super::classify::{
    architected, disabled_status, has, is_gic_v3, is_iommu, is_its, refused_kind, strings,
};
use super::emulated::{
    console_node, emulated_gic, emulated_pl011, find_gic, pl011_console, stdout_path,
};
use super::interrupts::spi_intids;
use super::pci::{self, DROPPED_PROPERTIES};
use super::problems::{DeviceError, DeviceNote, NotKeptReason, ReferenceProblem, Refusal};
use super::references::references;
use super::tree::HostTree;
use crate::guest_dt::{is_cpu_node, looks_like_cpu_node};
use crate::passthrough::{MmioMap, merge};
use platform::info::PhysRange;

/// See [`super::assign_devices`]; `fdt` is the opened host DTB.
pub(crate) fn assign(
    fdt: &Fdt<'_>,
    request: &DeviceRequest<'_>,
) -> Result<DeviceAssignment, DeviceError> {
    if request.vcpus == 0 {
        return Err(DeviceError::NoVcpus);
    }
    let tree = HostTree::new(fdt.root());
    let mmio = MmioMap::of(fdt).map_err(DeviceError::RootCells)?;
    let mut assigner = Assigner {
        tree: &tree,
        mmio: &mmio,
        request,
        gic: None,
        console: None,
        kept: BTreeMap::new(),
        emulated: Vec::new(),
        gic_reg: Vec::new(),
        passthrough: Vec::new(),
        refused: Vec::new(),
        notes: tree
            .duplicated_paths()
            .map(|path| DeviceNote::DuplicatePath {
                path: path.to_string(),
            })
            .collect(),
    };
    assigner.emulate()?;
    assigner.keep_architected();
    let requests = assigner.requests()?;
    assigner.pass_through(&requests);
    assigner.keep_references();
    assigner.keep_containers();
    Ok(assigner.finish(fingerprint(fdt.data())))
}

/// A requested device that passed its own checks.
struct Candidate {
    index: usize,
    mmio: Vec<PhysRange>,
    pages: Vec<PhysRange>,
    intids: Vec<u32>,
    streams: Vec<StreamRange>,
    /// The PCI host bridges in its subtree, given whole ([`pci`]).
    bridges: Vec<usize>,
}

struct Assigner<'t, 'a> {
    tree: &'t HostTree<'a>,
    mmio: &'t MmioMap,
    request: &'t DeviceRequest<'t>,
    /// The emulated GIC's node.
    gic: Option<usize>,
    /// The node `stdout-path` names (emulated when it is a PL011).
    console: Option<usize>,
    /// Nodes the guest's DT keeps, by index.
    kept: BTreeMap<usize, NodeRole>,
    emulated: Vec<(usize, EmulatedDevice)>,
    gic_reg: Vec<u8>,
    passthrough: Vec<(usize, PassthroughDevice)>,
    refused: Vec<(usize, RefusedDevice)>,
    notes: Vec<DeviceNote>,
}

impl Assigner<'_, '_> {
    /// The emulated GIC and PL011 (with whatever of their subtrees stays).
    fn emulate(&mut self) -> Result<(), DeviceError> {
        // A GIC or console whose path two sibling nodes share cannot be emulated from
        // one of them and hidden as the other: the guest's DT would name either.
        for (kind, node) in [
            (EmulatedKind::GicV3, find_gic(self.tree)),
            (EmulatedKind::Pl011, pl011_console(self.tree)),
        ] {
            if let Some(index) = node.filter(|&index| self.tree.is_duplicated(index)) {
                return Err(DeviceError::EmulatedPathAmbiguous {
                    kind,
                    path: self.tree.path(index).to_string(),
                });
            }
        }
        match find_gic(self.tree) {
            Some(gic) => {
                let (device, reg) = emulated_gic(self.tree, self.mmio, gic, self.request.vcpus)?;
                self.check_emulated(&device)?;
                self.gic = Some(gic);
                self.gic_reg = reg;
                self.emulated.push((gic, device));
                self.kept.insert(gic, NodeRole::EmulatedGic);
                // Children without MMIO (e.g. `ppi-partitions`) stay; the ITS and any
                // other framed child are the hypervisor's.
                for child in self.children(gic) {
                    let framed = self.tree.subtree(child).any(|k| self.has_reg(k));
                    if !framed && !self.tree.node(child).is_some_and(|n| is_its(&n)) {
                        self.keep_subtree(child);
                    }
                }
            }
            None => self.notes.push(DeviceNote::NoGicV3),
        }
        let stdout = stdout_path(self.tree);
        self.console = stdout.and_then(|path| console_node(self.tree, path));
        match pl011_console(self.tree) {
            Some(uart) => {
                let (device, problem) = emulated_pl011(self.tree, self.mmio, self.gic, uart)?;
                self.check_emulated(&device)?;
                if let Some(problem) = problem {
                    self.notes.push(DeviceNote::ConsoleInterrupt {
                        path: device.path.clone(),
                        problem,
                    });
                }
                self.emulated.push((uart, device));
                self.keep_subtree(uart);
            }
            None => self.notes.push(DeviceNote::NoPl011Console {
                stdout_path: stdout.map(str::to_string),
            }),
        }
        Ok(())
    }

    /// Emulated frames must trap: never guest RAM (mapped) nor hidden memory.
    fn check_emulated(&self, device: &EmulatedDevice) -> Result<(), DeviceError> {
        for region in &device.regions {
            for (what, ranges) in [
                ("guest RAM", self.request.guest_ram),
                ("a hidden range", self.request.hidden),
            ] {
                if let Some(other) = ranges.iter().find(|r| r.overlaps(region)) {
                    return Err(DeviceError::EmulatedOverlaps {
                        kind: device.kind,
                        region: *region,
                        what,
                        other: *other,
                    });
                }
            }
        }
        Ok(())
    }

    /// The timer, PMU and PSCI nodes: every guest has them.
    fn keep_architected(&mut self) {
        for index in self.tree.indices() {
            if self.kept.contains_key(&index) || self.structural(index).is_some() {
                continue;
            }
            if self
                .tree
                .node(index)
                .is_some_and(|node| architected(&node).is_some())
            {
                self.keep_subtree(index);
            }
        }
    }

    /// The requested nodes, in DT order: those with `xen,passthrough` (when the
    /// request takes them) and those the command line names.
    fn requests(&self) -> Result<BTreeSet<usize>, DeviceError> {
        let mut requested: BTreeSet<usize> = self
            .tree
            .indices()
            .filter(|_| self.request.marked_passthrough)
            .filter(|&index| {
                self.tree
                    .node(index)
                    .is_some_and(|node| has(&node, super::XEN_PASSTHROUGH))
            })
            .collect();
        for &path in self.request.passthrough_paths {
            let wanted = if path.len() > 1 {
                path.trim_end_matches('/')
            } else {
                path
            };
            let index =
                self.tree
                    .index_of(wanted)
                    .ok_or_else(|| DeviceError::PassthroughPathNotFound {
                        path: path.to_string(),
                    })?;
            if self.tree.is_duplicated(index) {
                return Err(DeviceError::PassthroughPathAmbiguous {
                    path: path.to_string(),
                });
            }
            requested.insert(index);
        }
        Ok(requested)
    }

    /// Checks each request, then all of them against the pages around them; keeps what
    /// passes.
    fn pass_through(&mut self, requests: &BTreeSet<usize>) {
        let mut candidates = Vec::new();
        let mut refusals = Vec::new();
        for &index in requests {
            match self.evaluate(index) {
                Ok(candidate) => candidates.push(candidate),
                Err(reason) => refusals.push((index, reason)),
            }
        }
        // Refusing one candidate can expose a page another shares with it: repeat until
        // nothing changes.
        while let Some((position, reason)) = self.first_shared_page(&candidates) {
            let candidate = candidates.remove(position);
            refusals.push((candidate.index, reason));
        }
        // A request inside another granted one goes with it.
        let granted: Vec<usize> = candidates.iter().map(|c| c.index).collect();
        let inside_other = |index: usize| {
            granted
                .iter()
                .any(|&other| other != index && self.tree.is_within(index, other))
        };
        refusals.retain(|&(index, _)| !inside_other(index));
        candidates.retain(|candidate| !inside_other(candidate.index));
        for (index, reason) in refusals {
            self.refuse(index, reason);
        }
        for mut candidate in candidates {
            self.keep_subtree(candidate.index);
            for &bridge in &candidate.bridges {
                self.kept.insert(bridge, NodeRole::PciHostBridge);
            }
            merge_streams(&mut candidate.streams);
            self.passthrough.push((
                candidate.index,
                PassthroughDevice {
                    path: self.tree.path(candidate.index).to_string(),
                    mmio: candidate.mmio,
                    regions: merge(candidate.pages),
                    intids: candidate.intids,
                    streams: candidate.streams,
                },
            ));
        }
    }

    /// A requested node's own checks (see the module docs' order).
    fn evaluate(&self, index: usize) -> Result<Candidate, Refusal> {
        let Some(node) = self.tree.node(index) else {
            return Err(Refusal::NotAssignable { what: "no node" });
        };
        if self.tree.is_duplicated(index) {
            return Err(Refusal::AmbiguousPath);
        }
        if let Some(what) = self.structural(index).or_else(|| architected(&node)) {
            return Err(Refusal::NotAssignable { what });
        }
        if let Some(what) = self.hypervisor_owned(index) {
            return Err(Refusal::HypervisorOwned { what });
        }
        if let Some(status) = disabled_status(&node) {
            return Err(Refusal::Disabled {
                status: status.to_string(),
            });
        }
        if let Some(ancestor) = self.tree.ancestors(index).find(|&a| {
            self.tree
                .node(a)
                .is_some_and(|n| disabled_status(&n).is_some())
        }) {
            return Err(Refusal::InsideDisabled {
                ancestor: self.tree.path(ancestor).to_string(),
            });
        }
        let mut candidate = Candidate {
            index,
            mmio: Vec::new(),
            pages: Vec::new(),
            intids: Vec::new(),
            streams: Vec::new(),
            bridges: Vec::new(),
        };
        for member in self.tree.subtree(index) {
            self.check_member(index, member, &mut candidate)
                .map_err(|reason| {
                    if member == index {
                        reason
                    } else {
                        Refusal::Contains {
                            path: self.tree.path(member).to_string(),
                            reason: Box::new(reason),
                        }
                    }
                })?;
        }
        if self.has_reg(index) && self.mmio.node(self.tree.path(index)).is_none() {
            return Err(Refusal::NotMemoryMapped);
        }
        self.check_pages(&candidate)?;
        candidate.intids.sort_unstable();
        candidate.intids.dedup();
        Ok(candidate)
    }

    /// Checks one node of a requested subtree and adds its MMIO and interrupts.
    fn check_member(
        &self,
        requested: usize,
        member: usize,
        candidate: &mut Candidate,
    ) -> Result<(), Refusal> {
        let Some(node) = self.tree.node(member) else {
            return Ok(());
        };
        if member != requested
            && let Some(what) = self.hypervisor_owned(member)
        {
            return Err(Refusal::HypervisorOwned { what });
        }
        let in_use = self.in_use_below(requested, member);
        // A PCI host bridge behind SMMUs the hypervisor drives is not refused for its
        // DMA nor for its `interrupt-map`; its INTx SPIs are passed through.
        let bridge = if in_use && pci::is_pci_bridge(&node) {
            pci::assess(self.tree, self.gic, member, self.request.smmus_driven).transpose()?
        } else {
            None
        };
        if bridge.is_none() {
            if let Some(reason) = refused_kind(&node) {
                return Err(reason);
            }
            if has(&node, "interrupt-map") {
                return Err(Refusal::InterruptNexus);
            }
        }
        // Interrupts first: a bad `interrupts-extended` reads better as an interrupt
        // problem than as a reference one.
        let mut intids = if in_use {
            spi_intids(self.tree, self.gic, member).map_err(Refusal::Interrupts)?
        } else {
            Vec::new()
        };
        if let Some(bridge) = bridge {
            intids.extend(bridge.intids);
            candidate.streams.extend(bridge.streams);
            candidate.bridges.push(member);
        }
        // A reference that cannot be parsed refuses the device; one whose target is
        // missing is a note (see the module docs: the guest's own DT has such references).
        if let Some(problem) = references(self.tree, member).1.into_iter().find(|problem| {
            matches!(problem, ReferenceProblem::Malformed { property }
                // A given bridge's copy does not have these.
                if !(candidate.bridges.contains(&member)
                    && DROPPED_PROPERTIES.contains(&property.as_str())))
        }) {
            return Err(Refusal::Reference(problem));
        }
        if !in_use {
            // Kept in the DT as it is (not in use), never mapped or routed.
            return Ok(());
        }
        let console_intid = self.console_intid();
        if let Some(&intid) = intids.iter().find(|&&i| Some(i) == console_intid) {
            return Err(Refusal::SharesInterrupt {
                intid,
                other: self
                    .console
                    .map_or("?", |console| self.tree.path(console))
                    .to_string(),
            });
        }
        candidate.intids.extend(intids);
        if let Some(record) = self.mmio.node(self.tree.path(member)) {
            if let Some(error) = &record.error {
                return Err(Refusal::Mmio(error.clone()));
            }
            candidate.mmio.extend(record.cpu_ranges());
            candidate.pages.extend(record.page_ranges());
        }
        Ok(())
    }

    /// Whether `member` and every node between it and `requested` are in use.
    fn in_use_below(&self, requested: usize, member: usize) -> bool {
        core::iter::once(member)
            .chain(self.tree.ancestors(member).take_while(|&a| a != requested))
            .all(|k| {
                self.tree
                    .node(k)
                    .is_some_and(|n| disabled_status(&n).is_none())
            })
    }

    /// A candidate's pages against guest RAM, hidden ranges and the emulated frames.
    fn check_pages(&self, candidate: &Candidate) -> Result<(), Refusal> {
        for &region in &candidate.pages {
            if let Some(&ram) = self.request.guest_ram.iter().find(|r| r.overlaps(&region)) {
                return Err(Refusal::OverlapsGuestRam { region, ram });
            }
            if let Some(&hidden) = self.request.hidden.iter().find(|r| r.overlaps(&region)) {
                return Err(Refusal::OverlapsHidden { region, hidden });
            }
            if let Some((_, device)) = self
                .emulated
                .iter()
                .find(|(_, device)| device.regions.iter().any(|r| r.overlaps(&region)))
            {
                return Err(Refusal::OverlapsEmulated {
                    region,
                    kind: device.kind,
                });
            }
        }
        Ok(())
    }

    /// The first candidate with a page that also holds registers of a node no candidate
    /// covers (in use or not: a disabled device's registers are still there).
    fn first_shared_page(&self, candidates: &[Candidate]) -> Option<(usize, Refusal)> {
        let covered = |index: usize| {
            candidates
                .iter()
                .any(|candidate| self.tree.is_within(index, candidate.index))
        };
        for (position, candidate) in candidates.iter().enumerate() {
            for &page in &candidate.pages {
                for record in self.mmio.nodes() {
                    let outside = self
                        .tree
                        .index_of(&record.path)
                        .is_none_or(|index| !covered(index));
                    if outside && record.cpu_ranges().any(|range| range.overlaps(&page)) {
                        return Some((
                            position,
                            Refusal::SharesPage {
                                region: page,
                                other: record.path.clone(),
                            },
                        ));
                    }
                }
            }
        }
        None
    }

    /// Keeps whatever kept nodes refer to, when it has no MMIO of its own; notes the
    /// rest (see the module docs).
    fn keep_references(&mut self) {
        let mut queue: Vec<usize> = self.kept.keys().copied().collect();
        queue.push(0);
        queue.extend(self.kept_cpus_nodes());
        let mut scanned = BTreeSet::new();
        let mut noted = BTreeSet::new();
        while let Some(index) = queue.pop() {
            if !scanned.insert(index) {
                continue;
            }
            let (mut found, mut problems) = references(self.tree, index);
            // An assigned bridge's copy has no `msi-parent`: nothing to keep for it.
            if self.kept.get(&index) == Some(&NodeRole::PciHostBridge) {
                let dropped = |property: &str| DROPPED_PROPERTIES.contains(&property);
                found.retain(|reference| !dropped(&reference.property));
                problems.retain(|problem| match problem {
                    ReferenceProblem::Dangling { property, .. }
                    | ReferenceProblem::Malformed { property } => !dropped(property),
                });
            }
            for problem in problems {
                self.notes.push(DeviceNote::BadReference {
                    from: self.tree.path(index).to_string(),
                    problem,
                });
            }
            // After an entry whose provider the guest does not get, a specifier list
            // is not read further: in the guest's DT that entry dangles and its length
            // is unknown, and rebuilding from the guest's DT must keep the same nodes.
            let mut unread_list: Option<String> = None;
            for reference in found {
                if unread_list.as_deref() == Some(reference.property.as_str()) {
                    continue;
                }
                let target = reference.target;
                if self.kept.contains_key(&target)
                    || self.structural(target).is_some()
                    || self.tree.is_duplicated(target)
                {
                    continue;
                }
                match self.why_not_kept(target) {
                    Some(why) => {
                        if reference.has_args {
                            unread_list = Some(reference.property.clone());
                        }
                        if noted.insert((index, target)) {
                            self.notes.push(DeviceNote::ReferenceNotKept {
                                from: self.tree.path(index).to_string(),
                                property: reference.property,
                                target: self.tree.path(target).to_string(),
                                why,
                            });
                        }
                    }
                    None => {
                        self.keep_subtree(target);
                        queue.extend(self.tree.subtree(target));
                    }
                }
            }
        }
    }

    /// Why a referenced node cannot come along (`None`: it can).
    fn why_not_kept(&self, target: usize) -> Option<NotKeptReason> {
        if self.hypervisor_owned(target).is_some() {
            return Some(NotKeptReason::HypervisorOwned);
        }
        if self.tree.subtree(target).any(|k| self.has_reg(k)) {
            return Some(NotKeptReason::HasMmio);
        }
        self.tree
            .ancestors(target)
            .filter(|&a| a != 0)
            .find(|&a| self.has_reg(a))
            .map(|device| NotKeptReason::InsideDevice {
                device: self.tree.path(device).to_string(),
            })
    }

    /// The `/cpus` nodes the guest DT builder keeps (the first `vcpus` CPUs, caches,
    /// idle states; not `cpu-map`, whose `cpu` entries name CPUs only).
    fn kept_cpus_nodes(&self) -> Vec<usize> {
        let Some(cpus) = self.tree.index_of("/cpus") else {
            return Vec::new();
        };
        let mut kept = Vec::new();
        let mut cpus_seen = 0;
        let cpu_map = self.tree.index_of("/cpus/cpu-map");
        for index in self.tree.subtree(cpus) {
            if cpu_map.is_some_and(|map| self.tree.is_within(index, map)) {
                continue;
            }
            let Some(node) = self.tree.node(index) else {
                continue;
            };
            if is_cpu_node(&node) {
                cpus_seen += 1;
                if cpus_seen > self.request.vcpus {
                    continue;
                }
            } else if looks_like_cpu_node(&node) {
                continue;
            }
            kept.push(index);
        }
        kept
    }

    /// Every ancestor of a kept node is kept as a container.
    fn keep_containers(&mut self) {
        let kept: Vec<usize> = self.kept.keys().copied().collect();
        for index in kept {
            for ancestor in self.tree.ancestors(index) {
                if ancestor == 0 {
                    break;
                }
                self.kept.entry(ancestor).or_insert(NodeRole::Container);
            }
        }
    }

    fn finish(mut self, host_fingerprint: u64) -> DeviceAssignment {
        self.emulated.sort_by_key(|(_, device)| device.kind);
        self.passthrough.sort_by_key(|(index, _)| *index);
        self.refused.sort_by_key(|(index, _)| *index);
        let roles = self
            .kept
            .iter()
            .map(|(&index, &role)| (self.tree.path(index).to_string(), role))
            .collect();
        let kept_phandles = self
            .kept
            .keys()
            .filter_map(|&index| self.tree.node(index))
            .flat_map(|node| {
                ["phandle", "linux,phandle"].map(|name| {
                    node.property(name)
                        .and_then(|p| <[u8; 4]>::try_from(p.value()).ok())
                        .map(u32::from_be_bytes)
                })
            })
            .flatten()
            .collect();
        DeviceAssignment {
            emulated: self.emulated.into_iter().map(|(_, d)| d).collect(),
            passthrough: self.passthrough.into_iter().map(|(_, d)| d).collect(),
            refused: self.refused.into_iter().map(|(_, d)| d).collect(),
            notes: self.notes,
            layout: GuestTreeLayout {
                roles,
                gic_reg: self.gic_reg,
                kept_phandles,
                vcpus: self.request.vcpus,
                host_fingerprint,
            },
        }
    }

    fn refuse(&mut self, index: usize, reason: Refusal) {
        let path = self.tree.path(index);
        let address = self
            .mmio
            .node(path)
            .and_then(|record| record.cpu_ranges().next())
            .map(|range| range.base);
        self.refused.push((
            index,
            RefusedDevice {
                path: path.to_string(),
                address,
                reason,
            },
        ));
    }

    /// Keeps a node with everything below it as a device (but never a node whose path
    /// another node shares: the DT builder could not tell them apart).
    fn keep_subtree(&mut self, index: usize) {
        for member in self.tree.subtree(index) {
            if !self.tree.is_duplicated(member) {
                self.kept.entry(member).or_insert(NodeRole::Device);
            }
        }
    }

    fn children(&self, index: usize) -> Vec<usize> {
        self.tree
            .subtree(index)
            .filter(|&k| self.tree.get(k).and_then(|n| n.parent) == Some(index))
            .collect()
    }

    fn has_reg(&self, index: usize) -> bool {
        self.tree.node(index).is_some_and(|n| has(&n, "reg"))
    }

    fn console_intid(&self) -> Option<u32> {
        self.emulated
            .iter()
            .find(|(index, _)| Some(*index) == self.console)
            .and_then(|(_, device)| device.intid)
    }

    /// The hypervisor's own nodes, with what they are.
    fn hypervisor_owned(&self, index: usize) -> Option<&'static str> {
        let node = self.tree.node(index)?;
        if self.gic == Some(index) {
            return Some("the GIC (the guest gets an emulated GICv3 in its place)");
        }
        if is_its(&node) {
            return Some("a GIC ITS (guests get no ITS)");
        }
        if self.gic.is_some_and(|gic| self.tree.is_within(index, gic)) || is_gic_v3(&node) {
            return Some("part of a GICv3, the hypervisor's interrupt controller");
        }
        if self.console == Some(index) {
            return Some("the console UART (the guest gets an emulated PL011 in its place)");
        }
        if is_iommu(&node) {
            return Some("an IOMMU (SMMU): the hypervisor's to program");
        }
        None
    }

    /// Nodes whose fate other rules decide (see `guest_dt`): what they are.
    fn structural(&self, index: usize) -> Option<&'static str> {
        const MEMORY: &str = "memory (the hypervisor describes the guest's RAM)";
        if index == 0 {
            return Some("the root node");
        }
        let top = core::iter::once(index)
            .chain(self.tree.ancestors(index))
            .find(|&k| self.tree.get(k).and_then(|n| n.parent) == Some(0))?;
        let top_node = self.tree.node(top)?;
        let what = match top_node.name() {
            "chosen" => Some("/chosen (the hypervisor writes the guest's)"),
            "cpus" => Some("/cpus (the guest's CPUs are its vCPUs)"),
            "aliases" => Some("/aliases"),
            _ if top_node.name_without_address() == "reserved-memory" => {
                Some("reserved memory (kept when it lies in guest RAM)")
            }
            _ if top_node.name_without_address() == "memory" => Some(MEMORY),
            _ => None,
        };
        what.or_else(|| {
            core::iter::once(index)
                .chain(self.tree.ancestors(index))
                .any(|k| {
                    self.tree
                        .node(k)
                        .is_some_and(|n| strings(&n, "device_type").any(|s| s == b"memory"))
                })
                .then_some(MEMORY)
        })
    }
}
