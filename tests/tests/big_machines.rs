//! The hypervisor alone on machines far larger than the host (`scripts/run.sh --mem`
//! above 16G uses a non-reserving memory backend): 64 GiB, 256 GiB and 1 TiB, each with a
//! crash region placed low (below 4 GiB, Linux's first choice) and high (at a base far
//! up in RAM). The boot report must give the RAM size, the EL2 map must be the minimal
//! cover in a handful of table pages with no RAM at 4K, and the crash region must be
//! inside RAM where asked and absent from the EL2 map.

use hyp_abi::console::{LineKind, facts, map_stats, ptdump};
use qemu_tests::run;

const GIB: u64 = 1 << 30;
const RAM_BASE: u64 = 0x4000_0000;

fn boot(name: &str, ram_gib: u64, crashkernel: &str) -> qemu_tests::Run {
    let mem = if ram_gib.is_multiple_of(1024) {
        format!("{}T", ram_gib / 1024)
    } else {
        format!("{ram_gib}G")
    };
    let append = format!("crashkernel={crashkernel}");
    let run = run(
        name,
        &[
            "none",
            "--cpu",
            "max",
            "--mem",
            &mem,
            "--append",
            &append,
            "--timeout",
            "120",
        ],
    );
    run.assert_success();
    run
}

fn fact(run: &qemu_tests::Run, key: &str) -> u64 {
    run.lines(LineKind::Facts)
        .find_map(|line| line.number(key))
        .unwrap_or_else(|| panic!("no {key} fact\n{}", run.console))
}

fn check(run: &qemu_tests::Run, ram_gib: u64, crash_base: Option<u64>) {
    let ram = ram_gib * GIB;
    assert_eq!(fact(run, facts::RAM_BYTES), ram, "{}", run.console);
    let el2 = run
        .lines(LineKind::MapStats)
        .find(|line| line.value(map_stats::TABLE) == Some("el2"))
        .unwrap_or_else(|| panic!("no EL2 map-stats\n{}", run.console));
    let stat = |key: &str| {
        el2.number(key)
            .unwrap_or_else(|| panic!("no {key} in {el2}"))
    };
    assert_eq!(
        stat(map_stats::DESCRIPTORS),
        stat(map_stats::MINIMAL_DESCRIPTORS),
        "the EL2 map is not the minimal cover: {el2}"
    );
    assert_eq!(stat(map_stats::RAM_4K_BYTES), 0, "RAM mapped at 4K: {el2}");
    assert!(
        stat(map_stats::TABLE_PAGES) <= 16,
        "too many table pages for {ram_gib} GiB: {el2}"
    );
    let base = fact(run, facts::CRASH_BASE);
    let size = fact(run, facts::CRASH_SIZE);
    // Every GiB of RAM is one 1G block but those the crash region takes and the first
    // (the image's, at 4K for W^X) and one the pool may cut.
    assert!(
        stat(map_stats::LEAVES_1G) >= ram_gib - size.div_ceil(GIB) - 2,
        "RAM is not in 1G blocks: {el2}"
    );
    assert!(
        base >= RAM_BASE && base + size <= RAM_BASE + ram,
        "crash region [{base:#x}, +{size:#x}) outside RAM"
    );
    match crash_base {
        Some(asked) => assert_eq!(base, asked, "the crash region is not where asked"),
        None => assert!(
            base + size <= 1 << 32,
            "a low crash region above 4 GiB: {base:#x}"
        ),
    }
    for line in run.lines(LineKind::Ptdump) {
        if line.value(ptdump::TABLE) != Some("el2") {
            continue;
        }
        let (va, end) = (
            line.number(ptdump::VA).unwrap_or(0),
            line.number(ptdump::END).unwrap_or(0),
        );
        assert!(
            end <= base || va >= base + size,
            "the EL2 map covers the crash region: {line}"
        );
    }
}

macro_rules! big_machine_tests {
    ($($name:ident: $gib:literal, $crash:literal, $base:expr;)*) => {
        $(
            #[test]
            fn $name() {
                let run = boot(stringify!($name), $gib, $crash);
                check(&run, $gib, $base);
            }
        )*
    };
}

big_machine_tests! {
    ram_64g_crash_low: 64, "512M", None;
    ram_64g_crash_high: 64, "1G@0x800000000", Some(0x8_0000_0000);
    ram_256g_crash_low: 256, "256M", None;
    ram_256g_crash_high: 256, "2G@0x3000000000", Some(0x30_0000_0000);
    ram_1t_crash_low: 1024, "512M", None;
    ram_1t_crash_high: 1024, "4G@0xf000000000", Some(0xf0_0000_0000);
}

/// The selftests on a 64 GiB machine: the EL2 8 GiB range invalidation and the test
/// guest's permission changes in every GiB and in 8 GiB windows, on a CPU with
/// FEAT_TLBIRANGE, one without, and one without FEAT_BBM level 2.
fn selftest_64g(name: &str, cpu: &str) {
    let run = run(
        name,
        &["selftest", "--cpu", cpu, "--mem", "64G", "--timeout", "300"],
    );
    run.assert_success();
    for test in [
        "el2_8g_range_invalidation_covers_it_all",
        "protect_every_gib_then_restore_at_once",
    ] {
        assert!(
            run.console.contains(&format!("selftest: {test} ... ok")),
            "{test} did not pass on {cpu}\n{}",
            run.console
        );
    }
}

#[test]
fn selftests_on_64g_max() {
    selftest_64g("selftest-64g-max", "max");
}

#[test]
fn selftests_on_64g_neoverse_v1_without_range_tlbis() {
    selftest_64g("selftest-64g-v1", "neoverse-v1");
}

#[test]
fn selftests_on_64g_cortex_a72_with_break_before_make() {
    selftest_64g("selftest-64g-a72", "cortex-a72");
}

/// A Linux guest with all of a large machine's RAM: it boots to its checks (TCG
/// initialises its memmap, about 1.6% of its RAM, which the lazy backend commits).
fn linux_on(name: &str, cpu: &str, mem: &str, hypervisor_args: &str) {
    let run = run(
        name,
        &[
            "linux",
            "--cpu",
            cpu,
            "--mem",
            mem,
            "--append",
            hypervisor_args,
            "--check",
            "--timeout",
            "600",
        ],
    );
    run.assert_success();
    assert!(run.guest_printed(1, "guest-check: pass"), "{}", run.console);
    let given = run
        .lines(LineKind::Facts)
        .find_map(|line| line.number(facts::GUEST_RAM_BYTES))
        .unwrap_or_else(|| panic!("no guest_ram_bytes\n{}", run.console));
    let memtotal_kb: u64 = run
        .guest_lines(1)
        .find_map(|l| l.strip_prefix("guest-check: memtotal_kb="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no memtotal\n{}", run.console));
    // The kernel keeps some for itself (its image, memmap, reservations): at least 95%.
    assert!(
        memtotal_kb * 1024 >= given / 100 * 95,
        "MemTotal {memtotal_kb} kB of {given} bytes given"
    );
}

#[test]
fn linux_with_16g() {
    linux_on("linux-16g", "max", "16G", "");
}

#[test]
fn linux_with_64g_and_a_high_crash_region() {
    linux_on("linux-64g", "max", "64G", "crashkernel=1G@0x800000000");
}
