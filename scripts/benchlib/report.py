"""The report: bench-report/<UTC timestamp>/report.md, its SVG pictures and the console
logs they were drawn from; bench-report/latest points at the newest."""
import datetime
import os
import platform
import subprocess
import time

from . import devices, phases, ptdump_svg, scale, sections
from .common import QEMU, REPO, BenchError, machine_summary, progress, qemu_command


def _out(cmd, strip=True):
    try:
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True).stdout
    except OSError:
        return ""
    return out.strip() if strip else out


def host_cpu():
    for line in _out(["lscpu"]).splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def git_state():
    commit = _out(["git", "rev-parse", "HEAD"]) or "unknown"
    subject = _out(["git", "log", "-1", "--format=%s"])
    changed = [l for l in _out(["git", "status", "--porcelain"], strip=False).splitlines() if l.strip()]
    state = "clean" if not changed else "%d path(s) changed or untracked: %s" % (
        len(changed), ", ".join(l[3:] for l in changed[:8]) + (" ..." if len(changed) > 8 else ""))
    return commit, subject, state


def header(ctx, started, load_start):
    commit, subject, state = ctx.git
    qemu = (_out([QEMU, "--version"]).splitlines() or ["unknown"])[0]
    kernel = ""
    kp = os.path.join(REPO, ".cache/guest/kernel-package")
    if os.path.exists(kp):
        kernel = open(kp).read().strip()
    # The machine options of run.sh's recipe, which every boot here uses.
    try:
        options = ["--hypervisor", ctx.hypervisor] if ctx.hypervisor else []
        machine = "`%s`" % machine_summary(qemu_command("none", *options))
    except BenchError as error:
        machine = "unknown (%s)" % str(error).splitlines()[0]
    rows = [
        ("date (UTC)", started.strftime("%Y-%m-%d %H:%M:%S")),
        ("git commit", "`%s` %s (working tree: %s)" % (commit[:12], subject, state)),
        ("binaries", "built from that tree at the start and copied, so every boot uses the same one: %s" % ", ".join(
            "`%s` sha256 `%s`" % (name, digest[:16]) for name, digest in ctx.binaries.items())),
        ("QEMU", qemu),
        ("machine", "%s (`scripts/run.sh --print-qemu`), `-smp 2`, TCG" % machine),
        ("CPU models", "boot, map and scale: `-cpu max` (FEAT_BBM level 2); MEM_PROTECT: `-cpu max` and `-cpu cortex-a72` (no FEAT_BBML2)"),
        ("RAM", "boot, disk, SMMU: %s; direct map: %s; scale: %s; MEM_PROTECT: %s" % (
            sections.BOOT_MEM, ", ".join(ctx.ram_sizes), ", ".join(ctx.scale_sizes or scale.SCALE_SIZES),
            sections.PROTECT_MEM)),
        ("guest", "%s + busybox initramfs, `%s`" % (kernel or "Debian arm64 cloud kernel", sections.GUEST_ARGS)),
        ("Xen", ("%s (`xen-hypervisor-4.17-arm64`)" % ctx.xen[1]) if ctx.xen else "not run (`--with-xen`)"),
        ("host CPU", "%s, %d CPU(s) online; load average at start %.2f / %.2f / %.2f (others share this machine)" % (
            (host_cpu(), os.cpu_count() or 0) + tuple(load_start))),
        ("runs", "%d per row (median, min–max); engine benchmark %d repetitions" % (ctx.runs, ctx.engine_reps)),
        ("rustc", _out(["rustc", "-V"])),
    ]
    lines = ["| | |", "|---|---|"] + ["| %s | %s |" % r for r in rows]
    return "\n".join(lines)


PICTURES = (
    ("boot-hyp-run1.log", "el2", "el2-default.svg", "EL2 map, default (Linux guest, 2G)"),
    ("boot-hyp-run1.log", "stage2", "stage2-default.svg", "Guest stage 2, default (Linux guest, 2G)"),
    ("boot-hyp-crashkernel.log", "el2", "el2-crashkernel.svg", "EL2 map with crashkernel=64M"),
    ("boot-hyp-crashkernel.log", "stage2", "stage2-crashkernel.svg", "Guest stage 2 with crashkernel=64M"),
    ("boot-hyp-pages-run1.log", "stage2", "stage2-pages.svg", "Guest stage 2 with mapping=pages (the baseline)"),
)


def pictures(outdir):
    svg = ptdump_svg
    lines = [
        "Drawn by `scripts/ptdump-svg.py` from the console logs of this run (in `logs/`); redraw "
        "one with e.g. `scripts/ptdump-svg.py logs/boot-hyp-run1.log --table stage2 -o x.svg`. One "
        "row per GiB of input address, 512 cells of 2 MiB coloured by the largest leaf; a dark "
        "mark above a cell means it holds 4K pages, and those 2 MiB regions are drawn again "
        "below, page by page. The strip under each row gives the attributes, the line under it "
        "RAM (from `hyp-facts: memory`) and, red, the crash region. With `crashkernel=64M` the "
        "crash region (2 MiB aligned, 64 MiB) is left **unmapped** in the EL2 map and outside the "
        "guest's stage 2: it is mapped, at 4K, only while a crash record is written, so it "
        "shows as a red-framed gap, not as 4K cells.",
        "",
    ]
    missing = []
    for logname, table, name, title in PICTURES:
        path = os.path.join(outdir, "logs", logname)
        try:
            text = open(path, errors="replace").read()
            out = svg.render_svg(svg.parse_log(text), table, "logs/" + logname, title)
        except (OSError, svg.PtdumpError) as error:
            missing.append("%s: %s" % (name, error))
            continue
        with open(os.path.join(outdir, name), "w") as f:
            f.write(out)
        lines += ["### %s" % title, "", "![%s](%s)" % (title, name), ""]
    if missing:
        lines += ["**Not drawn**: " + "; ".join(missing)]
    return "\n".join(lines)


def write_report(ctx, outroot):
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = os.getloadavg()
    t0 = time.monotonic()
    stamp = started.strftime("%Y-%m-%dT%H%M%SZ")
    outdir = os.path.join(outroot, stamp)
    os.makedirs(os.path.join(outdir, "logs"), exist_ok=True)
    ctx.logdir = os.path.join(outdir, "logs")
    progress("report in %s" % os.path.relpath(outdir, REPO))

    parts, failed = [], []

    def section(title, fn):
        progress("== %s" % title)
        try:
            body = fn(ctx)
        except (BenchError, subprocess.SubprocessError, OSError) as error:
            failed.append(title)
            first, _, rest = str(error).partition("\n")
            body = "**Not measured**: %s" % first
            if rest.strip():
                body += "\n\n~~~\n%s\n~~~" % rest.strip("\n")
        parts.append("## %s\n\n%s\n" % (title, body))

    # QEMU boots one at a time; the engine benchmark (host only) last.
    section("Guest boot wall time", sections.section_boot)
    section("VM exits and EL2 time", sections.section_exits)
    section("Guest timer latency: under the hypervisor against direct", sections.section_latency)
    section("Guest disk throughput: under the hypervisor with the SMMU against direct", devices.section_disk)
    section("Where the guest's boot time goes", phases.section_phases)
    section("Stage-2 table memory for the guest", sections.section_stage2)
    section("EL2 direct-map build: blocks against forced 4K pages", sections.section_map)
    section("Scale: EL2 map and stage 2 from 1 GiB up, blocks against forced 4K pages", scale.section_scale)
    section("Heap leaves: 2M against 4K", sections.section_heap)
    section("MEM_PROTECT: split and collapse, BBML2 against break-before-make", sections.section_protect)
    section("SMMU invalidations per MEM_PROTECT, next to the CPU's", devices.section_smmu)
    try:
        sections.run_crash(ctx)
    except BenchError as error:
        failed.append("crashkernel boot")
        parts.append("**The crashkernel=64M boot failed**: %s\n" % error)
    section("Engine host benchmarks against aarch64-paging", sections.section_engine)
    parts.append("## Pictures\n\n%s\n" % pictures(outdir))
    commands = ["## Command lines", "", "One of each kind, as run (paths relative to the repository):", ""]
    snapshot = os.path.dirname(ctx.hypervisor) if ctx.hypervisor else None
    for what, cmd in ctx.commands.items():
        if snapshot:
            cmd = cmd.replace(snapshot, "target")
        commands += ["- %s: `%s`" % (what, cmd)]
    commands += ["", "`target/hypervisor.bin` stands for this run's copy (sha256 in the header)."]
    parts.append("\n".join(commands) + "\n")

    elapsed = time.monotonic() - t0
    load_end = os.getloadavg()
    doc = ["# Benchmark report", "",
           "Every row puts ours next to a baseline measured in the same run; numbers are medians "
           "over the runs with the spread (min–max) in parentheses. Nothing here is copied from an "
           "earlier run: the console logs of every boot are in `logs/`.", "",
           header(ctx, started, load_start), ""]
    if failed:
        doc += ["**Incomplete**: %s did not produce numbers (see below)." % ", ".join(failed), ""]
    if ctx.goal_failures:
        doc += ["**Goals not met**: %s (FAIL lines below)." % ", ".join(ctx.goal_failures), ""]
    doc += parts
    doc += ["---", "", "Produced by `scripts/bench.sh%s` in %.0f s; load average at the end %.2f / %.2f / %.2f." % (
        ctx.argv_text, elapsed, *load_end), ""]
    report = os.path.join(outdir, "report.md")
    with open(report, "w") as f:
        f.write("\n".join(doc))
    latest = os.path.join(outroot, "latest")
    tmp = latest + ".tmp"
    try:
        if os.path.lexists(tmp):
            os.remove(tmp)
        os.symlink(stamp, tmp)
        os.replace(tmp, latest)
    except OSError:
        import shutil
        if os.path.islink(latest) or os.path.isfile(latest):
            os.remove(latest)
        elif os.path.isdir(latest):
            shutil.rmtree(latest)
        shutil.copytree(outdir, latest)
    progress("wrote %s (%.0f s)%s%s" % (
        os.path.relpath(report, REPO), elapsed, "; incomplete: " + ", ".join(failed) if failed else "",
        "; goals not met: " + ", ".join(ctx.goal_failures) if ctx.goal_failures else ""))
    return report, not failed and not ctx.goal_failures
