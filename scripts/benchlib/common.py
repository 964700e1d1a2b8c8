"""Running QEMU once, parsing the hypervisor's machine-readable console lines, and the
median (min-max) formatting every table uses."""
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
QEMU = "qemu-system-aarch64"
MACHINE_OPTS = "virt,virtualization=on,gic-version=3"
MACHINE = ["-machine", MACHINE_OPTS, "-nographic", "-nic", "none"]


class BenchError(Exception):
    """A benchmark that could not produce its numbers; the message says why."""


def progress(message):
    print("bench: " + message, file=sys.stderr, flush=True)


class QemuResult:
    def __init__(self, args, wall, rss_mib, console, code, timed_out, lines, started):
        self.args, self.wall, self.rss_mib = args, wall, rss_mib
        self.console, self.code, self.timed_out = console, code, timed_out
        self.lines = lines      # [(seconds since QEMU started, console line)]
        self.started = started  # what on_start returned


def run_qemu(args, timeout=300, log=None, on_start=None):
    """Runs QEMU with `args` (stdin closed, console captured): wall time, this child's
    own peak RSS (os.wait4), the console with each line's arrival time, the exit code.
    `log` also gets the console; `on_start(proc, start)` runs once QEMU is started."""
    start = time.monotonic()
    proc = subprocess.Popen([QEMU] + args, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    timed_out = []

    def kill():
        timed_out.append(True)
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    started = on_start(proc, start) if on_start else None
    lines = []
    try:
        for raw in proc.stdout:
            text = raw.decode("utf-8", "replace").replace("\r", "").rstrip("\n")
            lines.append((time.monotonic() - start, text))
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    console = "".join(text + "\n" for _, text in lines)
    if log:
        os.makedirs(os.path.dirname(log), exist_ok=True)
        with open(log, "w") as f:
            f.write(console)
    return QemuResult(args, wall, usage.ru_maxrss / 1024, console, proc.returncode, bool(timed_out),
                      lines, started)


def command_line(args):
    """A shell-readable QEMU command line for the report (paths relative to the repo)."""
    def quote(a):
        a = a.replace(REPO + "/", "")
        return "'%s'" % a if re.search(r"[\s,=\"]", a) and not a.startswith("-") else a
    return " ".join([QEMU] + [quote(a) for a in args])


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


def guest_memtotal_kb(console):
    m = re.findall(r"guest-check: memtotal_kb=(\d+)", console)
    return int(m[-1]) if m else None


_ptdump_svg = None


def ptdump_svg():
    """scripts/ptdump-svg.py as a module (its parser and renderer)."""
    global _ptdump_svg
    if _ptdump_svg is None:
        path = os.path.join(REPO, "scripts", "ptdump-svg.py")
        spec = importlib.util.spec_from_file_location("ptdump_svg", path)
        _ptdump_svg = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(_ptdump_svg)
    return _ptdump_svg


def ptdump_runs(console, table):
    runs = ptdump_svg().parse_log(console).dumps.get(table)
    if not runs:
        raise BenchError("no 'ptdump: table=%s' lines in the console" % table)
    return runs


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
