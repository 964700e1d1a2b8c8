//! The phandles a node refers to, read from the properties whose format the DT bindings
//! fix, so that whatever a kept node needs can be kept with it.
//!
//! - **Plain phandle lists** (every cell a phandle): `interrupt-parent`, `pinctrl-N`,
//!   `memory-region`, `next-level-cache`, `operating-points-v2`, `cpu-idle-states`,
//!   `nvmem-cells`, `sram`, `phy-handle` and every `*-supply`.
//! - **Specifier lists** (`<phandle args...>`, as many args as the provider's
//!   `#X-cells` says): `clocks`, `assigned-clocks` and `assigned-clock-parents`
//!   (`#clock-cells`), `resets` (`#reset-cells`), `power-domains`
//!   (`#power-domain-cells`), `phys` (`#phy-cells`), `dmas` (`#dma-cells`), `mboxes`
//!   (`#mbox-cells`), `iommus` (`#iommu-cells`), `interrupts-extended`
//!   (`#interrupt-cells`), `gpios`, `gpio`, `*-gpios` and `*-gpio` (`#gpio-cells`;
//!   not `nr-gpios`/`ngpios`, which are counts), `pwms` (`#pwm-cells`), `io-channels`
//!   (`#io-channel-cells`), `thermal-sensors` (`#thermal-sensor-cells`), `hwlocks`
//!   (`#hwlock-cells`), `interconnects` (`#interconnect-cells`), `access-controllers`
//!   (`#access-controller-cells`); `msi-parent` (`#msi-cells`) and `sound-dai`
//!   (`#sound-dai-cells`) default to no args. A phandle of 0 is an empty entry, as in
//!   Linux's `of_parse_phandle_with_args`.
//!
//! A phandle no node has (or two nodes claim) is reported and skipped; in a specifier
//! list the entry's length is then unknown, so the rest of the list is not read.
//!
//! Not followed: map tables (`interrupt-map`, `msi-map`, `iommu-map`: a device with one
//! is refused, but for a PCI host bridge behind a driven SMMU, whose maps name the GIC,
//! which every guest has, or the SMMU and the ITS, which its copy drops), `cpu` in `cpu-map` (the CPUs are chosen by their own rule) and
//! any property whose format no binding fixes.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use dtoolkit::{Node, Property};

use super::problems::ReferenceProblem;
use super::tree::{HostTree, PhandleTarget};

/// A followed reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reference {
    pub property: String,
    pub target: usize,
    /// The entry has args whose count the target (its provider) says.
    pub has_args: bool,
}

/// How a property holds its phandles.
enum Format {
    Phandles,
    /// Each phandle is followed by as many cells as the provider's `cells` property
    /// says; `default` when the provider lacks it (`None`: it must have it).
    Specifiers {
        cells: &'static str,
        default: Option<u32>,
    },
}

const SPECIFIER_LISTS: [(&str, &str, Option<u32>); 19] = [
    ("clocks", "#clock-cells", None),
    ("assigned-clocks", "#clock-cells", None),
    ("assigned-clock-parents", "#clock-cells", None),
    ("resets", "#reset-cells", None),
    ("power-domains", "#power-domain-cells", None),
    ("phys", "#phy-cells", None),
    ("dmas", "#dma-cells", None),
    ("mboxes", "#mbox-cells", None),
    ("iommus", "#iommu-cells", None),
    ("interrupts-extended", "#interrupt-cells", None),
    ("gpios", "#gpio-cells", None),
    ("gpio", "#gpio-cells", None),
    ("pwms", "#pwm-cells", None),
    ("io-channels", "#io-channel-cells", None),
    ("thermal-sensors", "#thermal-sensor-cells", None),
    ("hwlocks", "#hwlock-cells", None),
    ("interconnects", "#interconnect-cells", None),
    ("access-controllers", "#access-controller-cells", None),
    ("msi-parent", "#msi-cells", Some(0)),
];

const PHANDLE_LISTS: [&str; 8] = [
    "interrupt-parent",
    "memory-region",
    "next-level-cache",
    "operating-points-v2",
    "cpu-idle-states",
    "nvmem-cells",
    "sram",
    "phy-handle",
];

/// Args cells above this are taken for a malformed provider rather than read.
const MAX_SPECIFIER_CELLS: u32 = 32;

fn format_of(name: &str) -> Option<Format> {
    if let Some(&(_, cells, default)) = SPECIFIER_LISTS.iter().find(|(n, _, _)| *n == name) {
        return Some(Format::Specifiers { cells, default });
    }
    if name == "sound-dai" {
        return Some(Format::Specifiers {
            cells: "#sound-dai-cells",
            default: Some(0),
        });
    }
    if (name.ends_with("-gpios") || name.ends_with("-gpio")) && name != "nr-gpios" {
        return Some(Format::Specifiers {
            cells: "#gpio-cells",
            default: None,
        });
    }
    let pinctrl_state = name
        .strip_prefix("pinctrl-")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if pinctrl_state || name.ends_with("-supply") || PHANDLE_LISTS.contains(&name) {
        return Some(Format::Phandles);
    }
    None
}

/// The nodes the node at `index` refers to, and the references that cannot be
/// followed. A target may repeat (once per entry).
pub(crate) fn references(
    tree: &HostTree<'_>,
    index: usize,
) -> (Vec<Reference>, Vec<ReferenceProblem>) {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    let Some(node) = tree.node(index) else {
        return (found, problems);
    };
    for property in node.properties() {
        let name = property.name();
        let Some(format) = format_of(name) else {
            continue;
        };
        let malformed = || ReferenceProblem::Malformed {
            property: name.to_string(),
        };
        let value = property.value();
        if value.len() % 4 != 0 {
            problems.push(malformed());
            continue;
        }
        let cells: Vec<u32> = value
            .chunks_exact(4)
            .filter_map(|c| <[u8; 4]>::try_from(c).ok())
            .map(u32::from_be_bytes)
            .collect();
        let mut rest = cells.as_slice();
        while let Some((&phandle, after)) = rest.split_first() {
            rest = after;
            if phandle == 0 {
                // An empty entry.
                continue;
            }
            let target = match tree.by_phandle(phandle) {
                Some(PhandleTarget::Node(target)) => target,
                Some(PhandleTarget::Ambiguous) | None => {
                    problems.push(ReferenceProblem::Dangling {
                        property: name.to_string(),
                        phandle,
                    });
                    match format {
                        Format::Phandles => continue,
                        // The entry's length is unknown without its provider.
                        Format::Specifiers { .. } => break,
                    }
                }
            };
            found.push(Reference {
                property: name.to_string(),
                target,
                has_args: matches!(format, Format::Specifiers { .. }),
            });
            if let Format::Specifiers { cells, default } = format {
                let Some(args) = provider_cells(tree, target, cells).or(default) else {
                    problems.push(malformed());
                    break;
                };
                let Some(after) = rest.get(args as usize..) else {
                    problems.push(malformed());
                    break;
                };
                rest = after;
            }
        }
    }
    (found, problems)
}

/// The provider's `#X-cells`, when it is one cell of a sane size.
fn provider_cells(tree: &HostTree<'_>, provider: usize, cells: &str) -> Option<u32> {
    let node = tree.node(provider)?;
    let property = node.property(cells)?;
    let value = <[u8; 4]>::try_from(property.value())
        .ok()
        .map(u32::from_be_bytes)?;
    (value <= MAX_SPECIFIER_CELLS).then_some(value)
}
