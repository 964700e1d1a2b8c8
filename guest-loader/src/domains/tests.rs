use super::*;
use alloc::vec;
use proptest::prelude::*;
use vm_fdt::FdtWriter;

const MIB: u64 = 1 << 20;
const RAM: PhysRange = PhysRange {
    base: 0x4000_0000,
    size: 0x1_0000_0000,
};

/// One module child: compatible list, base, size, bootargs.
#[derive(Clone)]
struct Module {
    compatible: Vec<&'static str>,
    base: u64,
    size: u64,
    bootargs: Option<&'static str>,
}

fn kernel(base: u64, args: Option<&'static str>) -> Module {
    Module {
        compatible: vec!["multiboot,kernel", "multiboot,module"],
        base,
        size: 16 * MIB,
        bootargs: args,
    }
}

fn ramdisk(base: u64) -> Module {
    Module {
        compatible: vec!["multiboot,ramdisk", "multiboot,module"],
        base,
        size: 8 * MIB,
        bootargs: None,
    }
}

#[derive(Clone)]
struct Dom {
    name: &'static str,
    address_cells: Option<u32>,
    size_cells: Option<u32>,
    /// Raw `memory` bytes (None: absent).
    memory: Option<Vec<u8>>,
    cpus: Option<Vec<u8>>,
    vpl011: bool,
    extra: Vec<(&'static str, Vec<u8>)>,
    modules: Vec<Module>,
}

fn kib(k: u64) -> Option<Vec<u8>> {
    Some(k.to_be_bytes().to_vec())
}

fn dom(name: &'static str, mem_mib: u64, cpus: u32, kbase: u64) -> Dom {
    Dom {
        name,
        address_cells: Some(2),
        size_cells: Some(1),
        memory: kib(mem_mib * 1024),
        cpus: Some(cpus.to_be_bytes().to_vec()),
        vpl011: true,
        extra: vec![],
        modules: vec![
            kernel(kbase, Some("console=ttyAMA0")),
            ramdisk(kbase + 16 * MIB),
        ],
    }
}

fn build(doms: &[Dom], bare: &[Module]) -> Vec<u8> {
    let mut w = FdtWriter::new().unwrap();
    let root = w.begin_node("").unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 2).unwrap();
    let chosen = w.begin_node("chosen").unwrap();
    let write_module = |w: &mut FdtWriter, m: &Module, ac: u32, sc: u32| {
        let n = w
            .begin_node(&alloc::format!("module@{:x}", m.base))
            .unwrap();
        w.property_string_list(
            "compatible",
            m.compatible.iter().map(|s| s.to_string()).collect(),
        )
        .unwrap();
        let mut reg = Vec::new();
        let addr = m.base.to_be_bytes();
        let size = m.size.to_be_bytes();
        reg.extend_from_slice(&addr[8 - 4 * ac as usize..]);
        reg.extend_from_slice(&size[8 - 4 * sc as usize..]);
        w.property("reg", &reg).unwrap();
        if let Some(a) = m.bootargs {
            w.property_string("bootargs", a).unwrap();
        }
        w.end_node(n).unwrap();
    };
    for m in bare {
        write_module(&mut w, m, 2, 2);
    }
    for d in doms {
        let n = w.begin_node(d.name).unwrap();
        w.property_string("compatible", "xen,domain").unwrap();
        if let Some(c) = d.address_cells {
            w.property_u32("#address-cells", c).unwrap();
        }
        if let Some(c) = d.size_cells {
            w.property_u32("#size-cells", c).unwrap();
        }
        if let Some(m) = &d.memory {
            w.property("memory", m).unwrap();
        }
        if let Some(c) = &d.cpus {
            w.property("cpus", c).unwrap();
        }
        if d.vpl011 {
            w.property_null("vpl011").unwrap();
        }
        for (name, value) in &d.extra {
            w.property(name, value).unwrap();
        }
        let (ac, sc) = (
            d.address_cells.unwrap_or(2).clamp(1, 2),
            d.size_cells.unwrap_or(1).clamp(1, 2),
        );
        for m in &d.modules {
            write_module(&mut w, m, ac, sc);
        }
        w.end_node(n).unwrap();
    }
    w.end_node(chosen).unwrap();
    w.end_node(root).unwrap();
    w.finish().unwrap()
}

fn parse(doms: &[Dom]) -> Result<DomainsPlan, DomainsError> {
    parse_domains(&build(doms, &[]), 4, &[RAM])
}

fn three() -> Vec<Dom> {
    vec![
        dom("domU1", 512, 2, 0x4800_0000),
        dom("domU2", 256, 1, 0x4a00_0000),
        dom("domU3", 128, 1, 0x4c00_0000),
    ]
}

fn err(doms: &[Dom]) -> DomainsError {
    let e = parse(doms).unwrap_err();
    assert!(!e.to_string().is_empty());
    e
}

#[test]
fn one_two_three_domains() {
    for n in 1..=3 {
        let doms = &three()[..n];
        let DomainsPlan::Domains(specs) = parse(doms).unwrap() else {
            panic!("legacy")
        };
        assert_eq!(specs.len(), n);
        let first = &specs[0];
        assert_eq!(first.name, "domU1");
        assert_eq!(first.path, "/chosen/domU1");
        assert_eq!(first.memory_bytes, 512 * MIB);
        assert_eq!(first.vcpus, 2);
        assert!(first.vpl011);
        assert_eq!(first.kernel, PhysRange::new(0x4800_0000, 16 * MIB).unwrap());
        assert_eq!(first.ramdisk, PhysRange::new(0x4900_0000, 8 * MIB));
        assert_eq!(first.bootargs.as_deref(), Some("console=ttyAMA0"));
        assert!(!first.direct_map && first.enhanced.is_none() && first.static_mem.is_empty());
    }
}

#[test]
fn no_domains_is_legacy() {
    let bare = [kernel(0x4800_0000, None)];
    assert_eq!(
        parse_domains(&build(&[], &bare), 4, &[RAM]),
        Ok(DomainsPlan::Legacy)
    );
}

#[test]
fn bare_module_next_to_domains_is_refused() {
    let bare = [kernel(0x5000_0000, None)];
    let e = parse_domains(&build(&three()[..1], &bare), 4, &[RAM]).unwrap_err();
    assert!(
        matches!(e, DomainsError::StrayModule { ref path } if path == "/chosen/module@50000000")
    );
}

#[test]
fn untyped_modules_follow_xens_guess_and_extras_are_kept() {
    let mut d = dom("guest", 64, 1, 0x4800_0000);
    for m in &mut d.modules {
        m.compatible = vec!["multiboot,module"];
    }
    d.modules.push(Module {
        compatible: vec!["multiboot,device-tree", "multiboot,module"],
        base: 0x4a00_0000,
        size: 0x1000,
        bootargs: None,
    });
    d.extra = vec![
        ("direct-map", vec![]),
        ("xen,enhanced", b"no-xenstore\0".to_vec()),
        ("nr_spis", vec![0, 0, 0, 1]),
    ];
    d.size_cells = Some(2);
    let DomainsPlan::Domains(specs) = parse(&[d]).unwrap() else {
        panic!()
    };
    assert_eq!(specs[0].kernel.base, 0x4800_0000);
    assert_eq!(specs[0].ramdisk.map(|r| r.base), Some(0x4900_0000));
    assert_eq!(specs[0].device_tree.map(|r| r.base), Some(0x4a00_0000));
    assert!(specs[0].direct_map);
    assert_eq!(specs[0].enhanced.as_deref(), Some("no-xenstore"));
}

#[test]
fn static_mem_kept_and_checked() {
    let mut d = dom("guest", 64, 1, 0x4800_0000);
    let range = |size: u32| [0x6000_0000u32.to_be_bytes(), size.to_be_bytes()].concat();
    d.extra = vec![
        ("#xen,static-mem-address-cells", vec![0, 0, 0, 1]),
        ("#xen,static-mem-size-cells", vec![0, 0, 0, 1]),
        ("xen,static-mem", range(64 << 20)),
    ];
    let DomainsPlan::Domains(specs) = parse(&[d.clone()]).unwrap() else {
        panic!()
    };
    assert_eq!(
        specs[0].static_mem,
        vec![PhysRange::new(0x6000_0000, 64 * MIB).unwrap()]
    );
    d.extra[2].1 = range(32 << 20);
    assert!(matches!(
        err(&[d.clone()]),
        DomainsError::StaticMemMismatch { .. }
    ));
    // Static memory over another domain's kernel.
    d.extra[2].1 = [0x4c00_0000u32.to_be_bytes(), (64u32 << 20).to_be_bytes()].concat();
    let mut doms = three();
    doms[0] = d;
    assert!(matches!(err(&doms), DomainsError::Overlap { .. }));
}

#[test]
fn too_many_cpus_names_the_domain() {
    let mut doms = three();
    doms[2].cpus = Some(2u32.to_be_bytes().to_vec());
    let e = err(&doms);
    assert_eq!(
        e,
        DomainsError::TooManyCpus {
            path: "/chosen/domU3".into(),
            total: 5,
            host_cpus: 4
        }
    );
    assert!(e.to_string().contains("/chosen/domU3"));
}

#[test]
fn memory_that_does_not_fit() {
    let mut doms = three();
    doms[1].memory = kib(4 * 1024 * 1024);
    assert!(
        matches!(err(&doms), DomainsError::MemoryDoesNotFit { ref path, .. } if path == "/chosen/domU2")
    );
}

#[test]
fn bad_memory_values() {
    for (k, expect_malformed) in [
        (Some(0u64), false),
        (Some(1022), false),
        (Some(u64::MAX - 3), false),
        (None, true),
    ] {
        let mut d = dom("d", 1, 1, 0x4800_0000);
        d.memory = match k {
            Some(k) => kib(k),
            None => Some(vec![0, 0, 0, 64]),
        };
        match err(&[d]) {
            DomainsError::BadMemory { path, .. } => {
                assert!(!expect_malformed && path == "/chosen/d")
            }
            DomainsError::Malformed {
                property: "memory", ..
            } => assert!(expect_malformed),
            other => panic!("{other:?}"),
        }
    }
    let mut d = dom("d", 1, 1, 0x4800_0000);
    d.memory = None;
    assert!(matches!(
        err(&[d]),
        DomainsError::Missing {
            property: "memory",
            ..
        }
    ));
}

#[test]
fn bad_cpus() {
    let mut d = dom("d", 1, 1, 0x4800_0000);
    d.cpus = Some(vec![0; 4]);
    assert!(matches!(err(&[d.clone()]), DomainsError::NoCpus { .. }));
    d.cpus = Some(vec![0; 8]);
    assert!(matches!(
        err(&[d.clone()]),
        DomainsError::Malformed {
            property: "cpus",
            ..
        }
    ));
    d.cpus = None;
    assert!(matches!(
        err(&[d]),
        DomainsError::Missing {
            property: "cpus",
            ..
        }
    ));
}

#[test]
fn cells_must_be_explicit_and_sane() {
    let mut d = dom("d", 1, 1, 0x4800_0000);
    d.address_cells = None;
    assert!(matches!(
        err(&[d.clone()]),
        DomainsError::Cells {
            property: "#address-cells",
            found: None,
            ..
        }
    ));
    d.address_cells = Some(3);
    assert!(matches!(
        err(&[d.clone()]),
        DomainsError::Cells { found: Some(3), .. }
    ));
    d.address_cells = Some(2);
    d.size_cells = None;
    assert!(matches!(
        err(&[d]),
        DomainsError::Cells {
            property: "#size-cells",
            ..
        }
    ));
}

#[test]
fn malformed_reg() {
    let mut d = dom("d", 1, 1, 0x4800_0000);
    d.modules[0].size = 0;
    assert!(matches!(
        err(&[d.clone()]),
        DomainsError::Malformed {
            property: "reg",
            ..
        }
    ));
    // A cell list that is not whole (address, size) pairs.
    d = dom("d", 1, 1, 0x4800_0000);
    d.extra = vec![
        ("#xen,static-mem-address-cells", vec![0, 0, 0, 1]),
        ("#xen,static-mem-size-cells", vec![0, 0, 0, 1]),
        ("xen,static-mem", vec![0; 6]),
    ];
    assert!(matches!(
        err(&[d]),
        DomainsError::Malformed {
            property: "xen,static-mem",
            len: 6,
            ..
        }
    ));
}

#[test]
fn kernel_missing_or_doubled() {
    let mut d = dom("d", 1, 1, 0x4800_0000);
    d.modules.remove(0);
    assert_eq!(
        err(&[d.clone()]),
        DomainsError::NoKernel {
            path: "/chosen/d".into()
        }
    );
    d.modules.push(kernel(0x5000_0000, None));
    d.modules.push(kernel(0x5200_0000, None));
    let e = err(&[d]);
    assert_eq!(
        e,
        DomainsError::TwoModules {
            module: "/chosen/d/module@52000000".into(),
            role: "kernel",
            first: "/chosen/d/module@50000000".into(),
        }
    );
}

#[test]
fn overlaps_within_and_across_domains() {
    let mut d = dom("d", 1, 1, 0x4800_0000);
    d.modules[1].base = 0x48ff_f000;
    assert!(matches!(err(&[d]), DomainsError::Overlap { .. }));
    let mut doms = three();
    doms[2].modules[0].base = 0x4a80_0000; // inside domU2's kernel
    let e = err(&doms);
    let text = e.to_string();
    assert!(text.contains("domU2") && text.contains("domU3"), "{text}");
}

#[test]
fn modules_outside_ram() {
    let mut d = dom("d", 1, 1, 0x4800_0000);
    d.modules[0].base = 0x3fff_0000;
    assert!(
        matches!(err(&[d]), DomainsError::OutsideRam { ref path, .. } if path.contains("/chosen/d"))
    );
}

#[test]
fn duplicate_names() {
    let doms = [
        dom("domA", 64, 1, 0x4800_0000),
        dom("domB", 64, 1, 0x4a00_0000),
    ];
    let mut bytes = build(&doms, &[]);
    let at = bytes.windows(5).position(|w| w == b"domB\0").unwrap();
    bytes[at + 3] = b'A';
    let e = parse_domains(&bytes, 4, &[RAM]).unwrap_err();
    assert_eq!(
        e,
        DomainsError::DuplicateName {
            path: "/chosen/domA".into()
        }
    );
}

#[test]
fn kernel_extent() {
    // Minimal Image header with a PE header at 0x40 and one section ending at 0x3000.
    let mut head = vec![0u8; 0x200];
    head[0..2].copy_from_slice(b"MZ");
    head[0x10..0x18].copy_from_slice(&0x10_0000u64.to_le_bytes());
    head[0x18..0x20].copy_from_slice(&0xau64.to_le_bytes());
    head[0x38..0x3c].copy_from_slice(b"ARM\x64");
    head[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
    head[0x40..0x44].copy_from_slice(b"PE\0\0");
    head[0x46..0x48].copy_from_slice(&1u16.to_le_bytes()); // sections
    head[0x54..0x56].copy_from_slice(&0u16.to_le_bytes()); // optional header size
    let section = 0x44 + 20;
    head[section + 16..section + 20].copy_from_slice(&0x2000u32.to_le_bytes());
    head[section + 20..section + 24].copy_from_slice(&0x1000u32.to_le_bytes());
    let module = |size| PhysRange::new(0x4800_0000, size).unwrap();
    assert!(check_kernel_extent(&head, module(0x3000)).is_ok());
    let e = check_kernel_extent(&head, module(0x2fff)).unwrap_err();
    assert_eq!(
        e,
        KernelExtentError::Truncated {
            module: module(0x2fff),
            needed: 0x3000
        }
    );
    assert!(matches!(
        check_kernel_extent(&head[..0x60], module(0x3000)),
        Err(KernelExtentError::BadPe { .. })
    ));
    assert!(matches!(
        check_kernel_extent(b"\x7fELF", module(0x3000)),
        Err(KernelExtentError::Image(_))
    ));
}

proptest! {
    #[test]
    fn mutated_fixtures_never_panic(
        n in 1usize..=3,
        mutations in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cpus in 0usize..8,
    ) {
        let mut bytes = build(&three()[..n], &[kernel(0x5000_0000, None)][..n % 2]);
        for (index, value) in mutations {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        if let Err(e) = parse_domains(&bytes, cpus, &[RAM]) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn any_head_never_panics(head in proptest::collection::vec(any::<u8>(), 0..600), size in 1u64..1 << 40) {
        let mut head = head;
        if head.len() > 2 { head[0] = b'M'; head[1] = b'Z'; }
        let _ = check_kernel_extent(&head, PhysRange::new(0x4000_0000, size).unwrap());
    }
}
