//! The whole guest-loading decision in one call: which modules, is the kernel bootable,
//! where everything goes, which devices the guest gets, and the guest's DTB. Each step
//! is also public on its own ([`crate::modules`], [`crate::image`],
//! [`crate::placement`], [`crate::devices`], [`crate::guest_dt`]).

use alloc::vec::Vec;
use core::fmt;

use platform::info::{BootModule, Conduit, ModuleKind, PhysRange};

use crate::devices::{DeviceAssignment, DeviceError, DeviceRequest, assign_devices};
use crate::domains::{DomainSpec, KernelExtentError, check_kernel_extent};
use crate::guest_dt::{GuestDtError, GuestDtSpec, build_guest_dtb_for, check_spec};
use crate::image::{ImageError, ImageHeader};
use crate::modules::{GuestModules, ModuleError, RangeDisplay, select_modules};
use crate::placement::{ModuleSources, Placement, PlacementError, PlacementRequest, place_guest};

/// What the hypervisor decides about the guest.
#[derive(Clone, Copy, Debug)]
pub struct GuestConfig<'c> {
    /// Guest RAM as the guest addresses it: for the single guest RAM minus everything
    /// the hypervisor keeps (IPA = PA); for a dom0less guest its own IPA range(s).
    pub guest_ram: &'c [PhysRange],
    /// The host's reserved ranges (`PlatformInfo::reserved`); placement avoids the parts
    /// inside guest RAM.
    pub reserved: &'c [PhysRange],
    /// Ranges the guest must never see: the hypervisor's memory, a crash region, the
    /// host DTB. None may overlap `guest_ram`.
    pub hidden: &'c [PhysRange],
    pub vcpus: usize,
    pub psci_conduit: Conduit,
    pub kaslr_seed: Option<u64>,
    pub rng_seed: Option<&'c [u8]>,
}

/// The host devices the hypervisor asks for, besides the emulated ones and those
/// marked `xen,passthrough` (see [`crate::devices`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct DeviceOptions<'d> {
    /// The hypervisor's `passthrough=` paths
    /// (`platform::bootargs::ParsedArgs::passthrough`).
    pub passthrough_paths: &'d [&'d str],
    /// The phandles of the SMMUs the hypervisor drives
    /// ([`DeviceRequest::smmus_driven`]): PCI host bridges behind them may be given.
    pub smmus_driven: &'d [u32],
}

/// Everything needed to start the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestPlan<'m> {
    pub modules: GuestModules<'m>,
    pub image: ImageHeader,
    /// Copies to perform, the entry point and the DTB address (x0).
    pub placement: Placement,
    /// The guest DTB, to write at `placement.dtb.base` after the copies.
    pub dtb: Vec<u8>,
    /// The devices the DTB names: what to emulate, what to map in stage 2
    /// ([`DeviceAssignment::passthrough_regions`]) and which SPIs to route.
    pub devices: DeviceAssignment,
}

/// Which step failed.
#[derive(Debug, PartialEq, Eq)]
pub enum LoadError {
    Modules(ModuleError),
    Image {
        kernel: PhysRange,
        error: ImageError,
    },
    /// A dom0less guest's kernel module is refused (`domain`: its node).
    KernelExtent {
        domain: alloc::string::String,
        error: KernelExtentError,
    },
    Placement(PlacementError),
    Devices(DeviceError),
    GuestDt(GuestDtError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Modules(error) => write!(f, "boot modules: {error}"),
            Self::Image { kernel, error } => {
                write!(f, "kernel module at {}: {error}", RangeDisplay(*kernel))
            }
            Self::KernelExtent { domain, error } => write!(f, "{domain}: {error}"),
            Self::Placement(error) => write!(f, "guest placement: {error}"),
            Self::Devices(error) => write!(f, "guest devices: {error}"),
            Self::GuestDt(error) => write!(f, "guest device tree: {error}"),
        }
    }
}

/// Plans the guest: selects the modules, checks the kernel header, places the pieces in
/// guest RAM and builds the DTB that names them.
///
/// `read_kernel_head` gives the first bytes (at least 64; a page is plenty) of the
/// kernel module's range; the file size is the range's size.
///
/// The hypervisor then performs `placement.copies` in order (memmove), writes `dtb` at
/// `placement.dtb.base`, cleans the written ranges to PoC and enters the guest at
/// `placement.entry` with x0 = `placement.dtb.base`, x1 = x2 = x3 = 0.
///
/// The devices are those of [`plan_guest_with_passthrough`] with no `passthrough=`
/// paths: the emulated GIC and PL011, and the host nodes marked `xen,passthrough`.
///
/// # Errors
///
/// [`LoadError::Modules`], [`LoadError::Image`], [`LoadError::Placement`],
/// [`LoadError::Devices`] or [`LoadError::GuestDt`], wrapping the failing step's error.
pub fn plan_guest<'m, 'h>(
    modules: &[BootModule<'m>],
    host_dtb: &[u8],
    config: &GuestConfig<'_>,
    read_kernel_head: impl FnOnce(PhysRange) -> &'h [u8],
) -> Result<GuestPlan<'m>, LoadError> {
    plan_guest_with_passthrough(modules, host_dtb, config, &[], read_kernel_head)
}

/// [`plan_guest`], also giving the guest the host nodes `passthrough_paths` names (the
/// hypervisor's `passthrough=` option, `platform::bootargs::ParsedArgs::passthrough`).
///
/// # Errors
///
/// As [`plan_guest`]; a path that names no node is [`LoadError::Devices`] (a device
/// that exists but cannot be given is not an error: it is in
/// [`GuestPlan::devices`]' `refused`).
pub fn plan_guest_with_passthrough<'m, 'h>(
    modules: &[BootModule<'m>],
    host_dtb: &[u8],
    config: &GuestConfig<'_>,
    passthrough_paths: &[&str],
    read_kernel_head: impl FnOnce(PhysRange) -> &'h [u8],
) -> Result<GuestPlan<'m>, LoadError> {
    let devices = DeviceOptions {
        passthrough_paths,
        smmus_driven: &[],
    };
    plan_guest_with_devices(modules, host_dtb, config, &devices, read_kernel_head)
}

/// [`plan_guest_with_passthrough`] with every device option: also the PCI host bridges
/// behind the SMMUs `devices.smmus_driven` names, when asked for (their StreamIDs are
/// in [`GuestPlan::devices`]' [`DeviceAssignment::streams`]).
///
/// # Errors
///
/// As [`plan_guest_with_passthrough`].
pub fn plan_guest_with_devices<'m, 'h>(
    modules: &[BootModule<'m>],
    host_dtb: &[u8],
    config: &GuestConfig<'_>,
    devices: &DeviceOptions<'_>,
    read_kernel_head: impl FnOnce(PhysRange) -> &'h [u8],
) -> Result<GuestPlan<'m>, LoadError> {
    let modules = select_modules(modules).map_err(LoadError::Modules)?;
    let kernel = modules.kernel.range;
    let image = ImageHeader::parse_with_file_size(read_kernel_head(kernel), kernel.size)
        .map_err(|error| LoadError::Image { kernel, error })?;
    let request = DeviceRequest {
        vcpus: config.vcpus,
        guest_ram: config.guest_ram,
        hidden: config.hidden,
        passthrough_paths: devices.passthrough_paths,
        smmus_driven: devices.smmus_driven,
        marked_passthrough: true,
    };
    finish_plan(
        modules,
        image,
        ModuleSources::InGuestSpace,
        host_dtb,
        config,
        &request,
    )
}

/// Plans one guest of a dom0less description ([`crate::domains`]). Its RAM,
/// `config.guest_ram`, is in its own IPA space and backed by memory the modules are not
/// in: every module is copied ([`ModuleCopy`]'s `src` is the module's host address,
/// `dst` a guest address the hypervisor translates). Its devices are the emulated GIC
/// and PL011 alone: a host node marked `xen,passthrough` is no more one guest's than
/// another's. The kernel module must be as long as its own PE/COFF headers say.
///
/// # Errors
///
/// As [`plan_guest_with_devices`]; [`LoadError::KernelExtent`] for a truncated kernel.
pub fn plan_domain<'d, 'h>(
    domain: &'d DomainSpec,
    host_dtb: &[u8],
    config: &GuestConfig<'_>,
    read_kernel_head: impl FnOnce(PhysRange) -> &'h [u8],
) -> Result<GuestPlan<'d>, LoadError> {
    let kernel = domain.kernel;
    let image = check_kernel_extent(read_kernel_head(kernel), kernel).map_err(|error| {
        LoadError::KernelExtent {
            domain: domain.path.clone(),
            error,
        }
    })?;
    let modules = GuestModules {
        kernel: BootModule {
            kind: ModuleKind::Kernel,
            range: kernel,
            bootargs: domain.bootargs.as_deref(),
            name: &domain.path,
        },
        ramdisk: domain.ramdisk.map(|range| BootModule {
            kind: ModuleKind::Ramdisk,
            range,
            bootargs: None,
            name: &domain.path,
        }),
        bootargs: domain.bootargs.as_deref(),
    };
    let request = DeviceRequest {
        vcpus: config.vcpus,
        guest_ram: config.guest_ram,
        hidden: config.hidden,
        passthrough_paths: &[],
        smmus_driven: &[],
        marked_passthrough: false,
    };
    finish_plan(
        modules,
        image,
        ModuleSources::Elsewhere,
        host_dtb,
        config,
        &request,
    )
}

/// Placement, devices and DTB for checked modules.
fn finish_plan<'m>(
    modules: GuestModules<'m>,
    image: ImageHeader,
    sources: ModuleSources,
    host_dtb: &[u8],
    config: &GuestConfig<'_>,
    device_request: &DeviceRequest<'_>,
) -> Result<GuestPlan<'m>, LoadError> {
    let kernel = modules.kernel.range;
    let reserved_in_guest_ram: Vec<PhysRange> = config
        .reserved
        .iter()
        .flat_map(|reserved| {
            config
                .guest_ram
                .iter()
                .filter_map(move |ram| clip(reserved, ram))
        })
        .collect();
    let placement = place_guest(&PlacementRequest {
        guest_ram: config.guest_ram,
        reserved: &reserved_in_guest_ram,
        kernel,
        image,
        initrd: modules.ramdisk.map(|ramdisk| ramdisk.range),
        sources,
    })
    .map_err(LoadError::Placement)?;

    let spec = GuestDtSpec {
        memory: config.guest_ram,
        bootargs: modules.bootargs,
        initrd: placement.initrd,
        vcpus: config.vcpus,
        psci_conduit: config.psci_conduit,
        hidden: config.hidden,
        kaslr_seed: config.kaslr_seed,
        rng_seed: config.rng_seed,
    };
    // The spec's own errors (RAM, initrd, bootargs, vCPUs) first; the DTB is then
    // written from the assignment it is given.
    check_spec(&spec).map_err(LoadError::GuestDt)?;
    let devices = assign_devices(host_dtb, device_request).map_err(LoadError::Devices)?;
    let dtb = build_guest_dtb_for(host_dtb, &spec, &devices).map_err(LoadError::GuestDt)?;

    Ok(GuestPlan {
        modules,
        image,
        placement,
        dtb,
        devices,
    })
}

fn clip(a: &PhysRange, b: &PhysRange) -> Option<PhysRange> {
    let base = a.base.max(b.base);
    PhysRange::new(base, a.end().min(b.end()).checked_sub(base)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use platform::info::ModuleKind;

    const HOST_DTB: &[u8] = include_bytes!("../tests/fixtures/qemu-virt-smp2-2g-kernel-initrd.dtb");
    const DEBIAN_HEAD: &[u8] = include_bytes!("../tests/fixtures/debian-6.12-arm64-Image.head");
    const DEBIAN_SIZE: u64 = 34_834_368;
    const HIDDEN: [PhysRange; 1] = [PhysRange {
        base: 0x4000_0000,
        size: 0x200_0000,
    }];
    const GUEST_RAM: [PhysRange; 1] = [PhysRange {
        base: 0x4200_0000,
        size: 0x7e00_0000,
    }];

    fn range(base: u64, size: u64) -> PhysRange {
        PhysRange::new(base, size).unwrap()
    }

    /// The modules as the platform parser reports the fixture's (with the real
    /// kernel's size).
    fn qemu_modules(kernel_base: u64) -> [BootModule<'static>; 2] {
        [
            BootModule {
                kind: ModuleKind::Ramdisk,
                range: range(0x5800_0000, 0x10_0000),
                bootargs: None,
                name: "module@0x58000000",
            },
            BootModule {
                kind: ModuleKind::Kernel,
                range: range(kernel_base, DEBIAN_SIZE),
                bootargs: Some("console=ttyAMA0 earlycon"),
                name: "module@0x50000000",
            },
        ]
    }

    fn config() -> GuestConfig<'static> {
        GuestConfig {
            guest_ram: &GUEST_RAM,
            reserved: &[],
            hidden: &HIDDEN,
            vcpus: 2,
            psci_conduit: Conduit::Hvc,
            kaslr_seed: None,
            rng_seed: None,
        }
    }

    #[test]
    fn qemu_guest_loader_layout_boots_in_place() {
        let mut asked = None;
        let plan = plan_guest(&qemu_modules(0x5000_0000), HOST_DTB, &config(), |range| {
            asked = Some(range);
            DEBIAN_HEAD
        })
        .unwrap();
        assert_eq!(asked, Some(range(0x5000_0000, DEBIAN_SIZE)));
        assert_eq!(plan.modules.bootargs, Some("console=ttyAMA0 earlycon"));
        assert_eq!(plan.placement.entry, 0x5000_0000);
        assert!(plan.placement.copies.is_empty());
        assert_eq!(plan.placement.dtb.base, 0x4200_0000);
        assert!(plan.dtb.len() as u64 <= plan.placement.dtb.size);

        let dtb = fdt::Fdt::new(&plan.dtb).unwrap();
        let chosen = dtb.find_node("/chosen").unwrap();
        assert_eq!(
            chosen.property("bootargs").unwrap().as_str(),
            Some("console=ttyAMA0 earlycon")
        );
        assert_eq!(
            chosen.property("linux,initrd-start").unwrap().as_usize(),
            Some(0x5800_0000)
        );
        assert_eq!(
            chosen.property("linux,initrd-end").unwrap().as_usize(),
            Some(0x5810_0000)
        );
    }

    #[test]
    fn reserved_memory_in_guest_ram_steers_placement() {
        // A reservation over the kernel's place forces a copy; the part outside guest RAM
        // (in hidden memory) is ignored.
        let reserved = [range(0x41f0_0000, 0x20_0000), range(0x5000_0000, 0x1000)];
        let config = GuestConfig {
            reserved: &reserved,
            ..config()
        };
        let plan = plan_guest(&qemu_modules(0x5000_0000), HOST_DTB, &config, |_| {
            DEBIAN_HEAD
        })
        .unwrap();
        assert_eq!(plan.placement.entry, 0x4220_0000);
        assert_eq!(plan.placement.copies.len(), 1);
        assert_eq!(plan.placement.dtb.base, 0x4460_0000);
    }

    #[test]
    fn moved_initrd_is_what_the_dtb_names() {
        let mut modules = qemu_modules(0x5000_0000);
        modules[0].range = range(0x4100_0000, 0x10_0000); // in hidden memory
        let plan = plan_guest(&modules, HOST_DTB, &config(), |_| DEBIAN_HEAD).unwrap();
        let initrd = plan.placement.initrd.unwrap();
        assert_ne!(initrd.base, 0x4100_0000);
        let dtb = fdt::Fdt::new(&plan.dtb).unwrap();
        let chosen = dtb.find_node("/chosen").unwrap();
        assert_eq!(
            chosen.property("linux,initrd-start").unwrap().as_usize(),
            Some(initrd.base as usize)
        );
    }

    #[test]
    fn the_plan_carries_the_devices_its_dtb_names() {
        let modules = qemu_modules(0x5000_0000);
        let plan = plan_guest(&modules, HOST_DTB, &config(), |_| DEBIAN_HEAD).unwrap();
        assert_eq!(plan.devices.emulated.len(), 2);
        assert_eq!(plan.devices.passthrough_regions(), []);
        assert_eq!(
            crate::passthrough::passthrough_regions(&plan.dtb).unwrap(),
            []
        );

        let plan = plan_guest_with_passthrough(
            &modules,
            HOST_DTB,
            &config(),
            &["/pl031@9010000", "/virtio_mmio@a000000"],
            |_| DEBIAN_HEAD,
        )
        .unwrap();
        assert_eq!(
            plan.devices.passthrough_regions(),
            [range(0x901_0000, 0x1000)]
        );
        assert_eq!(plan.devices.passthrough[0].intids, [34]);
        assert_eq!(plan.devices.refused[0].path, "/virtio_mmio@a000000");
        assert_eq!(
            crate::passthrough::passthrough_regions(&plan.dtb).unwrap(),
            plan.devices.passthrough_regions()
        );
        let dtb = fdt::Fdt::new(&plan.dtb).unwrap();
        assert!(dtb.find_node("/pl031@9010000").is_some());
        assert!(dtb.find_node("/virtio_mmio@a000000").is_none());

        let err =
            plan_guest_with_passthrough(&modules, HOST_DTB, &config(), &["/nope"], |_| DEBIAN_HEAD)
                .unwrap_err();
        assert_eq!(
            err,
            LoadError::Devices(DeviceError::PassthroughPathNotFound {
                path: "/nope".to_string()
            })
        );
        assert!(
            err.to_string()
                .starts_with("guest devices: passthrough=/nope")
        );
    }

    #[test]
    fn each_step_reports_its_error() {
        let err = plan_guest(&[], HOST_DTB, &config(), |_| DEBIAN_HEAD).unwrap_err();
        assert_eq!(
            err,
            LoadError::Modules(ModuleError::NoKernel { module_count: 0 })
        );
        assert!(err.to_string().starts_with("boot modules: no guest kernel"));

        let err = plan_guest(&qemu_modules(0x5000_0000), HOST_DTB, &config(), |_| {
            &[0x1f, 0x8b, 8, 0]
        })
        .unwrap_err();
        assert!(matches!(err, LoadError::Image { .. }));
        assert!(
            err.to_string()
                .starts_with("kernel module at [0x50000000, 0x521387c0): kernel module is gzip"),
            "{err}"
        );

        let tiny = [range(0x4200_0000, 0x100_0000)];
        let config_tiny = GuestConfig {
            guest_ram: &tiny,
            ..config()
        };
        let err = plan_guest(&qemu_modules(0x5000_0000), HOST_DTB, &config_tiny, |_| {
            DEBIAN_HEAD
        })
        .unwrap_err();
        assert!(matches!(
            err,
            LoadError::Placement(PlacementError::KernelDoesNotFit { .. })
        ));
        assert!(
            err.to_string()
                .starts_with("guest placement: kernel does not fit")
        );

        let config_cpus = GuestConfig {
            vcpus: 9,
            ..config()
        };
        let err = plan_guest(&qemu_modules(0x5000_0000), HOST_DTB, &config_cpus, |_| {
            DEBIAN_HEAD
        })
        .unwrap_err();
        assert!(matches!(
            err,
            LoadError::GuestDt(GuestDtError::TooManyVcpus { .. })
        ));
        assert!(err.to_string().starts_with("guest device tree: 9 vCPUs"));
    }

    /// An EFI-stub Image's head: image_size 1 MiB, a PE/COFF header at 0x40 whose one
    /// section ends at 0x3000 (the file's extent).
    const EFI_FILE_SIZE: u64 = 0x3000;
    const EFI_HEAD: [u8; 0x200] = {
        let mut head = [0u8; 0x200];
        head[0] = b'M';
        head[1] = b'Z';
        head[0x12] = 0x10; // image_size 0x10_0000
        head[0x18] = 0xa; // flags: LE, 4K pages, anywhere
        head[0x38] = b'A';
        head[0x39] = b'R';
        head[0x3a] = b'M';
        head[0x3b] = 0x64;
        head[0x3c] = 0x40; // PE header offset
        head[0x40] = b'P';
        head[0x41] = b'E';
        head[0x46] = 1; // one section, no optional header
        let section = 0x44 + 20;
        head[section + 17] = 0x20; // raw size 0x2000
        head[section + 21] = 0x10; // raw data at 0x1000
        head
    };

    fn domain(kernel_base: u64, kernel_size: u64) -> DomainSpec {
        DomainSpec {
            name: "domU2".into(),
            path: "/chosen/domU2".into(),
            memory_bytes: 512 << 20,
            vcpus: 2,
            vpl011: true,
            kernel: range(kernel_base, kernel_size),
            ramdisk: Some(range(0x1_2000_0000, 0x10_0000)),
            device_tree: None,
            bootargs: Some("console=ttyAMA0".into()),
            direct_map: false,
            enhanced: None,
            static_mem: alloc::vec::Vec::new(),
        }
    }

    #[test]
    fn a_domain_copies_every_module_into_its_own_address_space() {
        // Guest RAM at IPA 0x4000_0000; the modules sit at host addresses that happen to
        // lie inside that IPA range too: they are still copied, and nothing avoids them.
        let domain = DomainSpec {
            ramdisk: Some(range(0x5800_0000, 0x10_0000)),
            ..domain(0x4000_0000, EFI_FILE_SIZE)
        };
        let ram = [range(0x4000_0000, 512 << 20)];
        let config = GuestConfig {
            guest_ram: &ram,
            hidden: &[],
            ..config()
        };
        let plan = plan_domain(&domain, HOST_DTB, &config, |_| &EFI_HEAD).unwrap();
        assert_eq!(plan.placement.entry, 0x4000_0000);
        let copies = &plan.placement.copies;
        assert_eq!(copies.len(), 2, "{copies:?}");
        assert_eq!((copies[0].src, copies[0].dst), (0x4000_0000, 0x4000_0000));
        let initrd = plan.placement.initrd.unwrap();
        assert_eq!((copies[1].src, copies[1].dst), (0x5800_0000, initrd.base));
        assert!(!initrd.overlaps(&plan.placement.kernel_footprint));
        assert_eq!(plan.modules.bootargs, Some("console=ttyAMA0"));

        let dtb = fdt::Fdt::new(&plan.dtb).unwrap();
        let memory: alloc::vec::Vec<_> = dtb.memory().regions().collect();
        assert_eq!(memory.len(), 1);
        assert_eq!(memory[0].starting_address as u64, 0x4000_0000);
        assert_eq!(memory[0].size, Some(512 << 20));
        assert_eq!(dtb.cpus().count(), 2);
    }

    #[test]
    fn a_domain_gets_no_marked_host_device() {
        // The fixture has no xen,passthrough node; the devices are the emulated ones.
        let ram = [range(0x4000_0000, 512 << 20)];
        let config = GuestConfig {
            guest_ram: &ram,
            hidden: &[],
            ..config()
        };
        let domain = domain(0x1_0000_0000, EFI_FILE_SIZE);
        let plan = plan_domain(&domain, HOST_DTB, &config, |_| &EFI_HEAD).unwrap();
        assert_eq!(plan.devices.emulated.len(), 2);
        assert_eq!(plan.devices.passthrough_regions(), []);
    }

    #[test]
    fn a_truncated_domain_kernel_is_refused_naming_the_domain() {
        let ram = [range(0x4000_0000, 512 << 20)];
        let config = GuestConfig {
            guest_ram: &ram,
            hidden: &[],
            ..config()
        };
        let short = domain(0x1_0000_0000, EFI_FILE_SIZE - 1);
        let error = plan_domain(&short, HOST_DTB, &config, |_| &EFI_HEAD).unwrap_err();
        assert!(matches!(error, LoadError::KernelExtent { .. }), "{error:?}");
        let text = error.to_string();
        assert!(
            text.contains("/chosen/domU2") && text.contains("truncated"),
            "{text}"
        );
    }
}
