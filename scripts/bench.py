#!/usr/bin/env python3
"""Benchmarks that print ours next to a baseline measured in the same run.

  scripts/bench.sh map  [--runs N]   EL2 direct-map build: blocks vs forced 4K pages
                                     (mapping=pages) for --mem 1G, 4G, 16G
  scripts/bench.sh boot [--runs N]   Linux booted directly by QEMU vs under the hypervisor:
                                     median wall time and peak QEMU memory (max RSS)
  scripts/bench.sh protect           a guest permission change on the live stage 2: split
                                     (1G->4K, 2M->4K) and collapse, FEAT_BBM level 2 vs
                                     break-before-make, with split and TLBI counts

Medians over N runs (default 3) with min..max. The QEMU line is the same for both sides:
-machine virt,virtualization=on,gic-version=3 -cpu max -smp 2 -m 2G -nographic -nic none.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
MACHINE = ["-machine", "virt,virtualization=on,gic-version=3", "-nographic", "-nic", "none"]


def measure_rss(args, timeout=300):
    """Wall time and this child's own max RSS (via os.wait4)."""
    start = time.monotonic()
    proc = subprocess.Popen(["qemu-system-aarch64"] + args, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024, out.decode("utf-8", "replace"), proc.returncode


def summary(values, fmt="{:.2f}"):
    return (fmt + " (" + fmt + ".." + fmt + ")").format(statistics.median(values), min(values), max(values))


def build():
    subprocess.run([os.path.join(REPO, "scripts/setup.sh")], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([os.path.join(REPO, "scripts/build.sh")], check=True, stdout=subprocess.DEVNULL)


def map_stats(console):
    line = next((l for l in console.splitlines() if l.startswith("map-stats: table=el2")), None)
    if line is None:
        raise SystemExit("bench: no map-stats line:\n" + console[-2000:])
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


def bench_map(runs):
    print("EL2 direct map, built before the MMU is on (not live); medians of %d runs" % runs)
    print("| RAM | mapping | build_us | table pages | descriptors written | minimal | written/minimal | 4K leaves | tlbi |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mem in ["1G", "4G", "16G"]:
        for mapping in ["blocks", "pages"]:
            samples = []
            for _ in range(runs):
                _, _, console, _ = measure_rss(MACHINE + ["-cpu", "max", "-smp", "2", "-m", mem,
                                                          "-kernel", os.path.join(TARGET, "hypervisor.bin"),
                                                          "-append", "mapping=" + mapping])
                samples.append(map_stats(console))
            s = samples[-1]
            leaves = s["leaves_1g"] + s["leaves_2m"] + s["leaves_4k"]
            minimal = leaves + s["table_pages"] - 1  # one table descriptor per non-root table
            print("| %s | %s | %s | %d | %d | %d | %.2f | %d | %d |" % (
                mem, mapping, summary([x["build_us"] for x in samples], "{:.0f}"), s["table_pages"],
                s["descriptors"], minimal, s["descriptors"] / minimal, s["leaves_4k"], s["tlbi"]))


def bench_boot(runs):
    kernel = os.path.join(REPO, ".cache/guest/Image")
    initrd = os.path.join(TARGET, "initramfs.cpio.gz")
    subprocess.run([os.path.join(REPO, "scripts/make-initramfs.sh"), initrd], check=True)
    guest_args = "console=ttyAMA0 hyp.check=1 hyp.smp=2"
    direct = MACHINE + ["-cpu", "max", "-smp", "2", "-m", "2G", "-kernel", kernel, "-initrd", initrd,
                        "-append", guest_args]
    kernel_size = os.path.getsize(kernel)
    kernel_addr = 0x50000000
    initrd_addr = (kernel_addr + kernel_size + 0x3fffff) & ~0x1fffff
    hyp = MACHINE + ["-cpu", "max", "-smp", "2", "-m", "2G",
                     "-kernel", os.path.join(TARGET, "hypervisor.bin"),
                     "-device", "guest-loader,addr=0x%x,kernel=%s,bootargs=%s" % (kernel_addr, kernel, guest_args),
                     "-device", "guest-loader,addr=0x%x,initrd=%s" % (initrd_addr, initrd)]
    results = {"direct": ([], []), "hypervisor": ([], [])}
    for _ in range(runs):
        for name, args in (("direct", direct), ("hypervisor", hyp)):
            wall, rss, console, code = measure_rss(args)
            if "guest-check: pass" not in console:
                raise SystemExit("bench: %s boot did not pass its checks:\n%s" % (name, console[-3000:]))
            results[name][0].append(wall)
            results[name][1].append(rss)
    qemu = subprocess.run(["qemu-system-aarch64", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    print("Linux boot to userspace, checks and power-off (%s, -cpu max -smp 2 -m 2G); medians of %d runs" % (qemu, runs))
    print("| | wall s | peak RSS MiB |")
    print("|---|---|---|")
    for name in ("direct", "hypervisor"):
        print("| %s | %s | %s |" % (name, summary(results[name][0]), summary(results[name][1], "{:.0f}")))
    dw, hw = statistics.median(results["direct"][0]), statistics.median(results["hypervisor"][0])
    dr, hr = statistics.median(results["direct"][1]), statistics.median(results["hypervisor"][1])
    print("| ratio | %.2f | %.2f |" % (hw / dw, hr / dr))


def bench_protect(runs):
    print("MEM_PROTECT on the live stage 2: one 4K page made read-only (split) then restored (collapse); counts per pair, 200 pairs per row")
    print("| CPU | strategy | block | split ns | collapse ns | splits 1G/2M per pair | TLBI by VA/range/all per pair | DSB per pair | transient unmaps per pair |")
    print("|---|---|---|---|---|---|---|---|---|")
    for cpu in ("max", "cortex-a72"):
        log = os.path.join(TARGET, "bench-protect-%s.log" % cpu)
        subprocess.run([os.path.join(REPO, "scripts/run.sh"), "selftest", "--cpu", cpu, "--mem", "4G",
                        "--timeout", "300", "--log", log], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for line in open(log, errors="replace"):
            if not line.startswith("protect-bench:") or "skipped" in line:
                continue
            f = dict(re.findall(r"(\w+)=(\S+)", line))
            n = int(f["iterations"])
            per = lambda k: "%g" % (int(f[k]) / n)
            print("| %s | %s | %s | %s | %s | %s/%s | %s/%s/%s | %s | %s |" % (
                cpu, f["strategy"], f["block"], f["split_ns"], f["collapse_ns"], per("splits_1g"), per("splits_2m"),
                per("tlbi_by_va"), per("tlbi_range"), per("tlbi_all"), per("dsb"), per("transient_unmaps")))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["map", "boot", "protect", "all"])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    build()
    if args.what in ("map", "all"):
        bench_map(args.runs)
    if args.what in ("boot", "all"):
        bench_boot(args.runs)
    if args.what in ("protect", "all"):
        bench_protect(args.runs)


if __name__ == "__main__":
    main()
