//! The boot report of a translation table: a ptdump-style listing (one line per merged
//! run of leaves) and one `map-stats:` line, both machine-readable so scripts can draw
//! and compare maps from a boot log.

use core::fmt;

use hyp_abi::console::{HEAP_STATS_PREFIX, MAP_STATS_PREFIX, PTDUMP_PREFIX};
use pgtable::{
    Access, Attributes, CoverShape, Hardware, MapFlags, MemoryType, MinimalCover, PageTable,
};
use platform::info::PhysRange;

/// `rw- normal`, `r-x normal`, `rw- device`.
pub struct AttrsDisplay(pub Attributes);

impl fmt::Display for AttrsDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let access = self.0.access;
        let flag = |bit: Access, c: char| if access.contains(bit) { c } else { '-' };
        let memory = match self.0.memory {
            MemoryType::NormalWriteBack => "normal",
            MemoryType::Device => "device",
            MemoryType::NormalNonCacheable => "normal-nc",
        };
        write!(
            f,
            "{}{}{} {memory}",
            flag(Access::READ, 'r'),
            flag(Access::WRITE, 'w'),
            flag(Access::EXECUTE, 'x')
        )
    }
}

/// What a table maps, condensed: the merged runs of its ptdump walk, hashed (FNV-1a over
/// input range, output address, attributes, level and hint of every run), and the table
/// pages it holds. Equal fingerprints before and after a failed operation show that the
/// operation left the tables as they were.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    pub runs: u64,
    pub hash: u64,
    pub table_pages: u64,
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} run(s), {} table page(s), hash {:#018x}",
            self.runs, self.table_pages, self.hash
        )
    }
}

pub fn fingerprint<H: Hardware>(table: &PageTable<H>, limit: u64) -> Fingerprint {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = FNV_OFFSET;
    let mut mix = |value: u64| {
        for byte in value.to_le_bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
        }
    };
    let mut runs = 0;
    for run in table.mappings(0..limit) {
        runs += 1;
        mix(run.ia.start);
        mix(run.ia.end);
        mix(run.pa.0);
        mix(u64::from(run.attrs.access.bits()));
        mix(run.attrs.memory as u64);
        mix(u64::from(run.flags.contains(MapFlags::NO_BLOCK_MAPPINGS))
            | u64::from(run.flags.contains(MapFlags::NO_CONT_MAPPINGS)) << 1);
        mix(u64::from(run.level) | u64::from(run.contiguous) << 8);
    }
    let counters = table.counters();
    Fingerprint {
        runs,
        hash,
        table_pages: counters.tables_allocated - counters.tables_freed,
    }
}

/// Leaf counts by level, the bytes of RAM mapped with 4K pages, and the minimal cover of
/// what the dump showed (the engine's count of the fewest descriptors any engine could
/// write for the same translations).
#[derive(Clone, Copy, Debug, Default)]
pub struct LeafStats {
    pub leaves_1g: u64,
    pub leaves_2m: u64,
    pub leaves_4k: u64,
    pub ram_4k_bytes: u64,
    pub minimal: CoverShape,
}

/// Prints the ptdump lines of `table` over `[0, limit)` and returns the leaf counts and
/// the minimal cover, both from the same walk.
pub fn ptdump<H: Hardware>(
    table: &PageTable<H>,
    name: &str,
    limit: u64,
    ram: &[PhysRange],
) -> LeafStats {
    let mut stats = LeafStats::default();
    let mut cover = MinimalCover::new(&table.regime());
    for run in table.mappings(0..limit) {
        cover.add(&run);
        match run.level {
            1 => stats.leaves_1g += run.leaves,
            2 => stats.leaves_2m += run.leaves,
            _ => {
                stats.leaves_4k += run.leaves;
                let in_ram: u64 = ram
                    .iter()
                    .map(|bank| {
                        run.pa.0.max(bank.base)
                            ..(run.pa.0 + (run.ia.end - run.ia.start)).min(bank.end())
                    })
                    .filter(|overlap| overlap.start < overlap.end)
                    .map(|overlap| overlap.end - overlap.start)
                    .sum();
                stats.ram_4k_bytes += in_ram;
            }
        }
        crate::console::write_raw(format_args!(
            "{PTDUMP_PREFIX} table={name} va={:#x} end={:#x} pa={:#x} size={:#x} level={} leaves={} cont={} attrs={}\n",
            run.ia.start,
            run.ia.end,
            run.pa.0,
            run.ia.end - run.ia.start,
            run.level,
            run.leaves,
            u8::from(run.contiguous),
            AttrsDisplay(run.attrs)
        ));
    }
    stats.minimal = cover.finish();
    stats
}

/// Prints the `map-stats:` line; `minimal_descriptors` and `minimal_tlb_entries` are the
/// minimal cover of what [`ptdump`] showed (`leaves`), next to the descriptors written.
pub fn map_stats<H: Hardware>(table: &PageTable<H>, name: &str, leaves: &LeafStats, build_us: u64) {
    let counters = table.counters();
    crate::console::write_raw(format_args!(
        "{MAP_STATS_PREFIX} table={name} table_pages={} leaves_1g={} leaves_2m={} leaves_4k={} ram_4k_bytes={} descriptors={} minimal_descriptors={} minimal_tlb_entries={} tlbi={} dsb={} splits_1g={} splits_2m={} collapses={} build_us={build_us}\n",
        counters.tables_allocated - counters.tables_freed,
        leaves.leaves_1g,
        leaves.leaves_2m,
        leaves.leaves_4k,
        leaves.ram_4k_bytes,
        counters.descriptors_written,
        leaves.minimal.descriptors(),
        leaves.minimal.tlb_entries(),
        counters.tlbi_total(),
        counters.dsb,
        counters.splits_1g,
        counters.splits_2m,
        counters.collapses_1g + counters.collapses_2m,
    ));
}

/// Prints the `heap-stats:` line.
pub fn heap_stats() {
    let (counters, (start, end)) = crate::mm::heap::stats();
    crate::console::write_raw(format_args!(
        "{HEAP_STATS_PREFIX} bytes={} leaves_2m={} leaves_4k={} fallbacks={} window={start:#x}\n",
        end - start,
        counters.chunks_2m,
        counters.pages_4k,
        counters.fallbacks,
    ));
}
