"""QEMU command lines (from scripts/run.sh --print-qemu), running QEMU once, parsing the
hypervisor's machine-readable console lines, and the median (min-max) formatting every
table uses."""
import os
import re
import shlex
import statistics
import subprocess
import sys
import threading
import time

from . import ptdump_svg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
QEMU = "qemu-system-aarch64"
RUN_SH = os.path.join(REPO, "scripts", "run.sh")


class BenchError(Exception):
    """A benchmark that could not produce its numbers; the message says why."""


def progress(message):
    print("bench: " + message, file=sys.stderr, flush=True)


class QemuResult:
    def __init__(self, args, wall, rss_mib, console, code, timed_out, lines, started, stopped=None):
        self.args, self.wall, self.rss_mib = args, wall, rss_mib
        self.console, self.code, self.timed_out = console, code, timed_out
        self.lines = lines      # [(seconds since QEMU started, console line)]
        self.started = started  # what on_start returned
        self.stopped = stopped  # seconds since start when `stop` ended QEMU early, else None


# ---------------------------------------------------------------------------------------
# QEMU command lines: scripts/run.sh is the one place that knows the recipe (machine,
# CPUs, memory, loaders, console); the benchmarks ask it with --print-qemu.

def parse_print_qemu(text):
    """The argv in the output of `run.sh --print-qemu`: exactly one non-empty line, each
    argument in POSIX shell quoting (shlex.split reads it back), starting with QEMU."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise BenchError("run.sh --print-qemu printed %d lines, not one QEMU command line:\n%s" % (
            len(lines), tail(text, 1000)))
    try:
        argv = shlex.split(lines[0])
    except ValueError as error:
        raise BenchError("run.sh --print-qemu printed a line shlex cannot split (%s): %s" % (error, lines[0]))
    if not argv or os.path.basename(argv[0]) != QEMU:
        raise BenchError("run.sh --print-qemu printed no %s command line: %s" % (QEMU, lines[0]))
    return argv


_commands = {}


def qemu_command(mode, *options, extra=()):
    """The QEMU argv `scripts/run.sh MODE OPTIONS -- EXTRA` would run, from its
    --print-qemu, with setup and builds skipped (bench.py did both first) and the console
    log to /dev/null (run_qemu captures the console itself). Cached per arguments."""
    cmd = [RUN_SH, mode, "--print-qemu", "--skip-setup", "--log", os.devnull] + list(options)
    if extra:
        cmd += ["--"] + list(extra)
    key = tuple(cmd)
    if key not in _commands:
        try:
            result = subprocess.run(cmd, cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        except OSError as error:
            raise BenchError("cannot start %s: %s" % (RUN_SH, error))
        if result.returncode != 0:
            raise BenchError("%s failed (exit %d):\n%s" % (
                " ".join(shlex.quote(c) for c in cmd), result.returncode, tail(result.stderr, 1500)))
        _commands[key] = parse_print_qemu(result.stdout)
    return list(_commands[key])


def machine_summary(argv):
    """`-machine ... -nographic -nic none`: the machine options of a QEMU argv, for the
    report's header."""
    out = []
    for i, arg in enumerate(argv):
        if arg == "-machine" and i + 1 < len(argv):
            out += [arg, argv[i + 1]]
        elif arg == "-nographic":
            out.append(arg)
        elif arg == "-nic" and i + 1 < len(argv):
            out += [arg, argv[i + 1]]
    return " ".join(out)


def run_qemu(argv, timeout=300, log=None, on_start=None, stop=None):
    """Runs the QEMU command line `argv` (stdin closed, console captured): wall time, this
    child's own peak RSS (os.wait4), the console with each line's arrival time, the exit
    code. `log` also gets the console; `on_start(proc, start)` runs once QEMU is started.
    `stop(line)`, when given, sees each console line as it arrives: once it returns true,
    QEMU is terminated (SIGTERM) and the rest of its output read to the end; the result's
    `stopped` is then the time of that line."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    timed_out = []

    def kill():
        timed_out.append(True)
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    started = on_start(proc, start) if on_start else None
    lines = []
    stopped = None
    try:
        for raw in proc.stdout:
            text = raw.decode("utf-8", "replace").replace("\r", "").rstrip("\n")
            lines.append((time.monotonic() - start, text))
            if stop is not None and stopped is None and stop(text):
                stopped = lines[-1][0]
                proc.terminate()
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
        proc.stdout.close()
    wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    console = "".join(text + "\n" for _, text in lines)
    if log:
        os.makedirs(os.path.dirname(log), exist_ok=True)
        with open(log, "w") as f:
            f.write(console)
    return QemuResult(argv, wall, usage.ru_maxrss / 1024, console, proc.returncode, bool(timed_out),
                      lines, started, stopped)


def command_line(argv):
    """A shell-readable QEMU command line for the report (paths relative to the repo)."""
    def quote(a):
        a = a.replace(REPO + "/", "")
        return "'%s'" % a if re.search(r"[\s,=\"]", a) and not a.startswith("-") else a
    return " ".join([os.path.basename(argv[0])] + [quote(a) for a in argv[1:]])


def tail(console, n=2500):
    return console[-n:]


# ---------------------------------------------------------------------------------------
# Console parsing.

def kv_ints(line):
    return {k: int(v, 0) for k, v in re.findall(r"(\w+)=(0x[0-9a-fA-F]+|\d+)\b", line)}


def find_line(console, prefix):
    """The last line starting with `prefix` (after any timestamp), or None."""
    found = None
    for line in console.splitlines():
        i = line.find(prefix)
        if i == 0 or (i > 0 and line[:i].strip().startswith("[")):
            found = line[i:]
    return found


def map_stats(console, table):
    line = find_line(console, "map-stats: table=%s " % table)
    if line is None:
        raise BenchError("no 'map-stats: table=%s' line in the console:\n%s" % (table, tail(console)))
    return kv_ints(line)


def heap_stats(console):
    line = find_line(console, "heap-stats:")
    if line is None:
        raise BenchError("no 'heap-stats:' line in the console:\n%s" % tail(console))
    return kv_ints(line)


def hyp_exit_ok(console):
    return find_line(console, "hyp-exit:") == "hyp-exit: success"


def guest_lines(console, tagged, guest=1):
    """The guest's console lines. Under the hypervisor (`tagged`) those it tagged `(gN) `
    for guest N, the tag removed; the console of a direct boot is the guest's alone."""
    if not tagged:
        return console.splitlines()
    tag = "(g%d) " % guest
    return [line[len(tag):] for line in console.splitlines() if line.startswith(tag)]


def guest_line(console, tagged, prefix):
    """The guest's last line starting with `prefix` (after any timestamp), or None."""
    return find_line("\n".join(guest_lines(console, tagged)), prefix)


def guest_checks_passed(console, tagged):
    return "guest-check: pass" in guest_lines(console, tagged)


def guest_memtotal_kb(console, tagged):
    line = guest_line(console, tagged, "guest-check: memtotal_kb=")
    return kv_ints(line)["memtotal_kb"] if line else None


EXIT_COUNTS = ("hvc", "smc", "sysreg", "data_abort", "instruction_abort", "mmio", "irq", "wfi", "other", "el2_us")


def hyp_exits(console):
    """The hypervisor's `hyp-exits:` line at the guest's power-off: counts by exit reason
    and `el2_us` (µs at EL2 on its exits, all CPUs), since the guest started."""
    line = find_line(console, "hyp-exits:")
    if line is None:
        raise BenchError("no 'hyp-exits:' line in the console:\n%s" % tail(console))
    counts = kv_ints(line)
    missing = [k for k in EXIT_COUNTS if k not in counts]
    if missing:
        raise BenchError("the 'hyp-exits:' line has no %s: %s" % (", ".join(missing), line))
    return counts


TIMERLAT_FIELDS = ("samples", "min_us", "median_us", "p99_us", "max_us")


def guest_timerlat(console, tagged):
    """The guest's `guest-timerlat:` line (tests/guest-tools/timerlat) as numbers."""
    line = guest_line(console, tagged, "guest-timerlat:")
    if line is None:
        raise BenchError("no 'guest-timerlat:' line from the guest:\n%s" % tail(console))
    values = kv_ints(line)
    if any(k not in values for k in TIMERLAT_FIELDS):
        raise BenchError("the guest's timerlat line is incomplete: %s" % line)
    return values


def kv_numbers(line):
    """`key=value` pairs of a line whose values are decimal numbers, with or without a
    fraction (`write_mib_s=114.3`): ints stay ints, the others are floats."""
    return {k: (float(v) if "." in v else int(v))
            for k, v in re.findall(r"(\w+)=(\d+(?:\.\d+)?)(?![\w.])", line)}


DISKBENCH_FIELDS = ("write_mib_s", "read_mib_s")


def guest_diskbench(console, tagged):
    """The guest's `guest-diskbench:` line (scripts/guest/check, `hyp.diskbench=1`: 64 MiB
    direct-I/O dd write and read) as numbers; an error when it is missing or says FAIL."""
    line = guest_line(console, tagged, "guest-diskbench:")
    if line is None:
        raise BenchError("no 'guest-diskbench:' line from the guest:\n%s" % tail(console))
    if line.rstrip().endswith("FAIL"):
        raise BenchError("the guest's disk benchmark failed: %s" % line)
    values = kv_numbers(line)
    missing = [k for k in DISKBENCH_FIELDS if k not in values]
    if missing:
        raise BenchError("the guest's diskbench line has no %s: %s" % (", ".join(missing), line))
    return values


SMMU_COUNTS = ("commands", "syncs", "events")


def smmu_stats(console):
    """The hypervisor's `smmu-stats:` line at the guest's power-off: SMMU commands issued,
    CMD_SYNCs waited for and DMA fault events, summed over the SMMUs it drives, since boot."""
    line = find_line(console, "smmu-stats:")
    if line is None:
        raise BenchError("no 'smmu-stats:' line in the console:\n%s" % tail(console))
    counts = kv_ints(line)
    missing = [k for k in SMMU_COUNTS if k not in counts]
    if missing:
        raise BenchError("the 'smmu-stats:' line has no %s: %s" % (", ".join(missing), line))
    return counts


def guest_kernel_lines(console, tagged, prefix):
    """The guest's kernel-log lines `prefix ...` (after any `[ seconds]` timestamp), from
    `prefix` on, in order."""
    out = []
    for line in guest_lines(console, tagged):
        i = line.find(prefix)
        if i == 0 or (i > 0 and line[:i].strip().startswith("[")):
            out.append(line[i:])
    return out


def hypmem_report(console, tagged):
    """What the hypmem module's self-test (scripts/guest-module, `hyp.modtest=1`) printed:
    `protects`, the statuses of its MEM_PROTECT calls in order; `stats`, {"before": {...},
    "after": {...}}, the counters of its STATS lines (every group it printed, merged);
    `passed`, whether the guest's /init reported `guest-modtest: pass`."""
    protects, stats = [], {}
    for line in guest_kernel_lines(console, tagged, "hypmem: "):
        m = re.match(r"hypmem: MEM_PROTECT\(.*\) = (-?\d+)\s*$", line)
        if m:
            protects.append(int(m.group(1)))
            continue
        m = re.match(r"hypmem: STATS (\w+): (.*)$", line)
        if m:
            stats.setdefault(m.group(1), {}).update(kv_ints(m.group(2)))
    passed = "guest-modtest: pass" in guest_lines(console, tagged)
    return {"protects": protects, "stats": stats, "passed": passed}


def ptdump_runs(console, table):
    runs = ptdump_svg.parse_log(console).dumps.get(table)
    if not runs:
        raise BenchError("no 'ptdump: table=%s' lines in the console" % table)
    return runs


CONT_ENTRIES = 16


class DumpShape:
    """The leaves a ptdump shows, by level, and those with the contiguous hint."""

    def __init__(self, runs):
        self.by_level = {1: 0, 2: 0, 3: 0}
        self.contiguous = 0
        for run in runs:
            self.by_level[run.level] += run.leaves
            self.contiguous += run.leaves if run.cont else 0
        self.leaves = sum(self.by_level.values())

    @property
    def tlb_entries(self):
        """TLB entries the map needs at most: a contiguous group of 16 leaves is one."""
        return self.leaves - self.contiguous + self.contiguous // CONT_ENTRIES


def minimal_cover(stats, table):
    """(descriptors, TLB entries) of the minimal cover the engine counted for what its
    ptdump showed (`minimal_descriptors=`, `minimal_tlb_entries=` of a map-stats line,
    parsed into `stats`)."""
    missing = [k for k in ("minimal_descriptors", "minimal_tlb_entries") if k not in stats]
    if missing:
        raise BenchError("the 'map-stats: table=%s' line has no %s (a hypervisor built before the engine "
                         "reported its minimal cover?)" % (table, " or ".join(missing)))
    return stats["minimal_descriptors"], stats["minimal_tlb_entries"]


# ---------------------------------------------------------------------------------------
# Numbers.

def median(values):
    return statistics.median(values)


def spread(values, fmt="{:.2f}"):
    """`median (min–max)`; a single value alone."""
    values = list(values)
    if not values:
        return "–"
    if len(values) == 1:
        return fmt.format(values[0])
    return (fmt + " (" + fmt + "–" + fmt + ")").format(median(values), min(values), max(values))


def same(values):
    """The value when all runs agree, else `median (min–max)`."""
    values = list(values)
    if len(set(values)) == 1:
        return str(values[0])
    return spread(values, "{:.0f}")


def ratio(a, b, fmt="{:.2f}"):
    return (fmt + "×").format(a / b) if b else "–"
