//! Which boot modules are the guest's kernel and initrd, following Xen's multiboot
//! device-tree protocol (`docs/misc/arm/device-tree/booting.txt`).
//!
//! The platform parser lists every `multiboot,module` child of `/chosen` with the kind
//! its `compatible` names. Here we apply Xen's rules on top:
//! - `multiboot,kernel` and `multiboot,ramdisk` say what a module is;
//! - modules with no specific kind are guessed in DT order: the first is the kernel,
//!   the second the ramdisk (Xen's `kind_guess`), later ones are ignored. Xen would turn a
//!   second untyped module carrying the XSM magic into a policy; we have no XSM, so it is
//!   always the ramdisk here;
//! - device-tree and XSM-policy modules are not for the guest and are ignored;
//! - the kernel module's own `bootargs` are the guest's command line. `/chosen/bootargs`
//!   is the hypervisor's and is never handed to the guest.

use core::fmt;

use platform::info::{BootModule, ModuleKind, PhysRange};

/// The modules that make up the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestModules<'a> {
    pub kernel: BootModule<'a>,
    pub ramdisk: Option<BootModule<'a>>,
    /// The guest's command line: the kernel module's `bootargs` (`None`: the guest gets
    /// no `bootargs` and uses its built-in command line).
    pub bootargs: Option<&'a str>,
}

/// What the guest loader decided a module is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestModuleRole {
    Kernel,
    Ramdisk,
}

impl fmt::Display for GuestModuleRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Kernel => "kernel",
            Self::Ramdisk => "ramdisk",
        })
    }
}

/// Why the boot modules do not describe a guest.
///
/// Modules are named by their address range (the node name is `module@<base>`), so the
/// error owns no borrowed data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleError {
    /// No `multiboot,kernel` module and no untyped module to take as the kernel.
    NoKernel {
        /// How many modules there were (all of other kinds).
        module_count: usize,
    },
    /// Two modules were taken as the kernel (explicitly or by Xen's guess).
    TwoKernels { first: PhysRange, second: PhysRange },
    /// Two modules were taken as the ramdisk (explicitly or by Xen's guess).
    TwoRamdisks { first: PhysRange, second: PhysRange },
    /// The kernel and the ramdisk share bytes, so one would corrupt the other.
    Overlap {
        kernel: PhysRange,
        ramdisk: PhysRange,
    },
}

impl fmt::Display for ModuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoKernel { module_count } => write!(
                f,
                "no guest kernel: none of the {module_count} multiboot modules under /chosen \
                 is a \"multiboot,kernel\" or an untyped \"multiboot,module\""
            ),
            Self::TwoKernels { first, second } => write!(
                f,
                "two guest kernels: modules at {} and {} (only one \"multiboot,kernel\", or \
                 one first untyped module, is allowed)",
                RangeDisplay(*first),
                RangeDisplay(*second)
            ),
            Self::TwoRamdisks { first, second } => write!(
                f,
                "two guest ramdisks: modules at {} and {} (only one \"multiboot,ramdisk\", or \
                 one second untyped module, is allowed)",
                RangeDisplay(*first),
                RangeDisplay(*second)
            ),
            Self::Overlap { kernel, ramdisk } => write!(
                f,
                "the kernel module {} and the ramdisk module {} overlap",
                RangeDisplay(*kernel),
                RangeDisplay(*ramdisk)
            ),
        }
    }
}

/// Formats a range as `[0xbase, 0xend)`.
#[derive(Clone, Copy)]
pub(crate) struct RangeDisplay(pub PhysRange);

impl fmt::Display for RangeDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.0.base, self.0.end())
    }
}

/// Picks the guest's kernel, ramdisk and command line out of the boot modules (in DT
/// order), by Xen's rules (see the module docs).
///
/// # Errors
///
/// [`ModuleError::NoKernel`] when no module is or can be taken as the kernel,
/// [`ModuleError::TwoKernels`] / [`ModuleError::TwoRamdisks`] when a role is filled twice,
/// [`ModuleError::Overlap`] when the kernel and ramdisk share bytes.
pub fn select_modules<'a>(modules: &[BootModule<'a>]) -> Result<GuestModules<'a>, ModuleError> {
    let mut kernel: Option<BootModule<'a>> = None;
    let mut ramdisk: Option<BootModule<'a>> = None;
    let mut untyped_seen = 0usize;

    for module in modules {
        let role = match module.kind {
            ModuleKind::Kernel => Some(GuestModuleRole::Kernel),
            ModuleKind::Ramdisk => Some(GuestModuleRole::Ramdisk),
            ModuleKind::Unspecified => {
                untyped_seen += 1;
                match untyped_seen {
                    1 => Some(GuestModuleRole::Kernel),
                    2 => Some(GuestModuleRole::Ramdisk),
                    // Xen leaves later untyped modules unused.
                    _ => None,
                }
            }
            ModuleKind::DeviceTree | ModuleKind::XsmPolicy => None,
        };
        match role {
            Some(GuestModuleRole::Kernel) => fill(&mut kernel, *module, |first, second| {
                ModuleError::TwoKernels { first, second }
            })?,
            Some(GuestModuleRole::Ramdisk) => fill(&mut ramdisk, *module, |first, second| {
                ModuleError::TwoRamdisks { first, second }
            })?,
            None => {}
        }
    }

    let kernel = kernel.ok_or(ModuleError::NoKernel {
        module_count: modules.len(),
    })?;
    if let Some(ramdisk) = ramdisk
        && kernel.range.overlaps(&ramdisk.range)
    {
        return Err(ModuleError::Overlap {
            kernel: kernel.range,
            ramdisk: ramdisk.range,
        });
    }
    Ok(GuestModules {
        kernel,
        ramdisk,
        bootargs: kernel.bootargs,
    })
}

fn fill<'a>(
    slot: &mut Option<BootModule<'a>>,
    module: BootModule<'a>,
    duplicate: impl FnOnce(PhysRange, PhysRange) -> ModuleError,
) -> Result<(), ModuleError> {
    match slot {
        Some(first) => Err(duplicate(first.range, module.range)),
        None => {
            *slot = Some(module);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use proptest::prelude::*;

    fn module(kind: ModuleKind, base: u64, size: u64) -> BootModule<'static> {
        BootModule {
            kind,
            range: PhysRange::new(base, size).unwrap(),
            bootargs: None,
            name: "module",
        }
    }

    fn kernel_with_args(base: u64, args: &'static str) -> BootModule<'static> {
        BootModule {
            bootargs: Some(args),
            ..module(ModuleKind::Kernel, base, 0x1000)
        }
    }

    #[test]
    fn typed_kernel_and_ramdisk_in_any_order() {
        let ramdisk = module(ModuleKind::Ramdisk, 0x5800_0000, 0x10_0000);
        let kernel = kernel_with_args(0x5000_0000, "console=ttyAMA0 earlycon");
        // QEMU lists the last -device first; the order must not matter for typed modules.
        let chosen = select_modules(&[ramdisk, kernel]).unwrap();
        assert_eq!(chosen.kernel, kernel);
        assert_eq!(chosen.ramdisk, Some(ramdisk));
        assert_eq!(chosen.bootargs, Some("console=ttyAMA0 earlycon"));
    }

    #[test]
    fn kernel_only() {
        let kernel = kernel_with_args(0x5000_0000, "quiet");
        let chosen = select_modules(&[kernel]).unwrap();
        assert_eq!(chosen.ramdisk, None);
        assert_eq!(chosen.bootargs, Some("quiet"));
    }

    #[test]
    fn kernel_without_bootargs_gives_none() {
        let chosen = select_modules(&[module(ModuleKind::Kernel, 0x5000_0000, 0x1000)]).unwrap();
        assert_eq!(chosen.bootargs, None);
    }

    #[test]
    fn untyped_modules_follow_xens_guess() {
        let first = module(ModuleKind::Unspecified, 0x5000_0000, 0x1000);
        let second = module(ModuleKind::Unspecified, 0x5800_0000, 0x1000);
        let third = module(ModuleKind::Unspecified, 0x6000_0000, 0x1000);
        let chosen = select_modules(&[first, second, third]).unwrap();
        assert_eq!(chosen.kernel, first);
        assert_eq!(chosen.ramdisk, Some(second));
    }

    #[test]
    fn other_kinds_are_ignored_and_do_not_count_as_untyped() {
        let dt = module(ModuleKind::DeviceTree, 0x4000_0000, 0x1000);
        let xsm = module(ModuleKind::XsmPolicy, 0x4100_0000, 0x1000);
        let untyped = module(ModuleKind::Unspecified, 0x5000_0000, 0x1000);
        let chosen = select_modules(&[dt, xsm, untyped]).unwrap();
        assert_eq!(chosen.kernel, untyped);
        assert_eq!(chosen.ramdisk, None);
    }

    #[test]
    fn typed_ramdisk_with_untyped_kernel() {
        let untyped = module(ModuleKind::Unspecified, 0x5000_0000, 0x1000);
        let ramdisk = module(ModuleKind::Ramdisk, 0x5800_0000, 0x1000);
        let chosen = select_modules(&[ramdisk, untyped]).unwrap();
        assert_eq!(chosen.kernel, untyped);
        assert_eq!(chosen.ramdisk, Some(ramdisk));
    }

    #[test]
    fn no_modules_is_no_kernel() {
        let err = select_modules(&[]).unwrap_err();
        assert_eq!(err, ModuleError::NoKernel { module_count: 0 });
        assert!(err.to_string().contains("none of the 0"));
    }

    #[test]
    fn ramdisk_alone_is_no_kernel() {
        let err = select_modules(&[module(ModuleKind::Ramdisk, 0x5800_0000, 0x1000)]).unwrap_err();
        assert_eq!(err, ModuleError::NoKernel { module_count: 1 });
    }

    #[test]
    fn two_typed_kernels() {
        let a = module(ModuleKind::Kernel, 0x5000_0000, 0x1000);
        let b = module(ModuleKind::Kernel, 0x6000_0000, 0x1000);
        let err = select_modules(&[a, b]).unwrap_err();
        assert_eq!(
            err,
            ModuleError::TwoKernels {
                first: a.range,
                second: b.range
            }
        );
        let text = err.to_string();
        assert!(
            text.contains("0x50000000") && text.contains("0x60000000"),
            "{text}"
        );
    }

    #[test]
    fn typed_kernel_plus_first_untyped_is_two_kernels() {
        // Xen guesses the first untyped module is a kernel even when a typed one exists.
        let typed = module(ModuleKind::Kernel, 0x5000_0000, 0x1000);
        let untyped = module(ModuleKind::Unspecified, 0x6000_0000, 0x1000);
        assert!(matches!(
            select_modules(&[typed, untyped]),
            Err(ModuleError::TwoKernels { .. })
        ));
    }

    #[test]
    fn two_ramdisks() {
        let kernel = module(ModuleKind::Kernel, 0x5000_0000, 0x1000);
        let a = module(ModuleKind::Ramdisk, 0x5800_0000, 0x1000);
        let b = module(ModuleKind::Ramdisk, 0x5900_0000, 0x1000);
        let err = select_modules(&[kernel, a, b]).unwrap_err();
        assert_eq!(
            err,
            ModuleError::TwoRamdisks {
                first: a.range,
                second: b.range
            }
        );
        assert!(err.to_string().contains("two guest ramdisks"));
    }

    #[test]
    fn overlapping_kernel_and_ramdisk() {
        let kernel = module(ModuleKind::Kernel, 0x5000_0000, 0x10_0000);
        let ramdisk = module(ModuleKind::Ramdisk, 0x500f_f000, 0x1000);
        let err = select_modules(&[kernel, ramdisk]).unwrap_err();
        assert_eq!(
            err,
            ModuleError::Overlap {
                kernel: kernel.range,
                ramdisk: ramdisk.range
            }
        );
        assert!(
            err.to_string()
                .contains("[0x50000000, 0x50100000) and the ramdisk module [0x500ff000")
        );
    }

    #[test]
    fn adjacent_kernel_and_ramdisk_are_fine() {
        let kernel = module(ModuleKind::Kernel, 0x5000_0000, 0x10_0000);
        let ramdisk = module(ModuleKind::Ramdisk, 0x5010_0000, 0x1000);
        assert!(select_modules(&[kernel, ramdisk]).is_ok());
    }

    fn any_kind() -> impl Strategy<Value = ModuleKind> {
        prop_oneof![
            Just(ModuleKind::Kernel),
            Just(ModuleKind::Ramdisk),
            Just(ModuleKind::DeviceTree),
            Just(ModuleKind::XsmPolicy),
            Just(ModuleKind::Unspecified),
        ]
    }

    proptest! {
        #[test]
        fn any_module_list_gives_a_consistent_answer(
            specs in proptest::collection::vec((any_kind(), any::<u64>(), 1u64..1 << 40), 0..8)
        ) {
            let modules: alloc::vec::Vec<_> = specs
                .iter()
                .filter_map(|&(kind, base, size)| {
                    PhysRange::new(base, size).map(|range| BootModule {
                        kind,
                        range,
                        bootargs: None,
                        name: "m",
                    })
                })
                .collect();
            match select_modules(&modules) {
                Ok(chosen) => {
                    prop_assert!(modules.contains(&chosen.kernel));
                    if let Some(ramdisk) = chosen.ramdisk {
                        prop_assert!(!ramdisk.range.overlaps(&chosen.kernel.range));
                    }
                }
                Err(err) => prop_assert!(!err.to_string().is_empty()),
            }
        }
    }
}
