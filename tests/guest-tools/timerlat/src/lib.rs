//! The portable half of `timerlat` (the guest's timer-latency probe): the count argument,
//! the deadline schedule, the statistics over the samples and the one result line. Plain
//! `no_std` Rust without allocation, unit-tested on the host; `main.rs` holds the
//! Linux/aarch64 half (entry and system calls).
#![no_std]

#[cfg(test)]
extern crate std;

use core::fmt::{self, Write};

/// Samples taken when no count is given: two seconds of 1 ms periods.
pub const DEFAULT_COUNT: usize = 2000;
/// The most samples one run keeps (the fixed array they are sorted in).
pub const MAX_SAMPLES: usize = 60_000;
/// The period between two deadlines.
pub const PERIOD_NS: u64 = 1_000_000;

/// The sample count from the first argument (decimal, 1..=MAX_SAMPLES); `None` when it is
/// absent gives the default, anything else unreadable is an error.
pub fn parse_count(arg: Option<&[u8]>) -> Result<usize, &'static str> {
    let Some(digits) = arg else {
        return Ok(DEFAULT_COUNT);
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err("the count is not a decimal number");
    }
    let mut count: usize = 0;
    for d in digits {
        count = count
            .checked_mul(10)
            .and_then(|c| c.checked_add(usize::from(d - b'0')))
            .ok_or("the count is too large")?;
    }
    match count {
        0 => Err("the count must be at least 1"),
        n if n > MAX_SAMPLES => Err("the count is above the 60000 samples timerlat keeps"),
        n => Ok(n),
    }
}

/// How late a wake-up at `now_ns` is for `deadline_ns` (0 when it is not late at all).
pub fn lateness(deadline_ns: u64, now_ns: u64) -> u64 {
    now_ns.saturating_sub(deadline_ns)
}

/// The next deadline after `deadline_ns`: one period on, and further if the wake-up at
/// `now_ns` already passed it (a missed period is skipped, not measured twice).
pub fn next_deadline(deadline_ns: u64, now_ns: u64) -> u64 {
    let mut next = deadline_ns + PERIOD_NS;
    if next <= now_ns {
        let behind = (now_ns - next) / PERIOD_NS + 1;
        next += behind * PERIOD_NS;
    }
    next
}

/// What the result line reports, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub samples: usize,
    pub min_ns: u64,
    pub median_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

impl Summary {
    /// Sorts `samples` in place and summarises them; `None` for no samples.
    pub fn of(samples: &mut [u64]) -> Option<Summary> {
        let n = samples.len();
        if n == 0 {
            return None;
        }
        samples.sort_unstable();
        Some(Summary {
            samples: n,
            min_ns: samples[0],
            median_ns: median_of_sorted(samples),
            p99_ns: percentile_of_sorted(samples, 99),
            max_ns: samples[n - 1],
        })
    }

    /// `guest-timerlat: samples=N min_us=.. median_us=.. p99_us=.. max_us=..` and a newline,
    /// microseconds rounded to the nearest integer.
    pub fn write_line(&self, out: &mut impl Write) -> fmt::Result {
        writeln!(
            out,
            "guest-timerlat: samples={} min_us={} median_us={} p99_us={} max_us={}",
            self.samples,
            micros(self.min_ns),
            micros(self.median_ns),
            micros(self.p99_ns),
            micros(self.max_ns)
        )
    }
}

/// The middle value; for an even count the mean of the two middle ones, rounded down.
fn median_of_sorted(sorted: &[u64]) -> u64 {
    let n = sorted.len();
    let (low, high) = (sorted[(n - 1) / 2], sorted[n / 2]);
    low + (high - low) / 2
}

/// The nearest-rank percentile: the smallest value with at least `percent` % of the values
/// at or below it.
fn percentile_of_sorted(sorted: &[u64], percent: usize) -> u64 {
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn micros(ns: u64) -> u64 {
    (ns + 500) / 1000
}

/// A line built in a fixed buffer (there is no allocator); writing past its end fails.
pub struct LineBuf {
    bytes: [u8; 192],
    len: usize,
}

impl LineBuf {
    pub const fn new() -> LineBuf {
        LineBuf {
            bytes: [0; 192],
            len: 0,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Default for LineBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let room = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        room.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn line(summary: &Summary) -> std::string::String {
        let mut buf = LineBuf::new();
        summary.write_line(&mut buf).unwrap();
        std::str::from_utf8(buf.as_bytes()).unwrap().into()
    }

    #[test]
    fn count_defaults_and_refuses_what_it_cannot_keep() {
        assert_eq!(parse_count(None), Ok(DEFAULT_COUNT));
        assert_eq!(parse_count(Some(b"2000")), Ok(2000));
        assert_eq!(parse_count(Some(b"60000")), Ok(MAX_SAMPLES));
        assert!(parse_count(Some(b"60001")).is_err());
        assert!(parse_count(Some(b"0")).is_err());
        assert!(parse_count(Some(b"")).is_err());
        assert!(parse_count(Some(b"12x")).is_err());
        assert!(parse_count(Some(b"-5")).is_err());
        assert!(parse_count(Some(b"99999999999999999999999")).is_err());
    }

    #[test]
    fn deadlines_advance_one_period_and_skip_missed_ones() {
        assert_eq!(next_deadline(5_000_000, 5_000_040), 6_000_000);
        // Woken 2.5 periods late: the two deadlines already past are skipped.
        assert_eq!(next_deadline(5_000_000, 7_500_000), 8_000_000);
        // Exactly on the next deadline: that one is past too.
        assert_eq!(next_deadline(5_000_000, 6_000_000), 7_000_000);
        assert_eq!(lateness(5_000_000, 5_000_040), 40);
        assert_eq!(lateness(5_000_000, 4_999_999), 0);
    }

    #[test]
    fn summary_of_an_odd_count_sorts_and_takes_the_middle() {
        let mut samples = [30_000, 10_000, 20_000];
        let s = Summary::of(&mut samples).unwrap();
        assert_eq!(samples, [10_000, 20_000, 30_000]);
        assert_eq!(
            (s.samples, s.min_ns, s.median_ns, s.p99_ns, s.max_ns),
            (3, 10_000, 20_000, 30_000, 30_000)
        );
    }

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
        let mut samples = [4_000, 1_000, 3_000, 2_000];
        assert_eq!(Summary::of(&mut samples).unwrap().median_ns, 2_500);
    }

    #[test]
    fn p99_is_the_nearest_rank() {
        // 1..=1000 µs: the 990th value is the 99th percentile; 1..=2000 µs: the 1980th.
        let mut samples: Vec<u64> = (1..=1000).rev().map(|us| us * 1000).collect();
        assert_eq!(Summary::of(&mut samples).unwrap().p99_ns, 990_000);
        let mut samples: Vec<u64> = (1..=2000).map(|us| us * 1000).collect();
        let s = Summary::of(&mut samples).unwrap();
        assert_eq!(
            (s.p99_ns, s.max_ns, s.median_ns),
            (1_980_000, 2_000_000, 1_000_500)
        );
        // One outlier in a hundred is at or above p99 only when it is in the top 1 %.
        let mut samples = [50u64; 100];
        samples[7] = 9_999;
        assert_eq!(Summary::of(&mut samples).unwrap().p99_ns, 50);
        let mut one = [42];
        assert_eq!(Summary::of(&mut one).unwrap().p99_ns, 42);
    }

    #[test]
    fn no_samples_no_summary() {
        assert_eq!(Summary::of(&mut []), None);
    }

    #[test]
    fn the_line_rounds_to_whole_microseconds() {
        let s = Summary {
            samples: 2000,
            min_ns: 12_499,
            median_ns: 12_500,
            p99_ns: 98_000,
            max_ns: 1_234_567,
        };
        assert_eq!(
            line(&s),
            "guest-timerlat: samples=2000 min_us=12 median_us=13 p99_us=98 max_us=1235\n"
        );
    }

    #[test]
    fn the_line_buffer_refuses_to_overflow() {
        let mut buf = LineBuf::new();
        assert!(buf.write_str(&"x".repeat(192)).is_ok());
        assert!(buf.write_str("y").is_err());
        assert_eq!(buf.as_bytes().len(), 192);
    }
}
