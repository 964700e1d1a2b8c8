//! The hypervisor alone (`scripts/run.sh none`): it boots at EL2 from QEMU's Image loader,
//! reads its device tree, reports the machine, and stops with the outcome marker.

use hyp_abi::console::{Outcome, facts};
use qemu_tests::run;

#[test]
fn max_cpu_reports_bbm_level_2_and_the_ram_size() {
    let run = run(
        "none-max",
        &["none", "--cpu", "max", "--mem", "2G", "--timeout", "120"],
    );
    run.assert_success();
    assert_eq!(
        run.fact(facts::BBM_LEVEL).as_deref(),
        Some("2"),
        "{}",
        run.console
    );
    assert_eq!(run.fact(facts::TLBI_RANGE).as_deref(), Some("1"));
    assert_eq!(run.fact(facts::RAM_BYTES).as_deref(), Some("2147483648"));
    assert_eq!(run.fact(facts::CPUS).as_deref(), Some("2"));
    assert_eq!(run.outcome(), Some(Outcome::Success));
}

#[test]
fn cortex_a72_reports_bbm_level_0() {
    let run = run(
        "none-a72",
        &[
            "none",
            "--cpu",
            "cortex-a72",
            "--smp",
            "4",
            "--mem",
            "3G",
            "--timeout",
            "120",
        ],
    );
    run.assert_success();
    assert_eq!(
        run.fact(facts::BBM_LEVEL).as_deref(),
        Some("0"),
        "{}",
        run.console
    );
    assert_eq!(run.fact(facts::TLBI_RANGE).as_deref(), Some("0"));
    assert_eq!(
        run.fact(facts::RAM_BYTES).as_deref(),
        Some(&*(3u64 << 30).to_string())
    );
    assert_eq!(run.fact(facts::CPUS).as_deref(), Some("4"));
}
