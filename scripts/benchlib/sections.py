"""One function per benchmark. Each runs its QEMU boots one at a time, keeps what it
measured in the context (other sections and the pictures reuse the consoles) and returns
markdown: ours next to the baseline measured in the same run, medians (min–max)."""
import os
import re
import subprocess
import time

from .xen import XEN_ARGS, ensure_xen, xen_options
from .common import (REPO, TARGET, BenchError, DumpShape, command_line, guest_checks_passed, guest_lines,
                     guest_memtotal_kb, guest_timerlat, heap_stats, hyp_exit_ok, hyp_exits, map_stats, median,
                     minimal_cover, progress, ptdump_runs, qemu_command, ratio, run_qemu, same, spread, tail)

# The guest's whole command line in every Linux boot here (run.sh --guest-cmdline): no
# earlycon, unlike run.sh's default, except in the phases benchmark.
GUEST_ARGS = "console=ttyAMA0 hyp.check=1 hyp.smp=2"
BOOT_CPU, BOOT_SMP, BOOT_MEM = "max", "2", "2G"


class Context:
    """What one bench.sh invocation measures and where its logs go."""

    def __init__(self, runs, ram_sizes, engine_reps, logdir, with_xen=False):
        self.runs = runs
        self.ram_sizes = ram_sizes
        self.engine_reps = engine_reps
        self.logdir = logdir
        self.with_xen = with_xen
        self.xen = None            # (image, version) once fetched
        self.boot = None           # variant key -> [sample]
        self.boot_variants = None  # [(key, label, args)]
        self.idle = None           # hyp.idle seconds -> [sample]
        self.latency = None        # "direct" / "hyp" -> [sample]
        self.disk = None           # "direct" / "hyp" -> [QemuResult] (devices.run_disk)
        self.smmu = None           # "baseline" / "workload" -> [figures] (devices.run_smmu)
        self.map = None            # (mem, mapping) -> [sample]
        self.scale = None          # (mem, mapping) -> [scale.Sample]
        self.scale_sizes = None    # RAM sizes of the scale section (None: scale.SCALE_SIZES)
        self.goal_failures = []    # goals a section checked and found not met
        self.crash_console = None
        self.commands = {}         # what -> one QEMU command line
        self.cpu_models = set()
        self.hypervisor = None     # the snapshot of target/hypervisor.bin every boot uses
        self.binaries = {}         # name -> sha256

    def log(self, name):
        return os.path.join(self.logdir, name) if self.logdir else None


# ---------------------------------------------------------------------------------------
# Guest boot: Linux direct, under the hypervisor (blocks and mapping=pages), under Xen.

def guest_files():
    kernel = os.path.join(REPO, ".cache/guest/Image")
    initrd = os.path.join(TARGET, "initramfs.cpio.gz")
    subprocess.run([os.path.join(REPO, "scripts/make-initramfs.sh"), initrd], check=True,
                   stdout=subprocess.DEVNULL)
    if not os.path.isfile(kernel):
        raise BenchError("no guest kernel at %s (scripts/setup.sh fetches it)" % kernel)
    return kernel, initrd


def machine_options(cpu=BOOT_CPU, smp=BOOT_SMP, mem=BOOT_MEM):
    return ["--cpu", cpu, "--smp", smp, "--mem", mem]


def guest_options(kernel, initrd, cmdline):
    """run.sh options for the Linux guest: these files, this whole command line."""
    return ["--kernel", kernel, "--initrd", initrd, "--guest-cmdline", cmdline]


def hyp_linux(ctx, kernel, initrd, cmdline, append="", cpu=BOOT_CPU, smp=BOOT_SMP, mem=BOOT_MEM):
    """QEMU argv of Linux under this run's copy of the hypervisor (`run.sh linux`), with
    `append` as the hypervisor's command line."""
    options = machine_options(cpu, smp, mem) + ["--hypervisor", ctx.hypervisor]
    if append:
        options += ["--append", append]
    return qemu_command("linux", *(options + guest_options(kernel, initrd, cmdline)))


def direct_linux(kernel, initrd, cmdline, cpu=BOOT_CPU, smp=BOOT_SMP, mem=BOOT_MEM):
    """QEMU argv of Linux booted directly by QEMU (`run.sh direct`)."""
    return qemu_command("direct", *(machine_options(cpu, smp, mem) + guest_options(kernel, initrd, cmdline)))


def boot_variants(ctx):
    kernel, initrd = guest_files()
    variants = [
        ("direct", "Linux booted directly by QEMU (baseline)", direct_linux(kernel, initrd, GUEST_ARGS)),
        ("hyp", "Linux under the hypervisor (blocks, default)", hyp_linux(ctx, kernel, initrd, GUEST_ARGS)),
        ("hyp-pages", "Linux under the hypervisor, `mapping=pages`",
         hyp_linux(ctx, kernel, initrd, GUEST_ARGS, append="mapping=pages")),
    ]
    if ctx.with_xen:
        ctx.xen = ctx.xen or ensure_xen()
        # run.sh's linux recipe with Xen's differences: its image, its command line, dom0's console.
        xen_opts, dom0_args = xen_options(ctx.xen[0])
        variants.append(("xen", "Linux as dom0 under Xen %s" % ctx.xen[1], qemu_command(
            "linux", *(machine_options() + xen_opts + guest_options(kernel, initrd, dom0_args)))))
    return variants


def under_hypervisor(key):
    """Whether the boot `key` runs under our hypervisor (its guest's lines tagged `(g1) `)."""
    return key.startswith("hyp")


def check_boot(key, result):
    if result.timed_out:
        raise BenchError("%s boot timed out after %.0f s:\n%s" % (key, result.wall, tail(result.console)))
    if not guest_checks_passed(result.console, under_hypervisor(key)):
        raise BenchError("%s boot did not pass its guest checks:\n%s" % (key, tail(result.console)))
    if key.startswith("hyp") and not hyp_exit_ok(result.console):
        raise BenchError("%s boot did not end with 'hyp-exit: success':\n%s" % (key, tail(result.console)))


def run_boot(ctx):
    """Round-robin over the variants, `runs` rounds, so load changes hit all alike."""
    if ctx.boot is not None:
        return
    ctx.boot_variants = boot_variants(ctx)
    ctx.boot = {key: [] for key, _, _ in ctx.boot_variants}
    ctx.cpu_models.add(BOOT_CPU)
    for r in range(ctx.runs):
        for key, _, args in ctx.boot_variants:
            progress("boot %s, run %d/%d" % (key, r + 1, ctx.runs))
            result = run_qemu(args, timeout=300, log=ctx.log("boot-%s-run%d.log" % (key, r + 1)))
            check_boot(key, result)
            ctx.boot[key].append(result)
            ctx.commands.setdefault("boot " + key, command_line(args))


def run_crash(ctx):
    """One boot under the hypervisor with crashkernel=64M, for the pictures."""
    kernel, initrd = guest_files()
    args = hyp_linux(ctx, kernel, initrd, GUEST_ARGS, append="crashkernel=64M")
    progress("boot hyp with crashkernel=64M (pictures)")
    result = run_qemu(args, timeout=300, log=ctx.log("boot-hyp-crashkernel.log"))
    check_boot("hyp crashkernel=64M", result)
    ctx.crash_console = result.console
    ctx.commands["boot hyp crashkernel"] = command_line(args)
    return result


def section_boot(ctx):
    run_boot(ctx)
    direct = ctx.boot["direct"]
    dw, dr = median([s.wall for s in direct]), median([s.rss_mib for s in direct])
    lines = [
        "Debian's arm64 cloud kernel and the busybox initramfs, to userspace, the guest checks "
        "(`hyp.check=1`) and power-off. Wall time of the whole QEMU process and its peak RSS "
        "(`getrusage` of the child); `-cpu %s -smp %s -m %s`; the variants alternate in each round."
        % (BOOT_CPU, BOOT_SMP, BOOT_MEM),
        "",
        "| configuration | wall s | vs direct | peak RSS MiB | vs direct | guest MemTotal MiB |",
        "|---|---|---|---|---|---|",
    ]
    for key, label, _ in ctx.boot_variants:
        samples = ctx.boot[key]
        walls, rss = [s.wall for s in samples], [s.rss_mib for s in samples]
        mem = [guest_memtotal_kb(s.console, under_hypervisor(key)) for s in samples]
        mem = "%.0f" % (median([m for m in mem if m]) / 1024) if any(mem) else "?"
        lines.append("| %s | %s | %s | %s | %s | %s |" % (
            label, spread(walls), "–" if key == "direct" else ratio(median(walls), dw),
            spread(rss, "{:.0f}"), "–" if key == "direct" else ratio(median(rss), dr), mem))
    lines += ["", boot_ratio_check(ctx)]
    if ctx.with_xen:
        lines += ["", "Xen runs with `%s` and its defaults otherwise: dom0 gets 512 MiB (the MemTotal "
                  "column), and Xen scrubs all free RAM at boot, which shows in QEMU's RSS." % XEN_ARGS]
    return "\n".join(lines)


# hyp ÷ direct boot wall time before the vGIC and console emulation (README, "Boot time
# under TCG"), and what that work may add to it.
BOOT_RATIO_BEFORE = 1.26
BOOT_RATIO_TOLERANCE = 0.03


def boot_ratio_check(ctx):
    """The `hyp` ÷ `direct` wall-time ratio next to the figure from before the vGIC and
    console emulation and its limit; printed, never failed (TCG times vary with load)."""
    now = median([s.wall for s in ctx.boot["hyp"]]) / median([s.wall for s in ctx.boot["direct"]])
    limit = BOOT_RATIO_BEFORE + BOOT_RATIO_TOLERANCE
    verdict = "within" if now <= limit else "**above**"
    return ("Boot ratio, under the hypervisor (blocks) ÷ direct: **%.2f×** in this run; %.2f× before the "
            "vGIC and console emulation, which may add at most %.2f: limit %.2f×, %s it (%+.2f)." % (
                now, BOOT_RATIO_BEFORE, BOOT_RATIO_TOLERANCE, limit, verdict, now - BOOT_RATIO_BEFORE))


def stage2_row(label, samples):
    stats = [map_stats(s.console, "stage2") for s in samples]
    ours = DumpShape(ptdump_runs(samples[0].console, "stage2"))
    best_descriptors, best_tlb = minimal_cover(stats[0], "stage2")
    written = [s["descriptors"] for s in stats]
    pages = [s["table_pages"] for s in stats]
    return (label, pages, stats, written), "| %s | %s | %s | %d / %d / %d | %d | %s | %d | %s | %d / %d | %s |" % (
        label, same(pages), same([p * 4 for p in pages]),
        ours.by_level[1], ours.by_level[2], ours.by_level[3], ours.contiguous,
        same(written), best_descriptors, ratio(median(written), best_descriptors),
        ours.tlb_entries, best_tlb, spread([s["build_us"] for s in stats], "{:.0f}"))


def section_stage2(ctx):
    run_boot(ctx)
    lines = [
        "The guest's stage 2 as built for the Linux boots above (`map-stats: table=stage2`, "
        "`ptdump: table=stage2`): table pages (4 KiB each) ours against a forced-4K stage 2 of the "
        "same guest (`mapping=pages`). *Minimal* is the fewest descriptors for the same ranges and "
        "attributes with 1G/2M/4K leaves, counted by the engine over what the ptdump shows "
        "(`minimal_descriptors=` of `map-stats:`, `pgtable::MinimalCover`); "
        "*TLB entries* counts a contiguous group of 16 leaves as one. `mapping=pages` forces 4K "
        "pages for RAM only: the MMIO ranges keep their 1G and 2M blocks in both rows.",
        "",
        "| stage 2 | table pages | table KiB | leaves 1G / 2M / 4K | contiguous leaves | descriptors written "
        "| minimal descriptors | written ÷ minimal | TLB entries ours / minimal | build µs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = []
    for key, label in (("hyp", "ours (blocks)"), ("hyp-pages", "`mapping=pages` (baseline)")):
        data, line = stage2_row(label, ctx.boot[key])
        rows.append(data)
        lines.append(line)
    ours_pages, base_pages = median(rows[0][1]), median(rows[1][1])
    lines += ["", "Table memory: %.0f KiB against %.0f KiB, %s less with blocks." % (
        ours_pages * 4, base_pages * 4, ratio(base_pages, ours_pages, "{:.0f}"))]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# VM exits: per guest boot (the boot section's `hyp` runs) and per second of an idle guest
# (a boot that idles 10 s against the same boot that idles 0 s).

EXIT_REASONS = (
    ("irq", "IRQ"),
    ("mmio", "MMIO (emulated GIC, PL011)"),
    ("hvc", "HVC"),
    ("smc", "SMC"),
    ("sysreg", "system register"),
    ("wfi", "WFI"),
    ("data_abort", "data abort, not MMIO"),
    ("instruction_abort", "instruction abort"),
    ("other", "other"),
)
IDLE_SECONDS = 10


def total_exits(counts):
    return sum(counts[key] for key, _ in EXIT_REASONS)


def exit_metrics():
    """(row label, counts -> number) for every row of the exits table but the EL2 share."""
    rows = [(label, lambda c, key=key: c[key]) for key, label in EXIT_REASONS]
    return rows + [("all exits", total_exits), ("EL2 time, ms", lambda c: c["el2_us"] / 1000)]


def el2_percent(el2_us, seconds, vcpus):
    """EL2 time as a share of `seconds` of wall time on `vcpus` vCPUs, in percent."""
    return 100.0 * el2_us / (seconds * 1e6 * vcpus)


def per_idle_second(short, long, seconds=IDLE_SECONDS):
    """Per second of idling, run by run: (long − short) ÷ seconds."""
    return [(b - a) / seconds for a, b in zip(short, long)]


def check_idle(seconds, result):
    name = "hyp.idle=%d boot" % seconds
    if result.timed_out:
        raise BenchError("%s timed out after %.0f s:\n%s" % (name, result.wall, tail(result.console)))
    if "guest-idle: end" not in guest_lines(result.console, True):
        raise BenchError("%s: no '(g1) guest-idle: end' line:\n%s" % (name, tail(result.console)))
    if not hyp_exit_ok(result.console):
        raise BenchError("%s did not end with 'hyp-exit: success':\n%s" % (name, tail(result.console)))
    hyp_exits(result.console)


def run_idle(ctx):
    """Boots with hyp.idle=0 and hyp.idle=10 in turn, `runs` rounds."""
    if ctx.idle is not None:
        return
    kernel, initrd = guest_files()
    commands = {s: hyp_linux(ctx, kernel, initrd, "%s hyp.idle=%d" % (GUEST_ARGS, s)) for s in (0, IDLE_SECONDS)}
    ctx.idle = {s: [] for s in commands}
    for r in range(ctx.runs):
        for seconds, args in commands.items():
            progress("exits: hyp.idle=%d, run %d/%d" % (seconds, r + 1, ctx.runs))
            result = run_qemu(args, timeout=300, log=ctx.log("exits-idle%d-run%d.log" % (seconds, r + 1)))
            check_idle(seconds, result)
            ctx.idle[seconds].append(result)
            ctx.commands.setdefault("exits hyp.idle=%d" % seconds, command_line(args))


def boot_exit_cells(metric, boots):
    """Per boot and per second of the boot's wall time."""
    counts = [hyp_exits(s.console) for s in boots]
    per_boot = [metric(c) for c in counts]
    return [spread(per_boot, "{:.0f}"), spread([v / s.wall for v, s in zip(per_boot, boots)], "{:.0f}")]


def idle_exit_cells(metric, short, long):
    """The idle=0 boot, the idle=10 boot, and their difference per idle second."""
    a = [metric(hyp_exits(s.console)) for s in short]
    b = [metric(hyp_exits(s.console)) for s in long]
    return [spread(a, "{:.0f}"), spread(b, "{:.0f}"), spread(per_idle_second(a, b), "{:.1f}")]


def el2_share_cells(boots, short, long, vcpus):
    def el2(samples):
        return [hyp_exits(s.console)["el2_us"] for s in samples]
    boot = [el2_percent(us, s.wall, vcpus) for us, s in zip(el2(boots), boots)]
    a = [el2_percent(us, s.wall, vcpus) for us, s in zip(el2(short), short)]
    b = [el2_percent(us, s.wall, vcpus) for us, s in zip(el2(long), long)]
    idle = [el2_percent(us, 1, vcpus) for us in per_idle_second(el2(short), el2(long))]
    return [spread(boot), "–", spread(a), spread(b), spread(idle, "{:.3f}")]


def section_exits(ctx):
    run_boot(ctx)
    run_idle(ctx)
    boots, short, long = ctx.boot["hyp"], ctx.idle[0], ctx.idle[IDLE_SECONDS]
    vcpus = int(BOOT_SMP)
    lines = [
        "The hypervisor's `hyp-exits:` line at the guest's power-off: exits by reason since the guest "
        "started and `el2_us`, the time at EL2 handling them summed over CPUs. *Per boot*: the boot "
        "section's runs under the hypervisor (`%s`, to the guest checks and power-off), per boot and "
        "per second of the QEMU process's wall time. *Idle*: the same command line with `hyp.idle=0` "
        "and `hyp.idle=%d` instead of the checks (the guest's /init sleeps that long, then powers off), "
        "in turn each round; their difference ÷ %d s is the rate of an idle guest (it also carries the two "
        "boots' own variation, e.g. in the SGIs each sends, trapped as system-register writes, so with "
        "few runs a small rate can come out negative). The EL2 share is "
        "of wall time × %d vCPUs (the wall time also holds QEMU's start and the hypervisor's own boot). "
        "WFI is not trapped (HCR_EL2.TWI clear: an idle vCPU waits in the guest), so the line prints "
        "`wfi=0`. Under TCG the times are QEMU's." % (GUEST_ARGS, IDLE_SECONDS, IDLE_SECONDS, vcpus),
        "",
        "| exit reason | per boot | per s of boot | `hyp.idle=0` boot | `hyp.idle=%d` boot | per idle s |"
        % IDLE_SECONDS,
        "|---|---|---|---|---|---|",
    ]
    for label, metric in exit_metrics():
        cells = boot_exit_cells(metric, boots) + idle_exit_cells(metric, short, long)
        lines.append("| %s | %s |" % (label, " | ".join(cells)))
    lines.append("| EL2 time, %% of wall × %d vCPUs | %s |" % (vcpus, " | ".join(el2_share_cells(
        boots, short, long, vcpus))))
    lines += ["", "The `hyp.idle=%d` boots took %s s longer than the `hyp.idle=0` ones (wall time; the "
              "guest's sleep is %d s)." % (IDLE_SECONDS, spread(per_idle_second(
                  [s.wall for s in short], [s.wall for s in long], 1)), IDLE_SECONDS)]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Timer latency seen by the guest: timerlat booted directly and under the hypervisor.

TIMERLAT_SAMPLES = 2000
LATENCY_VARIANTS = (("direct", "Linux booted directly by QEMU (baseline)"), ("hyp", "Linux under the hypervisor"))


def latency_commands(ctx):
    kernel, initrd = guest_files()
    cmdline = "%s hyp.timerlat=%d" % (GUEST_ARGS, TIMERLAT_SAMPLES)
    return {"direct": direct_linux(kernel, initrd, cmdline), "hyp": hyp_linux(ctx, kernel, initrd, cmdline)}


def check_latency(key, result):
    """The guest's timerlat figures of one boot; an error when the boot did not give them."""
    name = "timerlat %s boot" % key
    if result.timed_out:
        raise BenchError("%s timed out after %.0f s:\n%s" % (name, result.wall, tail(result.console)))
    if under_hypervisor(key) and not hyp_exit_ok(result.console):
        raise BenchError("%s did not end with 'hyp-exit: success':\n%s" % (name, tail(result.console)))
    values = guest_timerlat(result.console, under_hypervisor(key))
    if values["samples"] != TIMERLAT_SAMPLES:
        raise BenchError("%s: %d samples, not %d" % (name, values["samples"], TIMERLAT_SAMPLES))
    return values


def run_latency(ctx):
    """Direct and under the hypervisor in turn, `runs` rounds."""
    if ctx.latency is not None:
        return
    commands = latency_commands(ctx)
    ctx.latency = {key: [] for key in commands}
    for r in range(ctx.runs):
        for key, args in commands.items():
            progress("latency %s, run %d/%d" % (key, r + 1, ctx.runs))
            result = run_qemu(args, timeout=300, log=ctx.log("latency-%s-run%d.log" % (key, r + 1)))
            ctx.latency[key].append(check_latency(key, result))
            ctx.commands.setdefault("latency " + key, command_line(args))


def section_latency(ctx):
    run_latency(ctx)
    stats = ("min_us", "median_us", "p99_us", "max_us")
    lines = [
        "`timerlat` (`tests/guest-tools/timerlat`, `/bin/timerlat` in the initramfs, run by /init with "
        "`hyp.timerlat=%d`): a static program that sleeps with `clock_nanosleep(CLOCK_MONOTONIC, "
        "TIMER_ABSTIME)` to a deadline every 1 ms, %d times, with 1 ns timer slack, and records how "
        "late each wake-up is (CLOCK_MONOTONIC − deadline). Each run gives min, median, p99 (nearest "
        "rank) and max in µs; the cells are the median over runs (min–max). Same kernel, initramfs and "
        "command line (`%s hyp.timerlat=%d`) both ways; the variants alternate in each round. Under "
        "the hypervisor the timer interrupt is taken at EL2 (it owns the GIC) and injected by the vGIC. "
        "Under TCG these are QEMU's times." % (TIMERLAT_SAMPLES, TIMERLAT_SAMPLES, GUEST_ARGS, TIMERLAT_SAMPLES),
        "",
        "| configuration | samples | min µs | median µs | p99 µs | max µs |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in LATENCY_VARIANTS:
        runs = ctx.latency[key]
        lines.append("| %s | %s | %s |" % (label, same([v["samples"] for v in runs]), " | ".join(
            spread([v[k] for v in runs], "{:.0f}") for k in stats)))
    direct, hyp = ctx.latency["direct"], ctx.latency["hyp"]
    lines.append("| under the hypervisor ÷ direct | – | %s |" % " | ".join(
        ratio(median([v[k] for v in hyp]), median([v[k] for v in direct])) for k in stats))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# The EL2 direct map: blocks against mapping=pages for several RAM sizes.

def run_map(ctx):
    if ctx.map is not None:
        return
    ctx.map = {}
    ctx.cpu_models.add("max")
    for r in range(ctx.runs):
        for mem in ctx.ram_sizes:
            for mapping in ("blocks", "pages"):
                progress("map %s mapping=%s, run %d/%d" % (mem, mapping, r + 1, ctx.runs))
                args = qemu_command("none", *(machine_options("max", "2", mem)
                                              + ["--hypervisor", ctx.hypervisor, "--append", "mapping=" + mapping]))
                log = ctx.log("map-%s-%s.log" % (mem, mapping)) if r == 0 else None
                result = run_qemu(args, timeout=600, log=log)
                if not hyp_exit_ok(result.console):
                    raise BenchError("map %s %s: no 'hyp-exit: success':\n%s" % (mem, mapping, tail(result.console)))
                map_stats(result.console, "el2")
                ctx.map.setdefault((mem, mapping), []).append(result)
                ctx.commands.setdefault("map", command_line(args))


def section_map(ctx):
    run_map(ctx)
    lines = [
        "The hypervisor alone (no guest), `-cpu max -smp 2`: its EL2 map of all RAM, the image "
        "(W^X by section) and the devices, built before the MMU is on (no TLB maintenance). "
        "`build µs` is the hypervisor's own CNTPCT measurement of the whole build; table pages, "
        "descriptors and leaves are from `map-stats: table=el2`. *Minimal* is the fewest descriptors "
        "for the same ranges and attributes with 1G/2M/4K leaves, counted by the engine over what "
        "the ptdump shows (`minimal_descriptors=` of `map-stats:`, `pgtable::MinimalCover`, the rule "
        "of the engine's checker); *TLB entries* counts a "
        "contiguous group of 16 leaves as one. `mapping=pages` forces 4K pages for RAM and the image; "
        "the devices keep their 2M blocks. Under TCG the counter runs on the host's clock while "
        "QEMU also translates the code it meets for the first time, so the times are QEMU's, not a "
        "core's; the table shapes are exact.",
        "",
        "| RAM | mapping | build µs | vs blocks | table pages | descriptors written | minimal descriptors "
        "| written ÷ minimal | leaves 1G / 2M / 4K | TLB entries ours / minimal |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mem in ctx.ram_sizes:
        blocks_build = None
        for mapping in ("blocks", "pages"):
            samples = ctx.map[(mem, mapping)]
            stats = [map_stats(s.console, "el2") for s in samples]
            ours = DumpShape(ptdump_runs(samples[0].console, "el2"))
            best_descriptors, best_tlb = minimal_cover(stats[0], "el2")
            build = [s["build_us"] for s in stats]
            written = [s["descriptors"] for s in stats]
            if mapping == "blocks":
                blocks_build = median(build)
            lines.append("| %s | %s | %s | %s | %s | %s | %d | %s | %d / %d / %d | %d / %d |" % (
                mem, "blocks (ours)" if mapping == "blocks" else "`pages` (baseline)",
                spread(build, "{:.0f}"), "–" if mapping == "blocks" else ratio(median(build), blocks_build, "{:.1f}"),
                same([s["table_pages"] for s in stats]), same(written), best_descriptors,
                ratio(median(written), best_descriptors), ours.by_level[1], ours.by_level[2], ours.by_level[3],
                ours.tlb_entries, best_tlb))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# The heap: what the heap-stats lines show.

def section_heap(ctx):
    boots = []
    if ctx.map:
        for mem in ctx.ram_sizes:
            boots.append(("hypervisor alone, %s" % mem, ctx.map[(mem, "blocks")], ctx.map[(mem, "pages")]))
    if ctx.boot:
        boots.append(("Linux guest, %s" % BOOT_MEM, ctx.boot["hyp"], ctx.boot["hyp-pages"]))
    if not boots:
        raise BenchError("the heap rows come from the map and boot runs; run them first")
    rows, measured_4k = [], False
    for where, ours, base in boots:
        row = []
        for samples in (ours, base):
            stats = [heap_stats(s.console) for s in samples]
            h = stats[0]
            varies = len({(x["bytes"], x["leaves_2m"], x["leaves_4k"]) for x in stats}) > 1
            row.append((h, varies, same([x["fallbacks"] for x in stats])))
        measured_4k |= row[1][0]["leaves_4k"] > 0 and row[1][0]["leaves_2m"] == 0
        rows.append((where, row))
    lines = [
        "`heap-stats:` after boot. The heap window (0xff00_0000_0000) grows by 2M blocks (ours); "
        "the baseline is the same boot with `mapping=pages`, which grows it with 4K pages (each "
        "counted as a fallback). TLB entries = leaves (the heap maps without contiguous hints); "
        "level-3 tables = the table pages the 4K leaves need, one per 2 MiB.",
        "",
        "| boot | heap bytes | ours: 2M / 4K leaves | `mapping=pages`: 2M / 4K leaves | fallbacks ours / pages "
        "| TLB entries ours / pages | level-3 tables ours / pages |",
        "|---|---|---|---|---|---|---|",
    ]
    for where, ((o, ov, of), (b, bv, bf)) in rows:
        def l3(h):
            return -(-h["leaves_4k"] * 4096 // (2 << 20))
        size = "{:,}".format(o["bytes"]) + ("" if o["bytes"] == b["bytes"] else " / {:,}".format(b["bytes"]))
        lines.append("| %s | %s%s | %d / %d | %d / %d | %s / %s | %d / %d | %d / %d |" % (
            where, size, " (varies)" if ov or bv else "", o["leaves_2m"], o["leaves_4k"], b["leaves_2m"],
            b["leaves_4k"], of, bf, o["leaves_2m"] + o["leaves_4k"], b["leaves_2m"] + b["leaves_4k"], l3(o), l3(b)))
    if not measured_4k:
        lines += ["", "**No boot here grew the heap with 4K pages**: this hypervisor build has no way to "
                  "force a 4K heap (`mapping=pages` leaves it in 2M blocks), so the baseline is missing; "
                  "for the same size it would be bytes/4096 leaves and one level-3 table per 2 MiB."]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# MEM_PROTECT: split and collapse on the live stage 2, BBML2 against break-before-make.

PROTECT_CONFIGS = (("max", ""), ("max", "split=bbm"), ("cortex-a72", ""))
PROTECT_MEM = "4G"


def section_protect(ctx):
    kernel, initrd = guest_files()
    samples = {}  # (cpu, bootargs, strategy, block) -> [fields]
    order = []
    failures = []
    for r in range(ctx.runs):
        for cpu, bootargs in PROTECT_CONFIGS:
            ctx.cpu_models.add(cpu)
            progress("protect -cpu %s %s, run %d/%d" % (cpu, bootargs or "(default)", r + 1, ctx.runs))
            name = "protect-%s%s-run%d.log" % (cpu, "-" + bootargs.replace("=", "-") if bootargs else "", r + 1)
            # The hypervisor's selftest mode with run.sh's crashkernel=32M; the guest is Linux with
            # its checks (the EL1 test guest adds a 45 s concurrency test and nothing here).
            args = hyp_linux(ctx, kernel, initrd, GUEST_ARGS, cpu=cpu, smp="2", mem=PROTECT_MEM,
                             append="crashkernel=32M%s selftest" % (" " + bootargs if bootargs else ""))
            result = run_qemu(args, timeout=300, log=ctx.log(name))
            ctx.commands.setdefault("protect", command_line(args))
            console = result.console
            if not hyp_exit_ok(console):
                failures.append("-cpu %s %s run %d: no 'hyp-exit: success'%s" % (
                    cpu, bootargs, r + 1, " (timed out)" if result.timed_out else ""))
            if re.search(r"selftest: \S+ \.\.\. FAILED|selftests?: \d+ passed, [1-9]\d* failed", console):
                failures.append("-cpu %s %s run %d: an EL2 selftest failed" % (cpu, bootargs, r + 1))
            if "guest-check: pass" not in console:
                failures.append("-cpu %s %s run %d: the Linux guest's checks did not pass" % (cpu, bootargs, r + 1))
            found = False
            for line in console.splitlines():
                i = line.find("protect-bench:")
                if i < 0 or "skipped" in line:
                    continue
                f = dict(re.findall(r"(\w+)=(\S+)", line[i:]))
                key = (cpu, bootargs, f["strategy"], f["block"])
                if key not in samples:
                    samples[key] = []
                    order.append(key)
                samples[key].append(f)
                found = True
            if not found:
                raise BenchError("-cpu %s %s: no protect-bench lines; the console ends:\n%s" % (
                    cpu, bootargs or "(default bootargs)", tail(console)))
    lines = [
        "The hypervisor's selftest mode (`selftest` on its command line, with the `crashkernel=32M` "
        "that `scripts/run.sh selftest` adds; `-m %s` so that 1G blocks exist; the Linux guest with its "
        "checks, not the EL1 test guest, whose 45 s concurrency test adds nothing here): "
        "before the guest runs, one 4K page inside a 1G and inside a 2M block of the guest's live "
        "stage 2 is made read-only (the split) and restored (the collapse), 200 pairs per row; "
        "times are the hypervisor's CNTPCT per operation, counts per pair. FEAT_BBM level 2 "
        "(`Bbml2`, ours: the block is replaced live) is the default on `-cpu max`; the same boot "
        "also measures break-before-make on the same CPU, `split=bbm` forces it from boot, and "
        "`cortex-a72` has no FEAT_BBML2 at all. In the default `-cpu max` boot the Bbml2 rows run "
        "first and the break-before-make rows second, in the same boot; the `split=bbm` rows come "
        "from a boot of their own. Under TCG these are QEMU's times (a TLBI is a flush of QEMU's "
        "software TLB), so the spread is wide; the counts are exact." % PROTECT_MEM,
        "",
        "| CPU | bootargs | strategy | block | split ns | collapse ns | split vs Bbml2 | collapse vs Bbml2 "
        "| splits 1G/2M per pair | TLBI VA/range/all per pair | DSB per pair | transient unmaps per pair | ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    reference = {}
    for key in order:
        if key[0] == "max" and key[1] == "" and key[2] == "Bbml2":
            fs = samples[key]
            reference[key[3]] = (median([int(f["split_ns"]) for f in fs]), median([int(f["collapse_ns"]) for f in fs]))
    for key in order:
        cpu, bootargs, strategy, block = key
        fs = samples[key]
        split = [int(f["split_ns"]) for f in fs]
        collapse = [int(f["collapse_ns"]) for f in fs]
        n = int(fs[-1]["iterations"])

        def per(k):
            return same(["%g" % (int(f[k]) / n) for f in fs])
        ref = reference.get(block)
        is_ref = cpu == "max" and bootargs == "" and strategy == "Bbml2"
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s/%s | %s/%s/%s | %s | %s | %s |" % (
            cpu, "`%s`" % bootargs if bootargs else "–", strategy, block,
            spread(split, "{:.0f}"), spread(collapse, "{:.0f}"),
            "–" if is_ref or not ref else ratio(median(split), ref[0]),
            "–" if is_ref or not ref else ratio(median(collapse), ref[1]),
            per("splits_1g"), per("splits_2m"), per("tlbi_by_va"), per("tlbi_range"), per("tlbi_all"),
            per("dsb"), per("transient_unmaps"), "yes" if all(f.get("ok") == "1" for f in fs) else "**no**"))
    if failures:
        lines += ["", "**Failures**: " + "; ".join(failures)]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# The engine on the host against aarch64-paging.

ENGINE_ROW = re.compile(
    r"^(?P<name>\S.*?)\s+(?P<o>[\d.]+) \(\s*(?P<os>[\d.]+)\)\s+(?P<t>[\d.]+) \(\s*(?P<ts>[\d.]+)\)\s+"
    r"(?P<ratio>[\d.]+)\s+(?P<op>\d+)\s+(?P<tp>\d+)\s+(?P<w>\d+)\s+(?P<min>\S+)\s+(?P<wm>\S+)\s*$")
ENGINE_FLOOR = re.compile(r"^floor: zeroing one 4 KiB table page (?P<zero>[\d.]+) ns, one Instant pair "
                          r"(?P<timer>[\d.]+) ns", re.M)
ENGINE_LIVE = re.compile(r"^\s+(?P<name>same, ours live)\s+(?P<o>[\d.]+) \(\s*(?P<os>[\d.]+)\)\s+-\s+-\s+(?P<note>.*)$")


def section_engine(ctx):
    cmd = ["cargo", "run", "--quiet", "--release", "-p", "pgtable", "--features", "host",
           "--example", "compare", str(ctx.engine_reps)]
    progress("engine: %s" % " ".join(cmd))
    start = time.monotonic()
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise BenchError("%s failed:\n%s" % (" ".join(cmd), (result.stderr or result.stdout)[-2000:]))
    ctx.commands["engine"] = " ".join(cmd)
    out = result.stdout
    if ctx.logdir:
        with open(os.path.join(ctx.logdir, "engine-compare.txt"), "w") as f:
            f.write(out)
    header = out.splitlines()[0] if out else ""
    lines = [
        "`%s` (%.0f s): both engines build the same mappings from empty on the host in "
        "pre-touched table pools, trees not live; the example's own statistic is the median "
        "with the spread (max − min) in parentheses, over %d repetitions. Its first line: *%s*"
        % (" ".join(cmd), time.monotonic() - start, ctx.engine_reps, header.strip()),
        "",
        "| workload | ours µs (spread) | aarch64-paging µs (spread) | ours ÷ theirs | our table pages "
        "| its table pages | descriptors written (ours) | minimal | written ÷ minimal |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    parsed = 0
    for line in out.splitlines()[2:]:
        m = ENGINE_ROW.match(line)
        if m:
            parsed += 1
            lines.append("| %s | %s (%s) | %s (%s) | %s | %s | %s | %s | %s | %s |" % (
                m["name"].strip(), m["o"], m["os"], m["t"], m["ts"], m["ratio"], m["op"], m["tp"], m["w"],
                m["min"].replace("-", "–"), m["wm"].replace("-", "–")))
            continue
        m = ENGINE_LIVE.match(line)
        if m:
            parsed += 1
            lines.append("| %s | %s (%s) | – | – | – | – | – | – | – |" % (m["name"], m["o"], m["os"]))
            lines.append("")
            lines.append("The *ours live* row: %s." % m["note"].strip("() "))
    floor = ENGINE_FLOOR.search(out)
    if floor:
        lines += ["", "Shared floor, measured in the same run: zeroing one 4 KiB table page takes %s ns and "
                  "one `Instant` pair %s ns. Each per-operation time above holds at least one of each on "
                  "both sides; the 1 GiB block row is one new table and two descriptors, so being twice as "
                  "fast as aarch64-paging there would take less time than the floor alone." % (floor["zero"], floor["timer"])]
    if parsed == 0:
        lines = lines[:1] + ["", "The output did not parse; as printed:", "", "```", out.rstrip(), "```"]
    return "\n".join(lines)
