//! Unit tests of the pieces; the rules end to end are in `tests/devices.rs`.

use super::*;
use alloc::vec;
use vm_fdt::FdtWriter;

use crate::dtb;

/// A small tree: a GIC with 3 interrupt cells, a second controller, and `body`.
fn tree_blob(body: impl FnOnce(&mut FdtWriter)) -> Vec<u8> {
    let mut w = FdtWriter::new().unwrap();
    let root = w.begin_node("").unwrap();
    w.property_u32("#address-cells", 1).unwrap();
    w.property_u32("#size-cells", 1).unwrap();
    w.property_u32("interrupt-parent", 1).unwrap();
    let gic = w.begin_node("gic@1000").unwrap();
    w.property_string("compatible", "arm,gic-v3").unwrap();
    w.property_u32("phandle", 1).unwrap();
    w.property_u32("#interrupt-cells", 3).unwrap();
    w.property_null("interrupt-controller").unwrap();
    w.property_array_u32("reg", &[0x1000, 0x1000, 0x10_0000, 0x10_0000])
        .unwrap();
    w.end_node(gic).unwrap();
    let other = w.begin_node("gpio@2000").unwrap();
    w.property_u32("phandle", 2).unwrap();
    w.property_u32("#interrupt-cells", 2).unwrap();
    w.property_u32("#gpio-cells", 2).unwrap();
    w.property_u32("#clock-cells", 1).unwrap();
    w.property_array_u32("reg", &[0x2000, 0x1000]).unwrap();
    w.end_node(other).unwrap();
    let dev = w.begin_node("dev@3000").unwrap();
    body(&mut w);
    w.end_node(dev).unwrap();
    w.end_node(root).unwrap();
    w.finish().unwrap()
}

fn with_tree<R>(blob: &[u8], run: impl FnOnce(&tree::HostTree<'_>, usize) -> R) -> R {
    let fdt = dtb::open(blob).unwrap();
    let tree = tree::HostTree::new(fdt.root());
    let dev = tree.index_of("/dev@3000").unwrap();
    run(&tree, dev)
}

fn intids(body: impl FnOnce(&mut FdtWriter)) -> Result<Vec<u32>, InterruptProblem> {
    let blob = tree_blob(body);
    with_tree(&blob, |tree, dev| {
        interrupts::spi_intids(tree, tree.index_of("/gic@1000"), dev)
    })
}

#[test]
fn spis_are_32_plus_n_and_ppis_are_refused() {
    assert_eq!(intids(|_| {}), Ok(vec![]));
    assert_eq!(
        intids(|w| w
            .property_array_u32("interrupts", &[0, 0, 4, 0, 987, 1])
            .unwrap()),
        Ok(vec![32, 1019])
    );
    assert_eq!(
        intids(|w| w.property_array_u32("interrupts", &[0, 988, 4]).unwrap()),
        Err(InterruptProblem::Unsupported {
            kind: 0,
            number: 988
        })
    );
    assert_eq!(
        intids(|w| w.property_array_u32("interrupts", &[1, 9, 4]).unwrap()),
        Err(InterruptProblem::Private { intid: 25 })
    );
    // Extended PPI 2 is INTID 1058; extended SPIs are not implemented.
    assert_eq!(
        intids(|w| w.property_array_u32("interrupts", &[3, 2, 4]).unwrap()),
        Err(InterruptProblem::Private { intid: 1058 })
    );
    assert_eq!(
        intids(|w| w.property_array_u32("interrupts", &[2, 2, 4]).unwrap()),
        Err(InterruptProblem::Unsupported { kind: 2, number: 2 })
    );
    for bad in [&[0u32, 1][..], &[], &[0, 1, 4, 0]] {
        assert!(matches!(
            intids(|w| w.property_array_u32("interrupts", bad).unwrap()),
            Err(InterruptProblem::Malformed { .. })
        ));
    }
    assert!(matches!(
        intids(|w| w.property("interrupts", &[0, 0, 0]).unwrap()),
        Err(InterruptProblem::Malformed { .. })
    ));
    assert_eq!(
        intids(|w| {
            w.property_u32("interrupt-parent", 2).unwrap();
            w.property_array_u32("interrupts", &[1, 1]).unwrap();
        }),
        Err(InterruptProblem::NotTheGic {
            parent: "/gpio@2000".to_string()
        })
    );
    assert_eq!(
        intids(|w| {
            w.property("interrupt-parent", &[1]).unwrap();
            w.property_array_u32("interrupts", &[0, 1, 4]).unwrap();
        }),
        Err(InterruptProblem::Malformed {
            property: "interrupt-parent",
            len: 1
        })
    );
}

#[test]
fn references_follow_the_provider_cells() {
    let blob = tree_blob(|w| {
        // `gpio@2000` has #clock-cells = 1 and #gpio-cells = 2; phandle 0 is a hole.
        w.property_array_u32("clocks", &[2, 7, 0, 2, 8]).unwrap();
        w.property_array_u32("reset-gpios", &[2, 1, 0]).unwrap();
        w.property_array_u32("nr-gpios", &[2]).unwrap();
        w.property_u32("vmmc-supply", 2).unwrap();
        w.property_u32("pinctrl-0", 2).unwrap();
        w.property_u32("pinctrl-names", 2).unwrap();
        w.property_u32("unknown-handle", 2).unwrap();
        // No #power-domain-cells at the provider.
        w.property_array_u32("power-domains", &[2]).unwrap();
        w.property_array_u32("resets", &[9]).unwrap();
    });
    with_tree(&blob, |tree, dev| {
        let (found, problems) = references::references(tree, dev);
        let gpio = tree.index_of("/gpio@2000").unwrap();
        let names: Vec<(&str, usize)> = found
            .iter()
            .map(|r| (r.property.as_str(), r.target))
            .collect();
        assert_eq!(
            names,
            [
                ("clocks", gpio),
                ("clocks", gpio),
                ("reset-gpios", gpio),
                ("vmmc-supply", gpio),
                ("pinctrl-0", gpio),
                ("power-domains", gpio),
            ]
        );
        assert_eq!(
            problems,
            [
                ReferenceProblem::Malformed {
                    property: "power-domains".to_string()
                },
                ReferenceProblem::Dangling {
                    property: "resets".to_string(),
                    phandle: 9
                },
            ]
        );
    });
}

#[test]
fn the_tree_index_knows_subtrees_ancestors_and_phandles() {
    let blob = tree_blob(|w| {
        let child = w.begin_node("child").unwrap();
        w.property_u32("phandle", 2).unwrap();
        w.end_node(child).unwrap();
    });
    with_tree(&blob, |tree, dev| {
        assert_eq!(tree.path(0), "/");
        assert_eq!(tree.len(), 5);
        let child = tree.index_of("/dev@3000/child").unwrap();
        assert_eq!(tree.subtree(dev), dev..dev + 2);
        assert!(tree.is_within(child, dev) && !tree.is_within(dev, child));
        assert_eq!(tree.ancestors(child).collect::<Vec<_>>(), [dev, 0]);
        // `gpio@2000` and the child both claim phandle 2.
        assert_eq!(tree.by_phandle(2), Some(tree::PhandleTarget::Ambiguous));
        assert_eq!(
            tree.by_phandle(1),
            Some(tree::PhandleTarget::Node(
                tree.index_of("/gic@1000").unwrap()
            ))
        );
        assert_eq!(tree.by_phandle(3), None);
        assert!(!tree.is_duplicated(dev));
    });
}

#[test]
fn paths_nest_by_component() {
    assert!(is_same_or_below("/a", "/a"));
    assert!(is_same_or_below("/a/b", "/a"));
    assert!(!is_same_or_below("/ab", "/a"));
    assert!(is_same_or_below("/a", "/"));
    assert!(!is_same_or_below("/", "/a"));
}

#[test]
fn the_emulated_gic_reg_is_encoded_in_the_parents_cells() {
    let blob = tree_blob(|_| {});
    let fdt = dtb::open(&blob).unwrap();
    let request = DeviceRequest {
        vcpus: 3,
        guest_ram: &[],
        hidden: &[],
        passthrough_paths: &[],
        smmus_driven: &[],
        marked_passthrough: true,
    };
    let assignment = assign_opened(&fdt, &request).unwrap();
    // One-cell addresses and sizes: distributor, then 3 * 128 KiB of redistributors.
    let expected: Vec<u8> = [0x1000u32, 0x1000, 0x10_0000, 0x6_0000]
        .iter()
        .flat_map(|c| c.to_be_bytes())
        .collect();
    assert_eq!(assignment.layout.gic_reg, expected);
    assert_eq!(
        assignment.layout.role("/gic@1000"),
        Some(NodeRole::EmulatedGic)
    );
    assert_eq!(assignment.layout.role("/gpio@2000"), None);
    assert!(assignment.layout.keeps_phandle(1));
    assert!(!assignment.layout.keeps_phandle(2));

    // 2^32 / 128 KiB vCPUs do not fit a one-cell size.
    let request = DeviceRequest {
        vcpus: 1 << 15,
        ..request
    };
    assert_eq!(
        assign_opened(&fdt, &request).unwrap_err(),
        DeviceError::RedistributorsTooLarge { vcpus: 1 << 15 }
    );
}

#[test]
fn messages_name_the_problem() {
    let refusal = Refusal::Contains {
        path: "/soc/dma@1000".to_string(),
        reason: alloc::boxed::Box::new(Refusal::Flash),
    };
    assert_eq!(refusal.innermost(), &Refusal::Flash);
    assert_eq!(
        refusal.to_string(),
        "it contains /soc/dma@1000: flash: it holds the host's firmware and its variables"
    );
    assert_eq!(
        DeviceError::PassthroughPathNotFound {
            path: "/x".to_string()
        }
        .to_string(),
        "passthrough=/x: the host DT has no such node (give the full path, unit addresses \
         included, e.g. /pl031@9010000)"
    );
    assert_eq!(
        Refusal::Interrupts(InterruptProblem::Private { intid: 27 }).to_string(),
        "interrupts: it uses INTID 27, a PPI: per-CPU interrupts are not a device's to give"
    );
}
