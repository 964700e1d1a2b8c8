//! The Linux/aarch64 half: process entry, raw system calls, the sampling loop.
use core::arch::{asm, global_asm};

use timerlat::{LineBuf, MAX_SAMPLES, Summary, lateness, next_deadline, parse_count};

const SYS_WRITE: usize = 64;
const SYS_EXIT_GROUP: usize = 94;
const SYS_CLOCK_GETTIME: usize = 113;
const SYS_CLOCK_NANOSLEEP: usize = 115;
const SYS_PRCTL: usize = 167;
const CLOCK_MONOTONIC: usize = 1;
const TIMER_ABSTIME: usize = 1;
const PR_SET_TIMERSLACK: usize = 29;
const EINTR: isize = 4;
const STDOUT: usize = 1;
const STDERR: usize = 2;

// The ELF entry: Linux starts the process with sp at argc, then the argv pointers (NULL
// ended), the environment and the auxiliary vector. `entry` gets that stack pointer.
global_asm!(
    ".section .text._start, \"ax\", %progbits",
    ".global _start",
    ".type _start, %function",
    "_start:",
    "    mov x29, xzr",
    "    mov x30, xzr",
    "    mov x0, sp",
    "    bl {entry}",
    "    brk #0",
    entry = sym entry,
);

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

impl Timespec {
    fn from_ns(ns: u64) -> Timespec {
        Timespec {
            sec: (ns / 1_000_000_000) as i64,
            nsec: (ns % 1_000_000_000) as i64,
        }
    }

    fn as_ns(&self) -> u64 {
        self.sec as u64 * 1_000_000_000 + self.nsec as u64
    }
}

/// A system call with up to four arguments; Linux's return value (negative: -errno).
///
/// # Safety
/// The arguments must be valid for system call `nr`: every pointer among them points to
/// memory of the size and mutability that call reads or writes.
unsafe fn syscall4(nr: usize, a0: usize, a1: usize, a2: usize, a3: usize) -> isize {
    let ret: isize;
    // SAFETY: `svc #0` enters the kernel with the call number in x8 and the arguments in
    // x0-x3; it returns in x0 and preserves every other register and the stack. The
    // caller vouches for the arguments.
    unsafe {
        asm!("svc #0", in("x8") nr, inlateout("x0") a0 => ret, in("x1") a1, in("x2") a2, in("x3") a3,
             options(nostack));
    }
    ret
}

fn exit(code: usize) -> ! {
    // SAFETY: exit_group takes no pointer.
    unsafe { syscall4(SYS_EXIT_GROUP, code, 0, 0, 0) };
    loop {
        core::hint::spin_loop();
    }
}

fn write_all(fd: usize, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a live slice of exactly the length passed; write only reads it.
        let n = unsafe { syscall4(SYS_WRITE, fd, bytes.as_ptr() as usize, bytes.len(), 0) };
        match n {
            n if n > 0 => bytes = &bytes[n as usize..],
            n if n == -EINTR => continue,
            _ => return,
        }
    }
}

fn monotonic_ns() -> u64 {
    let mut now = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `now` is a writable timespec that outlives the call.
    let ret = unsafe {
        syscall4(
            SYS_CLOCK_GETTIME,
            CLOCK_MONOTONIC,
            &raw mut now as usize,
            0,
            0,
        )
    };
    if ret != 0 {
        fail("clock_gettime(CLOCK_MONOTONIC) failed");
    }
    now.as_ns()
}

/// Sleeps until CLOCK_MONOTONIC reaches `deadline_ns` (again after a signal).
fn sleep_until(deadline_ns: u64) {
    let deadline = Timespec::from_ns(deadline_ns);
    loop {
        // SAFETY: `deadline` is a readable timespec that outlives the call; no remainder
        // pointer (NULL) with TIMER_ABSTIME.
        let ret = unsafe {
            syscall4(
                SYS_CLOCK_NANOSLEEP,
                CLOCK_MONOTONIC,
                TIMER_ABSTIME,
                &raw const deadline as usize,
                0,
            )
        };
        match ret {
            0 => return,
            // clock_nanosleep returns the error number itself, positive; be safe with both.
            r if r == EINTR || r == -EINTR => continue,
            _ => fail("clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) failed"),
        }
    }
}

/// The finest timer slack (1 ns), so a wake-up is not deferred by the default 50 µs.
fn set_timer_slack_1ns() {
    // SAFETY: PR_SET_TIMERSLACK takes a number, no pointer.
    unsafe { syscall4(SYS_PRCTL, PR_SET_TIMERSLACK, 1, 0, 0) };
}

fn fail(message: &str) -> ! {
    write_all(STDERR, b"guest-timerlat: error: ");
    write_all(STDERR, message.as_bytes());
    write_all(STDERR, b"\n");
    exit(2)
}

/// The first argument, if any, from the entry stack.
///
/// # Safety
/// `stack` is the stack pointer Linux started the process with.
unsafe fn first_argument(stack: *const usize) -> Option<&'static [u8]> {
    // SAFETY: the entry stack starts with argc, then argc pointers to NUL-ended strings
    // (the caller's guarantee); they live as long as the process.
    unsafe {
        if *stack < 2 {
            return None;
        }
        let arg = *stack.add(2) as *const u8;
        let mut len = 0;
        while *arg.add(len) != 0 {
            len += 1;
        }
        Some(core::slice::from_raw_parts(arg, len))
    }
}

extern "C" fn entry(stack: *const usize) -> ! {
    // SAFETY: `_start` passes the stack pointer the process started with.
    let arg = unsafe { first_argument(stack) };
    let count = parse_count(arg).unwrap_or_else(|message| fail(message));
    let mut samples = [0u64; MAX_SAMPLES];
    set_timer_slack_1ns();
    let mut deadline = monotonic_ns() + timerlat::PERIOD_NS;
    for sample in samples.iter_mut().take(count) {
        sleep_until(deadline);
        let now = monotonic_ns();
        *sample = lateness(deadline, now);
        deadline = next_deadline(deadline, now);
    }
    let Some(summary) = Summary::of(&mut samples[..count]) else {
        fail("no samples");
    };
    let mut line = LineBuf::new();
    if summary.write_line(&mut line).is_err() {
        fail("the result line does not fit its buffer");
    }
    write_all(STDOUT, line.as_bytes());
    exit(0)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    fail("panic")
}
