//! The console protocol of the test guest. Every line starts with `selftest: `:
//!
//! ```text
//! selftest: <info text>                       free-form information (layout, numbers)
//! selftest: <name>: <detail>                  more about one test, before its result
//! selftest: <name> ... ok                     a passed test
//! selftest: <name> ... ok (<numbers>)         a passed test with what it measured
//! selftest: <name> ... FAILED: <why>          a failed test
//! selftest: <name> ... skipped: <why>         a test that could not run here
//! selftest: N passed, M failed                the last line, exactly once
//! ```
//!
//! Result lines match `^selftest: ([a-z0-9_]+) \.\.\. (ok|FAILED|skipped)`. Skipped tests
//! count as neither passed nor failed. An unexpected exception or a panic prints a
//! report, fails the running test (or counts one failure if none runs) and still ends
//! with the summary line. After it the guest powers off with PSCI SYSTEM_OFF.

use core::fmt::{self, Write};

use crate::fixed::Text;

pub const PREFIX: &str = "selftest: ";

/// What a test returns besides success.
#[derive(Clone, Copy, Debug)]
pub enum Failure {
    Failed(Text),
    Skipped(Text),
}

/// A test's result: `Ok` with an optional note of what it measured.
pub type TestResult = Result<Text, Failure>;

/// Makes a `Failure::Failed` from a format string.
#[macro_export]
macro_rules! failed {
    ($($arg:tt)*) => {
        $crate::report::Failure::Failed($crate::text!($($arg)*))
    };
}

/// Returns early with a failure unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            return Err($crate::failed!($($arg)*));
        }
    };
}

impl From<Text> for Failure {
    fn from(why: Text) -> Self {
        Self::Failed(why)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub passed: u32,
    pub failed: u32,
    pub skipped: u32,
}

impl Tally {
    pub fn record(&mut self, result: &TestResult) {
        match result {
            Ok(_) => self.passed += 1,
            Err(Failure::Failed(_)) => self.failed += 1,
            Err(Failure::Skipped(_)) => self.skipped += 1,
        }
    }
}

/// Writes the result line of test `name` (with its newline).
pub fn write_result(w: &mut impl Write, name: &str, result: &TestResult) -> fmt::Result {
    match result {
        Ok(note) if note.is_empty() => writeln!(w, "{PREFIX}{name} ... ok"),
        Ok(note) => writeln!(w, "{PREFIX}{name} ... ok ({note})"),
        Err(Failure::Failed(why)) => writeln!(w, "{PREFIX}{name} ... FAILED: {why}"),
        Err(Failure::Skipped(why)) => writeln!(w, "{PREFIX}{name} ... skipped: {why}"),
    }
}

/// Writes the summary line (with its newline).
pub fn write_summary(w: &mut impl Write, tally: &Tally) -> fmt::Result {
    writeln!(
        w,
        "{PREFIX}{} passed, {} failed",
        tally.passed, tally.failed
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text;

    fn line(name: &str, r: TestResult) -> String {
        let mut s = String::new();
        write_result(&mut s, name, &r).unwrap();
        s
    }

    #[test]
    fn result_lines() {
        assert_eq!(line("uid", Ok(Text::new())), "selftest: uid ... ok\n");
        assert_eq!(
            line("features", Ok(text!("bitmap {:#x}", 0xf))),
            "selftest: features ... ok (bitmap 0xf)\n"
        );
        assert_eq!(
            line("uid", Err(failed!("CALL_UID returned {}", -1))),
            "selftest: uid ... FAILED: CALL_UID returned -1\n"
        );
        assert_eq!(
            line("c", Err(Failure::Skipped(text!("one CPU")))),
            "selftest: c ... skipped: one CPU\n"
        );
    }

    #[test]
    fn tally_and_summary() {
        let mut t = Tally::default();
        t.record(&Ok(Text::new()));
        t.record(&Err(failed!("x")));
        t.record(&Err(Failure::Skipped(Text::new())));
        t.record(&Ok(Text::new()));
        assert_eq!(
            t,
            Tally {
                passed: 2,
                failed: 1,
                skipped: 1
            }
        );
        let mut s = String::new();
        write_summary(&mut s, &t).unwrap();
        assert_eq!(s, "selftest: 2 passed, 1 failed\n");
    }

    fn check(ok: bool) -> TestResult {
        ensure!(ok, "not ok: {}", 42);
        Ok(Text::new())
    }

    #[test]
    fn ensure_macro() {
        assert!(check(true).is_ok());
        assert!(matches!(check(false), Err(Failure::Failed(t)) if t.as_str() == "not ok: 42"));
    }
}
