//! The console lines the hypervisor prints for scripts and tests, and how to read them.
//!
//! Grammar (every line the hypervisor writes without a timestamp):
//!
//! ```text
//! line    = prefix *( " " item )            ; e.g. "map-stats: table=el2 leaves_2m=3"
//! prefix  = "hyp-facts:" | "hyp-cpu:" | "ptdump:" | "map-stats:" | "heap-stats:"
//!         | "foreign-access:" | "hyp-exits:" | "hyp-exit:" | "guest-devices:"
//!         | "vgic-stats:"
//! item    = key "=" value | word             ; neither holds whitespace
//! outcome = "hyp-exit: success" | "hyp-exit: failure: " reason
//! ```
//!
//! Every prefix is in [`LineKind::ALL`], which is what [`Line::parse`] and the guest
//! console's tagging (a guest's lines start with `(g`, which no prefix does) go by: a
//! prefix missing from it would be a line a guest could forge.
//!
//! A `word` is a bare token: a `hyp-facts:` line may start with one naming its group
//! ([`facts::MEMORY_LINE`], [`facts::RESERVED_LINE`], [`facts::MODULE_LINE`]), and a
//! `ptdump:` line ends with the memory type after `attrs=rwx`. Numbers are decimal, or
//! hexadecimal with `0x` ([`parse_number`]). The outcome line is the last line of a run
//! and its reason is free text, so it has its own parser ([`Outcome::parse`]).
//!
//! The keys in the submodules are the ones the hypervisor prints and the QEMU tests and
//! `scripts/` rely on: changing one is an interface change.

use core::fmt;
use core::str::SplitWhitespace;

pub const FACTS_PREFIX: &str = "hyp-facts:";
pub const CPU_PREFIX: &str = "hyp-cpu:";
pub const PTDUMP_PREFIX: &str = "ptdump:";
pub const MAP_STATS_PREFIX: &str = "map-stats:";
pub const HEAP_STATS_PREFIX: &str = "heap-stats:";
pub const FOREIGN_ACCESS_PREFIX: &str = "foreign-access:";
pub const EXITS_PREFIX: &str = "hyp-exits:";
/// The outcome marker; note that [`EXITS_PREFIX`] is a different prefix (the colon
/// tells them apart).
pub const OUTCOME_PREFIX: &str = "hyp-exit:";
pub const GUEST_DEVICES_PREFIX: &str = "guest-devices:";
pub const VGIC_STATS_PREFIX: &str = "vgic-stats:";

/// The kinds of machine-readable lines, one per prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LineKind {
    /// `hyp-facts:` the machine and the guest, see [`facts`].
    Facts,
    /// `hyp-cpu:` one CPU as it came up, see [`cpu`].
    Cpu,
    /// `ptdump:` one run of equal leaves of a translation table, see [`ptdump`].
    Ptdump,
    /// `map-stats:` a translation table's totals and engine counters, see [`map_stats`].
    MapStats,
    /// `heap-stats:` the EL2 heap, see [`heap_stats`].
    HeapStats,
    /// `foreign-access:` the guest's refused accesses by target, see [`foreign_access`].
    ForeignAccess,
    /// `hyp-exits:` the guest's exits by reason, see [`exits`].
    Exits,
    /// `hyp-exit:` the outcome marker, see [`Outcome`].
    Outcome,
    /// `guest-devices:` what a guest is given, see [`guest_devices`].
    GuestDevices,
    /// `vgic-stats:` a guest's virtual GIC and console counters, see [`vgic_stats`].
    VgicStats,
}

impl LineKind {
    pub const ALL: [LineKind; 10] = [
        Self::Facts,
        Self::Cpu,
        Self::Ptdump,
        Self::MapStats,
        Self::HeapStats,
        Self::ForeignAccess,
        Self::Exits,
        Self::Outcome,
        Self::GuestDevices,
        Self::VgicStats,
    ];

    pub const fn prefix(self) -> &'static str {
        match self {
            Self::Facts => FACTS_PREFIX,
            Self::Cpu => CPU_PREFIX,
            Self::Ptdump => PTDUMP_PREFIX,
            Self::MapStats => MAP_STATS_PREFIX,
            Self::HeapStats => HEAP_STATS_PREFIX,
            Self::ForeignAccess => FOREIGN_ACCESS_PREFIX,
            Self::Exits => EXITS_PREFIX,
            Self::Outcome => OUTCOME_PREFIX,
            Self::GuestDevices => GUEST_DEVICES_PREFIX,
            Self::VgicStats => VGIC_STATS_PREFIX,
        }
    }
}

/// One machine-readable line: its kind and what follows the prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    kind: LineKind,
    body: &'a str,
}

impl<'a> Line<'a> {
    /// The line's kind and body, when it starts with one of the prefixes (`None` for
    /// log lines and anything else).
    pub fn parse(line: &'a str) -> Option<Self> {
        LineKind::ALL
            .into_iter()
            .find_map(|kind| Self::parse_as(line, kind))
    }

    /// The line when it is of `kind`.
    pub fn parse_as(line: &'a str, kind: LineKind) -> Option<Self> {
        line.strip_prefix(kind.prefix())
            .map(|body| Self { kind, body })
    }

    pub fn kind(&self) -> LineKind {
        self.kind
    }

    /// Everything after the prefix, as printed.
    pub fn body(&self) -> &'a str {
        self.body
    }

    /// The `key=value` items in order (bare words skipped).
    pub fn pairs(&self) -> Pairs<'a> {
        pairs(self.body)
    }

    /// The bare words in order (`memory`, `normal`, `success`...).
    pub fn words(&self) -> Words<'a> {
        Words {
            tokens: self.body.split_whitespace(),
        }
    }

    /// The group a `hyp-facts:` line names with its first token (`memory`, `reserved`,
    /// `module`); `None` when the line starts with a pair.
    pub fn group(&self) -> Option<&'a str> {
        self.body
            .split_whitespace()
            .next()
            .filter(|token| !token.contains('='))
    }

    /// The value of the first `key=` item.
    pub fn value(&self, key: &str) -> Option<&'a str> {
        self.pairs().find(|&(k, _)| k == key).map(|(_, v)| v)
    }

    /// The value of the first `key=` item as a number ([`parse_number`]).
    pub fn number(&self, key: &str) -> Option<u64> {
        self.value(key).and_then(parse_number)
    }
}

/// The line as printed (prefix and body), for messages.
impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.prefix())?;
        f.write_str(self.body)
    }
}

/// The `key=value` items of `text` split at whitespace, in order; tokens without `=`
/// are skipped, and a value may hold further `=` (only the first one splits).
pub fn pairs(text: &str) -> Pairs<'_> {
    Pairs {
        tokens: text.split_whitespace(),
    }
}

/// An iterator over `(key, value)` items; see [`pairs`].
#[derive(Clone, Debug)]
pub struct Pairs<'a> {
    tokens: SplitWhitespace<'a>,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        self.tokens.find_map(|token| token.split_once('='))
    }
}

/// An iterator over the bare words of a line; see [`Line::words`].
#[derive(Clone, Debug)]
pub struct Words<'a> {
    tokens: SplitWhitespace<'a>,
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<Self::Item> {
        self.tokens.find(|token| !token.contains('='))
    }
}

/// A number as the hypervisor prints one: `0x` and hexadecimal digits (addresses, sizes,
/// registers), or decimal digits (counts).
pub fn parse_number(value: &str) -> Option<u64> {
    match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => value.parse().ok(),
    }
}

/// A hexadecimal number with or without `0x`.
pub fn parse_hex(value: &str) -> Option<u64> {
    u64::from_str_radix(value.strip_prefix("0x").unwrap_or(value), 16).ok()
}

/// Formats a number the way addresses and sizes are printed: `0x` and lower-case hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hex(pub u64);

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// Writes one machine-readable line item by item: the prefix first, then each item
/// after one space, then the newline. The hypervisor's lines have exactly this shape, so
/// a line written here reads back with [`Line::parse`].
pub struct LineWriter<'w, W: fmt::Write> {
    out: &'w mut W,
}

impl<'w, W: fmt::Write> LineWriter<'w, W> {
    /// Starts a line of `kind` (writes its prefix).
    pub fn start(out: &'w mut W, kind: LineKind) -> Result<Self, fmt::Error> {
        out.write_str(kind.prefix())?;
        Ok(Self { out })
    }

    /// ` key=value`. Neither may contain whitespace, nor the key `=`: the caller's
    /// keys are the constants of this module and its values numbers or names.
    pub fn pair(&mut self, key: &str, value: impl fmt::Display) -> fmt::Result {
        write!(self.out, " {key}={value}")
    }

    /// ` word`, a bare token (a group name, a memory type).
    pub fn word(&mut self, word: &str) -> fmt::Result {
        write!(self.out, " {word}")
    }

    /// Ends the line.
    pub fn finish(self) -> fmt::Result {
        self.out.write_str("\n")
    }
}

/// The outcome of a run, the last line the hypervisor prints before it powers off.
/// Scripts take the outcome from it; a run without one has failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    Success,
    /// Why the run failed, free text on the rest of the line.
    Failure(&'a str),
}

impl<'a> Outcome<'a> {
    const SUCCESS: &'static str = " success";
    const FAILURE: &'static str = " failure: ";

    /// The outcome a marker line states; `None` for any other line, including a
    /// malformed marker. The line is taken as is (strip a `\r` first).
    pub fn parse(line: &'a str) -> Option<Self> {
        let body = line.strip_prefix(OUTCOME_PREFIX)?;
        if body == Self::SUCCESS {
            Some(Self::Success)
        } else {
            body.strip_prefix(Self::FAILURE).map(Self::Failure)
        }
    }

    /// The outcome of a whole console: its last marker line (`None` when there is none,
    /// which is a failure, or when that line is malformed).
    pub fn of_console(console: &'a str) -> Option<Self> {
        console
            .lines()
            .rev()
            .find(|line| line.starts_with(OUTCOME_PREFIX))
            .and_then(Self::parse)
    }
}

/// `hyp-exit: success`, `hyp-exit: failure: REASON`.
impl fmt::Display for Outcome<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(OUTCOME_PREFIX)?;
        match self {
            Self::Success => f.write_str(Self::SUCCESS),
            Self::Failure(reason) => write!(f, "{}{reason}", Self::FAILURE),
        }
    }
}

/// The key that names the translation table of `ptdump:` and `map-stats:` lines.
pub const TABLE: &str = "table";
/// [`TABLE`] of the hypervisor's own EL2 stage-1 map.
pub const TABLE_EL2: &str = "el2";
/// [`TABLE`] of the guest's stage 2.
pub const TABLE_STAGE2: &str = "stage2";

/// Keys of the `hyp-facts:` lines. The main line (no group word) has the CPU and
/// platform summary; one line per memory bank, reservation and boot module (named by
/// their first word); one console/GIC/PSCI/DTB line; one line with what every CPU has
/// once all are online; one guest line when a guest starts.
pub mod facts {
    // The main line.
    pub const MIDR: &str = "midr";
    /// FEAT_BBM level of the boot CPU (0..2).
    pub const BBM_LEVEL: &str = "bbm_level";
    /// 1 when the boot CPU has FEAT_TLBIRANGE.
    pub const TLBI_RANGE: &str = "tlbi_range";
    pub const PA_BITS: &str = "pa_bits";
    pub const VHE: &str = "vhe";
    /// CPUs in the device tree.
    pub const CPUS: &str = "cpus";
    pub const RAM_BYTES: &str = "ram_bytes";
    /// Memory banks in the device tree.
    pub const BANKS: &str = "banks";
    /// Reserved ranges in the device tree (also the group word of their lines).
    pub const RESERVED: &str = "reserved";
    /// Boot modules in the device tree.
    pub const MODULES: &str = "modules";

    /// Group word of a memory bank's line: `index`, `base`, `size`.
    pub const MEMORY_LINE: &str = "memory";
    /// Group word of a reservation's line: `base`, `size`, `source`, `no_map`.
    pub const RESERVED_LINE: &str = "reserved";
    /// Group word of a boot module's line: `kind`, `base`, `size`, `name`.
    pub const MODULE_LINE: &str = "module";
    pub const INDEX: &str = "index";
    pub const BASE: &str = "base";
    pub const SIZE: &str = "size";
    /// `memreserve` or `node:NAME`.
    pub const SOURCE: &str = "source";
    /// 1 for a `no-map` reservation.
    pub const NO_MAP: &str = "no_map";
    pub const KIND: &str = "kind";
    pub const NAME: &str = "name";

    // The memory layout line: the hypervisor's pool, the crash region (when there is
    // one) and the RAM left for guests.
    pub const POOL_BASE: &str = "pool_base";
    pub const POOL_SIZE: &str = "pool_size";
    pub const CRASH_BASE: &str = "crash_base";
    pub const CRASH_SIZE: &str = "crash_size";
    /// RAM the layout leaves for guests, in bytes.
    pub const GUEST_RAM_AVAILABLE: &str = "guest_ram_available";

    // The console, GIC, PSCI and DTB line.
    pub const CONSOLE: &str = "console";
    pub const CONSOLE_BASE: &str = "console_base";
    pub const GICD: &str = "gicd";
    pub const GIC_MAINT_INTID: &str = "gic_maint_intid";
    pub const PSCI: &str = "psci";
    pub const DTB_BASE: &str = "dtb_base";
    pub const DTB_SIZE: &str = "dtb_size";

    // What every CPU has, once all are online.
    pub const CPUS_ONLINE: &str = "cpus_online";
    pub const COMMON_BBM_LEVEL: &str = "common_bbm_level";
    pub const COMMON_TLBI_RANGE: &str = "common_tlbi_range";

    // The guest's line, printed when it starts (its first key).
    pub const GUEST_RAM_BYTES: &str = "guest_ram_bytes";
    pub const GUEST_VCPUS: &str = "guest_vcpus";
    pub const GUEST_ENTRY: &str = "guest_entry";
    pub const GUEST_DTB: &str = "guest_dtb";
    pub const STAGE2_IPA_BITS: &str = "stage2_ipa_bits";
    /// Translation-table allocations up to the guest's start (the range of
    /// `fail_table_alloc=`).
    pub const TABLE_ALLOCATIONS: &str = "table_allocations";
    pub const INJECTED_FAILURES: &str = "injected_failures";
}

/// Keys of a `hyp-cpu:` line, read from that CPU's own registers.
pub mod cpu {
    /// Index in the device tree's `/cpus` order.
    pub const CPU: &str = "cpu";
    pub const MPIDR: &str = "mpidr";
    /// SCTLR_EL2.M, [`ON`] or [`OFF`].
    pub const MMU: &str = "mmu";
    /// SCTLR_EL2.C.
    pub const DCACHE: &str = "dcache";
    /// SCTLR_EL2.I.
    pub const ICACHE: &str = "icache";
    pub const BBM_LEVEL: &str = "bbm_level";
    pub const TLBI_RANGE: &str = "tlbi_range";
    pub const ON: &str = "on";
    pub const OFF: &str = "off";
}

/// Keys of a `ptdump:` line: one run of leaves with equal size, attributes and
/// contiguous hint, and contiguous output addresses.
pub mod ptdump {
    pub use super::{TABLE, TABLE_EL2, TABLE_STAGE2};
    /// First input address of the run.
    pub const VA: &str = "va";
    /// End of the run (exclusive).
    pub const END: &str = "end";
    pub const PA: &str = "pa";
    pub const SIZE: &str = "size";
    /// Translation level of the leaves (1: 1G, 2: 2M, 3: 4K).
    pub const LEVEL: &str = "level";
    /// Number of leaves in the run.
    pub const LEAVES: &str = "leaves";
    /// 1 when the leaves carry the contiguous hint.
    pub const CONT: &str = "cont";
    /// `rwx` letters; the memory type follows as a bare word (one of
    /// [`MEMORY_TYPES`]).
    pub const ATTRS: &str = "attrs";
    pub const MEMORY_TYPES: [&str; 3] = ["normal", "device", "normal-nc"];
}

/// Keys of a `map-stats:` line: a translation table's shape and the engine's counters.
pub mod map_stats {
    pub use super::{TABLE, TABLE_EL2, TABLE_STAGE2};
    /// Table pages in use.
    pub const TABLE_PAGES: &str = "table_pages";
    pub const LEAVES_1G: &str = "leaves_1g";
    pub const LEAVES_2M: &str = "leaves_2m";
    pub const LEAVES_4K: &str = "leaves_4k";
    /// Bytes of RAM mapped with 4K leaves.
    pub const RAM_4K_BYTES: &str = "ram_4k_bytes";
    /// Descriptors written.
    pub const DESCRIPTORS: &str = "descriptors";
    /// Descriptors of the minimal cover of what the ptdump showed (the engine's
    /// `MinimalCover`): the fewest any engine could write for the same translations.
    pub const MINIMAL_DESCRIPTORS: &str = "minimal_descriptors";
    /// TLB entries of that cover (a contiguous group of 16 leaves counted once).
    pub const MINIMAL_TLB_ENTRIES: &str = "minimal_tlb_entries";
    /// TLB invalidations of any kind.
    pub const TLBI: &str = "tlbi";
    pub const DSB: &str = "dsb";
    pub const SPLITS_1G: &str = "splits_1g";
    pub const SPLITS_2M: &str = "splits_2m";
    pub const COLLAPSES: &str = "collapses";
    /// Time to build the table, microseconds.
    pub const BUILD_US: &str = "build_us";
}

/// Keys of the `heap-stats:` line.
pub mod heap_stats {
    /// Bytes of the heap window in use.
    pub const BYTES: &str = "bytes";
    pub const LEAVES_2M: &str = "leaves_2m";
    pub const LEAVES_4K: &str = "leaves_4k";
    /// Growths that fell back to 4K pages (no free 2 MiB chunk).
    pub const FALLBACKS: &str = "fallbacks";
    /// Base of the heap window.
    pub const WINDOW: &str = "window";
}

/// Keys of the `foreign-access:` tally, in the order printed: the guest's refused
/// accesses by what they hit.
pub mod foreign_access {
    /// The hypervisor's image.
    pub const IMAGE: &str = "image";
    /// The hypervisor's pool (heap and page tables).
    pub const POOL: &str = "pool";
    /// The crash region.
    pub const CRASH: &str = "crash";
    /// The host device tree.
    pub const DTB: &str = "dtb";
    /// Host RAM that is not the guest's.
    pub const HOST_RAM: &str = "host_ram";
    /// Neither RAM nor a device of the host DT: a hole, or beyond the end.
    pub const OUTSIDE_RAM: &str = "outside_ram";
    /// A device of the host DT the guest was not given (each logged once by node path).
    pub const DEVICE: &str = "device";
    /// RAM another guest owns (several guests at once).
    pub const OTHER_GUEST: &str = "other_guest";
    pub const ALL: [&str; 8] = [
        IMAGE,
        POOL,
        CRASH,
        DTB,
        HOST_RAM,
        OUTSIDE_RAM,
        DEVICE,
        OTHER_GUEST,
    ];
}

/// Keys of the `hyp-exits:` line, in the order printed: the guest's exits by reason.
pub mod exits {
    pub const HVC: &str = "hvc";
    pub const SMC: &str = "smc";
    /// Trapped system-register accesses.
    pub const SYSREG: &str = "sysreg";
    pub const DATA_ABORT: &str = "data_abort";
    pub const INSTRUCTION_ABORT: &str = "instruction_abort";
    pub const OTHER: &str = "other";
    /// TLB conflict aborts from the guest.
    pub const TLB_CONFLICT: &str = "tlb_conflict";
    /// Loads and stores emulated for the vGIC or the virtual console.
    pub const MMIO: &str = "mmio";
    /// Physical interrupts taken while the guest ran.
    pub const IRQ: &str = "irq";
    /// WFI/WFE exits (0: not trapped, one vCPU per physical CPU).
    pub const WFI: &str = "wfi";
    /// Microseconds spent at EL2 on its exits, summed over CPUs.
    pub const EL2_US: &str = "el2_us";
    /// Kick SGIs sent to its vCPUs on other CPUs.
    pub const KICKS: &str = "kicks";
    /// SGI-generation register writes.
    pub const SGIS: &str = "sgis";
    pub const UNEXPECTED_IRQS: &str = "unexpected_irqs";
    pub const REFUSED_MMIO: &str = "refused_mmio";
    pub const ALL: [&str; 15] = [
        HVC,
        SMC,
        SYSREG,
        DATA_ABORT,
        INSTRUCTION_ABORT,
        MMIO,
        IRQ,
        WFI,
        OTHER,
        TLB_CONFLICT,
        EL2_US,
        KICKS,
        SGIS,
        UNEXPECTED_IRQS,
        REFUSED_MMIO,
    ];
}

/// The `vgic-stats:` line, printed when a guest powers off: its vGIC's counters
/// (`vm::vgic::VgicStats`) and its console's.
pub mod vgic_stats {
    pub const GUEST: &str = "guest";
    pub const SGIS_DELIVERED: &str = "sgis_delivered";
    /// SGI targets that were not the guest's vCPUs.
    pub const SGI_TARGETS_DROPPED: &str = "sgi_targets_dropped";
    /// LPI-register accesses refused (GICR_PROPBASER and the like).
    pub const REFUSED_LPI_ACCESSES: &str = "refused_lpi_accesses";
    /// Writes to SPIs the guest does not own.
    pub const REFUSED_FOREIGN_WRITES: &str = "refused_foreign_writes";
    pub const HARDWARE_FIRES: &str = "hardware_fires";
    /// The most interrupts that waited for a list register at once.
    pub const MAX_QUEUE_DEPTH: &str = "max_queue_depth";
    pub const UNDERFLOW_REQUESTS: &str = "underflow_requests";
    /// Bytes the guest wrote while its UART's FIFO was full.
    pub const CONSOLE_DROPPED_BYTES: &str = "console_dropped_bytes";
    /// Guest lines dropped because the console backlog was full.
    pub const CONSOLE_DROPPED_LINES: &str = "console_dropped_lines";
}

/// The `guest-devices:` line: what one guest is given, printed once when it is built.
///
/// ```text
/// guest-devices: guest=1 emulated=gicv3@0x8000000,pl011@0x9000000 passthrough=pl031@0x9010000 refused=virtio_mmio@0xa000000,fw-cfg@0x9020000
/// ```
///
/// ```text
/// body   = " guest=" number " emulated=" list " passthrough=" list " refused=" list
/// list   = "none" | device *( "," device )
/// device = name [ "@0x" hexdigits ]
/// name   = 1*( ALPHA | DIGIT | "." | "_" | "+" | "-" )
/// ```
///
/// `emulated` names each device by its kind ([`guest_devices::GICV3`],
/// [`guest_devices::PL011`]); `passthrough` and `refused` by the host node's name without
/// its unit address. The address is the CPU physical base of the device's first MMIO
/// region (the distributor for the GIC), left out when the device has none. A node name may hold a `,`, which separates the list:
/// the writer prints every byte outside `name`'s set as `_` (`qcom,smd` as `qcom_smd`),
/// and a device named `none` without an address as `none_`, so that no list reads as
/// another. Why each device was refused is logged, not printed here.
pub mod guest_devices {
    use core::fmt;
    use core::str::Split;

    use super::{GUEST_DEVICES_PREFIX, Line, LineKind};

    /// The guest's number (1 for the first).
    pub const GUEST: &str = "guest";
    /// The devices the hypervisor emulates for it.
    pub const EMULATED: &str = "emulated";
    /// The host devices it drives itself.
    pub const PASSTHROUGH: &str = "passthrough";
    /// The devices asked for and not given.
    pub const REFUSED: &str = "refused";
    /// An empty list.
    pub const NONE: &str = "none";
    /// The name of the emulated GICv3 in [`EMULATED`].
    pub const GICV3: &str = "gicv3";
    /// The name of the emulated PL011 in [`EMULATED`].
    pub const PL011: &str = "pl011";
    const SEPARATOR: char = ',';

    /// One device of a list.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Device<'a> {
        pub name: &'a str,
        pub base: Option<u64>,
    }

    impl<'a> Device<'a> {
        /// A list entry, `name` or `name@0xHEX`; `None` when malformed.
        pub fn parse(entry: &'a str) -> Option<Self> {
            let (name, base) = match entry.split_once('@') {
                Some((name, base)) => (name, Some(parse_address(base)?)),
                None => (entry, None),
            };
            (!name.is_empty() && name.bytes().all(is_name_byte)).then_some(Self { name, base })
        }
    }

    fn is_name_byte(byte: u8) -> bool {
        byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'+' | b'-')
    }

    /// `0x` and at least one hex digit (no sign, unlike `from_str_radix` alone).
    fn parse_address(text: &str) -> Option<u64> {
        let digits = text.strip_prefix("0x")?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(digits, 16).ok()
    }

    /// `name` with every byte outside the name set as `_` (see the module docs).
    impl fmt::Display for Device<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            if self.name.is_empty() {
                f.write_str("_")?;
            }
            for byte in self.name.bytes() {
                let shown = if is_name_byte(byte) { byte } else { b'_' };
                write!(f, "{}", char::from(shown))?;
            }
            match self.base {
                Some(base) => write!(f, "@{base:#x}"),
                None if self.name == NONE => f.write_str("_"),
                None => Ok(()),
            }
        }
    }

    /// A list of devices: given to the writer as a slice, read back as the line's text.
    /// Two lists are equal when they hold the same devices in the same order.
    #[derive(Clone, Copy, Debug)]
    pub enum DeviceList<'a> {
        Devices(&'a [Device<'a>]),
        /// Checked text (see [`DeviceList::parse`]); `""` for [`NONE`].
        Text(&'a str),
    }

    impl<'a> DeviceList<'a> {
        /// A list's text as printed: [`NONE`], or devices separated by `,`; `None` when
        /// any entry is malformed (or empty).
        pub fn parse(text: &'a str) -> Option<Self> {
            if text == NONE {
                return Some(Self::Text(""));
            }
            text.split(SEPARATOR)
                .all(|entry| Device::parse(entry).is_some())
                .then_some(Self::Text(text))
        }

        pub fn iter(&self) -> DeviceIter<'a> {
            match *self {
                Self::Devices(devices) => DeviceIter::Devices(devices.iter()),
                Self::Text("") => DeviceIter::Devices([].iter()),
                Self::Text(text) => DeviceIter::Text(text.split(SEPARATOR)),
            }
        }

        pub fn len(&self) -> usize {
            self.iter().count()
        }

        pub fn is_empty(&self) -> bool {
            self.iter().next().is_none()
        }
    }

    impl PartialEq for DeviceList<'_> {
        fn eq(&self, other: &Self) -> bool {
            self.iter().eq(other.iter())
        }
    }

    impl Eq for DeviceList<'_> {}

    /// [`NONE`] or the devices separated by `,`.
    impl fmt::Display for DeviceList<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let mut separator = "";
            for device in self.iter() {
                write!(f, "{separator}{device}")?;
                separator = ",";
            }
            if separator.is_empty() {
                f.write_str(NONE)?;
            }
            Ok(())
        }
    }

    /// The devices of a [`DeviceList`].
    #[derive(Clone, Debug)]
    pub enum DeviceIter<'a> {
        Devices(core::slice::Iter<'a, Device<'a>>),
        Text(Split<'a, char>),
    }

    impl<'a> Iterator for DeviceIter<'a> {
        type Item = Device<'a>;

        fn next(&mut self) -> Option<Device<'a>> {
            match self {
                Self::Devices(devices) => devices.next().copied(),
                // Checked by `DeviceList::parse`; a bad entry (never there) is skipped.
                Self::Text(entries) => entries.find_map(Device::parse),
            }
        }
    }

    /// One `guest-devices:` line.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct GuestDevices<'a> {
        pub guest: u64,
        pub emulated: DeviceList<'a>,
        pub passthrough: DeviceList<'a>,
        pub refused: DeviceList<'a>,
    }

    impl<'a> GuestDevices<'a> {
        /// The line's content; `None` for another line or a malformed one (a key
        /// missing, a list that does not parse). The line is taken as is (strip a `\r`
        /// first).
        pub fn parse(line: &'a str) -> Option<Self> {
            let line = Line::parse_as(line, LineKind::GuestDevices)?;
            let list = |key| line.value(key).and_then(DeviceList::parse);
            Some(Self {
                guest: line.number(GUEST)?,
                emulated: list(EMULATED)?,
                passthrough: list(PASSTHROUGH)?,
                refused: list(REFUSED)?,
            })
        }
    }

    /// The whole line, prefix included, without the newline.
    impl fmt::Display for GuestDevices<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(
                f,
                "{GUEST_DEVICES_PREFIX} {GUEST}={} {EMULATED}={} {PASSTHROUGH}={} {REFUSED}={}",
                self.guest, self.emulated, self.passthrough, self.refused
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_line_kind_is_recognised_and_exits_is_not_the_outcome() {
        for kind in LineKind::ALL {
            let text = format!("{} x=1", kind.prefix());
            assert_eq!(Line::parse(&text).map(|l| l.kind()), Some(kind), "{text}");
        }
        let exits = Line::parse("hyp-exits: hvc=3").unwrap();
        assert_eq!(exits.kind(), LineKind::Exits);
        assert_eq!(Line::parse("[ 0.1] INFO ptdump: x=1"), None);
        assert_eq!(Line::parse("selftest: uid ... ok"), None);
    }

    #[test]
    fn a_real_facts_line_reads_back() {
        let line =
            Line::parse("hyp-facts: midr=0x410fd490 bbm_level=2 tlbi_range=1 cpus=2").unwrap();
        assert_eq!(line.kind(), LineKind::Facts);
        assert_eq!(line.group(), None);
        assert_eq!(line.value(facts::BBM_LEVEL), Some("2"));
        assert_eq!(line.number(facts::MIDR), Some(0x410f_d490));
        assert_eq!(line.value("missing"), None);
        assert_eq!(
            line.to_string(),
            "hyp-facts: midr=0x410fd490 bbm_level=2 tlbi_range=1 cpus=2"
        );
        let memory =
            Line::parse("hyp-facts: memory index=0 base=0x40000000 size=0x80000000").unwrap();
        assert_eq!(memory.group(), Some(facts::MEMORY_LINE));
        assert_eq!(memory.number(facts::SIZE), Some(0x8000_0000));
        let reserved =
            Line::parse("hyp-facts: reserved base=0x1 size=0x2 source=node:a=b no_map=1").unwrap();
        assert_eq!(reserved.value(facts::SOURCE), Some("node:a=b"));
    }

    #[test]
    fn a_ptdump_line_has_its_memory_type_as_a_word() {
        let line = Line::parse(
            "ptdump: table=el2 va=0x40200000 end=0x40210000 pa=0x40200000 size=0x10000 \
             level=3 leaves=16 cont=1 attrs=r-x normal",
        )
        .unwrap();
        assert_eq!(line.value(ptdump::TABLE), Some(TABLE_EL2));
        assert_eq!(line.number(ptdump::END), Some(0x4021_0000));
        assert_eq!(line.value(ptdump::ATTRS), Some("r-x"));
        assert_eq!(line.words().collect::<Vec<_>>(), ["normal"]);
        assert!(ptdump::MEMORY_TYPES.contains(&"normal"));
        assert_eq!(line.pairs().count(), 9);
    }

    #[test]
    fn numbers_are_decimal_or_0x_hex() {
        assert_eq!(parse_number("42"), Some(42));
        assert_eq!(parse_number("0x2a"), Some(42));
        assert_eq!(parse_number("2a"), None);
        assert_eq!(parse_number("-1"), None);
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_hex("2a"), Some(42));
        assert_eq!(parse_hex("0x2a"), Some(42));
        assert_eq!(parse_hex("0x"), None);
        assert_eq!(Hex(0x4000_0000).to_string(), "0x40000000");
    }

    #[test]
    fn outcome_lines_are_stable() {
        assert_eq!(Outcome::Success.to_string(), "hyp-exit: success");
        assert_eq!(
            Outcome::Failure("bad DTB").to_string(),
            "hyp-exit: failure: bad DTB"
        );
        assert_eq!(Outcome::parse("hyp-exit: success"), Some(Outcome::Success));
        assert_eq!(
            Outcome::parse("hyp-exit: failure: no memory for a translation table (EL2 map)"),
            Some(Outcome::Failure(
                "no memory for a translation table (EL2 map)"
            ))
        );
        assert_eq!(Outcome::parse("hyp-exit: success "), None);
        assert_eq!(Outcome::parse("hyp-exit: maybe"), None);
        assert_eq!(Outcome::parse("hyp-exits: hvc=1"), None);
        let console = "hyp-exit: failure: first\nlog\nhyp-exits: hvc=1\nhyp-exit: success\n";
        assert_eq!(Outcome::of_console(console), Some(Outcome::Success));
        assert_eq!(Outcome::of_console("no marker\n"), None);
    }

    #[test]
    fn the_writer_writes_the_hypervisors_shape() {
        let mut text = String::new();
        let mut line = LineWriter::start(&mut text, LineKind::Facts).unwrap();
        line.word(facts::MEMORY_LINE).unwrap();
        line.pair(facts::INDEX, 0).unwrap();
        line.pair(facts::BASE, Hex(0x4000_0000)).unwrap();
        line.finish().unwrap();
        assert_eq!(text, "hyp-facts: memory index=0 base=0x40000000\n");
    }

    #[test]
    fn prefixes_are_distinct_and_no_guest_line_can_start_with_one() {
        for kind in LineKind::ALL {
            let prefix = kind.prefix();
            assert!(prefix.ends_with(':'), "{prefix}");
            // A guest's lines are tagged `(gN) ` (see the hypervisor's guest_output).
            assert!(!prefix.starts_with('('), "{prefix}");
            for other in LineKind::ALL {
                if other != kind {
                    assert!(!other.prefix().starts_with(prefix), "{prefix}");
                }
            }
        }
        assert!(LineKind::ALL.contains(&LineKind::GuestDevices));
        assert_eq!(
            Line::parse("(g1) guest-devices: guest=1 emulated=none passthrough=none refused=none"),
            None
        );
    }

    #[test]
    fn a_guest_devices_line_reads_back() {
        use guest_devices::*;
        let text = "guest-devices: guest=1 emulated=gicv3@0x8000000,pl011@0x9000000 \
                    passthrough=pl031@0x9010000 refused=virtio_mmio@0xa000000,fw-cfg@0x9020000,gpio-keys";
        let line = GuestDevices::parse(text).unwrap();
        assert_eq!(line.guest, 1);
        assert_eq!(
            line.emulated.iter().collect::<Vec<_>>(),
            [
                Device {
                    name: GICV3,
                    base: Some(0x800_0000)
                },
                Device {
                    name: PL011,
                    base: Some(0x900_0000)
                },
            ]
        );
        assert_eq!(
            line.passthrough.iter().collect::<Vec<_>>(),
            [Device {
                name: "pl031",
                base: Some(0x901_0000)
            }]
        );
        assert_eq!(line.refused.len(), 3);
        assert_eq!(
            line.refused.iter().last(),
            Some(Device {
                name: "gpio-keys",
                base: None
            })
        );
        assert_eq!(line.to_string(), text);
        assert_eq!(
            Line::parse(text).map(|l| l.kind()),
            Some(LineKind::GuestDevices)
        );

        let empty = "guest-devices: guest=2 emulated=gicv3@0x8000000 passthrough=none refused=none";
        let line = GuestDevices::parse(empty).unwrap();
        assert!(line.passthrough.is_empty() && line.refused.is_empty());
        assert_eq!(line.to_string(), empty);
    }

    #[test]
    fn malformed_guest_devices_lines_are_refused() {
        use guest_devices::GuestDevices;
        for text in [
            "guest-devices: guest=1 emulated=none passthrough=none",
            "guest-devices: guest=x emulated=none passthrough=none refused=none",
            "guest-devices: guest=1 emulated=a@9 passthrough=none refused=none",
            "guest-devices: guest=1 emulated=a@0x passthrough=none refused=none",
            "guest-devices: guest=1 emulated=a@0x+1 passthrough=none refused=none",
            "guest-devices: guest=1 emulated=a,,b passthrough=none refused=none",
            "guest-devices: guest=1 emulated= passthrough=none refused=none",
            "guest-devices: guest=1 emulated=a:b passthrough=none refused=none",
            "hyp-facts: guest=1 emulated=none passthrough=none refused=none",
        ] {
            assert_eq!(GuestDevices::parse(text), None, "{text}");
        }
    }

    #[test]
    fn the_writer_keeps_names_parseable() {
        use guest_devices::*;
        let devices = [
            Device {
                name: "qcom,smd",
                base: Some(0x1000),
            },
            Device {
                name: "none",
                base: None,
            },
            Device {
                name: "",
                base: None,
            },
        ];
        let line = GuestDevices {
            guest: 3,
            emulated: DeviceList::Devices(&[]),
            passthrough: DeviceList::Devices(&devices),
            refused: DeviceList::Devices(&devices[1..2]),
        };
        let text = line.to_string();
        assert_eq!(
            text,
            "guest-devices: guest=3 emulated=none passthrough=qcom_smd@0x1000,none_,_ refused=none_"
        );
        let back = GuestDevices::parse(&text).unwrap();
        assert_eq!(
            back.refused.iter().collect::<Vec<_>>(),
            [Device {
                name: "none_",
                base: None
            }]
        );
        assert_eq!(back.passthrough.len(), 3);
        assert!(back.emulated.is_empty());
    }

    /// Keys and values as the hypervisor prints them: no whitespace, no `=` in a key.
    fn key() -> impl Strategy<Value = String> {
        "[a-z_0-9]{1,12}"
    }

    fn value() -> impl Strategy<Value = String> {
        "[!-~]{0,16}"
    }

    proptest! {
        #[test]
        fn written_pairs_parse_back(
            kind_index in 0..LineKind::ALL.len(),
            items in proptest::collection::vec((key(), value()), 0..12),
        ) {
            let kind = LineKind::ALL[kind_index];
            let mut text = String::new();
            let mut writer = LineWriter::start(&mut text, kind).unwrap();
            for (k, v) in &items {
                writer.pair(k, v).unwrap();
            }
            writer.finish().unwrap();
            let line = Line::parse(text.trim_end_matches('\n')).unwrap();
            prop_assert_eq!(line.kind(), kind);
            let parsed: Vec<(&str, &str)> = line.pairs().collect();
            let written: Vec<(&str, &str)> =
                items.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            prop_assert_eq!(parsed, written);
            prop_assert_eq!(line.words().count(), 0);
            if let Some((k, v)) = items.first() {
                prop_assert_eq!(line.value(k), Some(v.as_str()));
            }
        }

        #[test]
        fn written_numbers_parse_back(n: u64) {
            prop_assert_eq!(parse_number(&Hex(n).to_string()), Some(n));
            prop_assert_eq!(parse_number(&n.to_string()), Some(n));
        }

        #[test]
        fn outcomes_round_trip(reason in "[^\n\r]{0,40}", success: bool) {
            let outcome = if success { Outcome::Success } else { Outcome::Failure(&reason) };
            let text = outcome.to_string();
            prop_assert_eq!(Outcome::parse(&text), Some(outcome));
        }

        #[test]
        fn guest_devices_lines_round_trip(
            guest: u64,
            lists in proptest::array::uniform3(proptest::collection::vec(
                ("[A-Za-z0-9._+-]{1,12}", proptest::option::of(any::<u64>())), 0..5)),
        ) {
            use guest_devices::*;
            let lists: Vec<Vec<Device<'_>>> = lists
                .iter()
                .map(|list| list
                    .iter()
                    // `none` alone is the empty list's word: the writer changes it.
                    .filter(|(name, base)| !(name == NONE && base.is_none()))
                    .map(|(name, base)| Device { name, base: *base })
                    .collect())
                .collect();
            let written = GuestDevices {
                guest,
                emulated: DeviceList::Devices(&lists[0]),
                passthrough: DeviceList::Devices(&lists[1]),
                refused: DeviceList::Devices(&lists[2]),
            };
            let text = written.to_string();
            prop_assert_eq!(GuestDevices::parse(&text), Some(written));
            prop_assert_eq!(Line::parse(&text).map(|l| l.kind()), Some(LineKind::GuestDevices));
        }

        #[test]
        fn parsing_any_text_never_panics(text in "\\PC{0,80}") {
            if let Some(line) = Line::parse(&text) {
                for (k, v) in line.pairs() {
                    prop_assert!(!k.contains(char::is_whitespace));
                    prop_assert!(!v.contains(char::is_whitespace));
                }
                let _ = line.group();
                let _ = line.words().count();
            }
            let _ = Outcome::parse(&text);
            let _ = parse_number(&text);
            if let Some(line) = guest_devices::GuestDevices::parse(&text) {
                let _ = line.to_string();
            }
        }
    }
}
