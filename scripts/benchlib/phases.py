"""Where the guest's boot time goes: direct, under the hypervisor with stage-2 blocks, and
with stage-2 pages (`mapping=pages`).

Every run boots with `earlycon`, so the kernel prints from its first instructions on and
each console line gets a host timestamp as it arrives. The boot is cut into phases between
kernel messages every arm64 Linux prints; the phase whose time grows most under the
hypervisor is then sampled: QEMU's monitor is asked for CPU 0's PC every few milliseconds
while that phase runs (guest booted with `nokaslr`), and the PCs are named with the
guest's own /proc/kallsyms (dumped once by the test initramfs, `hyp.kallsyms=1`, and
cached next to the kernel)."""
import bisect
import collections
import hashlib
import os
import re
import socket
import tempfile
import threading
import time

from .common import TARGET, BenchError, median, progress, run_qemu, spread

# Messages of the generic arm64 boot path, in the order they appear. A phase runs from one
# to the next; a marker a kernel does not print is skipped.
MARKERS = [
    ("kernel entered", "Booting Linux on physical CPU"),
    ("command line parsed", "Kernel command line:"),
    ("slab ready", "SLUB: HWalign="),
    ("ftrace set up", "ftrace: allocating"),
    ("secondary CPUs up", "smp: Brought up"),
    ("initcalls done", "Freeing unused kernel memory"),
    ("userspace", "Run /init as init process"),
    ("checks passed", "guest-check: pass"),
]
EARLY_ARGS = "console=ttyAMA0 earlycon hyp.check=1 hyp.smp=2"
SAMPLE_PERIOD = 0.004


def _variants(ctx, kernel, initrd, extra=""):
    from .sections import direct_linux, hyp_linux
    args = EARLY_ARGS + extra
    return [
        ("direct", "direct", direct_linux(kernel, initrd, args)),
        ("hyp", "hypervisor, stage-2 blocks", hyp_linux(ctx, kernel, initrd, args)),
        ("hyp-pages", "hypervisor, stage-2 pages", hyp_linux(ctx, kernel, initrd, args, append="mapping=pages")),
    ]


def stamped_boot(args, on_start=None):
    """Runs QEMU (common.run_qemu): the console lines with their arrival times, the wall
    time, and what `on_start` returned. A timeout is an error."""
    result = run_qemu(args, on_start=on_start)
    if result.timed_out:
        raise BenchError("boot timed out after %.0f s" % result.wall)
    return result.lines, result.wall, result.started


def milestones(lines):
    """Marker label -> host seconds of its first line."""
    found = {}
    for t, line in lines:
        for label, text in MARKERS:
            if label not in found and text in line:
                found[label] = t
    return found


def _guest_files():
    from .sections import guest_files
    return guest_files()


def kallsyms(ctx, kernel, initrd):
    """The guest kernel's text symbols at their `nokaslr` addresses: sorted [(addr, name)]."""
    with open(kernel, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    cache = os.path.join(TARGET, "kallsyms-%s.txt" % digest)
    if not os.path.isfile(cache):
        progress("phases: dumping the guest's kallsyms (once per kernel)")
        from .sections import BOOT_MEM, direct_linux
        args = direct_linux(kernel, initrd, "console=ttyAMA0 nokaslr hyp.kallsyms=1", cpu="max", smp="1",
                            mem=BOOT_MEM)
        lines, _, _ = stamped_boot(args)
        text = [l for _, l in lines]
        if "guest-kallsyms: end" not in text:
            raise BenchError("the guest did not dump its kallsyms (initramfs without hyp.kallsyms?)")
        body = text[text.index("guest-kallsyms: begin") + 1:text.index("guest-kallsyms: end")]
        with open(cache + ".tmp", "w") as f:
            f.write("\n".join(body) + "\n")
        os.replace(cache + ".tmp", cache)
    symbols = []
    with open(cache) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[1] in "tT":
                symbols.append((int(parts[0], 16), parts[2]))
    symbols.sort()
    return symbols


def _namer(symbols):
    addrs = [a for a, _ in symbols]

    def name(pc):
        i = bisect.bisect_right(addrs, pc) - 1
        if i < 0 or i + 1 >= len(symbols) or pc >= addrs[i + 1] or pc - addrs[i] > 0x10000:
            return "(not guest kernel text)"
        return symbols[i][1]
    return name


def sample_pcs(args, window):
    """Boots once with QEMU's monitor on a socket and samples CPU 0's PC while the host
    clock is inside `window` (seconds since QEMU started)."""
    with tempfile.TemporaryDirectory(prefix="phases-") as tmp:
        sock_path = os.path.join(tmp, "monitor.sock")

        def sampler(proc, start):
            deadline = time.monotonic() + 10
            while not os.path.exists(sock_path):
                if time.monotonic() > deadline or proc.poll() is not None:
                    return []
                time.sleep(0.002)
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(sock_path)
            sock.settimeout(5)

            def command(text):
                sock.sendall((text + "\n").encode())
                buf = b""
                while not buf.rstrip().endswith(b"(qemu)"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise BenchError("QEMU's monitor closed")
                    buf += chunk
                return buf.decode("utf-8", "replace")
            command("")
            pcs = []
            while proc.poll() is None:
                now = time.monotonic() - start
                if now > window[1]:
                    break
                if now >= window[0]:
                    match = re.search(r"PC=([0-9a-f]+)", command("info registers"))
                    if match:
                        pcs.append(int(match.group(1), 16))
                time.sleep(SAMPLE_PERIOD)
            sock.close()
            return pcs

        # The console is drained by stamped_boot; the sampler runs in a thread meanwhile.
        # The monitor socket is the sampler's own addition to run.sh's command line.
        holder = {}

        def on_start(proc, start):
            thread = threading.Thread(target=lambda: holder.setdefault("pcs", sampler(proc, start)))
            thread.start()
            return thread
        _, _, thread = stamped_boot(args + ["-monitor", "unix:%s,server,nowait" % sock_path],
                                    on_start=on_start)
        thread.join()
        return holder.get("pcs", [])


def section_phases(ctx):
    kernel, initrd = _guest_files()
    variants = _variants(ctx, kernel, initrd)
    stamps = {key: [] for key, _, _ in variants}
    for r in range(ctx.runs):
        for key, _, args in variants:
            progress("phases: %s, run %d/%d" % (key, r + 1, ctx.runs))
            lines, wall, _ = stamped_boot(args)
            marks = milestones(lines)
            if "checks passed" not in marks:
                raise BenchError("%s boot did not pass its guest checks" % key)
            marks["power-off"] = wall
            stamps[key].append(marks)
    labels = [label for label, _ in MARKERS] + ["power-off"]

    def phase_times(key):
        """Phase label -> [seconds per run]; the first phase runs from QEMU's start."""
        out = collections.OrderedDict()
        for marks in stamps[key]:
            prev_label, prev_t = "QEMU start", 0.0
            for label in labels:
                if label in marks:
                    out.setdefault("%s → %s" % (prev_label, label), []).append(marks[label] - prev_t)
                    prev_label, prev_t = label, marks[label]
        return out
    phases = {key: phase_times(key) for key, _, _ in variants}
    lines = [
        "Host time between kernel messages every arm64 boot prints (`earlycon`, so the first "
        "lines are not held back), median (min–max) of %d run(s), same kernel, initramfs and "
        "QEMU line as the boot benchmark." % ctx.runs,
        "",
        "| phase | " + " | ".join(label for _, label, _ in variants) + " | blocks − direct |",
        "|---|" + "---|" * len(variants) + "---|",
    ]
    worst, worst_growth = None, 0.0
    for phase in phases["direct"]:
        cells = [spread(phases[key].get(phase, [])) for key, _, _ in variants]
        growth = median(phases["hyp"].get(phase, [0])) - median(phases["direct"][phase])
        if growth > worst_growth and not phase.startswith("QEMU start"):
            worst, worst_growth = phase, growth
        lines.append("| %s | %s | %+.2f s |" % (phase, " | ".join(cells), growth))
    if worst is None:
        return "\n".join(lines)

    # Sample the phase that grew most, in each variant, at its own position in time.
    start_label, end_label = worst.split(" → ")
    try:
        symbols = kallsyms(ctx, kernel, initrd)
    except BenchError as error:
        return "\n".join(lines + ["", "PC samples skipped: %s." % error])
    name = _namer(symbols)
    sampled = _variants(ctx, kernel, initrd, " nokaslr")
    lines += ["", "PC samples of CPU 0 during *%s* (every %.0f ms through QEMU's monitor; guest "
              "booted with `nokaslr`, named by its kallsyms):" % (worst, SAMPLE_PERIOD * 1000), "",
              "| variant | samples | where CPU 0 was |", "|---|---|---|"]
    for key, label, args in sampled:
        marks = stamps[key]
        window = (median([m[start_label] for m in marks]), median([m[end_label] for m in marks]))
        progress("phases: sampling %s over %.2f–%.2f s" % (key, window[0], window[1]))
        pcs = sample_pcs(args, window)
        counts = collections.Counter(name(pc) for pc in pcs)
        top = ", ".join("`%s` %.0f%%" % (sym, 100.0 * n / len(pcs)) for sym, n in counts.most_common(4))
        lines.append("| %s | %d | %s |" % (label, len(pcs), top or "–"))
    return "\n".join(lines)
