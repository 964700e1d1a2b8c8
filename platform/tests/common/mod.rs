//! Test helpers: a minimal FDT writer for synthetic trees, and the fixture list.
#![allow(dead_code)]

/// Writes a version 17 FDT: `begin`/`prop`/`end` in order, then `finish`.
#[derive(Default)]
pub struct FdtBuilder {
    structs: Vec<u8>,
    strings: Vec<u8>,
    reservations: Vec<(u64, u64)>,
}

impl FdtBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn reserve(&mut self, base: u64, size: u64) -> &mut Self {
        self.reservations.push((base, size));
        self
    }

    pub fn begin(&mut self, name: &str) -> &mut Self {
        self.word(1);
        self.structs.extend_from_slice(name.as_bytes());
        self.structs.push(0);
        self.pad();
        self
    }

    pub fn end(&mut self) -> &mut Self {
        self.word(2);
        self
    }

    pub fn prop(&mut self, name: &str, value: &[u8]) -> &mut Self {
        let name_offset = self.string_offset(name);
        self.word(3);
        self.word(value.len() as u32);
        self.word(name_offset);
        self.structs.extend_from_slice(value);
        self.pad();
        self
    }

    pub fn prop_cells(&mut self, name: &str, values: &[u32]) -> &mut Self {
        self.prop(name, &cells(values))
    }

    pub fn prop_str(&mut self, name: &str, value: &str) -> &mut Self {
        self.prop(name, &string(value))
    }

    pub fn finish(&self) -> Vec<u8> {
        let mut structs = self.structs.clone();
        structs.extend_from_slice(&9u32.to_be_bytes());
        let reserve_offset = 40usize;
        let reserve_size = (self.reservations.len() + 1) * 16;
        let struct_offset = reserve_offset + reserve_size;
        let strings_offset = struct_offset + structs.len();
        let total = strings_offset + self.strings.len();
        let mut blob = Vec::with_capacity(total);
        for field in [
            0xd00d_feed,
            total as u32,
            struct_offset as u32,
            strings_offset as u32,
            reserve_offset as u32,
            17,
            16,
            0,
            self.strings.len() as u32,
            structs.len() as u32,
        ] {
            blob.extend_from_slice(&u32::to_be_bytes(field));
        }
        for &(base, size) in self.reservations.iter().chain([&(0, 0)]) {
            blob.extend_from_slice(&base.to_be_bytes());
            blob.extend_from_slice(&size.to_be_bytes());
        }
        blob.extend_from_slice(&structs);
        blob.extend_from_slice(&self.strings);
        blob
    }

    fn word(&mut self, value: u32) {
        self.structs.extend_from_slice(&value.to_be_bytes());
    }

    fn pad(&mut self) {
        while !self.structs.len().is_multiple_of(4) {
            self.structs.push(0);
        }
    }

    fn string_offset(&mut self, name: &str) -> u32 {
        let offset = self.strings.len() as u32;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        offset
    }
}

pub fn cells(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

pub fn string(value: &str) -> Vec<u8> {
    let mut bytes = value.as_bytes().to_vec();
    bytes.push(0);
    bytes
}

/// The nodes every parse needs (QEMU virt values), each emitted unless its name is in
/// `skip`: `memory`, `cpus` (one CPU), `intc` (GICv3), `timer`, `psci` (HVC, 0.2),
/// `pl011`, `aliases` (serial0) and `chosen` (stdout-path = "serial0").
pub fn platform_nodes(b: &mut FdtBuilder, skip: &[&str]) {
    let wanted = |name: &str| !skip.contains(&name);
    if wanted("memory") {
        b.begin("memory@40000000")
            .prop_str("device_type", "memory")
            .prop_cells("reg", &[0, 0x4000_0000, 0, 0x4000_0000])
            .end();
    }
    if wanted("cpus") {
        b.begin("cpus")
            .prop_cells("#address-cells", &[1])
            .prop_cells("#size-cells", &[0]);
        b.begin("cpu@0")
            .prop_str("device_type", "cpu")
            .prop_cells("reg", &[0])
            .end();
        b.end();
    }
    if wanted("intc") {
        b.begin("intc@8000000")
            .prop_str("compatible", "arm,gic-v3")
            .prop_cells("#address-cells", &[2])
            .prop_cells("#size-cells", &[2])
            .prop("ranges", &[])
            .prop_cells("interrupts", &[1, 9, 4])
            .prop_cells(
                "reg",
                &[0, 0x800_0000, 0, 0x1_0000, 0, 0x80a_0000, 0, 0xf6_0000],
            );
        b.end();
    }
    if wanted("timer") {
        b.begin("timer")
            .prop_str("compatible", "arm,armv8-timer")
            .prop_cells("interrupts", &[1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4])
            .end();
    }
    if wanted("psci") {
        b.begin("psci")
            .prop("compatible", b"arm,psci-0.2\0arm,psci\0")
            .prop_str("method", "hvc")
            .end();
    }
    if wanted("pl011") {
        b.begin("pl011@9000000")
            .prop("compatible", b"arm,pl011\0arm,primecell\0")
            .prop_cells("reg", &[0, 0x900_0000, 0, 0x1000])
            .end();
    }
    if wanted("aliases") {
        b.begin("aliases")
            .prop_str("serial0", "/pl011@9000000")
            .end();
    }
    if wanted("chosen") {
        b.begin("chosen").prop_str("stdout-path", "serial0").end();
    }
}

/// A whole tree: root cells 2/2, the platform nodes not in `skip`, then whatever
/// `extra` adds at the root level.
pub fn tree(skip: &[&str], extra: impl FnOnce(&mut FdtBuilder)) -> Vec<u8> {
    let mut b = FdtBuilder::new();
    b.begin("")
        .prop_cells("#address-cells", &[2])
        .prop_cells("#size-cells", &[2]);
    platform_nodes(&mut b, skip);
    extra(&mut b);
    b.end();
    b.finish()
}

macro_rules! fixture_bytes {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/",
                $name
            )) as &[u8],
        )
    };
}

/// The fixtures that parse, as (file name, bytes).
pub const GOOD_FIXTURES: &[(&str, &[u8])] = &[
    fixture_bytes!("qemu-1g-smp1-max.dtb"),
    fixture_bytes!("qemu-2g-smp2-max.dtb"),
    fixture_bytes!("qemu-5g-smp4-a72.dtb"),
    fixture_bytes!("qemu-2g-smp8-n2.dtb"),
    fixture_bytes!("qemu-2g-smp2-modules.dtb"),
    fixture_bytes!("qemu-1g-smp1-bootargs.dtb"),
    fixture_bytes!("hand-reserved.dtb"),
    fixture_bytes!("hand-two-banks.dtb"),
    fixture_bytes!("hand-legacy-modules.dtb"),
];
