//! The boot summary: a readable block for people and `hyp-facts:` lines of `key=value`
//! pairs for scripts (scripts/run.sh, the QEMU tests). The keys are a stable interface.

use core::fmt::{self, Write};

use platform::info::{ModuleKind, PlatformInfo, ReservationSource};

use crate::cpu::features::CpuFeatures;

pub use hyp_abi::console::{CPU_PREFIX, FACTS_PREFIX};

/// The CPU part of the facts.
#[derive(Clone, Copy, Debug)]
pub struct CpuFacts {
    pub midr: u64,
    pub features: CpuFeatures,
}

fn module_kind_name(kind: ModuleKind) -> &'static str {
    match kind {
        ModuleKind::Kernel => "kernel",
        ModuleKind::Ramdisk => "ramdisk",
        ModuleKind::DeviceTree => "device-tree",
        ModuleKind::XsmPolicy => "xsm-policy",
        ModuleKind::Unspecified => "unspecified",
    }
}

/// Writes the `hyp-facts:` lines, one fact group per line, each ending in `\n`.
pub fn write_fact_lines(
    out: &mut impl Write,
    cpu: &CpuFacts,
    info: &PlatformInfo<'_>,
) -> fmt::Result {
    let f = &cpu.features;
    writeln!(
        out,
        "{FACTS_PREFIX} midr={:#x} bbm_level={} tlbi_range={} pa_bits={} vhe={} cpus={} ram_bytes={} banks={} reserved={} modules={}",
        cpu.midr,
        f.bbm_level,
        u8::from(f.tlbi_range),
        f.pa_bits,
        u8::from(f.vhe),
        info.cpus.len(),
        info.ram_bytes(),
        info.memory.len(),
        info.reserved.len(),
        info.modules.len(),
    )?;
    for (index, bank) in info.memory.iter().enumerate() {
        writeln!(
            out,
            "{FACTS_PREFIX} memory index={index} base={:#x} size={:#x}",
            bank.base, bank.size
        )?;
    }
    for reserved in &info.reserved {
        write!(
            out,
            "{FACTS_PREFIX} reserved base={:#x} size={:#x} source=",
            reserved.range.base, reserved.range.size
        )?;
        match reserved.source {
            ReservationSource::MemReserve => out.write_str("memreserve")?,
            ReservationSource::ReservedMemoryNode(name) => write!(out, "node:{name}")?,
        }
        writeln!(out, " no_map={}", u8::from(reserved.no_map))?;
    }
    for module in &info.modules {
        writeln!(
            out,
            "{FACTS_PREFIX} module kind={} base={:#x} size={:#x} name={}",
            module_kind_name(module.kind),
            module.range.base,
            module.range.size,
            module.name
        )?;
    }
    writeln!(
        out,
        "{FACTS_PREFIX} console=pl011 console_base={:#x} gicd={:#x} gic_maint_intid={} psci={} dtb_base={:#x} dtb_size={:#x}",
        info.console.regs.base,
        info.gic.distributor.base,
        info.gic.maintenance_intid.map_or(-1, i64::from),
        match info.psci.map(|p| p.conduit) {
            Some(platform::info::Conduit::Smc) => "smc",
            Some(platform::info::Conduit::Hvc) => "hvc",
            None => "none",
        },
        info.dtb.base,
        info.dtb.size,
    )
}

/// One CPU as it came up: what its EL2 runs with, read back from its own SCTLR_EL2, and
/// its own ID registers' view of the features the table code depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuOnline {
    /// Index in the device tree's `/cpus` order.
    pub index: usize,
    pub mpidr: u64,
    /// SCTLR_EL2 as this CPU reads it.
    pub sctlr_el2: u64,
    pub features: CpuFeatures,
}

impl CpuOnline {
    const SCTLR_M: u64 = 1 << 0;
    const SCTLR_C: u64 = 1 << 2;
    const SCTLR_I: u64 = 1 << 12;

    pub fn mmu_on(&self) -> bool {
        self.sctlr_el2 & Self::SCTLR_M != 0
    }

    pub fn dcache_on(&self) -> bool {
        self.sctlr_el2 & Self::SCTLR_C != 0
    }

    pub fn icache_on(&self) -> bool {
        self.sctlr_el2 & Self::SCTLR_I != 0
    }
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// The `hyp-cpu:` line scripts read, e.g.
/// `hyp-cpu: cpu=1 mpidr=0x1 mmu=on dcache=on icache=on bbm_level=2 tlbi_range=1`.
pub fn write_cpu_line(out: &mut impl Write, cpu: &CpuOnline) -> fmt::Result {
    writeln!(
        out,
        "{CPU_PREFIX} cpu={} mpidr={:#x} mmu={} dcache={} icache={} bbm_level={} tlbi_range={}",
        cpu.index,
        cpu.mpidr,
        on_off(cpu.mmu_on()),
        on_off(cpu.dcache_on()),
        on_off(cpu.icache_on()),
        cpu.features.bbm_level,
        u8::from(cpu.features.tlbi_range),
    )
}

/// Writes the human-readable summary (several lines, each ending in `\n`).
pub fn write_summary(out: &mut impl Write, cpu: &CpuFacts, info: &PlatformInfo<'_>) -> fmt::Result {
    let f = &cpu.features;
    let split = if f.has_bbml2() {
        "FEAT_BBM level 2: live block splits need no invalid step"
    } else {
        "no FEAT_BBML2: live block splits use break-before-make"
    };
    writeln!(
        out,
        "CPU: MIDR {:#x}, PA {} bits, BBM level {} ({split})",
        cpu.midr, f.pa_bits, f.bbm_level
    )?;
    writeln!(
        out,
        "     FEAT_TLBIRANGE {}, FEAT_VHE {}, {} CPU(s) in the device tree",
        if f.tlbi_range { "yes" } else { "no" },
        if f.vhe { "yes" } else { "no" },
        info.cpus.len()
    )?;
    writeln!(
        out,
        "RAM: {} MiB in {} bank(s)",
        info.ram_bytes() >> 20,
        info.memory.len()
    )?;
    for bank in &info.memory {
        writeln!(
            out,
            "     [{:#014x}, {:#014x}) {} MiB",
            bank.base,
            bank.end(),
            bank.size >> 20
        )?;
    }
    for reserved in &info.reserved {
        write!(
            out,
            "reserved: [{:#014x}, {:#014x}) ",
            reserved.range.base,
            reserved.range.end()
        )?;
        match reserved.source {
            ReservationSource::MemReserve => out.write_str("/memreserve/")?,
            ReservationSource::ReservedMemoryNode(name) => write!(out, "/reserved-memory/{name}")?,
        }
        writeln!(out, "{}", if reserved.no_map { " no-map" } else { "" })?;
    }
    for module in &info.modules {
        write!(
            out,
            "module: {} [{:#014x}, {:#014x}) {} KiB",
            module_kind_name(module.kind),
            module.range.base,
            module.range.end(),
            module.range.size >> 10
        )?;
        match module.bootargs {
            Some(args) => writeln!(out, ", bootargs \"{args}\"")?,
            None => writeln!(out)?,
        }
    }
    writeln!(
        out,
        "console: PL011 at {:#x} ({}); GICv3 distributor at {:#x}, {} redistributor region(s)",
        info.console.regs.base,
        info.console.path,
        info.gic.distributor.base,
        info.gic.redistributors.len()
    )?;
    writeln!(out, "command line: \"{}\"", info.bootargs.unwrap_or(""))
}

#[cfg(test)]
mod cpu_line_tests {
    use super::*;

    #[test]
    fn the_cpu_line_reads_the_cpus_own_sctlr() {
        let mut line = String::new();
        let cpu = CpuOnline {
            index: 3,
            mpidr: 0x103,
            sctlr_el2: 0x30c5_183d | (1 << 19),
            features: CpuFeatures {
                bbm_level: 2,
                tlbi_range: true,
                pa_bits: 48,
                vhe: true,
                xnx: false,
            },
        };
        write_cpu_line(&mut line, &cpu).unwrap();
        assert_eq!(
            line,
            "hyp-cpu: cpu=3 mpidr=0x103 mmu=on dcache=on icache=on bbm_level=2 tlbi_range=1\n"
        );
        line.clear();
        write_cpu_line(
            &mut line,
            &CpuOnline {
                sctlr_el2: 0x30c5_0838,
                ..cpu
            },
        )
        .unwrap();
        assert!(line.contains("mmu=off dcache=off icache=off"), "{line}");
    }
}
