//! The hypervisor's command line (`/chosen/bootargs`), Linux style: space-separated
//! `key=value` options (double quotes may group spaces), keys matching with `-` and `_`
//! alike.
//!
//! | option | values | default |
//! |---|---|---|
//! | `loglevel` | `error`, `warn`, `info`, `debug`, `trace` | the caller's |
//! | `crashkernel` | `SIZE[@BASE]`, Linux `memparse` numbers (`64M`, `256M@0x60000000`, `1G@2G`) | none |
//! | `split` | `auto`, `bbml2`, `bbm` (block-split strategy) | `auto` |
//! | `mapping` | `blocks`, `pages` (force 4 KiB pages in the EL2 map, the heap and stage 2: a benchmark baseline) | `blocks` |
//! | `fail_table_alloc` | `N` >= 1: the N-th page-table allocation fails (fault injection) | none |
//! | `stage2_table_cap` | `N` >= 1: each guest's stage 2 may hold at most N table pages; a MEM_PROTECT that needs more gets NO_MEMORY | the guest's own worst case (all its RAM in 4 KiB pages) |
//! | `selftest` | a bare flag: run the EL2 selftests and the test guest instead of Linux | off |
//! | `panic_on_boot` | a bare flag: panic after the boot report (exercises the crash record) | off |
//! | `passthrough` | `PATH[,PATH...]`: host DT nodes given to the guest, by full path with unit addresses (`passthrough=/pl031@9010000,/pl061@9030000`); at most 16; a `,` starts the next path only where a `/` follows it (node names may hold `,`) | none |
//!
//! Parsing never fails: an unknown option is a warning, a bad value an error that
//! leaves its option at the default, and parsing goes on. `passthrough` is kept apart,
//! in [`ParsedArgs::passthrough`], because its paths borrow from the command line; only
//! its syntax is checked here (a path that names no node, or a device that may not be
//! given, is the guest loader's error or refusal, with the reason). There is no heap, so the
//! [`Diagnostics`] come back in a fixed-capacity list whose last slot counts what did not
//! fit; the caller logs them (each implements `Display`; [`Diagnostic::severity`] says
//! at which level).

// The command line is untrusted input: no panicking shortcuts (checked by clippy).
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable
    )
)]

mod number;
mod passthrough;
mod tokens;

#[cfg(test)]
mod tests;

use core::fmt;
use core::num::NonZeroU32;

use arrayvec::ArrayVec;
use log::LevelFilter;

pub use passthrough::{MAX_PASSTHROUGH_PATHS, PassthroughPaths};

/// Diagnostics kept from one command line (the last slot may be [`Diagnostic::Omitted`]).
pub const MAX_DIAGNOSTICS: usize = 8;

/// The options, typed. Absent options are `None` or their default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HypervisorArgs {
    /// `loglevel=`.
    pub log_level: Option<LevelFilter>,
    /// `crashkernel=SIZE[@BASE]` as written; whether it fits is for the memory code.
    pub crashkernel: Option<CrashKernel>,
    /// `split=`.
    pub split: SplitRequest,
    /// `mapping=`.
    pub mapping: MappingMode,
    /// `fail_table_alloc=N`.
    pub fail_table_alloc: Option<NonZeroU32>,
    /// `stage2_table_cap=N`.
    pub stage2_table_cap: Option<NonZeroU32>,
    /// `selftest`.
    pub selftest: bool,
    /// `panic_on_boot`.
    pub panic_on_boot: bool,
}

/// `crashkernel=SIZE[@BASE]`. A size of 0 is kept: placement decides what it means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrashKernel {
    pub size: u64,
    pub base: Option<u64>,
}

/// What the command line asks of live block splits (`split=`): a request, resolved
/// against what every CPU implements into the engine's `pgtable::SplitStrategy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SplitRequest {
    /// BBML2 when the CPU has it (ID_AA64MMFR2_EL1.BBM >= 2), else break-before-make.
    #[default]
    Auto,
    /// Force the BBML2 path.
    Bbml2,
    /// Force break-before-make.
    Bbm,
}

/// What the mapping code may use (`mapping=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MappingMode {
    /// Blocks where alignment allows.
    #[default]
    Blocks,
    /// 4 KiB pages only: the baseline for benchmarks.
    Pages,
}

/// How a diagnostic should be logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Warning,
    Error,
}

/// Why a value was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueProblem {
    /// `option` without `=value`.
    Missing,
    /// `option=` with nothing after it (or nothing where a number should be).
    Empty,
    /// Not one of the option's words.
    NotOneOf { expected: &'static str },
    /// No digits where a number should be.
    BadNumber,
    /// A letter after a number that is not a size suffix.
    BadSuffix { suffix: char },
    /// Something other than `@BASE` (or the end) after a size or number.
    Unexpected { character: char },
    /// More than 64 bits (32 for a count).
    Overflow,
    /// Zero where the option needs at least 1.
    Zero,
    /// A Linux form of the option that this hypervisor does not implement.
    Unsupported { form: &'static str },
    /// Path number `index` (from 0) of a path list is not a device-tree path.
    BadPath { index: usize, reason: &'static str },
    /// More entries than the option holds.
    TooMany { limit: usize },
}

/// Something the caller should log about the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Diagnostic<'a> {
    /// An option this hypervisor does not know (a warning).
    UnknownOption { name: &'a str },
    /// A known option with a value it cannot use (an error); the option keeps its default.
    BadValue {
        option: &'static str,
        value: &'a str,
        problem: ValueProblem,
    },
    /// This many more diagnostics did not fit, `errors` of them errors.
    Omitted { count: usize, errors: usize },
}

impl Diagnostic<'_> {
    pub fn severity(&self) -> Severity {
        match self {
            Self::UnknownOption { .. } | Self::Omitted { errors: 0, .. } => Severity::Warning,
            Self::BadValue { .. } | Self::Omitted { .. } => Severity::Error,
        }
    }
}

/// The diagnostics of one command line, in order; when more arrive than fit, the last
/// slot becomes one [`Diagnostic::Omitted`] counting the rest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics<'a> {
    entries: ArrayVec<Diagnostic<'a>, MAX_DIAGNOSTICS>,
}

impl<'a> Diagnostics<'a> {
    fn push(&mut self, diagnostic: Diagnostic<'a>) {
        let error = usize::from(diagnostic.severity() == Severity::Error);
        if self.entries.len() + 1 < MAX_DIAGNOSTICS {
            let _ = self.entries.try_push(diagnostic);
        } else if let Some(Diagnostic::Omitted { count, errors }) = self.entries.last_mut() {
            *count += 1;
            *errors += error;
        } else {
            // The last free slot: it counts this one and all that follow.
            let _ = self.entries.try_push(Diagnostic::Omitted {
                count: 1,
                errors: error,
            });
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic<'a>> {
        self.entries.iter()
    }

    pub fn as_slice(&self) -> &[Diagnostic<'a>] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether any value was refused (unknown options are only warnings).
    pub fn has_errors(&self) -> bool {
        self.iter().any(|d| d.severity() == Severity::Error)
    }
}

/// The result of [`parse`]: the options and what to log about them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedArgs<'a> {
    pub args: HypervisorArgs,
    /// `passthrough=` (empty when absent or refused); it prints as the option's value.
    pub passthrough: PassthroughPaths<'a>,
    pub diagnostics: Diagnostics<'a>,
}

/// The options this parser knows, with the name they are reported under.
#[derive(Clone, Copy)]
enum KnownOption {
    LogLevel,
    CrashKernel,
    Split,
    Mapping,
    FailTableAlloc,
    Stage2TableCap,
    Selftest,
    PanicOnBoot,
    Passthrough,
}

const OPTIONS: [(&str, KnownOption); 9] = [
    ("loglevel", KnownOption::LogLevel),
    ("crashkernel", KnownOption::CrashKernel),
    ("split", KnownOption::Split),
    ("mapping", KnownOption::Mapping),
    ("fail_table_alloc", KnownOption::FailTableAlloc),
    ("stage2_table_cap", KnownOption::Stage2TableCap),
    ("selftest", KnownOption::Selftest),
    ("panic_on_boot", KnownOption::PanicOnBoot),
    ("passthrough", KnownOption::Passthrough),
];

const LOG_LEVELS: [(&str, LevelFilter); 5] = [
    ("error", LevelFilter::Error),
    ("warn", LevelFilter::Warn),
    ("info", LevelFilter::Info),
    ("debug", LevelFilter::Debug),
    ("trace", LevelFilter::Trace),
];
const SPLITS: [(&str, SplitRequest); 3] = [
    ("auto", SplitRequest::Auto),
    ("bbml2", SplitRequest::Bbml2),
    ("bbm", SplitRequest::Bbm),
];
const MAPPINGS: [(&str, MappingMode); 2] = [
    ("blocks", MappingMode::Blocks),
    ("pages", MappingMode::Pages),
];

/// Parses the hypervisor's command line. Never fails and never panics: see the module
/// documentation for what happens to unknown options and bad values. A later
/// occurrence of an option overrides an earlier one, as in Linux.
pub fn parse(cmdline: &str) -> ParsedArgs<'_> {
    let mut parsed = ParsedArgs::default();
    for arg in tokens::args(cmdline) {
        let Some(&(option_name, option)) = OPTIONS.iter().find(|(name, _)| same_key(name, arg.key))
        else {
            parsed
                .diagnostics
                .push(Diagnostic::UnknownOption { name: arg.key });
            continue;
        };
        let value = arg.value.unwrap_or_default();
        let outcome = match arg.value {
            // The flags: present means on.
            None if matches!(option, KnownOption::Selftest) => {
                parsed.args.selftest = true;
                Ok(())
            }
            None if matches!(option, KnownOption::PanicOnBoot) => {
                parsed.args.panic_on_boot = true;
                Ok(())
            }
            None => Err(ValueProblem::Missing),
            Some(value) if matches!(option, KnownOption::Passthrough) => {
                PassthroughPaths::parse(value).map(|paths| parsed.passthrough = paths)
            }
            Some(value) => parsed.args.apply(option, value),
        };
        if let Err(problem) = outcome {
            parsed.diagnostics.push(Diagnostic::BadValue {
                option: option_name,
                value,
                problem,
            });
        }
    }
    parsed
}

/// Linux `parameq`: keys compare with `-` and `_` alike.
fn same_key(known: &str, given: &str) -> bool {
    let normal = |b: u8| if b == b'-' { b'_' } else { b };
    known.len() == given.len()
        && known
            .bytes()
            .zip(given.bytes())
            .all(|(a, b)| normal(a) == normal(b))
}

fn word<T: Copy>(
    words: &[(&'static str, T)],
    value: &str,
    expected: &'static str,
) -> Result<T, ValueProblem> {
    words
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(value))
        .map(|&(_, item)| item)
        .ok_or(if value.is_empty() {
            ValueProblem::Empty
        } else {
            ValueProblem::NotOneOf { expected }
        })
}

impl HypervisorArgs {
    /// Sets `option` from `value`, or leaves the field as it was.
    fn apply(&mut self, option: KnownOption, value: &str) -> Result<(), ValueProblem> {
        match option {
            KnownOption::LogLevel => {
                self.log_level = Some(word(
                    &LOG_LEVELS,
                    value,
                    "error, warn, info, debug or trace",
                )?);
            }
            KnownOption::CrashKernel => self.crashkernel = Some(parse_crashkernel(value)?),
            KnownOption::Split => self.split = word(&SPLITS, value, "auto, bbml2 or bbm")?,
            KnownOption::Mapping => self.mapping = word(&MAPPINGS, value, "blocks or pages")?,
            KnownOption::FailTableAlloc => self.fail_table_alloc = Some(parse_count(value)?),
            KnownOption::Stage2TableCap => self.stage2_table_cap = Some(parse_count(value)?),
            KnownOption::Selftest | KnownOption::PanicOnBoot => {
                return Err(ValueProblem::Unexpected { character: '=' });
            }
            // Kept in `ParsedArgs` (it borrows the command line); `parse` handles it.
            KnownOption::Passthrough => return Err(ValueProblem::Missing),
        }
        Ok(())
    }
}

/// `SIZE[@BASE]` (Linux parse_crashkernel_simple). The range list (`R1:S1,...`) and
/// the `,high`/`,low` forms are refused as unsupported rather than misread.
fn parse_crashkernel(value: &str) -> Result<CrashKernel, ValueProblem> {
    // Linux tells the range form by a ':' in the value.
    if value.contains(':') {
        return Err(ValueProblem::Unsupported {
            form: "the range list form (RANGE:SIZE,...)",
        });
    }
    let (size, rest) = number::size(value)?;
    let base = match rest.as_bytes().first() {
        None => None,
        Some(b'@') => {
            let (base, after) = number::size(rest.get(1..).unwrap_or_default())?;
            if !after.is_empty() {
                return Err(after_size(after));
            }
            Some(base)
        }
        Some(b',') => {
            return Err(ValueProblem::Unsupported {
                form: "the ,high / ,low / ,cma suffixes",
            });
        }
        Some(_) => return Err(after_size(rest)),
    };
    Ok(CrashKernel { size, base })
}

/// What is wrong with `rest` after a size: a letter extends the suffix (`64MB`).
fn after_size(rest: &str) -> ValueProblem {
    match rest.chars().next() {
        Some(suffix) if suffix.is_alphabetic() => ValueProblem::BadSuffix { suffix },
        _ => unexpected(rest),
    }
}

/// A count >= 1 that fits 32 bits (decimal, `0x` hex or Linux octal).
fn parse_count(value: &str) -> Result<NonZeroU32, ValueProblem> {
    let (count, rest) = number::number(value)?;
    expect_end(rest)?;
    let count = u32::try_from(count).map_err(|_| ValueProblem::Overflow)?;
    NonZeroU32::new(count).ok_or(ValueProblem::Zero)
}

fn expect_end(rest: &str) -> Result<(), ValueProblem> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(unexpected(rest))
    }
}

fn unexpected(rest: &str) -> ValueProblem {
    ValueProblem::Unexpected {
        character: rest.chars().next().unwrap_or(' '),
    }
}

impl fmt::Display for ValueProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("needs a value (option=value)"),
            Self::Empty => f.write_str("the value is empty"),
            Self::NotOneOf { expected } => write!(f, "expected {expected}"),
            Self::BadNumber => f.write_str("not a number"),
            Self::BadSuffix { suffix } => {
                write!(f, "bad size suffix '{suffix}' (K, M, G, T, P or E)")
            }
            Self::Unexpected { character } => {
                write!(f, "unexpected '{character}' after the number")
            }
            Self::Overflow => f.write_str("the number is too large"),
            Self::Zero => f.write_str("must be at least 1"),
            Self::Unsupported { form } => write!(f, "{form} is not supported"),
            Self::BadPath { index, reason } => write!(f, "path {}: {reason}", index + 1),
            Self::TooMany { limit } => write!(f, "more than {limit} entries"),
        }
    }
}

impl fmt::Display for Diagnostic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownOption { name } => {
                write!(f, "bootargs: unknown option \"{name}\" ignored")
            }
            Self::BadValue {
                option,
                value,
                problem,
            } => write!(
                f,
                "bootargs: {option}=\"{value}\": {problem}; {option} keeps its default"
            ),
            Self::Omitted { count, errors } => write!(
                f,
                "bootargs: {count} more diagnostics omitted ({errors} of them errors)"
            ),
        }
    }
}

impl fmt::Display for CrashKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        number::write_size(f, self.size)?;
        match self.base {
            Some(base) => write!(f, "@{base:#x}"),
            None => Ok(()),
        }
    }
}

fn name_of<T: PartialEq>(words: &[(&'static str, T)], item: &T) -> &'static str {
    words
        .iter()
        .find(|(_, candidate)| candidate == item)
        .map_or("?", |(name, _)| name)
}

impl fmt::Display for SplitRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(name_of(&SPLITS, self))
    }
}

impl fmt::Display for MappingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(name_of(&MAPPINGS, self))
    }
}

/// The options that differ from the defaults, as a command line [`parse`] reads back
/// to the same value (empty for the defaults).
impl fmt::Display for HypervisorArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut separator = "";
        let mut option = |f: &mut fmt::Formatter<'_>, args: fmt::Arguments<'_>| {
            let result = write!(f, "{separator}{args}");
            separator = " ";
            result
        };
        if let Some(level) = self.log_level {
            // LevelFilter::Off has no option word; it is never parsed, so never printed.
            if let Some((name, _)) = LOG_LEVELS.iter().find(|(_, l)| *l == level) {
                option(f, format_args!("loglevel={name}"))?;
            }
        }
        if let Some(crashkernel) = self.crashkernel {
            option(f, format_args!("crashkernel={crashkernel}"))?;
        }
        if self.split != SplitRequest::default() {
            option(f, format_args!("split={}", self.split))?;
        }
        if self.mapping != MappingMode::default() {
            option(f, format_args!("mapping={}", self.mapping))?;
        }
        if let Some(count) = self.fail_table_alloc {
            option(f, format_args!("fail_table_alloc={count}"))?;
        }
        if let Some(cap) = self.stage2_table_cap {
            option(f, format_args!("stage2_table_cap={cap}"))?;
        }
        if self.selftest {
            option(f, format_args!("selftest"))?;
        }
        if self.panic_on_boot {
            option(f, format_args!("panic_on_boot"))?;
        }
        Ok(())
    }
}
