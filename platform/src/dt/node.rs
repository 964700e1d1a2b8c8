//! Nodes with the context the `fdt` crate does not keep: the path (through parent
//! links on the stack), the cell sizes that apply to `reg` (Xen's inheritance rule), and
//! whether `reg` holds CPU physical addresses.
//!
//! Only a few `fdt` calls are used, all on a blob that [`super::structure`] validated:
//! `Fdt::new`, `find_node("/")`, `FdtNode::properties`, `FdtNode::children`. In
//! particular `reg()`/`cell_sizes()` (wrong default cells, `expect`s) and path or alias
//! lookups (`find_node` recurses forever on an alias naming itself) are not used.

use core::fmt::Write as _;
use core::slice::ChunksExact;

use arrayvec::{ArrayString, ArrayVec};
use fdt::Fdt;
use fdt::node::FdtNode;

use super::DtError;
use super::bytes::{be_u32, cells_value, string_list, value_str};
use super::error::DtText;
use super::structure::MAX_DEPTH;

/// `#address-cells` and `#size-cells` as written (not yet range-checked: a PCI bus has
/// 3 address cells, which only matters if one of its children's `reg` is read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cells {
    pub address: u32,
    pub size: u32,
}

impl Cells {
    /// The DT specification's values for a root node without the properties.
    const ROOT_DEFAULT: Self = Self {
        address: 2,
        size: 1,
    };
}

/// A node and its context. `'p` is the parent chain's lifetime (stack frames of the
/// walk), `'f` the borrowed [`Fdt`], `'dtb` the blob.
#[derive(Clone, Copy)]
pub(super) struct Node<'p, 'f, 'dtb> {
    inner: FdtNode<'f, 'dtb>,
    parent: Option<&'p Node<'p, 'f, 'dtb>>,
    /// The cells this node's `reg` is written in: the parent's `child_cells`.
    reg_cells: Cells,
    /// The cells of this node's children's `reg`: its own `#address-cells` and
    /// `#size-cells`, each inherited from `reg_cells` when absent. This is Xen's rule
    /// (device_tree_for_each_node); the DT spec's default of 2/1 would misread QEMU's
    /// guest-loader modules, whose `/chosen` parent has no cell properties.
    child_cells: Cells,
    /// Whether this node's `reg` is a CPU physical address.
    cpu_addressable: bool,
    /// Whether its children's `reg` is: only through an identity (empty) `ranges`.
    children_cpu_addressable: bool,
    /// Properties every visit asks about, read in one pass over the node (`fdt` decodes
    /// each property's name again on every lookup).
    common: CommonProperties<'dtb>,
}

/// The properties read from every node.
#[derive(Clone, Copy, Default)]
struct CommonProperties<'dtb> {
    address_cells: Option<&'dtb [u8]>,
    size_cells: Option<&'dtb [u8]>,
    ranges: Option<&'dtb [u8]>,
    compatible: Option<&'dtb [u8]>,
    device_type: Option<&'dtb [u8]>,
    status: Option<&'dtb [u8]>,
}

impl<'dtb> CommonProperties<'dtb> {
    fn read(node: &FdtNode<'_, 'dtb>) -> Self {
        let mut common = Self::default();
        for property in node.properties() {
            let slot = match property.name {
                "#address-cells" => &mut common.address_cells,
                "#size-cells" => &mut common.size_cells,
                "ranges" => &mut common.ranges,
                "compatible" => &mut common.compatible,
                "device_type" => &mut common.device_type,
                "status" => &mut common.status,
                _ => continue,
            };
            // The first occurrence wins, as with `FdtNode::property`.
            slot.get_or_insert(property.value);
        }
        common
    }
}

impl<'p, 'f, 'dtb> Node<'p, 'f, 'dtb> {
    /// The root node of a validated blob.
    pub fn root(fdt: &'f Fdt<'dtb>) -> Result<Self, DtError> {
        // "/" is a constant path: `find_node` matches the (validated, unnamed) root
        // without touching aliases.
        let inner = fdt.find_node("/").ok_or(DtError::Structure {
            offset: 0,
            problem: super::error::StructureProblem::NoRootNode,
        })?;
        let mut root = Self {
            inner,
            parent: None,
            reg_cells: Cells::ROOT_DEFAULT,
            child_cells: Cells::ROOT_DEFAULT,
            cpu_addressable: false,
            children_cpu_addressable: true,
            common: CommonProperties::read(&inner),
        };
        root.child_cells = root.own_cells(Cells::ROOT_DEFAULT)?;
        Ok(root)
    }

    fn child(&'p self, inner: FdtNode<'f, 'dtb>) -> Result<Self, DtError> {
        let mut child = Self {
            inner,
            parent: Some(self),
            reg_cells: self.child_cells,
            child_cells: self.child_cells,
            cpu_addressable: self.children_cpu_addressable,
            children_cpu_addressable: false,
            common: CommonProperties::read(&inner),
        };
        child.child_cells = child.own_cells(self.child_cells)?;
        child.children_cpu_addressable =
            child.cpu_addressable && child.common.ranges.is_some_and(<[u8]>::is_empty);
        Ok(child)
    }

    /// `#address-cells`/`#size-cells` of this node, each defaulting to `inherited`.
    fn own_cells(&self, inherited: Cells) -> Result<Cells, DtError> {
        Ok(Cells {
            address: self
                .one_cell("#address-cells", self.common.address_cells)?
                .unwrap_or(inherited.address),
            size: self
                .one_cell("#size-cells", self.common.size_cells)?
                .unwrap_or(inherited.size),
        })
    }

    /// The children, in DT order, each with its context.
    pub fn children(&'p self) -> impl Iterator<Item = Result<Node<'p, 'f, 'dtb>, DtError>> {
        self.inner.children().map(|inner| self.child(inner))
    }

    /// Visits this node and all its descendants, depth first, in DT order. The
    /// recursion is bounded by the validated nesting depth.
    pub fn walk(
        &self,
        visit: &mut dyn FnMut(&Node<'_, 'f, 'dtb>) -> Result<(), DtError>,
    ) -> Result<(), DtError> {
        visit(self)?;
        for child in self.children() {
            child?.walk(visit)?;
        }
        Ok(())
    }

    /// Finds the node at `path` (relative to this one; components separated by `/`) and
    /// passes it to `found`, since its parent chain lives only in this call's frames. A
    /// component without a unit address also matches a name with one (`pl011` matches
    /// `pl011@9000000`) when no name matches exactly.
    pub fn with_node_at<R>(
        &self,
        path: &str,
        found: &mut dyn FnMut(&Node<'_, 'f, 'dtb>) -> Result<R, DtError>,
    ) -> Result<Option<R>, DtError> {
        let path = path.trim_start_matches('/');
        if path.is_empty() {
            return found(self).map(Some);
        }
        let (first, rest) = path.split_once('/').unwrap_or((path, ""));
        let exact = |name: &str| name == first;
        let by_base = |name: &str| !first.contains('@') && name.split('@').next() == Some(first);
        for matches in [&exact as &dyn Fn(&str) -> bool, &by_base] {
            for child in self.children() {
                let child = child?;
                if matches(child.name()) {
                    return child.with_node_at(rest, found);
                }
            }
        }
        Ok(None)
    }

    /// The node name (`memory@40000000`); empty for the root.
    pub fn name(&self) -> &'dtb str {
        if self.parent.is_none() {
            ""
        } else {
            self.inner.name
        }
    }

    pub fn is_root(&self) -> bool {
        self.parent.is_none()
    }

    /// A child of the root (where `/chosen`, `/cpus` and `/reserved-memory` live).
    pub fn is_top_level(&self) -> bool {
        self.parent.is_some_and(Node::is_root)
    }

    /// The full path, for messages (`/chosen/module@0x50000000`).
    pub fn path(&self) -> DtText {
        let mut names: ArrayVec<&str, { MAX_DEPTH + 1 }> = ArrayVec::new();
        let mut node = Some(self);
        while let Some(current) = node {
            if !current.is_root() {
                let _ = names.try_push(current.name());
            }
            node = current.parent;
        }
        if names.is_empty() {
            return DtText::new("/");
        }
        let mut path: ArrayString<256> = ArrayString::new();
        for name in names.iter().rev() {
            let _ = write!(path, "/{name}");
        }
        DtText::new(&path)
    }

    /// The raw value of property `name`.
    pub fn property(&self, name: &str) -> Option<&'dtb [u8]> {
        self.inner.property(name).map(|property| property.value)
    }

    /// A one-cell property.
    ///
    /// # Errors
    /// [`DtError::MalformedProperty`] if it is not exactly 4 bytes.
    pub fn u32_property(&self, name: &'static str) -> Result<Option<u32>, DtError> {
        self.one_cell(name, self.property(name))
    }

    fn one_cell(&self, name: &'static str, value: Option<&[u8]>) -> Result<Option<u32>, DtError> {
        match value {
            None => Ok(None),
            Some(value) if value.len() == 4 => Ok(be_u32(value, 0)),
            Some(_) => Err(self.malformed(name, "not a single 32-bit cell")),
        }
    }

    /// A string property (up to its NUL).
    ///
    /// # Errors
    /// [`DtError::MalformedProperty`] if it is not UTF-8.
    pub fn str_property(&self, name: &'static str) -> Result<Option<&'dtb str>, DtError> {
        match self.property(name) {
            None => Ok(None),
            Some(value) => value_str(value)
                .map(Some)
                .ok_or_else(|| self.malformed(name, "not a UTF-8 string")),
        }
    }

    /// The strings of `compatible`, as bytes (compared, never trusted to be UTF-8).
    pub fn compatibles(&self) -> impl Iterator<Item = &'dtb [u8]> {
        string_list(self.common.compatible.unwrap_or_default())
    }

    pub fn is_compatible(&self, with: &str) -> bool {
        self.compatibles().any(|c| c == with.as_bytes())
    }

    pub fn device_type_is(&self, device_type: &str) -> bool {
        self.common
            .device_type
            .and_then(value_str)
            .is_some_and(|value| value == device_type)
    }

    /// `status` is absent, "okay" or "ok" (as Linux's of_fdt_device_is_available).
    pub fn is_available(&self) -> bool {
        match self.common.status.map(value_str) {
            None => true,
            Some(status) => matches!(status, Some("okay" | "ok")),
        }
    }

    /// `reg` decoded with the cells that apply to it, or `None` if there is no `reg`.
    /// The addresses are in the parent bus's space; see [`Node::cpu_reg`].
    ///
    /// # Errors
    /// [`DtError::CellsOutOfRange`] (address 1..=2, size 0..=2) and
    /// [`DtError::MalformedReg`] (length not a multiple of one entry).
    pub fn reg(&self) -> Result<Option<Reg<'dtb>>, DtError> {
        let Some(value) = self.property("reg") else {
            return Ok(None);
        };
        let Cells { address, size } = self.reg_cells;
        if !(1..=2).contains(&address) || size > 2 {
            return Err(DtError::CellsOutOfRange {
                node: self.path(),
                address_cells: address,
                size_cells: size,
            });
        }
        let entry_size = (address + size) as usize * 4;
        if !value.len().is_multiple_of(entry_size) {
            return Err(DtError::MalformedReg {
                node: self.path(),
                len: value.len(),
                address_cells: address,
                size_cells: size,
            });
        }
        Ok(Some(Reg {
            entries: value.chunks_exact(entry_size),
            address_bytes: address as usize * 4,
        }))
    }

    /// Like [`Node::reg`], for a device or memory node whose `reg` must be a CPU
    /// physical address.
    ///
    /// # Errors
    /// As [`Node::reg`], and [`DtError::UntranslatableAddress`] when a parent bus would
    /// need `ranges` translation.
    pub fn cpu_reg(&self) -> Result<Option<Reg<'dtb>>, DtError> {
        if !self.cpu_addressable && self.property("reg").is_some() {
            return Err(DtError::UntranslatableAddress { node: self.path() });
        }
        self.reg()
    }

    /// The `#address-cells` this node's `reg` (and the parent side of its `ranges`) is
    /// written in.
    pub fn reg_address_cells(&self) -> u32 {
        self.reg_cells.address
    }

    /// The node's `phandle` (or the older `linux,phandle`).
    ///
    /// # Errors
    /// [`DtError::MalformedProperty`] if it is not one cell.
    pub fn phandle(&self) -> Result<Option<u32>, DtError> {
        Ok(match self.u32_property("phandle")? {
            Some(phandle) => Some(phandle),
            None => self.u32_property("linux,phandle")?,
        })
    }

    pub fn malformed(&self, property: &'static str, problem: &'static str) -> DtError {
        DtError::MalformedProperty {
            node: self.path(),
            property,
            problem,
        }
    }

    pub fn missing(&self, property: &'static str) -> DtError {
        DtError::MissingProperty {
            node: self.path(),
            property,
        }
    }
}

/// The `(address, size)` entries of a `reg` (size 0 when `#size-cells` is 0).
#[derive(Clone)]
pub(super) struct Reg<'dtb> {
    entries: ChunksExact<'dtb, u8>,
    address_bytes: usize,
}

impl Iterator for Reg<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        let entry = self.entries.next()?;
        let (address, size) = entry.split_at_checked(self.address_bytes)?;
        let size = if size.is_empty() {
            0
        } else {
            cells_value(size)?
        };
        Some((cells_value(address)?, size))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

impl ExactSizeIterator for Reg<'_> {}
