"""Several guests at once (issue 20): boot wall time of two guests against one, and what
each additional guest costs the hypervisor, against Xen 4.17 booting the same dom0less
DTB on the same QEMU line (with --with-xen).

Every boot is `run.sh --guests N` (N = 1, 2) with the same guests: 1 GiB and one vCPU
each, Debian's kernel and the busybox initramfs, `hyp.idle=IDLE_SECONDS` so each guest
sits in userspace for a while and then powers off. The clock runs from QEMU's start to
the moment every guest has printed `guest-idle: begin` (its userspace is up).

Memory per additional guest:
- ours: what `hyp-facts: guest=N` reports for guest 2, its stage-2 table pages times 4 KiB
  plus the heap bytes its preparation kept (its `Vm`: vGIC, console queue, counters,
  boot recipe);
- Xen: its free memory (debug key `m`: Xen heap plus domain heap, typed on Xen's console
  once every guest is up) with one guest minus with two, less the second guest's RAM:
  everything Xen allocated for it (struct domain and vCPUs, p2m tables, vGIC, grant and
  event-channel tables, console ring).
"""
import os
import re
import select
import subprocess
import time

from .common import BenchError, command_line, median, progress, qemu_command, spread, tail
from .sections import guest_files
from .xen import ensure_xen

GUEST_MEM_MIB = 1024
IDLE_SECONDS = 20
MACHINE = ["--cpu", "max", "--smp", "2", "--mem", "3G"]
# Xen's console for the guests is its own vPL011 elsewhere (no earlycon at the host's
# PL011); its lines come back as "(XEN) DOMn: ...". Ours tags them "(gN) ".
OUR_CMDLINE = "console=ttyAMA0 earlycon=pl011,0x9000000 hyp.idle=%d" % IDLE_SECONDS
XEN_CMDLINE = "console=ttyAMA0 hyp.idle=%d" % IDLE_SECONDS
XEN_ARGS = "console=dtuart guest_loglvl=all"
CTRL_A = b"\x01"


def guests_command(count, hypervisor, append, cmdline):
    kernel, initrd = guest_files()
    options = list(MACHINE) + ["--hypervisor", hypervisor, "--guests", str(count),
                               "--kernel", kernel, "--initrd", initrd, "--guest-cmdline", cmdline]
    if append:
        options += ["--append", append]
    for guest in range(1, count + 1):
        options += ["--guest", str(guest), "--guest-mem", "%dM" % GUEST_MEM_MIB, "--guest-cpus", "1"]
    return qemu_command("linux", *options)


def guest_up(line, guest, xen):
    marker = "guest-idle: begin"
    if xen:
        return line.startswith("(XEN) DOM%d: " % guest) and marker in line
    return line.startswith("(g%d) " % guest) and marker in line


class Boot:
    def __init__(self, up_s, console, free_kib=None):
        self.up_s, self.console, self.free_kib = up_s, console, free_kib


def run_guests(argv, count, xen, timeout=300, log=None):
    """Boots, times until every guest is up; for Xen then types Ctrl-a x3 and `m` and
    reads its free memory. Ours runs to its own end (hyp-exit) for the facts lines."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines, pending, up = [], b"", set()
    up_s, free_kib, asked, switches = None, None, False, 0

    def send(keys):
        proc.stdin.write(keys)
        proc.stdin.flush()

    try:
        while time.monotonic() - start < timeout:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                line = raw.decode("utf-8", "replace").replace("\r", "")
                lines.append(line)
                for guest in range(1, count + 1):
                    if guest_up(line, guest, xen):
                        up.add(guest)
                if up_s is None and len(up) == count:
                    up_s = time.monotonic() - start
                    if xen:
                        # Xen's console input cycles DOM0 (none here), DOM1, ..., Xen, each
                        # step three Ctrl-a; once it says Xen has it, `m` dumps memory.
                        switches += 1
                        send(CTRL_A * 3)
                if xen and up_s is not None and not asked and "*** Serial input to " in line:
                    if "*** Serial input to Xen" in line:
                        send(b"m")
                        asked = True
                    elif switches <= count + 2:
                        switches += 1
                        send(CTRL_A * 3)
                if asked:
                    found = re.search(r"Dom heap: (\d+)kB free", line)
                    if found:
                        xen_heap = [int(m) for m in re.findall(r"Xen heap: (\d+)kB free", "\n".join(lines))]
                        free_kib = int(found.group(1)) + (xen_heap[-1] if xen_heap else 0)
                        proc.terminate()
            if free_kib is not None:
                break
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            rest, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            rest, _ = proc.communicate()
        lines += (pending + rest).decode("utf-8", "replace").replace("\r", "").splitlines()
    console = "\n".join(lines) + "\n"
    if log:
        os.makedirs(os.path.dirname(log), exist_ok=True)
        with open(log, "w") as f:
            f.write(console)
    if up_s is None:
        raise BenchError("%d guest(s)%s: not every guest came up:\n%s" % (
            count, " under Xen" if xen else "", tail(console)))
    if xen and free_kib is None:
        raise BenchError("Xen printed no free memory after the `m` key:\n%s" % tail(console))
    if not xen and "hyp-exit: success" not in console:
        raise BenchError("%d guest(s): no 'hyp-exit: success':\n%s" % (count, tail(console)))
    return Boot(up_s, console, free_kib)


def our_guest_cost(console, guest):
    """(stage-2 table bytes, heap bytes) the hypervisor reports for guest `guest`."""
    for line in console.splitlines():
        if line.startswith("hyp-facts: guest=%d " % guest):
            facts = dict(re.findall(r"(\w+)=(\S+)", line))
            return int(facts["stage2_tables"]) * 4096, int(facts["heap_bytes"])
    raise BenchError("no hyp-facts line for guest %d:\n%s" % (guest, tail(console)))


def section_guests(ctx):
    rows = [("ours", False, ctx.hypervisor, "", OUR_CMDLINE)]
    if ctx.with_xen:
        ctx.xen = ctx.xen or ensure_xen()
        rows.append(("xen", True, ctx.xen[0], XEN_ARGS, XEN_CMDLINE))
    samples = {(name, count): [] for name, *_ in rows for count in (1, 2)}
    for r in range(ctx.runs):
        for name, xen, image, append, cmdline in rows:
            for count in (1, 2):
                argv = guests_command(count, image, append, cmdline)
                ctx.commands.setdefault("guests %s %d" % (name, count), command_line(argv))
                progress("guests: %s, %d guest(s), run %d/%d" % (name, count, r + 1, ctx.runs))
                samples[(name, count)].append(run_guests(
                    argv, count, xen, log=ctx.log("guests-%s-%d-run%d.log" % (name, count, r + 1))))
    lines = [
        "`run.sh --guests N`, each guest 1 GiB and one vCPU (pinned), `%s`; time from QEMU's "
        "start until every guest's userspace is up (`guest-idle: begin`)." % " ".join(MACHINE),
        "",
        "| hypervisor | 1 guest s | 2 guests s | 2 ÷ 1 | memory per additional guest |",
        "|---|---|---|---|---|",
    ]
    for name, xen, *_ in rows:
        one, two = samples[(name, 1)], samples[(name, 2)]
        t1, t2 = [s.up_s for s in one], [s.up_s for s in two]
        if xen:
            per_guest = [a.free_kib - b.free_kib - GUEST_MEM_MIB * 1024 for a, b in zip(one, two)]
            memory = "%s KiB (free memory with 1 guest − with 2, less its %d MiB)" % (
                spread(per_guest, "{:.0f}"), GUEST_MEM_MIB)
        else:
            costs = [our_guest_cost(s.console, 2) for s in two]
            kib = [(tables + heap) / 1024 for tables, heap in costs]
            memory = "%s KiB (stage-2 tables %d KiB + heap %.1f KiB)" % (
                spread(kib, "{:.1f}"), costs[0][0] // 1024, costs[0][1] / 1024)
        lines.append("| %s | %s | %s | %.2fx | %s |" % (
            "Xen %s" % ctx.xen[1] if xen else "ours", spread(t1), spread(t2),
            median(t2) / median(t1), memory))
    if ctx.with_xen:
        ours = median([sum(our_guest_cost(s.console, 2)) / 1024 for s in samples[("ours", 2)]])
        theirs = median([a.free_kib - b.free_kib - GUEST_MEM_MIB * 1024
                         for a, b in zip(samples[("xen", 1)], samples[("xen", 2)])])
        verdict = "PASS" if ours < theirs else "FAIL"
        if verdict == "FAIL":
            ctx.goal_failures.append("memory per additional guest: ours %.1f KiB, Xen %.0f KiB" % (ours, theirs))
        lines += ["", "Goal (issue 20): less memory per additional guest than Xen: %s (ours %.1f KiB, "
                  "Xen %.0f KiB)." % (verdict, ours, theirs)]
    return "\n".join(lines)
