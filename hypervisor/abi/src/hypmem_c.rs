//! `scripts/guest-module/hypmem.c` (the Linux module that drives the hypercalls from a
//! stock kernel) keeps its own copy of the ABI numbers, because it is C built against
//! the kernel's headers. This test reads its `#define`s and its UID table and checks
//! each against this crate, so the two cannot drift apart unnoticed.
//!
//! Every `HYP_*` and `PERM_*` define must be one the test knows; the function IDs, the
//! permission bits and the UID are required. Status codes, STATS groups and FEATURES
//! bits are checked when the module names them (today it compares with 0 and uses
//! `BIT(1)`, `BIT(2)` and a literal group 0).

use std::collections::BTreeMap;
use std::path::Path;

use crate::hypercall::*;

/// The defines the module must have, with the crate's value.
const REQUIRED: [(&str, i128); 9] = [
    ("HYP_CALL_UID", CALL_UID as i128),
    ("HYP_FEATURES", FEATURES as i128),
    ("HYP_MEM_PROTECT", MEM_PROTECT as i128),
    ("HYP_MEM_QUERY", MEM_QUERY as i128),
    ("HYP_STATS", STATS as i128),
    ("PERM_R", PERM_READ as i128),
    ("PERM_W", PERM_WRITE as i128),
    ("PERM_X", PERM_EXECUTE as i128),
    ("PERM_RWX", PERM_ALL as i128),
];

/// Defines the module may add; checked when present.
const OPTIONAL: [(&str, i128); 12] = [
    ("HYP_SUCCESS", SUCCESS as i128),
    ("HYP_NOT_SUPPORTED", NOT_SUPPORTED as i128),
    ("HYP_INVALID_PARAMETER", INVALID_PARAMETER as i128),
    ("HYP_DENIED", DENIED as i128),
    ("HYP_NO_MEMORY", NO_MEMORY as i128),
    ("HYP_STATS_SPLITS", STATS_SPLITS as i128),
    ("HYP_STATS_TLBI", STATS_TLBI as i128),
    ("HYP_STATS_TABLES", STATS_TABLES as i128),
    ("HYP_FEATURE_FEATURES", FEATURE_FEATURES as i128),
    ("HYP_FEATURE_MEM_PROTECT", FEATURE_MEM_PROTECT as i128),
    ("HYP_FEATURE_MEM_QUERY", FEATURE_MEM_QUERY as i128),
    ("HYP_FEATURE_STATS", FEATURE_STATS as i128),
];

/// Macros of the kernel's `include/linux/arm-smccc.h` the module may use, with the value
/// the header gives them (`ARM_SMCCC_CALL_VAL(FAST_CALL, SMC_32, OWNER_VENDOR_HYP,
/// 0xff01)`), so the test needs no kernel tree.
const KERNEL_MACROS: [(&str, i128); 1] = [("ARM_SMCCC_VENDOR_HYP_CALL_UID_FUNC_ID", 0x8600_ff01)];

fn source() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/guest-module/hypmem.c");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Removes `/* */` and `//` comments, keeping line breaks, so defines and tables read
/// as code.
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let block = rest.find("/*");
        let line = rest.find("//");
        match (block, line) {
            (Some(b), l) if l.is_none_or(|l| b < l) => {
                out.push_str(&rest[..b]);
                let end = rest[b..].find("*/").map_or(rest.len(), |e| b + e + 2);
                out.extend(rest[b..end].chars().filter(|&c| c == '\n'));
                rest = &rest[end..];
            }
            (_, Some(l)) => {
                out.push_str(&rest[..l]);
                rest = &rest[l..];
                rest = &rest[rest.find('\n').unwrap_or(rest.len())..];
            }
            _ => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

/// The object-like `#define NAME VALUE` lines, as (name, value text, comment on the
/// line).
fn defines(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.trim_start().strip_prefix("#define")?;
            let rest = rest.trim_start();
            let name_end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let (name, value) = rest.split_at(name_end);
            if value.starts_with('(') {
                return None; // a function-like macro such as pr_fmt(fmt)
            }
            let comment = line
                .split_once("/*")
                .map(|(_, c)| c.trim_end().trim_end_matches("*/").trim().to_string())
                .unwrap_or_default();
            let value = without_comments(value).trim().to_string();
            Some((name.to_string(), value, comment))
        })
        .collect()
}

/// Evaluates a C constant expression of numbers (with `U`/`L` suffixes), earlier
/// defines, known kernel macros, `BIT(n)`, unary `-`, `<<`, `|` and parentheses.
struct Evaluator<'a> {
    tokens: Vec<&'a str>,
    position: usize,
    known: &'a BTreeMap<String, i128>,
}

impl<'a> Evaluator<'a> {
    fn evaluate(text: &'a str, known: &'a BTreeMap<String, i128>) -> Result<i128, String> {
        let mut tokens = Vec::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            let len = if rest.starts_with("<<") {
                2
            } else if rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len())
            } else {
                rest.chars().next().map_or(1, char::len_utf8)
            };
            tokens.push(&rest[..len]);
            rest = rest[len..].trim_start();
        }
        let mut evaluator = Evaluator {
            tokens,
            position: 0,
            known,
        };
        let value = evaluator.or()?;
        match evaluator.tokens.get(evaluator.position) {
            None => Ok(value),
            Some(extra) => Err(format!("unexpected {extra:?} in {text:?}")),
        }
    }

    fn next(&mut self) -> Option<&'a str> {
        let token = self.tokens.get(self.position).copied();
        self.position += 1;
        token
    }

    fn peek(&self) -> Option<&'a str> {
        self.tokens.get(self.position).copied()
    }

    fn expect(&mut self, want: &str) -> Result<(), String> {
        match self.next() {
            Some(token) if token == want => Ok(()),
            other => Err(format!("expected {want:?}, found {other:?}")),
        }
    }

    fn or(&mut self) -> Result<i128, String> {
        let mut value = self.shift()?;
        while self.peek() == Some("|") {
            self.position += 1;
            value |= self.shift()?;
        }
        Ok(value)
    }

    fn shift(&mut self) -> Result<i128, String> {
        let value = self.unary()?;
        if self.peek() == Some("<<") {
            self.position += 1;
            let by = self.unary()?;
            return u32::try_from(by)
                .ok()
                .and_then(|by| value.checked_shl(by))
                .ok_or_else(|| format!("shift by {by}"));
        }
        Ok(value)
    }

    fn unary(&mut self) -> Result<i128, String> {
        match self.next() {
            Some("-") => Ok(-self.unary()?),
            Some("(") => {
                let value = self.or()?;
                self.expect(")")?;
                Ok(value)
            }
            Some("BIT") => {
                self.expect("(")?;
                let bit = self.or()?;
                self.expect(")")?;
                u32::try_from(bit)
                    .ok()
                    .and_then(|bit| 1i128.checked_shl(bit))
                    .ok_or_else(|| format!("BIT({bit})"))
            }
            Some(token) if token.starts_with(|c: char| c.is_ascii_digit()) => {
                let digits = token.trim_end_matches(['u', 'U', 'l', 'L']);
                let parsed = match digits.strip_prefix("0x").or(digits.strip_prefix("0X")) {
                    Some(hex) => i128::from_str_radix(hex, 16),
                    None => digits.parse(),
                };
                parsed.map_err(|e| format!("number {token:?}: {e}"))
            }
            Some(name) => self
                .known
                .get(name)
                .copied()
                .ok_or_else(|| format!("unknown name {name:?}")),
            None => Err("unexpected end".to_string()),
        }
    }
}

/// The values of the module's defines that evaluate, in the module's order; the
/// `HYP_*`/`PERM_*` ones must evaluate.
fn evaluated_defines(text: &str) -> BTreeMap<String, i128> {
    let mut known: BTreeMap<String, i128> = KERNEL_MACROS
        .iter()
        .map(|&(name, value)| (name.to_string(), value))
        .collect();
    for (name, value, comment) in defines(text) {
        let abi = name.starts_with("HYP_") || name.starts_with("PERM_");
        match Evaluator::evaluate(&value, &known) {
            Ok(number) => {
                // A comment that is just a number states the value (`/* 0x8600ff01 */`
                // after a kernel macro): it must be right too.
                if let Ok(stated) = Evaluator::evaluate(&comment, &BTreeMap::new()) {
                    assert_eq!(
                        stated, number,
                        "hypmem.c: {name} is {number:#x} but its comment says {comment:?}"
                    );
                }
                known.insert(name, number);
            }
            Err(why) if abi => panic!("hypmem.c: cannot evaluate {name} = {value:?}: {why}"),
            Err(_) => {}
        }
    }
    known
}

/// The `hyp_uid[4] = { ... }` table.
fn uid_table(text: &str) -> [u32; 4] {
    let start = text
        .find("hyp_uid[4]")
        .unwrap_or_else(|| panic!("hypmem.c has no hyp_uid[4] table"));
    let body = text[start..]
        .split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(body, _)| body)
        .unwrap_or_else(|| panic!("hypmem.c: hyp_uid has no {{ }} initialiser"));
    let words: Vec<u32> = body
        .split(',')
        .map(str::trim)
        .filter(|word| !word.is_empty())
        .map(|word| {
            let value = Evaluator::evaluate(word, &BTreeMap::new())
                .unwrap_or_else(|e| panic!("hypmem.c: hyp_uid word {word:?}: {e}"));
            u32::try_from(value).unwrap_or_else(|_| panic!("hyp_uid word {word:?} is not 32-bit"))
        })
        .collect();
    words
        .try_into()
        .unwrap_or_else(|words| panic!("hypmem.c: hyp_uid has {words:?}, want 4 words"))
}

#[test]
fn hypmem_c_uses_the_crates_function_ids_permissions_and_uid() {
    let text = source();
    let values = evaluated_defines(&text);
    for (name, want) in REQUIRED {
        let got = values
            .get(name)
            .unwrap_or_else(|| panic!("hypmem.c lacks #define {name}"));
        assert_eq!(
            *got, want,
            "hypmem.c: {name} = {got:#x}, the ABI says {want:#x}"
        );
    }
    for (name, want) in OPTIONAL {
        if let Some(got) = values.get(name) {
            assert_eq!(
                *got, want,
                "hypmem.c: {name} = {got:#x}, the ABI says {want:#x}"
            );
        }
    }
    let checked: Vec<&str> = REQUIRED.iter().chain(&OPTIONAL).map(|&(n, _)| n).collect();
    for name in values.keys() {
        let abi = name.starts_with("HYP_") || name.starts_with("PERM_");
        assert!(
            !abi || checked.contains(&name.as_str()),
            "hypmem.c defines {name}, which this test does not check: add it to REQUIRED or \
             OPTIONAL in hypervisor/abi/src/hypmem_c.rs"
        );
    }
    assert_eq!(
        uid_table(&without_comments(&text)),
        UID,
        "hypmem.c: hyp_uid"
    );
    assert!(
        text.contains(UUID),
        "hypmem.c does not spell the UUID {UUID} it reports"
    );
}

#[test]
fn the_reader_understands_the_c_it_meets() {
    let text = "#define pr_fmt(fmt) KBUILD_MODNAME \": \" fmt\n\
                #define HYP_CALL_UID\tARM_SMCCC_VENDOR_HYP_CALL_UID_FUNC_ID\t/* 0x8600ff01 */\n\
                #define PERM_R 1\n#define PERM_W 2 // write\n\
                #define PERM_RWX\t(PERM_R | PERM_W | 4)\n\
                #define HYP_DENIED (-4)\n#define HYP_FEATURE_STATS BIT(3)\n\
                #define PATTERN 0x6879706d656d0000ULL\n\
                static const u32 hyp_uid[4] = { 0x61015b77, 0x28436ebe, /* x */ 0x3368b7bc, 0x1da22b09 };\n";
    let values = evaluated_defines(text);
    assert_eq!(values["HYP_CALL_UID"], 0x8600_ff01);
    assert_eq!(values["PERM_W"], 2);
    assert_eq!(values["PERM_RWX"], 7);
    assert_eq!(values["HYP_DENIED"], -4);
    assert_eq!(values["HYP_FEATURE_STATS"], 8);
    assert_eq!(values["PATTERN"], 0x6879_706d_656d_0000);
    assert!(!values.contains_key("pr_fmt"));
    assert_eq!(uid_table(&without_comments(text)), UID);
}

#[test]
#[should_panic(expected = "comment says")]
fn a_wrong_value_comment_is_caught() {
    evaluated_defines(
        "#define HYP_CALL_UID ARM_SMCCC_VENDOR_HYP_CALL_UID_FUNC_ID /* 0x8600ff02 */\n",
    );
}
