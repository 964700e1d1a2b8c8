//! How a run's outcome reaches the calling script.
//!
//! The last thing the hypervisor prints before PSCI SYSTEM_OFF is one marker line,
//! `hyp-exit: success` or `hyp-exit: failure: <reason>`. Scripts (scripts/run.sh, the
//! QEMU tests) take the outcome from that line; a run that ends without it (a hang, a
//! lost console) counts as a failure. A marker line works on any board, where QEMU's
//! semihosting exit would need `-semihosting` and a debugger-style trap.

use core::fmt;

pub const MARKER: &str = "hyp-exit:";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    Success,
    Failure(&'a str),
}

impl fmt::Display for Outcome<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Success => write!(f, "{MARKER} success"),
            Outcome::Failure(reason) => write!(f, "{MARKER} failure: {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_lines_are_stable() {
        assert_eq!(Outcome::Success.to_string(), "hyp-exit: success");
        assert_eq!(
            Outcome::Failure("bad DTB").to_string(),
            "hyp-exit: failure: bad DTB"
        );
    }
}
