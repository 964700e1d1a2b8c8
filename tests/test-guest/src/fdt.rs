//! A minimal read-only flattened device tree parser (Devicetree Specification v0.4,
//! chapter 5). Every access is bounds-checked: a malformed blob ends a walk early or
//! yields `None`, it never panics.

use core::fmt;

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// The header's size through `size_dt_strings` (version 16 fields; v17 adds
/// `size_dt_struct` at offset 36).
pub const HEADER_SIZE: usize = 40;
/// booting.rst: the DTB is at most 2 MiB.
pub const MAX_SIZE: usize = 2 << 20;
/// Deepest node nesting walked.
pub const MAX_DEPTH: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdtError {
    Truncated,
    BadMagic(u32),
    BadVersion(u32),
    BadSize(u32),
    BadLayout,
}

impl fmt::Display for FdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("shorter than its header"),
            Self::BadMagic(m) => write!(f, "bad magic {m:#x}"),
            Self::BadVersion(v) => write!(f, "unsupported version {v}"),
            Self::BadSize(s) => write!(f, "bad totalsize {s:#x}"),
            Self::BadLayout => f.write_str("blocks outside the blob"),
        }
    }
}

fn be32(bytes: &[u8], off: usize) -> Option<u32> {
    let b = bytes.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn be64(bytes: &[u8], off: usize) -> Option<u64> {
    let hi = be32(bytes, off)?;
    let lo = be32(bytes, off.checked_add(4)?)?;
    Some((u64::from(hi) << 32) | u64::from(lo))
}

/// A big-endian number of `cells` 32-bit cells (at most two).
pub fn read_cells(bytes: &[u8], cells: u32) -> Option<u64> {
    match cells {
        1 => be32(bytes, 0).map(u64::from),
        2 => be64(bytes, 0),
        _ => None,
    }
}

fn align4(off: usize) -> Option<usize> {
    off.checked_add(3).map(|o| o & !3)
}

/// The blob's `totalsize`, from its first [`HEADER_SIZE`] bytes.
pub fn total_size(header: &[u8]) -> Result<usize, FdtError> {
    let magic = be32(header, 0).ok_or(FdtError::Truncated)?;
    if magic != FDT_MAGIC {
        return Err(FdtError::BadMagic(magic));
    }
    let size = be32(header, 4).ok_or(FdtError::Truncated)?;
    let size_usize = size as usize;
    if !(HEADER_SIZE..=MAX_SIZE).contains(&size_usize) {
        return Err(FdtError::BadSize(size));
    }
    Ok(size_usize)
}

/// `#address-cells` / `#size-cells` of a node (for its children).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cells {
    pub address: u32,
    pub size: u32,
}

impl Cells {
    /// The Devicetree Specification's defaults when a node omits the properties.
    pub const DEFAULT: Self = Self {
        address: 2,
        size: 1,
    };
}

#[derive(Clone, Copy)]
pub struct Fdt<'a> {
    blob: &'a [u8],
    structs: &'a [u8],
    strings: &'a [u8],
    rsvmap: usize,
}

impl<'a> Fdt<'a> {
    pub fn new(blob: &'a [u8]) -> Result<Self, FdtError> {
        let total = total_size(blob)?;
        let blob = blob.get(..total).ok_or(FdtError::Truncated)?;
        let field = |off| be32(blob, off).ok_or(FdtError::Truncated);
        let off_struct = field(8)? as usize;
        let off_strings = field(12)? as usize;
        let off_rsvmap = field(16)? as usize;
        let version = field(20)?;
        let last_compatible = field(24)?;
        let size_strings = field(32)? as usize;
        if version < 16 || last_compatible > 17 {
            return Err(FdtError::BadVersion(version));
        }
        let struct_end = if version >= 17 {
            off_struct
                .checked_add(field(36)? as usize)
                .ok_or(FdtError::BadLayout)?
        } else {
            total
        };
        let structs = blob
            .get(off_struct..struct_end)
            .ok_or(FdtError::BadLayout)?;
        let strings = blob
            .get(off_strings..off_strings.saturating_add(size_strings))
            .ok_or(FdtError::BadLayout)?;
        if off_rsvmap < HEADER_SIZE || off_rsvmap >= total || !off_struct.is_multiple_of(4) {
            return Err(FdtError::BadLayout);
        }
        Ok(Self {
            blob,
            structs,
            strings,
            rsvmap: off_rsvmap,
        })
    }

    /// The blob's size (its header's `totalsize`).
    pub fn size(&self) -> usize {
        self.blob.len()
    }

    /// The memory reservation block's `(address, size)` entries.
    pub fn reservations(&self) -> impl Iterator<Item = (u64, u64)> + 'a {
        let blob = self.blob;
        let mut off = self.rsvmap;
        core::iter::from_fn(move || {
            let address = be64(blob, off)?;
            let size = be64(blob, off.checked_add(8)?)?;
            if address == 0 && size == 0 {
                return None;
            }
            off = off.checked_add(16)?;
            Some((address, size))
        })
    }

    /// All nodes in document order (pre-order), the root first.
    pub fn nodes(&self) -> Nodes<'a> {
        Nodes {
            fdt: *self,
            off: 0,
            depth: 0,
            cells: [Cells::DEFAULT; MAX_DEPTH],
            done: false,
        }
    }

    pub fn root(&self) -> Option<Node<'a>> {
        self.nodes().next()
    }

    /// The node at `path` (`/`, `/cpus/cpu@1`, ...). A path component without a unit
    /// address also matches a node name with one (`/pl011` finds `pl011@9000000`).
    pub fn find(&self, path: &[u8]) -> Option<Node<'a>> {
        if path.first() != Some(&b'/') {
            return None;
        }
        let mut components: [&[u8]; MAX_DEPTH] = [&[]; MAX_DEPTH];
        let mut count = 0;
        for part in path.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
            *components.get_mut(count)? = part;
            count += 1;
        }
        // matched[d]: the node open at depth d and all its ancestors match the path.
        let mut matched = [false; MAX_DEPTH + 1];
        for node in self.nodes() {
            let d = node.depth;
            let ok = if d == 0 {
                true
            } else {
                matched.get(d - 1).copied().unwrap_or(false)
                    && components
                        .get(d - 1)
                        .is_some_and(|c| d <= count && name_matches(node.name, c))
            };
            if let Some(m) = matched.get_mut(d) {
                *m = ok;
            }
            if ok && d == count {
                return Some(node);
            }
        }
        None
    }

    fn string_at(&self, off: usize) -> Option<&'a [u8]> {
        let rest = self.strings.get(off..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        rest.get(..end)
    }

    fn token(&self, off: usize) -> Option<u32> {
        be32(self.structs, off)
    }

    /// Parses the property at `off` (pointing at an FDT_PROP token): (name, value, next).
    fn property_at(&self, off: usize) -> Option<(&'a [u8], &'a [u8], usize)> {
        let len = be32(self.structs, off.checked_add(4)?)? as usize;
        let name_off = be32(self.structs, off.checked_add(8)?)? as usize;
        let start = off.checked_add(12)?;
        let end = start.checked_add(len)?;
        let value = self.structs.get(start..end)?;
        let name = self.string_at(name_off)?;
        Some((name, value, align4(end)?))
    }
}

fn name_matches(name: &[u8], component: &[u8]) -> bool {
    name == component || (!component.contains(&b'@') && name_without_address(name) == component)
}

fn name_without_address(name: &[u8]) -> &[u8] {
    match name.iter().position(|&b| b == b'@') {
        Some(at) => name.get(..at).unwrap_or(name),
        None => name,
    }
}

pub struct Nodes<'a> {
    fdt: Fdt<'a>,
    off: usize,
    /// Nodes currently open.
    depth: usize,
    /// The cells each open node gives its children.
    cells: [Cells; MAX_DEPTH],
    done: bool,
}

impl<'a> Iterator for Nodes<'a> {
    type Item = Node<'a>;

    fn next(&mut self) -> Option<Node<'a>> {
        while !self.done {
            let Some(token) = self.fdt.token(self.off) else {
                break;
            };
            match token {
                FDT_BEGIN_NODE => {
                    let Some(node) = self.begin_node() else {
                        break;
                    };
                    return Some(node);
                }
                FDT_PROP => match self.fdt.property_at(self.off) {
                    Some((_, _, next)) => self.off = next,
                    None => break,
                },
                FDT_NOP => self.off += 4,
                FDT_END_NODE if self.depth > 0 => {
                    self.depth -= 1;
                    self.off += 4;
                    if self.depth == 0 {
                        break; // the root closed
                    }
                }
                FDT_END => break,
                _ => break, // garbage
            }
        }
        self.done = true;
        None
    }
}

impl<'a> Nodes<'a> {
    fn begin_node(&mut self) -> Option<Node<'a>> {
        let depth = self.depth;
        if depth >= MAX_DEPTH {
            return None;
        }
        let name_start = self.off.checked_add(4)?;
        let rest = self.fdt.structs.get(name_start..)?;
        let name_len = rest.iter().position(|&b| b == 0)?;
        let name = rest.get(..name_len)?;
        let props = align4(name_start.checked_add(name_len)?.checked_add(1)?)?;
        let parent_cells = if depth == 0 {
            Cells::DEFAULT
        } else {
            *self.cells.get(depth - 1)?
        };
        let node = Node {
            fdt: self.fdt,
            name,
            depth,
            props,
            parent_cells,
        };
        *self.cells.get_mut(depth)? = node.cells();
        self.depth += 1;
        self.off = props;
        Some(node)
    }
}

#[derive(Clone, Copy)]
pub struct Node<'a> {
    fdt: Fdt<'a>,
    /// The name with its unit address (`pl011@9000000`); empty for the root.
    pub name: &'a [u8],
    /// 0 for the root.
    pub depth: usize,
    props: usize,
    /// The parent's `#address-cells`/`#size-cells`, which this node's `reg` uses.
    pub parent_cells: Cells,
}

impl<'a> Node<'a> {
    pub fn properties(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let fdt = self.fdt;
        let mut off = self.props;
        core::iter::from_fn(move || {
            loop {
                match fdt.token(off)? {
                    FDT_NOP => off = off.checked_add(4)?,
                    FDT_PROP => {
                        let (name, value, next) = fdt.property_at(off)?;
                        off = next;
                        return Some((name, value));
                    }
                    _ => return None,
                }
            }
        })
    }

    pub fn property(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.properties()
            .find(|&(n, _)| n == name)
            .map(|(_, value)| value)
    }

    /// A string property, without its terminating NUL (the first string of a list).
    pub fn str_property(&self, name: &[u8]) -> Option<&'a [u8]> {
        let value = self.property(name)?;
        let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
        value.get(..end)
    }

    pub fn u32_property(&self, name: &[u8]) -> Option<u32> {
        let value = self.property(name)?;
        if value.len() != 4 {
            return None;
        }
        be32(value, 0)
    }

    /// The cells this node gives its children.
    pub fn cells(&self) -> Cells {
        Cells {
            address: self
                .u32_property(b"#address-cells")
                .unwrap_or(Cells::DEFAULT.address),
            size: self
                .u32_property(b"#size-cells")
                .unwrap_or(Cells::DEFAULT.size),
        }
    }

    pub fn name_without_address(&self) -> &'a [u8] {
        name_without_address(self.name)
    }

    /// Whether one of the `compatible` strings is exactly `what`.
    pub fn is_compatible(&self, what: &[u8]) -> bool {
        self.compatible_strings().any(|c| c == what)
    }

    pub fn compatible_strings(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.property(b"compatible")
            .unwrap_or(&[])
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
    }

    /// `status` absent, "okay" or "ok".
    pub fn is_enabled(&self) -> bool {
        matches!(self.str_property(b"status"), None | Some(b"okay" | b"ok"))
    }

    /// The `(address, size)` pairs of `reg`, read with the parent's cells. Empty when the
    /// cells are not 1 or 2 (addresses) / 0..2 (sizes); a partial trailing entry is
    /// dropped.
    pub fn reg(&self) -> impl Iterator<Item = (u64, u64)> + 'a {
        let Cells { address, size } = self.parent_cells;
        let valid = matches!(address, 1 | 2) && size <= 2;
        let entry = (address as usize + size as usize) * 4;
        let value = if valid {
            self.property(b"reg").unwrap_or(&[])
        } else {
            &[]
        };
        value
            .chunks_exact(entry.max(1))
            .filter(move |_| valid)
            .filter_map(move |chunk| {
                let a = read_cells(chunk, address)?;
                let s = match size {
                    0 => 0,
                    _ => read_cells(chunk.get(address as usize * 4..)?, size)?,
                };
                Some((a, s))
            })
    }
}

#[cfg(test)]
pub(crate) mod builder {
    //! Writes small blobs for the tests.

    pub struct Builder {
        structs: Vec<u8>,
        strings: Vec<u8>,
        rsv: Vec<(u64, u64)>,
    }

    pub enum Value<'v> {
        U32(u32),
        Cells(&'v [u32]),
        Str(&'v str),
        Bytes(&'v [u8]),
    }

    impl Builder {
        pub fn new() -> Self {
            Self {
                structs: Vec::new(),
                strings: Vec::new(),
                rsv: Vec::new(),
            }
        }

        fn u32(&mut self, v: u32) {
            self.structs.extend_from_slice(&v.to_be_bytes());
        }

        fn pad(&mut self) {
            while !self.structs.len().is_multiple_of(4) {
                self.structs.push(0);
            }
        }

        pub fn reserve(&mut self, address: u64, size: u64) -> &mut Self {
            self.rsv.push((address, size));
            self
        }

        pub fn begin(&mut self, name: &str) -> &mut Self {
            self.u32(super::FDT_BEGIN_NODE);
            self.structs.extend_from_slice(name.as_bytes());
            self.structs.push(0);
            self.pad();
            self
        }

        pub fn end(&mut self) -> &mut Self {
            self.u32(super::FDT_END_NODE);
            self
        }

        pub fn prop(&mut self, name: &str, value: Value<'_>) -> &mut Self {
            let bytes: Vec<u8> = match value {
                Value::U32(v) => v.to_be_bytes().to_vec(),
                Value::Cells(cells) => cells.iter().flat_map(|c| c.to_be_bytes()).collect(),
                Value::Str(s) => s.bytes().chain([0]).collect(),
                Value::Bytes(b) => b.to_vec(),
            };
            let name_off = self.strings.len() as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            self.u32(super::FDT_PROP);
            self.u32(bytes.len() as u32);
            self.u32(name_off);
            self.structs.extend_from_slice(&bytes);
            self.pad();
            self
        }

        pub fn finish(&mut self) -> Vec<u8> {
            self.u32(super::FDT_END);
            let rsv_off = 40usize;
            let struct_off = rsv_off + (self.rsv.len() + 1) * 16;
            let strings_off = struct_off + self.structs.len();
            let total = strings_off + self.strings.len();
            let mut out = Vec::new();
            for v in [
                super::FDT_MAGIC,
                total as u32,
                struct_off as u32,
                strings_off as u32,
                rsv_off as u32,
                17,
                16,
                0,
                self.strings.len() as u32,
                self.structs.len() as u32,
            ] {
                out.extend_from_slice(&v.to_be_bytes());
            }
            for &(a, s) in self.rsv.iter().chain([(0, 0)].iter()) {
                out.extend_from_slice(&a.to_be_bytes());
                out.extend_from_slice(&s.to_be_bytes());
            }
            out.extend_from_slice(&self.structs);
            out.extend_from_slice(&self.strings);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::builder::{Builder, Value};
    use super::*;

    fn sample() -> Vec<u8> {
        Builder::new()
            .reserve(0x4800_0000, 0x1000)
            .begin("")
            .prop("#address-cells", Value::U32(2))
            .prop("#size-cells", Value::U32(2))
            .begin("cpus")
            .prop("#address-cells", Value::U32(1))
            .prop("#size-cells", Value::U32(0))
            .begin("cpu@0")
            .prop("reg", Value::U32(0))
            .end()
            .begin("cpu@1")
            .prop("reg", Value::U32(1))
            .end()
            .end()
            .begin("pl011@9000000")
            .prop("compatible", Value::Str("arm,pl011\0arm,primecell"))
            .prop("reg", Value::Cells(&[0, 0x0900_0000, 0, 0x1000]))
            .end()
            .begin("memory@40000000")
            .prop("device_type", Value::Str("memory"))
            .prop("reg", Value::Cells(&[0, 0x4000_0000, 0, 0x4000_0000]))
            .end()
            .end()
            .finish()
    }

    #[test]
    fn walks_nodes_with_depth_and_cells() {
        let blob = sample();
        let fdt = Fdt::new(&blob).unwrap();
        let names: Vec<_> = fdt
            .nodes()
            .map(|n| (String::from_utf8_lossy(n.name).into_owned(), n.depth))
            .collect();
        assert_eq!(
            names,
            [
                ("".into(), 0),
                ("cpus".into(), 1),
                ("cpu@0".into(), 2),
                ("cpu@1".into(), 2),
                ("pl011@9000000".into(), 1),
                ("memory@40000000".into(), 1)
            ]
        );
        let cpu1 = fdt.find(b"/cpus/cpu@1").unwrap();
        assert_eq!(cpu1.reg().collect::<Vec<_>>(), [(1, 0)]);
        let uart = fdt.find(b"/pl011").unwrap();
        assert!(uart.is_compatible(b"arm,pl011"));
        assert!(uart.is_compatible(b"arm,primecell"));
        assert!(!uart.is_compatible(b"arm"));
        assert_eq!(uart.reg().collect::<Vec<_>>(), [(0x0900_0000, 0x1000)]);
        assert_eq!(
            fdt.reservations().collect::<Vec<_>>(),
            [(0x4800_0000, 0x1000)]
        );
        assert!(fdt.find(b"/").is_some_and(|n| n.depth == 0));
        assert!(fdt.find(b"/cpus/cpu@2").is_none());
        assert!(fdt.find(b"/cpu@0").is_none());
        assert!(fdt.find(b"cpus").is_none());
    }

    #[test]
    fn rejects_bad_headers() {
        let blob = sample();
        assert_eq!(Fdt::new(&blob[..20]).err(), Some(FdtError::Truncated));
        let mut bad = blob.clone();
        bad[0] = 0;
        assert!(matches!(Fdt::new(&bad), Err(FdtError::BadMagic(_))));
        let mut bad = blob.clone();
        bad[4..8].copy_from_slice(&(blob.len() as u32 + 4).to_be_bytes());
        assert_eq!(Fdt::new(&bad).err(), Some(FdtError::Truncated));
        let mut bad = blob.clone();
        bad[8..12].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
        assert_eq!(Fdt::new(&bad).err(), Some(FdtError::BadLayout));
    }

    /// Corrupting bytes anywhere (a cheap deterministic fuzz) never panics.
    #[test]
    fn corruption_never_panics() {
        let good = sample();
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let mut blob = good.clone();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % blob.len();
                blob[i] = next() as u8;
            }
            let cut = (next() as usize) % (blob.len() + 1);
            for b in [&blob[..], &blob[..cut]] {
                if let Ok(fdt) = Fdt::new(b) {
                    for node in fdt.nodes() {
                        let _ = node.properties().count();
                        let _ = node.reg().count();
                        let _ = node.cells();
                        let _ = node.is_compatible(b"arm,pl011");
                    }
                    let _ = fdt.reservations().take(100).count();
                    let _ = fdt.find(b"/cpus/cpu@1");
                    let _ = crate::dtinfo::GuestInfo::parse(&fdt);
                }
            }
        }
    }
}
