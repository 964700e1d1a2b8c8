use super::*;

fn args(cmdline: &str) -> HypervisorArgs {
    let parsed = parse(cmdline);
    assert!(
        parsed.diagnostics.is_empty(),
        "{cmdline}: {:?}",
        parsed.diagnostics
    );
    parsed.args
}

fn crash(size: u64, base: Option<u64>) -> Option<CrashKernel> {
    Some(CrashKernel { size, base })
}

fn only_problem(cmdline: &str) -> (&'static str, ValueProblem) {
    let parsed = parse(cmdline);
    match parsed.diagnostics.as_slice() {
        [
            Diagnostic::BadValue {
                option, problem, ..
            },
        ] => (option, *problem),
        other => panic!("{cmdline}: {other:?}"),
    }
}

const M: u64 = 1 << 20;
const G: u64 = 1 << 30;

#[test]
fn empty_and_blank_give_defaults() {
    assert_eq!(args(""), HypervisorArgs::default());
    assert_eq!(args("  \t\n "), HypervisorArgs::default());
    assert_eq!(HypervisorArgs::default().to_string(), "");
}

#[test]
fn every_option() {
    let parsed = args(
        "loglevel=debug crashkernel=256M@0x60000000 split=bbml2 mapping=pages fail_table_alloc=3 stage2-table-cap=64 selftest",
    );
    assert_eq!(
        parsed,
        HypervisorArgs {
            log_level: Some(LevelFilter::Debug),
            crashkernel: crash(256 * M, Some(0x6000_0000)),
            split: SplitRequest::Bbml2,
            mapping: MappingMode::Pages,
            fail_table_alloc: NonZeroU32::new(3),
            stage2_table_cap: NonZeroU32::new(64),
            selftest: true,
            panic_on_boot: false,
        }
    );
}

#[test]
fn selftest_is_a_bare_flag() {
    assert!(args("selftest").selftest);
    assert!(!args("").selftest);
    assert_eq!(
        only_problem("selftest=1"),
        ("selftest", ValueProblem::Unexpected { character: '=' })
    );
}

#[test]
fn log_levels() {
    for (word, level) in LOG_LEVELS {
        assert_eq!(args(&format!("loglevel={word}")).log_level, Some(level));
    }
    assert_eq!(args("loglevel=WARN").log_level, Some(LevelFilter::Warn));
    assert_eq!(
        only_problem("loglevel=7"),
        (
            "loglevel",
            ValueProblem::NotOneOf {
                expected: "error, warn, info, debug or trace"
            }
        )
    );
}

#[test]
fn crashkernel_linux_forms() {
    assert_eq!(args("crashkernel=64M").crashkernel, crash(64 * M, None));
    assert_eq!(
        args("crashkernel=256M@0x60000000").crashkernel,
        crash(256 * M, Some(0x6000_0000))
    );
    assert_eq!(args("crashkernel=1G@2G").crashkernel, crash(G, Some(2 * G)));
    assert_eq!(args("crashkernel=1t").crashkernel, crash(1 << 40, None));
    assert_eq!(args("crashkernel=512k").crashkernel, crash(512 << 10, None));
    assert_eq!(args("crashkernel=0x1000").crashkernel, crash(0x1000, None));
    // Size 0 is returned as parsed; the memory code judges it.
    assert_eq!(args("crashkernel=0").crashkernel, crash(0, None));
    // As Linux simple_strtoull with base 0: a leading 0 means octal.
    assert_eq!(args("crashkernel=010M").crashkernel, crash(8 * M, None));
}

#[test]
fn crashkernel_errors_name_the_problem() {
    assert_eq!(
        only_problem("crashkernel="),
        ("crashkernel", ValueProblem::Empty)
    );
    assert_eq!(
        only_problem("crashkernel"),
        ("crashkernel", ValueProblem::Missing)
    );
    assert_eq!(
        only_problem("crashkernel=abc"),
        ("crashkernel", ValueProblem::BadNumber)
    );
    assert_eq!(
        only_problem("crashkernel=0x"),
        ("crashkernel", ValueProblem::BadNumber)
    );
    assert_eq!(
        only_problem("crashkernel=64Q"),
        ("crashkernel", ValueProblem::BadSuffix { suffix: 'Q' })
    );
    assert_eq!(
        only_problem("crashkernel=64MB"),
        ("crashkernel", ValueProblem::BadSuffix { suffix: 'B' })
    );
    assert_eq!(
        only_problem("crashkernel=64M@"),
        ("crashkernel", ValueProblem::Empty)
    );
    assert_eq!(
        only_problem("crashkernel=64M@1G+"),
        ("crashkernel", ValueProblem::Unexpected { character: '+' })
    );
    assert_eq!(
        only_problem("crashkernel=16E"),
        ("crashkernel", ValueProblem::Overflow)
    );
    assert_eq!(
        only_problem("crashkernel=99999999999999999999"),
        ("crashkernel", ValueProblem::Overflow)
    );
    assert_eq!(
        only_problem("crashkernel=08"),
        ("crashkernel", ValueProblem::Unexpected { character: '8' })
    );
    assert!(matches!(
        only_problem("crashkernel=512M-2G:64M,2G-:128M"),
        ("crashkernel", ValueProblem::Unsupported { .. })
    ));
    assert!(matches!(
        only_problem("crashkernel=256M,high"),
        ("crashkernel", ValueProblem::Unsupported { .. })
    ));
    assert!(matches!(
        only_problem("crashkernel=128M,low"),
        ("crashkernel", ValueProblem::Unsupported { .. })
    ));
}

#[test]
fn split_and_mapping() {
    assert_eq!(args("split=auto").split, SplitRequest::Auto);
    assert_eq!(args("split=bbm").split, SplitRequest::Bbm);
    assert_eq!(args("mapping=blocks").mapping, MappingMode::Blocks);
    assert_eq!(
        only_problem("split=fast"),
        (
            "split",
            ValueProblem::NotOneOf {
                expected: "auto, bbml2 or bbm"
            }
        )
    );
    assert_eq!(only_problem("mapping="), ("mapping", ValueProblem::Empty));
}

#[test]
fn fail_table_alloc_counts_from_one() {
    assert_eq!(
        args("fail_table_alloc=1").fail_table_alloc,
        NonZeroU32::new(1)
    );
    assert_eq!(
        args("fail-table-alloc=0x10").fail_table_alloc,
        NonZeroU32::new(16)
    );
    assert_eq!(
        only_problem("fail_table_alloc=0"),
        ("fail_table_alloc", ValueProblem::Zero)
    );
    assert_eq!(
        only_problem("fail_table_alloc=4294967296"),
        ("fail_table_alloc", ValueProblem::Overflow)
    );
    assert_eq!(
        only_problem("fail_table_alloc=2K"),
        (
            "fail_table_alloc",
            ValueProblem::Unexpected { character: 'K' }
        )
    );
}

#[test]
fn bad_value_keeps_the_default_and_parsing_goes_on() {
    let parsed = parse("split=bbml2 loglevel=loud mapping=pages");
    assert_eq!(parsed.args.log_level, None);
    assert_eq!(parsed.args.split, SplitRequest::Bbml2);
    assert_eq!(parsed.args.mapping, MappingMode::Pages);
    assert_eq!(parsed.diagnostics.as_slice().len(), 1);
    assert!(parsed.diagnostics.has_errors());
    // A bad later value leaves the earlier good one.
    let parsed = parse("split=bbm split=nope");
    assert_eq!(parsed.args.split, SplitRequest::Bbm);
}

#[test]
fn later_occurrence_wins() {
    assert_eq!(
        args("loglevel=error loglevel=trace").log_level,
        Some(LevelFilter::Trace)
    );
}

#[test]
fn unknown_options_are_warnings() {
    let parsed = parse("console=ttyAMA0 quiet loglevel=info");
    assert_eq!(parsed.args.log_level, Some(LevelFilter::Info));
    assert_eq!(
        parsed.diagnostics.as_slice(),
        &[
            Diagnostic::UnknownOption { name: "console" },
            Diagnostic::UnknownOption { name: "quiet" },
        ]
    );
    assert!(!parsed.diagnostics.has_errors());
    assert_eq!(
        parsed.diagnostics.as_slice()[1].to_string(),
        "bootargs: unknown option \"quiet\" ignored"
    );
}

#[test]
fn quotes_as_linux() {
    assert_eq!(
        args("loglevel=\"debug\"").log_level,
        Some(LevelFilter::Debug)
    );
    assert_eq!(
        args("\"loglevel=debug\"").log_level,
        Some(LevelFilter::Debug)
    );
    let parsed = parse("foo=\"a b c\" split=bbm");
    assert_eq!(
        parsed.diagnostics.as_slice(),
        &[Diagnostic::UnknownOption { name: "foo" }]
    );
    assert_eq!(parsed.args.split, SplitRequest::Bbm);
    // An unterminated quote runs to the end of the line.
    let parsed = parse("loglevel=\"debug split=bbm");
    assert_eq!(parsed.args.split, SplitRequest::Auto);
    assert!(matches!(
        parsed.diagnostics.as_slice(),
        [Diagnostic::BadValue {
            option: "loglevel",
            value: "debug split=bbm",
            ..
        }]
    ));
}

#[test]
fn tokens_match_linux_next_arg() {
    let split: Vec<_> = tokens::args(" a  b=1 \"c=2 3\" d=\"4 5\" e=\"\" =f \"\" g=h=i ")
        .map(|arg| (arg.key, arg.value))
        .collect();
    assert_eq!(
        split,
        [
            ("a", None),
            ("b", Some("1")),
            ("c", Some("2 3")),
            ("d", Some("4 5")),
            ("e", Some("")),
            ("", Some("f")),
            ("g", Some("h=i")),
        ]
    );
}

#[test]
fn diagnostics_overflow_into_one_entry() {
    let parsed = parse("a b c d e f g h i j loglevel=x");
    let all = parsed.diagnostics.as_slice();
    assert_eq!(all.len(), MAX_DIAGNOSTICS);
    assert_eq!(
        all[MAX_DIAGNOSTICS - 1],
        Diagnostic::Omitted {
            count: 4,
            errors: 1
        }
    );
    assert_eq!(all[MAX_DIAGNOSTICS - 1].severity(), Severity::Error);
    assert_eq!(
        all[MAX_DIAGNOSTICS - 1].to_string(),
        "bootargs: 4 more diagnostics omitted (1 of them errors)"
    );
}

#[test]
fn diagnostics_display_option_and_value() {
    let parsed = parse("crashkernel=64Q");
    assert_eq!(
        parsed.diagnostics.as_slice()[0].to_string(),
        "bootargs: crashkernel=\"64Q\": bad size suffix 'Q' (K, M, G, T, P or E); crashkernel keeps its default"
    );
}

#[test]
fn display_round_trips() {
    let all = HypervisorArgs {
        log_level: Some(LevelFilter::Trace),
        crashkernel: crash(3 * M + 4096, Some(0x1_2340_0000)),
        split: SplitRequest::Bbm,
        mapping: MappingMode::Pages,
        fail_table_alloc: NonZeroU32::new(42),
        stage2_table_cap: None,
        selftest: true,
        panic_on_boot: true,
    };
    let text = all.to_string();
    assert_eq!(
        text,
        "loglevel=trace crashkernel=3076K@0x123400000 split=bbm mapping=pages fail_table_alloc=42 selftest panic_on_boot"
    );
    assert_eq!(args(&text), all);
    assert_eq!(crash(64 * M, None).unwrap().to_string(), "64M");
    assert_eq!(crash(0, None).unwrap().to_string(), "0");
    assert_eq!(crash(12345, None).unwrap().to_string(), "12345");
}

fn passthrough(cmdline: &str) -> Vec<&str> {
    let parsed = parse(cmdline);
    assert!(
        parsed.diagnostics.is_empty(),
        "{cmdline}: {:?}",
        parsed.diagnostics
    );
    parsed.passthrough.as_slice().to_vec()
}

#[test]
fn passthrough_paths() {
    assert_eq!(passthrough(""), Vec::<&str>::new());
    assert!(parse("").passthrough.is_empty());
    assert_eq!(
        passthrough("passthrough=/pl031@9010000"),
        ["/pl031@9010000"]
    );
    assert_eq!(
        passthrough("loglevel=info passthrough=/pl031@9010000,/pl061@9030000 selftest"),
        ["/pl031@9010000", "/pl061@9030000"]
    );
    // A ',' inside a node name stays; only ",/" separates.
    assert_eq!(
        passthrough("passthrough=/soc/qcom,smd@1000,/soc/i2c@2000/rtc@68"),
        ["/soc/qcom,smd@1000", "/soc/i2c@2000/rtc@68"]
    );
    // Keys match with '-' and '_' alike; quotes group as for every option; the last
    // occurrence wins.
    assert_eq!(
        passthrough("passthrough=/a passthrough=\"/b,/c\""),
        ["/b", "/c"]
    );
    // The other options are untouched.
    assert_eq!(
        args("passthrough=/pl031@9010000"),
        HypervisorArgs::default()
    );
    let parsed = parse("passthrough=/pl031@9010000,/pl061@9030000");
    assert_eq!(
        parsed.passthrough.to_string(),
        "/pl031@9010000,/pl061@9030000"
    );
    assert_eq!(
        parse(&format!("passthrough={}", parsed.passthrough)).passthrough,
        parsed.passthrough
    );
    assert_eq!(
        parsed.passthrough.iter().collect::<Vec<_>>(),
        ["/pl031@9010000", "/pl061@9030000"]
    );
}

#[test]
fn passthrough_errors_name_the_path_and_keep_the_default() {
    for (cmdline, problem) in [
        ("passthrough", ValueProblem::Missing),
        ("passthrough=", ValueProblem::Empty),
        (
            "passthrough=pl031@9010000",
            ValueProblem::BadPath {
                index: 0,
                reason: "a path starts with '/' (the full path of a host DT node)",
            },
        ),
        (
            "passthrough=/",
            ValueProblem::BadPath {
                index: 0,
                reason: "the root node is not a device",
            },
        ),
        (
            "passthrough=/a,/b//c",
            ValueProblem::BadPath {
                index: 1,
                reason: "empty node name ('//' or a trailing '/')",
            },
        ),
        (
            "passthrough=/a/",
            ValueProblem::BadPath {
                index: 0,
                reason: "empty node name ('//' or a trailing '/')",
            },
        ),
        (
            "passthrough=/a,",
            ValueProblem::BadPath {
                index: 0,
                reason: "a node name ends with ','; paths are separated by ','",
            },
        ),
        (
            "passthrough=/a,,/b",
            ValueProblem::BadPath {
                index: 0,
                reason: "a node name ends with ','; paths are separated by ','",
            },
        ),
        (
            "passthrough=/a:b",
            ValueProblem::BadPath {
                index: 0,
                reason: "a node name holds only letters, digits and , . _ + - @",
            },
        ),
        (
            "passthrough=/pl031@",
            ValueProblem::BadPath {
                index: 0,
                reason: "a unit address is one non-empty word after one '@'",
            },
        ),
        (
            "passthrough=/a@1@2",
            ValueProblem::BadPath {
                index: 0,
                reason: "a unit address is one non-empty word after one '@'",
            },
        ),
        (
            "passthrough=/@1000",
            ValueProblem::BadPath {
                index: 0,
                reason: "a node name is empty before its '@'",
            },
        ),
    ] {
        let parsed = parse(cmdline);
        assert_eq!(only_problem(cmdline), ("passthrough", problem), "{cmdline}");
        assert!(parsed.passthrough.is_empty(), "{cmdline}");
        assert_eq!(parsed.diagnostics.as_slice()[0].severity(), Severity::Error);
    }
    let many: Vec<String> = (0..=MAX_PASSTHROUGH_PATHS)
        .map(|n| format!("/d@{n:x}"))
        .collect();
    let cmdline = format!("passthrough={}", many.join(","));
    assert_eq!(
        only_problem(&cmdline),
        (
            "passthrough",
            ValueProblem::TooMany {
                limit: MAX_PASSTHROUGH_PATHS
            }
        )
    );
    assert_eq!(
        parse("passthrough=/a,/b/").diagnostics.as_slice()[0].to_string(),
        "bootargs: passthrough=\"/a,/b/\": path 2: empty node name ('//' or a trailing '/'); \
         passthrough keeps its default"
    );
    // `/a,b` is one node named `a,b` (commas are legal in node names).
    assert_eq!(passthrough("passthrough=/a,b"), ["/a,b"]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 1000, failure_persistence: None, ..Default::default()
    })]

    /// Any value is accepted or refused with a diagnostic, never a panic; what is
    /// accepted prints back to the same paths, each a slice of the command line.
    #[test]
    fn passthrough_values_never_panic_and_round_trip(value in "[/a-z0-9,@._+:\"-]{0,40}") {
        let cmdline = format!("passthrough={value}");
        let parsed = parse(&cmdline);
        for diagnostic in parsed.diagnostics.iter() {
            let _ = diagnostic.to_string();
        }
        if parsed.diagnostics.is_empty() && !parsed.passthrough.is_empty() {
            let printed = format!("passthrough={}", parsed.passthrough);
            let again = parse(&printed);
            proptest::prop_assert!(again.diagnostics.is_empty(), "{printed}");
            proptest::prop_assert_eq!(again.passthrough, parsed.passthrough.clone());
            for path in parsed.passthrough.iter() {
                proptest::prop_assert!(path.starts_with('/'));
                proptest::prop_assert!(cmdline.contains(path));
            }
        }
    }
}
