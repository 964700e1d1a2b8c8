"""Devices behind the SMMU: the guest's disk throughput under the hypervisor (the PCIe host
bridge passed through, its DMA translated by the SMMUv3 through the guest's stage 2)
against the same guest booted directly by QEMU, and the SMMU invalidations one MEM_PROTECT
costs next to the CPU's."""
import os
import re
import shutil
import subprocess
import tempfile

from .common import (REPO, TARGET, BenchError, command_line, guest_diskbench, guest_lines, hyp_exit_ok, hyp_exits,
                     hypmem_report, median, progress, qemu_command, ratio, run_qemu, smmu_stats, spread, tail)
from .sections import BOOT_CPU, BOOT_MEM, BOOT_SMP, guest_files, machine_options

# The guest's whole command line before run.sh's additions (--guest-append, then
# hyp.disk=1 for --disk): no earlycon, no checks, as in the other Linux boots here.
DEVICE_GUEST_ARGS = "console=ttyAMA0"
PASSTHROUGH = "passthrough=/pcie@10000000"
DISK_TARGET = 0.9
DISK_MIB = 64
DISK_VARIANTS = (
    ("direct", "Linux booted directly by QEMU (baseline)"),
    ("hyp", "Linux under the hypervisor, the PCIe bridge passed through (SMMUv3)"),
)


def private_disk():
    """A disk image of this run alone (scripts/make-disk-image.sh, as run.sh --disk makes
    target/disk.ext4), in a directory under target/: others may boot target/disk.ext4
    meanwhile, and target/ is not a tmpfs, so QEMU can open it O_DIRECT (cache=none).
    Returns (directory, image); the caller removes the directory."""
    os.makedirs(TARGET, exist_ok=True)
    directory = tempfile.mkdtemp(prefix="bench-disk-", dir=TARGET)
    image = os.path.join(directory, "disk.ext4")
    try:
        subprocess.run([os.path.join(REPO, "scripts/make-disk-image.sh"), image], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    except subprocess.CalledProcessError as error:
        shutil.rmtree(directory, ignore_errors=True)
        raise BenchError("scripts/make-disk-image.sh failed:\n%s" % tail(error.stderr or "", 1500))
    return directory, image


def disk_cache_mode(argv):
    """The `cache=` of the QEMU argv's -drive (run.sh picks none when the image's
    filesystem allows O_DIRECT, else writeback), or "?"."""
    for i, arg in enumerate(argv[:-1]):
        if arg == "-drive":
            m = re.search(r"(?:^|,)cache=(\w+)", argv[i + 1])
            if m:
                return m.group(1)
    return "?"


def device_command(ctx, mode, image, guest_append, cpu=BOOT_CPU, smp=BOOT_SMP, mem=BOOT_MEM):
    """The QEMU argv of `run.sh MODE --disk IMAGE --guest-append GUEST_APPEND` with the
    bench's kernel and initramfs; under the hypervisor (linux) with this run's copy and
    the PCIe host bridge passed through (run.sh gives the machine its SMMUv3 with --disk)."""
    kernel, initrd = guest_files()
    options = machine_options(cpu, smp, mem)
    if mode == "linux":
        options += ["--hypervisor", ctx.hypervisor, "--append", PASSTHROUGH]
    options += ["--disk", image, "--kernel", kernel, "--initrd", initrd,
                "--guest-cmdline", DEVICE_GUEST_ARGS, "--guest-append", guest_append]
    return qemu_command(mode, *options)


def check_hyp_boot(name, result):
    if result.timed_out:
        raise BenchError("%s timed out after %.0f s:\n%s" % (name, result.wall, tail(result.console)))
    if not hyp_exit_ok(result.console):
        raise BenchError("%s did not end with 'hyp-exit: success':\n%s" % (name, tail(result.console)))
    smmu_stats(result.console)


# ---------------------------------------------------------------------------------------
# Disk throughput: direct against under the hypervisor with the SMMU.

def check_disk(key, result):
    """The guest's diskbench figures of one boot; an error when the boot did not give them."""
    name = "diskbench %s boot" % key
    if key == "direct":
        if result.timed_out:
            raise BenchError("%s timed out after %.0f s:\n%s" % (name, result.wall, tail(result.console)))
    else:
        check_hyp_boot(name, result)
    return guest_diskbench(result.console, key != "direct")


def run_disk(ctx):
    """Direct and under the hypervisor in turn, `runs` rounds, on one private disk image."""
    if ctx.disk is not None:
        return
    directory, image = private_disk()
    try:
        commands = {"direct": device_command(ctx, "direct", image, "hyp.diskbench=1"),
                    "hyp": device_command(ctx, "linux", image, "hyp.diskbench=1")}
        samples = {key: [] for key in commands}
        ctx.cpu_models.add(BOOT_CPU)
        for r in range(ctx.runs):
            for key, args in commands.items():
                progress("disk %s, run %d/%d" % (key, r + 1, ctx.runs))
                result = run_qemu(args, timeout=300, log=ctx.log("disk-%s-run%d.log" % (key, r + 1)))
                check_disk(key, result)
                samples[key].append(result)
                ctx.commands.setdefault("disk " + key, command_line(args))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    ctx.disk = samples


def disk_verdict(name, value):
    return "%s **%.2f×** %s" % (name, value, "meets it" if value >= DISK_TARGET else "is **below** it")


def section_disk(ctx):
    run_disk(ctx)
    figures = {key: [guest_diskbench(s.console, key != "direct") for s in ctx.disk[key]] for key, _ in DISK_VARIANTS}
    caches = sorted({disk_cache_mode(s.args) for key, _ in DISK_VARIANTS for s in ctx.disk[key]})
    lines = [
        "The guest's own measurement (`hyp.diskbench=1`, `scripts/guest/check`): `dd` of %d MiB with "
        "`bs=1M`, direct I/O (`oflag=direct`, then `iflag=direct` after dropping the page cache), "
        "sequential write then read of one file on the ext4 of a virtio-blk-pci disk, timed with the "
        "guest's clock; MiB/s, median (min–max). Same kernel, initramfs and command line (`%s "
        "hyp.diskbench=1 hyp.disk=1`) both ways, `-cpu %s -smp %s -m %s`; the disk is a raw image of "
        "this run (`scripts/make-disk-image.sh`), QEMU `cache=%s`. Directly, the guest drives the "
        "device with no IOMMU; under the hypervisor the PCIe host bridge is the guest's (`%s`) and the "
        "device's DMA goes through the SMMUv3, which walks the guest's stage 2. The two alternate in "
        "each round. Under TCG these are QEMU's speeds, not a device's." % (
            DISK_MIB, DEVICE_GUEST_ARGS, BOOT_CPU, BOOT_SMP, BOOT_MEM, "/".join(caches), PASSTHROUGH),
        "",
        "| configuration | write MiB/s | read MiB/s | DMA faults (`smmu-stats: events`) |",
        "|---|---|---|---|",
    ]
    for key, label in DISK_VARIANTS:
        faults = "–" if key == "direct" else cell([smmu_stats(s.console)["events"] for s in ctx.disk[key]], "{:g}")
        lines.append("| %s | %s | %s | %s |" % (
            label, spread([f["write_mib_s"] for f in figures[key]], "{:.1f}"),
            spread([f["read_mib_s"] for f in figures[key]], "{:.1f}"), faults))
    direct, hyp = figures["direct"], figures["hyp"]
    ratios = {k: median([f[k] for f in hyp]) / median([f[k] for f in direct]) for k in ("write_mib_s", "read_mib_s")}
    lines.append("| under the hypervisor ÷ direct | %s | %s | |" % (
        ratio(median([f["write_mib_s"] for f in hyp]), median([f["write_mib_s"] for f in direct])),
        ratio(median([f["read_mib_s"] for f in hyp]), median([f["read_mib_s"] for f in direct]))))
    rounds = {k: [h[k] / d[k] for h, d in zip(hyp, direct) if d[k]] for k in ratios}
    lines += ["", "Target ≥ %.2f× (the ratio of the medians; round by round write %s×, read %s×): %s, %s. "
              "Printed, not checked: TCG speeds vary with the host's load." % (
                  DISK_TARGET, spread(rounds["write_mib_s"]), spread(rounds["read_mib_s"]),
                  disk_verdict("write", ratios["write_mib_s"]), disk_verdict("read", ratios["read_mib_s"]))]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# SMMU invalidations per MEM_PROTECT, next to the CPU's.

SMMU_VARIANTS = (("baseline", "hyp.idle=0"), ("workload", "hyp.modtest=1"))
# STATS group 1 (README "Guest hypercalls"): the CPU's TLBIs on the guest's stage 2.
TLBI_KEYS = ("tlbi_by_va", "tlbi_range", "tlbi_all")


def build_module():
    """scripts/build-guest-module.sh: hypmem.ko, which make-initramfs.sh then packs."""
    progress("smmu: scripts/build-guest-module.sh")
    try:
        subprocess.run([os.path.join(REPO, "scripts/build-guest-module.sh")], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    except subprocess.CalledProcessError as error:
        raise BenchError("scripts/build-guest-module.sh failed (the module needs scripts/setup.sh --module):\n%s"
                         % tail(error.stderr or "", 1500))


def check_smmu(key, result):
    """One boot's figures: smmu-stats, hyp-exits and (workload) the module's report."""
    check_hyp_boot("smmu %s boot" % key, result)
    figures = {"smmu": smmu_stats(result.console), "exits": hyp_exits(result.console)}
    if key == "baseline":
        if "guest-idle: end" not in guest_lines(result.console, True):
            raise BenchError("smmu baseline boot: no '(g1) guest-idle: end' line:\n%s" % tail(result.console))
        return figures
    report = hypmem_report(result.console, True)
    if not report["passed"]:
        raise BenchError("smmu workload boot: the hypmem self-test did not pass:\n%s" % tail(result.console))
    if not report["protects"] or any(report["protects"]):
        raise BenchError("smmu workload boot: MEM_PROTECT statuses %s, want all 0" % report["protects"])
    figures["hypmem"] = report
    return figures


def run_smmu(ctx):
    """The baseline (hyp.idle=0) and the workload (hyp.modtest=1) in turn, `runs` rounds,
    with the same machine, disk and passthrough."""
    if ctx.smmu is not None:
        return
    build_module()
    directory, image = private_disk()
    try:
        commands = {key: device_command(ctx, "linux", image, append) for key, append in SMMU_VARIANTS}
        samples = {key: [] for key in commands}
        for r in range(ctx.runs):
            for key, args in commands.items():
                progress("smmu %s, run %d/%d" % (key, r + 1, ctx.runs))
                result = run_qemu(args, timeout=300, log=ctx.log("smmu-%s-run%d.log" % (key, r + 1)))
                samples[key].append(check_smmu(key, result))
                ctx.commands.setdefault("smmu " + key, command_line(args))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    ctx.smmu = samples


def stats_delta(report, keys):
    """after − before of the module's STATS counters `keys`, or None when it printed
    them not both times."""
    before, after = report["stats"].get("before", {}), report["stats"].get("after", {})
    if any(k not in before or k not in after for k in keys):
        return None
    return {k: after[k] - before[k] for k in keys}


def cell(values, fmt="{:.2f}"):
    """One value when all runs agree, else `median (min–max)`."""
    values = list(values)
    if values and len(set(values)) == 1:
        return fmt.format(values[0])
    return spread(values, fmt)


def section_smmu(ctx):
    run_smmu(ctx)
    base, work = ctx.smmu["baseline"], ctx.smmu["workload"]
    calls = [len(w["hypmem"]["protects"]) for w in work]

    def row(label, get, per_call=True):
        a, b = [get(x) for x in base], [get(x) for x in work]
        diff = [y - x for x, y in zip(a, b)]
        per = cell([d / n for d, n in zip(diff, calls)]) if per_call else "–"
        return "| %s | %s | %s | %s | %s |" % (label, cell(a, "{:g}"), cell(b, "{:g}"), cell(diff, "{:g}"), per)

    lines = [
        "Linux under the hypervisor with the PCIe bridge passed through (`%s`, a virtio-blk disk on it, "
        "so the SMMUv3 is driven and mirrors every stage-2 invalidation), `-cpu %s -smp %s -m %s`. "
        "*Workload*: `hyp.modtest=1`, the hypmem module's self-test (`scripts/guest-module`), whose "
        "MEM_PROTECT calls write-protect one 4K page inside a 2M block and restore it; *baseline*: the same "
        "boot with `hyp.idle=0` (no hypercall workload), in turn each round. SMMU commands and CMD_SYNCs "
        "waited for are the hypervisor's `smmu-stats:` at power-off; the workload's share is workload − "
        "baseline, run by run, ÷ its MEM_PROTECT calls (its `hypmem: MEM_PROTECT(...) = 0` lines). Each "
        "CPU TLBI becomes SMMU commands (`iommu/invalidation.rs`: by VA one CMD_TLBI_S2_IPA, a range up to "
        "8 ranged ones with RIL, else one per page, all one CMD_TLBI_S12_VMALL), each `DSB ISH` after "
        "TLBIs one CMD_SYNC." % (PASSTHROUGH, BOOT_CPU, BOOT_SMP, BOOT_MEM),
        "",
        "| per boot | baseline (`hyp.idle=0`) | workload (`hyp.modtest=1`) | workload − baseline | per MEM_PROTECT |",
        "|---|---|---|---|---|",
        "| MEM_PROTECT calls | 0 | %s | %s | – |" % (cell(calls, "{:g}"), cell(calls, "{:g}")),
        row("SMMU commands", lambda x: x["smmu"]["commands"]),
        row("SMMU CMD_SYNCs waited for", lambda x: x["smmu"]["syncs"]),
        row("DMA fault events", lambda x: x["smmu"]["events"], per_call=False),
        row("HVC exits (all hypercalls and PSCI)", lambda x: x["exits"]["hvc"], per_call=False),
    ]
    tlbi = [stats_delta(w["hypmem"], TLBI_KEYS) for w in work]
    if all(tlbi):
        totals = [sum(t.values()) for t in tlbi]
        lines.append("| CPU TLBIs (STATS group 1, after − before in the workload) | – | – | %s | %s |" % (
            cell(totals, "{:g}"), cell([t / n for t, n in zip(totals, calls)])))
        for k in TLBI_KEYS:
            lines.append("| CPU TLBIs, %s | – | – | %s | %s |" % (
                k.replace("tlbi_", "").replace("_", " "), cell([t[k] for t in tlbi], "{:g}"),
                cell([t[k] / n for t, n in zip(tlbi, calls)])))
    else:
        lines.append("| CPU TLBIs | – | – | not exposed | not exposed |")
    splits = [stats_delta(w["hypmem"], ("splits_1g", "splits_2m", "collapses")) for w in work]
    if all(splits):
        for k, label in (("splits_1g", "stage-2 splits 1G"), ("splits_2m", "stage-2 splits 2M"),
                         ("collapses", "stage-2 collapses")):
            lines.append("| %s (STATS group 0, after − before in the workload) | – | – | %s | %s |" % (
                label, cell([s[k] for s in splits], "{:g}"), cell([s[k] / n for s, n in zip(splits, calls)])))
    if not all(tlbi):
        lines += ["", "**The CPU's TLBIs per MEM_PROTECT are not measured**: the hypervisor counts them (STATS "
                  "hypercall group 1: TLBIs by VA, by range, all, on the guest's stage 2), but nothing prints "
                  "them over a run: the module's `STATS before:`/`STATS after:` lines read group 0 only, "
                  "`map-stats: table=stage2 ... tlbi=` is printed once, at boot, and `hyp-exits:` has no TLBI "
                  "count. What would give them: hypmem.c's `show_stats()` also reading group 1 and printing "
                  "`hypmem: STATS before|after: tlbi_by_va=N tlbi_range=N tlbi_all=N` (this section reads "
                  "such lines as they are), or the hypervisor printing its stage-2 counters (`tlbi=`, `dsb=`) "
                  "at power-off, e.g. on the `hyp-exits:` line."]
    return "\n".join(lines)
