//! Fault injection at boot: `fail_table_alloc=N` makes the N-th translation-table
//! allocation of the hypervisor fail. A clean Linux boot reports how many allocations boot
//! takes (`table_allocations=` in its facts); the sweep then fails each of them in turn —
//! the EL2 direct map, the heap's growth, the guest's stage 2 — and every run must stop
//! with a failure outcome that names the missing table memory, never a panic or an
//! unexpected exception. One past the last, the guest boots as usual.
//!
//! Failures of live operations (a split of the EL2 map, heap growth with 4K pages, a
//! guest's MEM_PROTECT) are the EL2 selftests `el2_*_without_a_table_*` (tests/selftest.rs):
//! they check the tables against a ptdump fingerprint taken before the failure.

use hyp_abi::console::{Outcome, facts};
use qemu_tests::{Run, run};

fn boot(name: &str, hypervisor_args: &str, check: bool) -> Run {
    let mut args = vec![
        "linux",
        "--cpu",
        "max",
        "--mem",
        "1G",
        "--append",
        hypervisor_args,
        "--timeout",
        "240",
    ];
    if check {
        args.push("--check");
    }
    run(name, &args)
}

fn fact(run: &Run, key: &str) -> u32 {
    run.fact(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} fact\n{}", run.console))
}

#[test]
fn every_boot_table_allocation_can_fail_cleanly() {
    let clean = boot("fault-injection-clean", "loglevel=info", true);
    clean.assert_success();
    let allocations = fact(&clean, facts::TABLE_ALLOCATIONS);
    assert_eq!(fact(&clean, facts::INJECTED_FAILURES), 0);
    assert!(
        allocations >= 3,
        "implausibly few table allocations at boot: {allocations}"
    );

    let mut reasons = std::collections::BTreeMap::<String, Vec<u32>>::new();
    for n in 1..=allocations {
        let run = boot(
            &format!("fault-injection-{n}"),
            &format!("fail_table_alloc={n}"),
            false,
        );
        let console = &run.console;
        assert!(
            console.contains(&format!("fault injection: table allocation #{n} fails")),
            "allocation #{n} was not failed\n{console}"
        );
        let outcome = run
            .outcome_line()
            .unwrap_or_else(|| panic!("#{n}: no outcome line\n{console}"));
        let Some(Outcome::Failure(reason)) = Outcome::parse(outcome) else {
            panic!("#{n}: boot did not stop with a failure: {outcome}\n{console}");
        };
        assert_ne!(
            run.status,
            Some(0),
            "#{n}: run.sh reported success for a failed boot"
        );
        assert!(
            console.contains("no memory for a translation table")
                || console.contains("heap: cannot grow"),
            "#{n}: the error does not name the missing table memory\n{console}"
        );
        for forbidden in ["panicked", "unexpected exception", "ESR_EL2"] {
            assert!(
                !console.contains(forbidden),
                "#{n}: {forbidden:?} in the console\n{console}"
            );
        }
        assert!(
            !console.contains("guest: entering at EL1"),
            "#{n}: the guest started on a failed boot\n{console}"
        );
        reasons.entry(reason.to_string()).or_default().push(n);
    }
    // The sweep reached each boot stage that allocates tables.
    for stage in ["EL2 map", "heap", "stage-2"] {
        assert!(
            reasons.keys().any(|r| r.contains(stage)),
            "no failure in the {stage} stage: {reasons:?}"
        );
    }
    eprintln!("fault injection: {allocations} allocations failed in turn: {reasons:?}");

    let past = boot(
        "fault-injection-past-boot",
        &format!("fail_table_alloc={}", allocations + 1),
        true,
    );
    past.assert_success();
    assert_eq!(fact(&past, facts::INJECTED_FAILURES), 0);
}
