//! `timerlat [COUNT]`: the guest's timer latency, for `scripts/bench.sh latency`.
//!
//! A static Linux/aarch64 program without libc (`scripts/build-timerlat.sh`, at
//! `/bin/timerlat` in the guest's initramfs). It sets its timer slack to 1 ns, then sleeps
//! with `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)` to a deadline every 1 ms, COUNT
//! times (default 2000), reads CLOCK_MONOTONIC after each wake-up and keeps how late it
//! woke (now − deadline). A wake-up past the next deadline skips it. At the end it prints
//! one line, integers in µs:
//!
//! `guest-timerlat: samples=N min_us=.. median_us=.. p99_us=.. max_us=..`
//!
//! The statistics and the line are in `lib.rs` (host-tested); this file is the entry and
//! the system calls. On the host it builds to a stub.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
mod linux;

#[cfg(not(target_os = "none"))]
fn main() {
    println!(
        "timerlat is a Linux/aarch64 guest program without libc: build it with \
         scripts/build-timerlat.sh (aarch64-unknown-none); on the host only its unit tests run"
    );
}
