//! `platform::bootargs`: no input makes it panic, and formatting a valid
//! `HypervisorArgs` and parsing the text gives the same value back.

use std::num::NonZeroU32;

use log::LevelFilter;
use platform::bootargs::{
    self, CrashKernel, Diagnostic, HypervisorArgs, MAX_DIAGNOSTICS, MappingMode, SplitRequest,
};
use proptest::prelude::*;

fn level() -> impl Strategy<Value = LevelFilter> {
    prop_oneof![
        Just(LevelFilter::Error),
        Just(LevelFilter::Warn),
        Just(LevelFilter::Info),
        Just(LevelFilter::Debug),
        Just(LevelFilter::Trace),
    ]
}

/// Sizes as people write them (a multiple of a suffix) and arbitrary ones.
fn size() -> impl Strategy<Value = u64> {
    prop_oneof![
        (0u64..4096, 0u32..5).prop_map(|(n, unit)| n << (10 * unit)),
        any::<u64>(),
    ]
}

fn hypervisor_args() -> impl Strategy<Value = HypervisorArgs> {
    (
        prop::option::of(level()),
        prop::option::of(
            (size(), prop::option::of(size())).prop_map(|(size, base)| CrashKernel { size, base }),
        ),
        prop_oneof![
            Just(SplitRequest::Auto),
            Just(SplitRequest::Bbml2),
            Just(SplitRequest::Bbm)
        ],
        prop_oneof![Just(MappingMode::Blocks), Just(MappingMode::Pages)],
        prop::option::of(any::<NonZeroU32>()),
        prop::option::of(any::<NonZeroU32>()),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(
                log_level,
                crashkernel,
                split,
                mapping,
                fail_table_alloc,
                stage2_table_cap,
                selftest,
                panic_on_boot,
            )| HypervisorArgs {
                log_level,
                crashkernel,
                split,
                mapping,
                fail_table_alloc,
                stage2_table_cap,
                selftest,
                panic_on_boot,
            },
        )
}

/// Text made of the pieces the parser cares about, to reach deeper than random bytes.
fn command_line_ish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("loglevel".to_string()),
        Just("crashkernel".to_string()),
        Just("split".to_string()),
        Just("mapping".to_string()),
        Just("fail_table_alloc".to_string()),
        Just("fail-table-alloc".to_string()),
        Just("stage2_table_cap".to_string()),
        Just("selftest".to_string()),
        Just("=".to_string()),
        Just("\"".to_string()),
        Just(" ".to_string()),
        Just("@".to_string()),
        Just(",high".to_string()),
        Just(":".to_string()),
        Just("0x".to_string()),
        "[0-9]{1,24}",
        "[KMGTPEkmgtpeQB]",
        "[a-z]{1,6}",
        "\\PC{1,3}",
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let parsed = bootargs::parse(&text);
        prop_assert!(parsed.diagnostics.as_slice().len() <= MAX_DIAGNOSTICS);
        for diagnostic in parsed.diagnostics.iter() {
            let _ = diagnostic.to_string();
        }
        let _ = parsed.args.to_string();
    }

    #[test]
    fn command_line_like_text_never_panics(text in command_line_ish()) {
        let parsed = bootargs::parse(&text);
        for diagnostic in parsed.diagnostics.iter() {
            let _ = diagnostic.to_string();
        }
        // Whatever was accepted prints back to text that parses to the same value.
        let printed = parsed.args.to_string();
        let again = bootargs::parse(&printed);
        prop_assert!(again.diagnostics.is_empty(), "{:?}", again.diagnostics);
        prop_assert_eq!(again.args, parsed.args);
    }

    #[test]
    fn valid_args_round_trip(args in hypervisor_args()) {
        let text = args.to_string();
        let parsed = bootargs::parse(&text);
        prop_assert!(parsed.diagnostics.is_empty(), "{text}: {:?}", parsed.diagnostics);
        prop_assert_eq!(parsed.args, args, "{}", text);
    }

    #[test]
    fn unknown_options_between_valid_ones_change_nothing(
        args in hypervisor_args(),
        // Upper case: option keys compare case-sensitively, so these are never known ones.
        noise in prop::collection::vec("[A-Z][a-z_]{0,7}(=[a-z0-9]{0,8})?", 0..4),
    ) {
        let text = format!("{} {} {args}", noise.join(" "), noise.join(" "));
        let parsed = bootargs::parse(&text);
        prop_assert_eq!(parsed.args, args);
        let only_warnings = parsed.diagnostics.iter().all(|d| {
            matches!(d, Diagnostic::UnknownOption { .. } | Diagnostic::Omitted { errors: 0, .. })
        });
        prop_assert!(only_warnings, "{:?}", parsed.diagnostics);
    }
}
