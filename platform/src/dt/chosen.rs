//! `/chosen`: the hypervisor's command line, the console named by `stdout-path`, and the
//! boot modules QEMU's `guest-loader` (or a Xen-style bootloader) describes.

use arrayvec::ArrayVec;

use super::DtError;
use super::error::DtText;
use super::memory::range;
use super::node::Node;
use crate::info::{BootModule, Console, ConsoleKind, MAX_MODULES, ModuleKind};

/// What `/chosen` says, before the console is resolved.
pub(super) struct Chosen<'dtb> {
    pub bootargs: Option<&'dtb str>,
    pub stdout_path: Option<&'dtb str>,
    pub modules: ArrayVec<BootModule<'dtb>, MAX_MODULES>,
}

/// Reads `bootargs`, `stdout-path` and the module children of `/chosen`.
pub(super) fn read_chosen<'dtb>(chosen: &Node<'_, '_, 'dtb>) -> Result<Chosen<'dtb>, DtError> {
    let mut modules = ArrayVec::new();
    for child in chosen.children() {
        let child = child?;
        if let Some(kind) = module_kind(&child) {
            let module = read_module(&child, kind)?;
            modules.try_push(module).map_err(|_| DtError::TooMany {
                what: "boot modules (multiboot,module)",
                limit: MAX_MODULES,
            })?;
        }
    }
    Ok(Chosen {
        bootargs: chosen.str_property("bootargs")?,
        stdout_path: chosen.str_property("stdout-path")?,
        modules,
    })
}

/// The kind of a module node, or `None` if the node is not a module. The multiboot
/// protocol (Xen's docs/misc/arm/device-tree/booting.txt) marks modules with
/// `multiboot,module` (Xen 4.4: `xen,multiboot-module`) plus an optional specific kind.
fn module_kind(node: &Node<'_, '_, '_>) -> Option<ModuleKind> {
    let mut is_module = false;
    let mut kind = ModuleKind::Unspecified;
    for compatible in node.compatibles() {
        let specific = match compatible {
            b"multiboot,module" | b"xen,multiboot-module" => {
                is_module = true;
                continue;
            }
            b"multiboot,kernel" | b"xen,linux-zimage" => ModuleKind::Kernel,
            b"multiboot,ramdisk" | b"xen,linux-initrd" => ModuleKind::Ramdisk,
            b"multiboot,device-tree" => ModuleKind::DeviceTree,
            b"xen,xsm-policy" => ModuleKind::XsmPolicy,
            _ => continue,
        };
        // The first specific compatible decides, as the most specific one comes first.
        if kind == ModuleKind::Unspecified {
            kind = specific;
        }
    }
    is_module.then_some(kind)
}

fn read_module<'dtb>(
    node: &Node<'_, '_, 'dtb>,
    kind: ModuleKind,
) -> Result<BootModule<'dtb>, DtError> {
    // `reg` is a physical address by the multiboot convention, although /chosen has
    // no `ranges`; its cells are inherited (see `Node::child_cells`).
    let mut reg = node.reg()?.ok_or_else(|| node.missing("reg"))?;
    let (Some((base, size)), None) = (reg.next(), reg.next()) else {
        return Err(node.malformed("reg", "a module needs exactly one (address, size) entry"));
    };
    Ok(BootModule {
        kind,
        range: range(node.path(), base, size)?,
        bootargs: node.str_property("bootargs")?,
        name: node.name(),
    })
}

/// Resolves `stdout-path` (`/path`, `alias`, `alias/sub/path`, each with optional
/// `:options`) to its console.
///
/// # Errors
/// [`DtError::StdoutPathUnresolvable`] when no node is found, and the errors of
/// [`console_at`] for the node found.
pub(super) fn resolve_console<'dtb>(
    root: &Node<'_, '_, 'dtb>,
    stdout_path: &'dtb str,
) -> Result<Console<'dtb>, DtError> {
    let unresolvable = || DtError::StdoutPathUnresolvable {
        stdout_path: DtText::new(stdout_path),
    };
    // Linux (of_find_node_opts_by_path): options start at the first ':'.
    let (path, options) = stdout_path.split_once(':').unwrap_or((stdout_path, ""));
    let baud = leading_number(options);
    let (base, sub_path, console_path) = if path.starts_with('/') {
        (path, "", path)
    } else {
        let (alias, sub_path) = path.split_once('/').unwrap_or((path, ""));
        let target = alias_target(root, alias)?.ok_or_else(unresolvable)?;
        let console_path = if sub_path.is_empty() { target } else { path };
        (target, sub_path, console_path)
    };
    root.with_node_at(base, &mut |base_node| {
        base_node.with_node_at(sub_path, &mut |node| console_at(node, console_path, baud))
    })?
    .flatten()
    .ok_or_else(unresolvable)
}

/// The path an `/aliases` property names. Only absolute paths count, so an alias can
/// never lead to another alias (or to itself).
fn alias_target<'dtb>(
    root: &Node<'_, '_, 'dtb>,
    alias: &str,
) -> Result<Option<&'dtb str>, DtError> {
    if alias.is_empty() {
        return Ok(None);
    }
    let target = root.with_node_at("/aliases", &mut |aliases| {
        Ok(aliases
            .property(alias)
            .and_then(super::bytes::value_str)
            .filter(|target| target.starts_with('/')))
    })?;
    Ok(target.flatten())
}

/// The console at `node`, which must be an `arm,pl011` with a `reg`.
///
/// # Errors
/// [`DtError::ConsoleUnsupported`], and range errors for its `reg`.
pub(super) fn console_at<'dtb>(
    node: &Node<'_, '_, 'dtb>,
    path: &'dtb str,
    baud: Option<u32>,
) -> Result<Console<'dtb>, DtError> {
    let unsupported = |reason| DtError::ConsoleUnsupported {
        node: node.path(),
        reason,
    };
    if !node.is_compatible("arm,pl011") {
        return Err(unsupported(
            "not compatible with arm,pl011 (the only console driver)",
        ));
    }
    let (base, size) = node
        .cpu_reg()?
        .and_then(|mut reg| reg.next())
        .ok_or_else(|| unsupported("no reg"))?;
    Ok(Console {
        kind: ConsoleKind::Pl011,
        regs: range(node.path(), base, size)?,
        path,
        baud,
        intid: super::interrupts::first_interrupt(node),
    })
}

/// The decimal number at the start of `text` (`115200n8` gives 115200), if any.
fn leading_number(text: &str) -> Option<u32> {
    let digits = text.len() - text.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    text.get(..digits)?.parse().ok()
}
