#!/usr/bin/env python3
"""Benchmarks that put ours next to a baseline measured in the same run.

  scripts/bench.sh [report]   the whole report: bench-report/<UTC timestamp>/report.md, SVG
                              pictures of the EL2 and stage-2 maps and the console logs, with
                              bench-report/latest pointing at it (all rows below)
  scripts/bench.sh map        EL2 direct-map build: blocks vs forced 4K pages (mapping=pages)
                              for 1G, 4G, 16G: CNTPCT build time, table pages, descriptors
                              written vs the minimal count
  scripts/bench.sh boot       Linux booted directly by QEMU vs under the hypervisor (blocks and
                              mapping=pages; with --with-xen also Xen 4.17): wall time, peak RSS
                              and the hyp ÷ direct wall-time ratio against 1.26x (+0.03 allowed)
  scripts/bench.sh exits      exits by reason (IRQ, MMIO, HVC, SMC, sysreg, WFI, ...) and EL2 time:
                              per guest boot (the boot rows' runs, which it prints too) and per
                              second of an idle guest (hyp.idle=10 against hyp.idle=0)
  scripts/bench.sh latency    the guest's timer latency (tests/guest-tools/timerlat, hyp.timerlat=2000):
                              min/median/p99/max µs under the hypervisor against direct
  scripts/bench.sh disk       the guest's disk throughput (hyp.diskbench=1: 64 MiB dd, direct I/O,
                              write and read MiB/s) under the hypervisor with the PCIe bridge passed
                              through (SMMUv3) against direct, and the ratio against 0.9 (printed)
  scripts/bench.sh smmu       SMMU commands and CMD_SYNCs per MEM_PROTECT (the hypmem module's
                              self-test, hyp.modtest=1, against a hyp.idle=0 boot), next to the
                              CPU's TLBIs when the guest's output has them
  scripts/bench.sh stage2     the guest's stage-2 table memory, blocks vs mapping=pages
  scripts/bench.sh heap       heap leaves (from the map and boot runs)
  scripts/bench.sh scale      the EL2 map and the guest's stage 2 at 1G, 16G, 64G and 256G RAM (and
                              1T with --with-1t), blocks vs mapping=pages: CNTPCT build time, table
                              pages, descriptors written vs the minimal count, TLBIs; each boot is
                              stopped at its stage-2 map-stats line. The issue-19 goals are printed
                              as PASS/FAIL lines (exit 1 when one fails)
  scripts/bench.sh protect    MEM_PROTECT split (1G->4K, 2M->4K) and collapse on the live stage
                              2, FEAT_BBM level 2 vs break-before-make, with split and TLBI counts
  scripts/bench.sh engine     the page-table engine vs aarch64-paging on the host
  scripts/bench.sh phases     where the boot time goes: host time between kernel messages
                              (earlycon), direct vs stage-2 blocks vs stage-2 pages, and PC
                              samples of the phase that grows most under the hypervisor
  scripts/bench.sh guests     several guests at once (run.sh --guests N, 1 GiB and one vCPU each):
                              wall time until every guest's userspace is up, 1 guest against
                              2, and the hypervisor's memory per additional guest; with
                              --with-xen also Xen 4.17 booting the same dom0less DTB on the same
                              QEMU line (its free memory, debug key m, with 1 guest minus with
                              2, less the guest's RAM), and the goal: ours lower
  scripts/bench.sh all        every table above on standard output, no report files

Options:
  --runs N      runs per row (default 3): medians with the spread min-max
  --quick       1 run, RAM 1G and 4G only (scale keeps its sizes), 3 engine repetitions:
                for trying things out
  --with-xen    also boot Linux as dom0 under Xen 4.17 (Debian's xen-hypervisor-4.17-arm64,
                fetched with apt-get download into .cache/xen)
  --with-1t     the scale rows also for a 1 TiB machine (its mapping=pages boot takes ~45 s per
                run and commits ~4 GiB of host memory for the 4K tables)
  --out DIR     where reports go (default bench-report/ in the repository)

Single modes print markdown tables to standard output. QEMU runs one at a time, each
command line the one scripts/run.sh would run (its --print-qemu, setup and builds skipped
after bench.py's own): -machine virt,virtualization=on,gic-version=3 -nographic -nic none.
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import devices, guests, phases, scale, sections  # noqa: E402
from benchlib.common import REPO, BenchError, progress  # noqa: E402
from benchlib.report import write_report  # noqa: E402

SINGLE = {
    "map": [("EL2 direct-map build", sections.section_map)],
    "boot": [("Guest boot wall time", sections.section_boot)],
    "exits": [("Guest boot wall time", sections.section_boot), ("VM exits and EL2 time", sections.section_exits)],
    "latency": [("Guest timer latency", sections.section_latency)],
    "disk": [("Guest disk throughput", devices.section_disk)],
    "smmu": [("SMMU invalidations per MEM_PROTECT", devices.section_smmu)],
    "stage2": [("Stage-2 table memory", sections.section_stage2)],
    "heap": [("EL2 direct-map build", sections.section_map), ("Guest boot wall time", sections.section_boot),
             ("Heap leaves", sections.section_heap)],
    "protect": [("MEM_PROTECT", sections.section_protect)],
    "scale": [("Scale: EL2 map and stage 2 from 1 GiB up, blocks against forced 4K pages", scale.section_scale)],
    "engine": [("Engine host benchmarks", sections.section_engine)],
    "phases": [("Guest boot phases", phases.section_phases)],
    "guests": [("Several guests at once", guests.section_guests)],
}
SINGLE["all"] = SINGLE["map"] + SINGLE["exits"] + SINGLE["latency"] + SINGLE["disk"] + SINGLE["stage2"] \
    + SINGLE["heap"][2:] + SINGLE["scale"] + SINGLE["protect"] + SINGLE["smmu"] + SINGLE["engine"] + SINGLE["phases"] \
    + SINGLE["guests"]


def build(ctx, snapshot_dir):
    """Builds the hypervisor, then copies it: every boot of this run uses the copy, whatever
    else rebuilds target/ meanwhile (others may share the tree)."""
    from benchlib.common import TARGET
    from benchlib.report import git_state
    subprocess.run([os.path.join(REPO, "scripts/setup.sh")], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([os.path.join(REPO, "scripts/build.sh")], check=True, stdout=subprocess.DEVNULL)
    ctx.git = git_state()
    for name in ("hypervisor.bin",):
        dest = os.path.join(snapshot_dir, name)
        shutil.copyfile(os.path.join(TARGET, name), dest)
        with open(dest, "rb") as f:
            ctx.binaries[name] = hashlib.sha256(f.read()).hexdigest()
    ctx.hypervisor = os.path.join(snapshot_dir, "hypervisor.bin")


def main(argv=None):
    parser = argparse.ArgumentParser(usage="scripts/bench.sh [report|map|boot|exits|latency|disk|smmu|stage2|heap|scale|protect"
                                           "|engine|phases|all] [--runs N] [--quick] [--with-xen] [--with-1t] [--out DIR]",
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", default="report", choices=["report"] + list(SINGLE))
    parser.add_argument("--runs", type=int)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--with-xen", action="store_true")
    parser.add_argument("--with-1t", action="store_true")
    parser.add_argument("--out", default=os.path.join(REPO, "bench-report"))
    args = parser.parse_args(argv)
    runs = args.runs if args.runs is not None else (1 if args.quick else 3)
    if runs < 1:
        parser.error("--runs wants a positive number")
    ram = ["1G", "4G"] if args.quick else ["1G", "4G", "16G"]
    ctx = sections.Context(runs, ram, 3 if args.quick else 7, None, with_xen=args.with_xen)
    ctx.scale_sizes = list(scale.SCALE_SIZES) + ([scale.SIZE_1T] if args.with_1t else [])
    ctx.argv_text = "".join(" " + a for a in (argv if argv is not None else sys.argv[1:]))
    if args.with_xen:
        # Fetch Xen first: a clear failure before any benchmark runs.
        try:
            from benchlib.xen import ensure_xen
            ctx.xen = ensure_xen()
        except BenchError as error:
            print("bench: %s" % error, file=sys.stderr)
            return 1
    with tempfile.TemporaryDirectory(prefix="bench-bin-") as snapshot_dir:
        try:
            build(ctx, snapshot_dir)
        except subprocess.CalledProcessError as error:
            print("bench: the build failed (%s exit %d); nothing measured" % (
                os.path.basename(error.cmd[0]), error.returncode), file=sys.stderr)
            return 1
        if args.what == "report":
            _, ok = write_report(ctx, os.path.abspath(args.out))
            return 0 if ok else 1
        return single(ctx, args.what)


def single(ctx, what):
    status = 0
    for title, fn in SINGLE[what]:
        try:
            body = fn(ctx)
        except BenchError as error:
            print("bench: %s: %s" % (title, error), file=sys.stderr)
            status = 1
            continue
        if what == "heap" and fn is not sections.section_heap:
            continue
        print("## %s\n\n%s\n" % (title, body), flush=True)
    if ctx.goal_failures:
        print("bench: goals not met: %s" % ", ".join(ctx.goal_failures), file=sys.stderr)
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
