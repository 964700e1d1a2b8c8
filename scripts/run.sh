#!/usr/bin/env bash
# Boots the hypervisor under QEMU.
#
# Usage: scripts/run.sh [MODE] [options] [-- EXTRA QEMU ARGS]
#
# MODE
#   linux      (default) boot the default Linux guest (Debian's arm64 cloud kernel and a
#              busybox initramfs) under the hypervisor, interactively
#   selftest   run the hypervisor's selftests
#   none       the hypervisor alone: boot summary, then a clean stop
#   direct     the same Linux guest booted directly by QEMU, no hypervisor (the
#              benchmarks' baseline)
#
# Options
#   --cpu MODEL             QEMU CPU model (default max; cortex-a72 has no FEAT_BBML2)
#   --smp N                 CPUs (default 2)
#   --mem SIZE              RAM: a number with M, G or T (default 2G). Above 16G the RAM is
#                           a non-reserving backend (reserve=off): the host commits only
#                           what the machine touches, so 64G, 256G and 1T machines start
#                           on a host with far less (the hypervisor alone touches its pool
#                           and tables; a Linux guest its memmap, ~1.6% of its RAM).
#   --append "ARGS"         the hypervisor's command line (/chosen/bootargs), e.g.
#                           "loglevel=debug crashkernel=64M"
#   --guest-append "ARGS"   the guest kernel's command line
#   --guest-cmdline "ARGS"  the guest kernel's whole command line instead of run.sh's
#                           "console=ttyAMA0 earlycon=pl011,0x9000000" (linux, direct);
#                           --guest-append and --check still add theirs
#   --kernel FILE           guest kernel Image (default: .cache/guest/Image)
#   --initrd FILE           guest initramfs (default: built from busybox)
#   --guests N              (linux) N Linux guests side by side, described the way Xen's
#                           dom0less does (Xen's docs/misc/arm/device-tree/booting.txt):
#                           QEMU's own DTB for this machine (-cpu/-smp/-m as the run has
#                           them, dumped with dumpdtb=; extra QEMU arguments are left out)
#                           plus /chosen/domU1 .. domUN, each with compatible "xen,domain",
#                           memory, cpus, vpl011 and its kernel and initrd as multiboot
#                           modules (the kernel's with the guest's bootargs), and --append
#                           also as xen,xen-bootargs (where Xen reads its command line; the
#                           hypervisor reads bootargs), written to target/guests-<hash>.dtb,
#                           one file per content (also by --print-qemu, so the line it prints
#                           runs, and runs of other shapes never share one) and passed with
#                           -dtb. QEMU's generic loader (-device
#                           loader, raw) puts the modules 2 MiB aligned from RAM base +
#                           256 MiB, in the order kernel 1, initrd 1, kernel 2, ...
#                           Static partitioning, as in Bao, Jailhouse and hvisor: each vCPU
#                           is pinned to its own physical CPU, so the guests' vCPUs add up
#                           to at most --smp. Defaults: --mem (N+1)G; per guest, RAM
#                           (--mem - 1G) / N rounded down to a multiple of 256M (256M at
#                           least), and as vCPUs the CPUs of --smp that --guest-cpus leave,
#                           split evenly, the remainder to the lowest-numbered guests. The
#                           guests' RAM must leave 512M of --mem to the hypervisor and the
#                           modules. --check adds "hyp.check=1 hyp.smp=<its vCPUs>" to each
#                           guest's command line and wants, for every guest I, "pass" as the
#                           last verdict in its console lines (tagged "(gI) ") and a MemTotal
#                           of 85-100% of the RAM the hypervisor says it gave it ("hyp-facts:
#                           guest=I ..."); one line per guest on standard error.
#                           Not with --disk, --net or --probe-devices yet
#   --guest I               (with --guests) the options after it, up to the next --guest, are
#                           guest I's alone (I from 1 to N): --kernel, --initrd, --guest-append
#                           and --guest-cmdline, each in place of the value given before any
#                           --guest (which is every guest's), and the two below. Any other
#                           option stays the run's wherever it stands, e.g.
#                           scripts/run.sh --guests 2 --smp 3 --check --guest 2 --guest-mem 512M
#                           --guest-append hyp.isolation=1
#   --guest-mem SIZE        (after --guest I) guest I's RAM, a number with M or G
#   --guest-cpus N          (after --guest I) guest I's vCPUs
#   --hypervisor FILE       boot FILE as the hypervisor instead of target/hypervisor.bin,
#                           which is then not built (a copy of it, or another hypervisor's
#                           arm64 Image such as Xen's)
#   --check                 run the guest-side checks and power off (linux, direct)
#   --disk [FILE]           (linux, direct, selftest) a virtio-blk-pci disk on the PCIe
#                           host bridge (selftest: modern only, disable-legacy=on, with the
#                           SMMUv3 as in linux mode, for the test guest's DMA tests with
#                           --append passthrough=/pcie@10000000):
#                           FILE as is (raw), or without FILE target/disk.ext4, a 128 MiB
#                           ext4 image scripts/make-disk-image.sh builds (no root needed).
#                           FILE is the next argument unless it starts with - or is a mode
#                           (write ./linux for a file of that name). cache=none (O_DIRECT, no
#                           host page cache: the guest's disk numbers are the device path's,
#                           not the host's RAM) when the file's filesystem allows O_DIRECT,
#                           else cache=writeback. The guest gets hyp.disk=1: its drivers load,
#                           and --check mounts /dev/vda (ext4), writes a file of random data,
#                           reads it back past the page cache and compares SHA-256
#                           ("guest-check: disk ok ..."); --guest-append hyp.diskbench=1
#                           adds a 64 MiB direct-I/O dd write and read ("guest-diskbench:
#                           write_mib_s=.. read_mib_s=..", alone without --check)
#   --net                   (linux, direct) a virtio-net-pci NIC on QEMU user networking
#                           (10.0.2.0/24, gateway and DHCP server 10.0.2.2). The guest gets
#                           hyp.net=1; --check takes a DHCP lease and pings the gateway
#                           ("guest-check: net ok ..."). In linux mode --disk and --net also
#                           give the machine an SMMUv3 (iommu=smmuv3, stage 2 only) for the
#                           hypervisor to pass the PCIe host bridge through: the guest sees
#                           the devices once the hypervisor has its SMMU support
#   --probe-devices         (linux, selftest) give the guest the first and last word of
#                           every device window of the board (from QEMU's own DTB for
#                           this -cpu/-smp/-m, dumped with dumpdtb=), less the frames the
#                           hypervisor emulates for the guest (GIC distributor, its vCPUs'
#                           redistributors, the console PL011): linux as hyp.probe=, for
#                           scripts/guest/isolation (--guest-append hyp.isolation=1);
#                           selftest as isolation_probe= in the test guest's bootargs (after
#                           --guest-append), for its isolation_probe_addresses case. Either
#                           shows each access is refused. The windows and their probes are
#                           listed on standard error
#   --timeout SECONDS       stop QEMU after this long (default: none interactively,
#                           300 with --check and for none/selftest)
#   --log FILE              also write the console to FILE (default: target/run.log)
#   --debug                 use a debug build of the hypervisor
#   --print-qemu            build what the run needs, then print the QEMU command line
#                           instead of running it: one line on standard output, each
#                           argument in POSIX shell quoting (bare when it holds only
#                           A-Za-z0-9_./:=,+@%- characters, else in single quotes, a ' inside
#                           written '\''), so it pastes into a shell and Python's
#                           shlex.split() gives the argv back; exit 0. Nothing else goes
#                           to standard output; --timeout is not part of the line
#   --skip-setup            skip scripts/setup.sh and the builds (hypervisor, test guest):
#                           use what is there, for callers that have just done both
#                           (scripts/test.sh, the benchmarks). The environment variable
#                           HYP_SKIP_SETUP=1 does the same. The initramfs is still brought
#                           up to date (a stamp check that packs a newly built hypmem.ko);
#                           a missing file is an error that names what makes it
#   -h, --help              this text
#
# Exit status: 0 when the hypervisor's last line is "hyp-exit: success" (with --check, and
# the guest's checks passed: every guest's with --guests; direct: when the guest's checks
# passed with --check, else QEMU's status); 1 when it reports a failure or never reports
# (QEMU stopped without the marker); 124 on timeout; 2 on a usage error or a missing input
# file.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
mode=linux
cpu=max
smp=2
mem=2G
mem_set=0
append=""
guest_append=""
guest_cmdline=""
guest_cmdline_set=0
kernel=""
initrd=""
hypervisor=""
check=0
disk=0
disk_file=""
net=0
probe_devices=0
print_qemu=0
skip_setup=0
case "${HYP_SKIP_SETUP:-0}" in
    0) ;;
    1) skip_setup=1 ;;
    *) echo "run.sh: HYP_SKIP_SETUP wants 0 or 1, not '$HYP_SKIP_SETUP'" >&2; exit 2 ;;
esac
timeout_s=""
log="$repo/target/run.log"
build_flag=""
extra=()
# --guests N: guests 1..N; 0 is the single guest of the guest-loader path.
guests=0
guests_set=0
# The I of the last --guest I (none before the first), the highest I named, and guest I's
# own options, keyed "I:kernel", "I:initrd", "I:guest_append", "I:guest_cmdline", "I:mem",
# "I:cpus".
guest_section=""
guest_max=0
declare -A per_guest=()

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
die_usage() { echo "run.sh: $*" >&2; echo "try: scripts/run.sh --help" >&2; exit 2; }
# A file the run needs is missing: say which and what makes it.
die_missing() {
    echo "run.sh: $1 not found; $2" >&2
    [ "$skip_setup" -eq 0 ] || echo "run.sh: (setup and builds were skipped: --skip-setup or HYP_SKIP_SETUP=1)" >&2
    exit 2
}
# --kernel, --initrd, --guest-append, --guest-cmdline: after --guest I guest I's alone, before
# any --guest every guest's (the global variable of that name).
guest_or_all() {
    if [ -n "$guest_section" ]; then
        per_guest[$guest_section:$1]=$2
    else
        printf -v "$1" '%s' "$2"
    fi
}
# --guest-mem, --guest-cpus: guest I's only, so meaningless before the first --guest.
guest_only() {
    [ -n "$guest_section" ] || die_usage "$1 is one guest's: put it after --guest I (with --guests N)"
}
# One argument in POSIX shell quoting: bare when it holds only safe characters, else in
# single quotes with each ' inside written '\''.
shell_quote() {
    local q="'\\''"
    if [[ "$1" =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then
        printf '%s' "$1"
    else
        printf "'%s'" "${1//\'/$q}"
    fi
}

while [ $# -gt 0 ]; do
    case "$1" in
        linux|selftest|none|direct) mode=$1 ;;
        --cpu) cpu=${2:?--cpu needs a model}; shift ;;
        --smp) smp=${2:?--smp needs a number}; shift ;;
        --mem) mem=${2:?--mem needs a size}; mem_set=1; shift ;;
        --append) append=${2?--append needs arguments}; shift ;;
        --guest-append) guest_or_all guest_append "${2?--guest-append needs arguments}"; shift ;;
        --guest-cmdline)
            guest_or_all guest_cmdline "${2?--guest-cmdline needs arguments}"
            [ -n "$guest_section" ] || guest_cmdline_set=1
            shift ;;
        --kernel) guest_or_all kernel "${2:?--kernel needs a file}"; shift ;;
        --initrd) guest_or_all initrd "${2:?--initrd needs a file}"; shift ;;
        --guests) guests=${2:?--guests needs a number}; guests_set=1; shift ;;
        --guest)
            guest_section=${2:?--guest needs a guest number}
            [[ "$guest_section" =~ ^[1-9][0-9]*$ ]] \
                || die_usage "--guest wants a guest number from 1 to N (--guests N), not '$guest_section'"
            (( guest_section <= guest_max )) || guest_max=$guest_section
            shift ;;
        --guest-mem)
            guest_only "$1"
            [[ "${2-}" =~ ^[1-9][0-9]*[MG]$ ]] \
                || die_usage "--guest-mem (guest $guest_section) wants a size like 512M or 2G, not '${2-}'"
            per_guest[$guest_section:mem]=$2; shift ;;
        --guest-cpus)
            guest_only "$1"
            [[ "${2-}" =~ ^[1-9][0-9]*$ ]] \
                || die_usage "--guest-cpus (guest $guest_section) wants a positive number, not '${2-}'"
            per_guest[$guest_section:cpus]=$2; shift ;;
        --hypervisor) hypervisor=${2:?--hypervisor needs a file}; shift ;;
        --check) check=1 ;;
        --disk)
            disk=1
            case "${2-}" in
                ""|-*|linux|selftest|none|direct) ;;
                *) disk_file=$2; shift ;;
            esac ;;
        --net) net=1 ;;
        --probe-devices) probe_devices=1 ;;
        --print-qemu) print_qemu=1 ;;
        --skip-setup) skip_setup=1 ;;
        --timeout) timeout_s=${2:?--timeout needs seconds}; shift ;;
        --log) log=${2:?--log needs a file}; shift ;;
        --debug) build_flag=--debug ;;
        -h|--help) usage; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        *) die_usage "unknown argument '$1'" ;;
    esac
    shift
done

[[ "$smp" =~ ^[1-9][0-9]*$ ]] || die_usage "--smp wants a positive number, not '$smp'"
[[ "$mem" =~ ^[1-9][0-9]*[MGT]$ ]] || die_usage "--mem wants a size like 512M, 2G or 1T, not '$mem'"
if [ -n "$timeout_s" ]; then
    [[ "$timeout_s" =~ ^[1-9][0-9]*$ ]] || die_usage "--timeout wants seconds, not '$timeout_s'"
elif [ "$check" -eq 1 ] || { [ "$mode" != linux ] && [ "$mode" != direct ]; } || [ ! -t 0 ]; then
    timeout_s=300
fi
if [ "$mode" = direct ]; then
    [ -z "$append" ] || die_usage "direct mode boots no hypervisor: --append has nowhere to go (--guest-append, --guest-cmdline)"
    [ -z "$hypervisor" ] || die_usage "direct mode boots no hypervisor: --hypervisor makes no sense"
fi
if [ "$guest_cmdline_set" -eq 1 ] && [ "$mode" != linux ] && [ "$mode" != direct ]; then
    die_usage "--guest-cmdline is for the linux and direct modes"
fi
if [ "$disk" -eq 1 ] && [ "$mode" = none ]; then
    die_usage "--disk is for the linux, direct and selftest modes"
fi
if [ "$net" -eq 1 ] && [ "$mode" != linux ] && [ "$mode" != direct ]; then
    die_usage "--net is for the linux and direct modes"
fi
# Without the hypervisor (direct) the devices answer; the none mode boots no guest to probe them.
[ "$probe_devices" -eq 0 ] || [ "$mode" = linux ] || [ "$mode" = selftest ] \
    || die_usage "--probe-devices is for the linux and selftest modes"
if [ "$guests_set" -eq 1 ]; then
    [[ "$guests" =~ ^[1-9][0-9]*$ ]] || die_usage "--guests wants a number of guests from 1, not '$guests'"
    [ "$mode" = linux ] || die_usage "--guests is for the linux mode"
    # Each of these gives one guest its devices; which guest, and how the guests share the
    # SMMU, has no option yet.
    [ "$disk" -eq 0 ] || die_usage "--disk does not work with --guests yet"
    [ "$net" -eq 0 ] || die_usage "--net does not work with --guests yet"
    [ "$probe_devices" -eq 0 ] || die_usage "--probe-devices does not work with --guests yet"
    (( guest_max <= guests )) || die_usage "--guest $guest_max: there are guests 1 to $guests only (--guests $guests)"
    # 1G for the hypervisor and the modules, 1G for each guest.
    [ "$mem_set" -eq 1 ] || mem="$((guests + 1))G"
elif [ "$guest_max" -gt 0 ]; then
    die_usage "--guest $guest_max is for several guests: give --guests N too"
fi

mem_mib() {
    case "$1" in
        *T) echo $(( ${1%T} * 1024 * 1024 )) ;;
        *G) echo $(( ${1%G} * 1024 )) ;;
        *M) echo "${1%M}" ;;
        *) echo $(( $1 / 1024 / 1024 )) ;;
    esac
}

# --probe-devices: the addresses to probe, comma-separated, from QEMU's own DTB for this
# machine (-cpu/-smp/-m as the run has them; extra QEMU arguments are left out, the board's
# devices do not depend on them). Reads $machine, $cpu, $smp, $mem and $memory_backend.
device_probes() {
    local dir status=0
    dir=$(mktemp -d)
    qemu-system-aarch64 -machine "$machine,dumpdtb=$dir/board.dtb" -cpu "$cpu" -smp "$smp" \
        -m "$mem" "${memory_backend[@]}" -nographic -nic none >"$dir/qemu.out" 2>&1 || status=$?
    if [ "$status" -ne 0 ] || [ ! -s "$dir/board.dtb" ]; then
        cat "$dir/qemu.out" >&2; rm -rf "$dir"
        echo "run.sh: --probe-devices: QEMU could not dump its DTB" >&2; exit 2
    fi
    python3 - "$dir/board.dtb" "$smp" <<'PY' || status=$?
# QEMU's board DTB (argv[1]) and the guest's vCPU count (argv[2]) -> the addresses
# --probe-devices has the guest probe, comma-separated on stdout; what each device window
# gives (or why it gives nothing) on stderr. Which nodes are devices and how their `reg`
# and PCI windows translate follows guest-loader's named_device_regions (passthrough.rs),
# whose names the hypervisor logs, so that every probe hits a window it can name.
import struct
import sys

GICD_FRAME = 0x10000   # the distributor the hypervisor emulates
GICR_FRAMES = 0x20000  # one vCPU's emulated RD_base + SGI_base (GICv3)
UART_FRAME = 0x1000    # the emulated PL011
NOT_DEVICES_AT_ROOT = {"memory", "reserved-memory", "cpus", "chosen", "aliases"}
NOT_DEVICE_NAMES_AT_ROOT = {"psci", "timer", "pmu"}
NOT_DEVICE_COMPATIBLES = {b"arm,psci", b"arm,psci-0.2", b"arm,psci-1.0",
                          b"arm,armv8-timer", b"arm,armv7-timer"}


def parse(blob):
    """The tree as nested (name, props, children) tuples."""
    magic, _, off_struct, off_strings = struct.unpack_from(">IIII", blob, 0)
    if magic != 0xD00DFEED:
        sys.exit(f"not a DTB (magic {magic:#x})")
    pos, stack, root = off_struct, [], None
    while True:
        (token,) = struct.unpack_from(">I", blob, pos)
        pos += 4
        if token == 1:  # FDT_BEGIN_NODE
            end = blob.index(b"\0", pos)
            node = (blob[pos:end].decode(), {}, [])
            pos = (end + 4) & ~3
            if stack:
                stack[-1][2].append(node)
            else:
                root = node
            stack.append(node)
        elif token == 2:  # FDT_END_NODE
            stack.pop()
        elif token == 3:  # FDT_PROP
            length, name_off = struct.unpack_from(">II", blob, pos)
            name_at = off_strings + name_off
            name = blob[name_at:blob.index(b"\0", name_at)].decode()
            stack[-1][1][name] = blob[pos + 8:pos + 8 + length]
            pos = (pos + 8 + length + 3) & ~3
        elif token == 4:  # FDT_NOP
            continue
        elif token == 9:  # FDT_END
            return root
        else:
            sys.exit(f"bad FDT token {token:#x}")


def numbers(value, *widths):
    """`value` as entries of numbers `widths` cells wide each."""
    step = 4 * sum(widths)
    if step == 0 or len(value) % step:
        raise ValueError(f"{len(value)} bytes is not a whole number of {sum(widths)}-cell entries")
    for at in range(0, len(value), step):
        entry = []
        for width in widths:
            entry.append(int.from_bytes(value[at:at + 4 * width], "big"))
            at += 4 * width
        yield entry


def cells(props, name, default):
    value = props.get(name)
    return default if value is None else int.from_bytes(value, "big")


def strings(props, name):
    return set(filter(None, props.get(name, b"").split(b"\0")))


def translate(space, base, size):
    """[base, base + size) of a bus as CPU physical; space None is the identity."""
    if space is None:
        return base
    for child, cpu, window in space:
        if child <= base and base + size <= child + window:
            return cpu + base - child
    raise ValueError(f"[{base:#x}, +{size:#x}) is outside the parent's ranges")


def device_windows(root):
    """{path: [(base, size)]} of every device in DT order, and the GICv3's path."""
    found, gic = {}, None

    def visit(node, path, parent_cells, space, at_root):
        nonlocal gic
        name, props, children = node
        if at_root and (name.split("@")[0] in NOT_DEVICES_AT_ROOT or name in NOT_DEVICE_NAMES_AT_ROOT):
            return
        if strings(props, "device_type") & {b"memory", b"cpu"} or strings(props, "compatible") & NOT_DEVICE_COMPATIBLES:
            return
        status = props.get("status")
        if status is not None and status.rstrip(b"\0") not in (b"okay", b"ok"):
            return
        own = (cells(props, "#address-cells", 2), cells(props, "#size-cells", 1))
        try:
            windows = [(translate(space, base, size), size)
                       for base, size in numbers(props.get("reg", b""), *parent_cells) if size]
            child_space = None
            if strings(props, "device_type") & {b"pci", b"pciex"}:
                # I/O, 32- and 64-bit memory windows; not config space, and no children.
                windows += [(translate(space, base, size), size)
                            for hi, _, base, size in numbers(props.get("ranges", b""), 1, 2, parent_cells[0], own[1])
                            if size and (hi >> 24) & 3]
                children = []
            elif "ranges" not in props:
                children = []  # not memory-mapped below (I2C, SPI, MDIO...)
            elif props["ranges"]:
                child_space = [(child, translate(space, base, size), size)
                               for child, base, size in numbers(props["ranges"], own[0], parent_cells[0], own[1]) if size]
            else:
                child_space = space
        except ValueError as error:
            print(f"run.sh: --probe-devices: {path}: {error}; not probed", file=sys.stderr)
            return
        if windows:
            found[path] = windows
        if gic is None and b"arm,gic-v3" in strings(props, "compatible"):
            gic = path
        for child in children:
            visit(child, f"{path}/{child[0]}", own, child_space, False)

    for child in root[2]:
        visit(child, f"/{child[0]}", (cells(root[1], "#address-cells", 2), cells(root[1], "#size-cells", 1)), None, True)
    return found, gic


def console_path(root):
    """The node /chosen/stdout-path names (through /aliases), the hypervisor's console."""
    nodes = {name: props for name, props, _ in root[2]}
    stdout = nodes.get("chosen", {}).get("stdout-path", b"").rstrip(b"\0").decode().split(":")[0]
    if stdout and not stdout.startswith("/"):
        stdout = nodes.get("aliases", {}).get(stdout, b"").rstrip(b"\0").decode()
    return stdout or None


def without(base, end, holes):
    """[base, end) less every (hole_base, hole_end)."""
    pieces = [(base, end)]
    for hole_base, hole_end in holes:
        pieces = [piece for start, stop in pieces
                  for piece in ((start, min(stop, hole_base)), (max(start, hole_end), stop))
                  if piece[0] < piece[1]]
    return pieces


def ends(start, stop):
    """The first and last word of [start, stop). Busybox devmem maps the next page too for a
    word in a page's last 32 bytes (it adds the width in bits), and that page may be RAM or a
    device the guest kernel claimed, which /dev/mem refuses: such a last word moves 64 bytes
    in, as scripts/guest/isolation does for its holes."""
    first = (start + 3) & ~3
    last = (stop - 4) & ~3
    if (last & 0xFFF) + 32 > 0x1000:
        last = max(first, (stop - 64) & ~3)
    return [first] if last <= first else [first, last]


def main():
    root = parse(open(sys.argv[1], "rb").read())
    vcpus = int(sys.argv[2])
    found, gic = device_windows(root)
    emulated = []
    if gic and len(found[gic]) >= 2:
        (gicd, _), (gicr, _) = found[gic][:2]
        emulated += [(gicd, gicd + GICD_FRAME), (gicr, gicr + vcpus * GICR_FRAMES)]
    console = console_path(root)
    if console in found:
        uart = found[console][0][0]
        emulated.append((uart, uart + UART_FRAME))
    probes = []
    for path, windows in found.items():
        for base, size in windows:
            mine = [a for piece in without(base, base + size, emulated) for a in ends(*piece)]
            what = " ".join(f"{a:#x}" for a in mine) or "none (emulated for the guest)"
            print(f"run.sh: --probe-devices: {path} [{base:#x}, {base + size:#x}): {what}", file=sys.stderr)
            probes += mine
    if not probes:
        sys.exit("no device window to probe")
    print(",".join(f"{a:#x}" for a in probes))


main()
PY
    rm -rf "$dir"
    [ "$status" -eq 0 ] || { echo "run.sh: --probe-devices: no probe list" >&2; exit 2; }
}

# The default initramfs, target/initramfs.cpio.gz. Even with --skip-setup: a cheap stamp
# check, which also packs a hypmem.ko built since (scripts/build-guest-module.sh, as the
# hypercall QEMU test does).
default_initrd() {
    [ "$skip_setup" -eq 0 ] || [ -x "$repo/.cache/guest/busybox" ] \
        || die_missing "$repo/.cache/guest/busybox" "scripts/setup.sh fetches it"
    "$repo/scripts/make-initramfs.sh" "$repo/target/initramfs.cpio.gz" >&2
}

# --guests: every guest's kernel, initrd, bootargs, RAM (MiB), vCPUs and where its modules
# go, in the arrays g_* indexed 1..N; a usage error for what cannot boot. Reads the options,
# $mem and $ram_base.
plan_guests() {
    local i what file size end addr per_mib each=0 spare=0 unpinned=0 pinned=0 total_mib=0 initrd_built=0
    local mem_total cmdline cmdline_set extra_args
    for ((i = 1; i <= guests; i++)); do
        g_kernel[i]=${per_guest[$i:kernel]:-${kernel:-$repo/.cache/guest/Image}}
        [ -f "${g_kernel[i]}" ] \
            || die_usage "guest $i's kernel '${g_kernel[i]}' not found (scripts/setup.sh fetches the default one)"
        g_initrd[i]=${per_guest[$i:initrd]:-$initrd}
        if [ -z "${g_initrd[i]}" ]; then
            g_initrd[i]="$repo/target/initramfs.cpio.gz"
            [ "$initrd_built" -eq 1 ] || { default_initrd; initrd_built=1; }
        fi
        [ -f "${g_initrd[i]}" ] || die_usage "guest $i's initrd '${g_initrd[i]}' not found"
        # The command line as the single guest's is made, from this guest's options.
        cmdline=$guest_cmdline cmdline_set=$guest_cmdline_set extra_args=$guest_append
        if [ -n "${per_guest[$i:guest_cmdline]+set}" ]; then
            cmdline=${per_guest[$i:guest_cmdline]} cmdline_set=1
        fi
        [ -z "${per_guest[$i:guest_append]+set}" ] || extra_args=${per_guest[$i:guest_append]}
        if [ "$cmdline_set" -eq 1 ]; then
            g_bootargs[i]="$cmdline${extra_args:+ $extra_args}"
        else
            g_bootargs[i]="console=ttyAMA0 earlycon=pl011,0x9000000 $extra_args"
        fi
        if [ -n "${per_guest[$i:cpus]-}" ]; then
            pinned=$((pinned + ${per_guest[$i:cpus]}))
        else
            unpinned=$((unpinned + 1))
        fi
    done

    # Static partitioning: each vCPU has a physical CPU of its own, so the guests share --smp.
    (( pinned <= smp )) \
        || die_usage "the guests' --guest-cpus add up to $pinned vCPUs, more than --smp $smp (each vCPU is pinned to its own CPU)"
    if [ "$unpinned" -gt 0 ]; then
        each=$(( (smp - pinned) / unpinned )) spare=$(( (smp - pinned) % unpinned ))
        (( each >= 1 )) \
            || die_usage "--smp $smp leaves $((smp - pinned)) CPU(s) to the $unpinned guest(s) without --guest-cpus, and each guest needs one (each vCPU is pinned to its own CPU)"
    fi
    for ((i = 1; i <= guests; i++)); do
        if [ -n "${per_guest[$i:cpus]-}" ]; then
            g_cpus[i]=${per_guest[$i:cpus]}
        else
            g_cpus[i]=$each
            if [ "$spare" -gt 0 ]; then g_cpus[i]=$((each + 1)) spare=$((spare - 1)); fi
        fi
        [ "$check" -eq 0 ] || g_bootargs[i]="${g_bootargs[i]} hyp.check=1 hyp.smp=${g_cpus[i]}"
    done

    # RAM: 1G of --mem for the hypervisor and the modules, the rest in equal whole 256M
    # pieces; what the guests take must leave the hypervisor 512M.
    mem_total=$(mem_mib "$mem")
    per_mib=$(( (mem_total - 1024) / guests / 256 * 256 ))
    (( per_mib >= 256 )) || per_mib=256
    for ((i = 1; i <= guests; i++)); do
        g_mem_mib[i]=$per_mib
        [ -z "${per_guest[$i:mem]-}" ] || g_mem_mib[i]=$(mem_mib "${per_guest[$i:mem]}")
        total_mib=$((total_mib + g_mem_mib[i]))
    done
    (( total_mib + 512 <= mem_total )) \
        || die_usage "the guests' RAM adds up to ${total_mib}M, which leaves less than 512M of --mem $mem to the hypervisor and the modules"

    # The modules, 2 MiB aligned from RAM base + 256 MiB as in the single guest's case (clear
    # of the hypervisor and of the DTB QEMU places at RAM base + 128 MiB), one after another.
    addr=$((ram_base + 0x10000000))
    for ((i = 1; i <= guests; i++)); do
        for what in kernel initrd; do
            if [ "$what" = kernel ]; then file=${g_kernel[i]}; else file=${g_initrd[i]}; fi
            size=$(stat -L -c %s "$file")
            (( size > 0 )) || die_usage "guest $i's $what '$file' is empty"
            end=$((addr + size))
            (( end <= ram_base + mem_total * 1024 * 1024 )) \
                || die_usage "the guests' modules do not fit in --mem $mem: guest $i's $what '$file' ($size bytes at $(printf '%#x' "$addr")) would end past the end of RAM"
            if [ "$what" = kernel ]; then
                g_kernel_addr[i]=$addr g_kernel_size[i]=$size
            else
                g_initrd_addr[i]=$addr g_initrd_size[i]=$size
            fi
            addr=$(( (end + 0x1fffff) & ~0x1fffff ))
        done
    done
}

# --guests: QEMU's own DTB for this machine (dumped as device_probes does) plus Xen's dom0less
# description of the guests under /chosen, written to $target_dir/guests.dtb for -dtb. QEMU
# rewrites /memory in a -dtb blob and sets /chosen/bootargs from -append, and keeps the rest
# of /chosen. fdtput puts a new node or property in front of its siblings: adding everything
# last to first leaves the tree in reading order, domU1 first (the hypervisor numbers the
# guests in DT order) and each kernel before its ramdisk (Xen's order for untyped modules).
write_guests_dtb() {
    local i node module out status=0
    local dtb="$target_dir/guests.dtb.$$"
    command -v fdtput >/dev/null \
        || die_missing "fdtput" "scripts/setup.sh installs device-tree-compiler, which has it"
    mkdir -p "$target_dir"
    out=$(qemu-system-aarch64 -machine "$machine,dumpdtb=$dtb" -cpu "$cpu" -smp "$smp" -m "$mem" \
        "${memory_backend[@]}" -nographic -nic none 2>&1) || status=$?
    if [ "$status" -ne 0 ] || [ ! -s "$dtb" ]; then
        printf '%s\n' "$out" >&2; rm -f "$dtb"
        echo "run.sh: --guests: QEMU could not dump its DTB" >&2; exit 2
    fi
    # fdtput, or a stop that leaves no half-written blob behind.
    put() { fdtput "$@" || { rm -f "$dtb"; echo "run.sh: --guests: fdtput $* failed" >&2; exit 2; }; }
    for ((i = guests; i >= 1; i--)); do
        node=/chosen/domU$i
        put -c "$dtb" "$node"
        module=$node/module@$(printf '%x' "${g_initrd_addr[i]}")
        put -c "$dtb" "$module"
        put -t u "$dtb" "$module" reg $((g_initrd_addr[i] >> 32)) $((g_initrd_addr[i] & 0xffffffff)) \
            $((g_initrd_size[i] >> 32)) $((g_initrd_size[i] & 0xffffffff))
        put -t s "$dtb" "$module" compatible multiboot,ramdisk multiboot,module
        module=$node/module@$(printf '%x' "${g_kernel_addr[i]}")
        put -c "$dtb" "$module"
        # "--": the command line may start with a dash, which fdtput would take for an option.
        put -t s -- "$dtb" "$module" bootargs "${g_bootargs[i]}"
        put -t u "$dtb" "$module" reg $((g_kernel_addr[i] >> 32)) $((g_kernel_addr[i] & 0xffffffff)) \
            $((g_kernel_size[i] >> 32)) $((g_kernel_size[i] & 0xffffffff))
        put -t s "$dtb" "$module" compatible multiboot,kernel multiboot,module
        put "$dtb" "$node" vpl011
        put -t u "$dtb" "$node" cpus "${g_cpus[i]}"
        # KiB, 64-bit in two cells.
        put -t u "$dtb" "$node" memory $(( g_mem_mib[i] * 1024 >> 32 )) $(( g_mem_mib[i] * 1024 & 0xffffffff ))
        put -t u "$dtb" "$node" "#size-cells" 2
        put -t u "$dtb" "$node" "#address-cells" 2
        put -t s "$dtb" "$node" compatible xen,domain
    done
    # Xen takes its command line from here (the hypervisor from /chosen/bootargs, which
    # QEMU writes from -append): the same DTB boots either.
    [ -z "$append" ] || put -t s -- "$dtb" /chosen xen,xen-bootargs "$append"
    guests_dtb="$target_dir/guests-$(sha256sum "$dtb" | cut -c1-16).dtb"
    mv -f "$dtb" "$guests_dtb"
}

# Above this, RAM is a non-reserving memory backend (see --mem).
lazy_ram_above_mib=$((16 * 1024))

target_dir=${CARGO_TARGET_DIR:-$repo/target}
if [ "$skip_setup" -eq 0 ]; then
    setup_args=()
    [ "$mode" = linux ] || [ "$mode" = direct ] || setup_args=(--no-guest)
    # Standard output is the command line's alone under --print-qemu.
    "$repo/scripts/setup.sh" "${setup_args[@]}" >&2
    if [ "$mode" != direct ] && [ -z "$hypervisor" ]; then
        "$repo/scripts/build.sh" $build_flag >&2
    fi
fi
command -v qemu-system-aarch64 >/dev/null \
    || die_missing "qemu-system-aarch64" "scripts/setup.sh installs QEMU 10"
if [ "$mode" != direct ]; then
    if [ -n "$hypervisor" ]; then
        [ -f "$hypervisor" ] || die_missing "hypervisor image '$hypervisor'" "check the --hypervisor path"
    else
        hypervisor="$target_dir/hypervisor.bin"
        [ -f "$hypervisor" ] || die_missing "$hypervisor" "scripts/build.sh builds it"
    fi
fi

machine=virt,virtualization=on,gic-version=3
memory_backend=()
if (( $(mem_mib "$mem") > lazy_ram_above_mib )); then
    machine+=,memory-backend=ram
    memory_backend=(-object "memory-backend-ram,id=ram,size=$mem,reserve=off")
fi
# --disk, --net in linux mode, --disk in selftest mode: an SMMUv3 for the hypervisor
# (stage 2 only, see the devices).
smmu=0
if { [ "$mode" = linux ] && { [ "$disk" -eq 1 ] || [ "$net" -eq 1 ]; }; } \
    || { [ "$mode" = selftest ] && [ "$disk" -eq 1 ]; }; then
    smmu=1
fi
if [ "$smmu" -eq 1 ]; then
    machine+=,iommu=smmuv3
fi
if [ "$disk" -eq 1 ]; then
    if [ -z "$disk_file" ]; then
        # Even with --skip-setup: a cheap stamp check, like the initramfs's.
        disk_file="$repo/target/disk.ext4"
        [ "$skip_setup" -eq 0 ] || [ -x "$repo/.cache/guest/busybox" ] \
            || die_missing "$repo/.cache/guest/busybox" "scripts/setup.sh fetches it"
        "$repo/scripts/make-disk-image.sh" "$disk_file" >&2
    fi
    [ -f "$disk_file" ] || [ -b "$disk_file" ] || die_missing "disk image '$disk_file'" "check the --disk path"
    # cache=none opens the file O_DIRECT, which some filesystems (tmpfs) refuse.
    disk_cache=writeback
    dd if="$disk_file" of=/dev/null bs=4096 count=1 iflag=direct status=none 2>/dev/null && disk_cache=none
fi
qemu=(qemu-system-aarch64
    -machine "$machine"
    -cpu "$cpu" -smp "$smp" -m "$mem"
    "${memory_backend[@]}"
    -nographic -nic none)
[ "$mode" = direct ] || qemu+=(-kernel "$hypervisor")
[ -n "$append" ] && [ "$mode" != selftest ] && qemu+=(-append "$append")

ram_base=$((0x40000000))
if [ "$guests" -eq 0 ] && { [ "$mode" = linux ] || [ "$mode" = direct ]; }; then
    kernel=${kernel:-$repo/.cache/guest/Image}
    [ -f "$kernel" ] || die_usage "guest kernel '$kernel' not found (scripts/setup.sh fetches the default one)"
    if [ -z "$initrd" ]; then
        initrd="$repo/target/initramfs.cpio.gz"
        default_initrd
    fi
    [ -f "$initrd" ] || die_usage "initrd '$initrd' not found"
    if [ "$guest_cmdline_set" -eq 1 ]; then
        bootargs="$guest_cmdline${guest_append:+ $guest_append}"
    else
        bootargs="console=ttyAMA0 earlycon=pl011,0x9000000 $guest_append"
    fi
    [ "$check" -eq 1 ] && bootargs="$bootargs hyp.check=1 hyp.smp=$smp"
    [ "$disk" -eq 1 ] && bootargs="$bootargs hyp.disk=1"
    [ "$net" -eq 1 ] && bootargs="$bootargs hyp.net=1"
    if [ "$probe_devices" -eq 1 ]; then
        probes=$(device_probes)
        bootargs="$bootargs hyp.probe=$probes"
    fi
fi
if [ "$mode" = direct ]; then
    # QEMU's own Linux loader, at EL2 on the same machine: the benchmarks' baseline.
    qemu+=(-kernel "$kernel" -initrd "$initrd" -append "$bootargs")
elif [ "$mode" = linux ] && [ "$guests" -ge 1 ]; then
    # Xen's dom0less description (see --guests). QEMU's guest-loader cannot serve here: it
    # writes its own /chosen/module nodes into QEMU's DTB, which -dtb replaces.
    plan_guests
    write_guests_dtb
    qemu+=(-dtb "$guests_dtb")
    for ((i = 1; i <= guests; i++)); do
        qemu+=(-device "loader,file=${g_kernel[i]//,/,,},addr=$(printf '0x%x' "${g_kernel_addr[i]}"),force-raw=on"
               -device "loader,file=${g_initrd[i]//,/,,},addr=$(printf '0x%x' "${g_initrd_addr[i]}"),force-raw=on")
    done
elif [ "$mode" = linux ]; then
    # Modules go 256 MiB into RAM, clear of the hypervisor (RAM base + 2 MiB) and of the
    # DTB QEMU places at RAM base + 128 MiB; the initrd follows the kernel, 2 MiB aligned.
    (( $(mem_mib "$mem") >= 512 )) || die_usage "linux mode needs --mem of at least 512M"
    kernel_addr=$((ram_base + 0x10000000))
    kernel_size=$(stat -c %s "$kernel")
    initrd_addr=$(( (kernel_addr + kernel_size + 0x3fffff) & ~0x1fffff ))
    initrd_size=$(stat -c %s "$initrd")
    ram_end=$((ram_base + $(mem_mib "$mem") * 1024 * 1024))
    (( initrd_addr + initrd_size <= ram_end )) || die_usage "kernel and initrd do not fit in --mem $mem"
    qemu+=(-device "guest-loader,addr=$(printf '0x%x' "$kernel_addr"),kernel=$kernel,bootargs=${bootargs//,/,,}"
           -device "guest-loader,addr=$(printf '0x%x' "$initrd_addr"),initrd=$initrd")
elif [ "$mode" = selftest ]; then
    # The EL2 selftests, then the EL1 test guest through the same guest-loader path.
    [ "$skip_setup" -eq 1 ] || "$repo/scripts/build-test-guest.sh" >&2
    [ -f "$target_dir/test-guest.bin" ] \
        || die_missing "$target_dir/test-guest.bin" "scripts/build-test-guest.sh builds it"
    # A crash region, so the selftests can check it stays unmapped.
    # --guest-append becomes the test guest's /chosen/bootargs (e.g. isolation_probe=), and
    # --probe-devices adds the device probes there (the test guest's vCPUs are all -smp).
    if [ "$probe_devices" -eq 1 ]; then
        probes=$(device_probes)
        guest_append="${guest_append:+$guest_append }isolation_probe=$probes"
    fi
    guest_loader="guest-loader,addr=0x50000000,kernel=$target_dir/test-guest.bin"
    [ -n "$guest_append" ] && guest_loader="$guest_loader,bootargs=${guest_append//,/,,}"
    qemu+=(-append "crashkernel=32M${append:+ $append} selftest" -device "$guest_loader")
fi

# --disk, --net: virtio PCI devices on the board's PCIe host bridge. In linux mode the
# machine's SMMUv3 (stage 2, as the hypervisor shares the guest's) was added with them.
[ "$smmu" -eq 1 ] && qemu+=(-global arm-smmuv3.stage=2)
if [ "$disk" -eq 1 ]; then
    # Behind the SMMU (linux, selftest): iommu_platform=on (VIRTIO_F_ACCESS_PLATFORM).
    # Without it QEMU's virtio devices DMA straight to physical memory, past any IOMMU,
    # which no real device behind an SMMU can do. QEMU allows it on modern devices only
    # (disable-legacy=on): Linux drives those, and so does the test guest's driver
    # (tests/test-guest/src/guest/virtio_blk.rs), which speaks only virtio 1.0.
    behind_smmu=",disable-legacy=on,iommu_platform=on"
    [ "$smmu" -eq 1 ] || behind_smmu=""
    disk_device="virtio-blk-pci,drive=disk0,romfile=$behind_smmu"
    qemu+=(-drive "if=none,id=disk0,file=${disk_file//,/,,},format=raw,cache=$disk_cache"
           -device "$disk_device")
fi
if [ "$net" -eq 1 ]; then
    behind_smmu=",disable-legacy=on,iommu_platform=on"
    [ "$smmu" -eq 1 ] || behind_smmu=""
    net_device="virtio-net-pci,netdev=net0,romfile=$behind_smmu"
    # No ipxe ROMs are installed: romfile= (none) keeps QEMU from looking for one.
    qemu+=(-netdev user,id=net0 -device "$net_device")
fi

# The console goes both to the terminal (interactive) and to the log the outcome is read from.
# QEMU's own escape (monitor, quit) moves from Ctrl-a to Ctrl-t: Ctrl-a three times is the
# hypervisor's console switch (between the guests and the hypervisor), as in Xen.
qemu+=(-chardev "stdio,id=console,mux=on,signal=off,logfile=$log"
       -serial chardev:console -mon chardev=console -echr 0x14)
qemu+=("${extra[@]}")

if [ "$print_qemu" -eq 1 ]; then
    sep=""
    for arg in "${qemu[@]}"; do
        printf '%s' "$sep"
        shell_quote "$arg"
        sep=" "
    done
    printf '\n'
    exit 0
fi

mkdir -p "$(dirname "$log")"
: >"$log"

echo "run.sh: ${qemu[*]}" >&2
status=0
if [ -n "$timeout_s" ]; then
    timeout --foreground "$timeout_s" "${qemu[@]}" || status=$?
else
    "${qemu[@]}" || status=$?
fi

if [ "$status" -eq 124 ]; then
    echo "run.sh: timed out after ${timeout_s}s" >&2
    exit 124
fi
if [ "$mode" = direct ]; then
    # No hypervisor, so no outcome line: the guest's own verdict, or QEMU's status.
    [ "$check" -eq 1 ] || exit "$status"
    verdict=$(tr -d '\r' <"$log" | grep -a '^guest-check: \(pass\|fail\)$' | tail -n 1 || true)
    [ "$verdict" = "guest-check: pass" ] && exit 0
    echo "run.sh: the guest checks did not pass (${verdict:-no verdict}; QEMU status $status)" >&2
    exit 1
fi
outcome=$(tr -d '\r' <"$log" | grep -a '^hyp-exit:' | tail -n 1 || true)
# A guest's console lines reach the log tagged "(gN) " (hypervisor/src/console/
# guest_output.rs); this reads guest N's (default the first), untagged.
guest_lines() { tr -d '\r' <"$log" | sed -n "s/^(g${1:-1}) //p"; }
if [ "$check" -eq 1 ] && [ "$guests" -eq 0 ] && [ "$outcome" = "hyp-exit: success" ]; then
    # The guest's own verdict, and its memory against what the hypervisor gave it:
    # MemTotal excludes the kernel's reserved memory, so it must lie in [85%, 100%].
    verdict=$(guest_lines | grep -a '^guest-check: \(pass\|fail\)$' | tail -n 1 || true)
    memtotal_kb=$(guest_lines | sed -n 's/^guest-check: memtotal_kb=\([0-9]*\).*/\1/p' | tail -n 1)
    given=$(tr -d '\r' <"$log" | sed -n 's/^hyp-facts: guest_ram_bytes=\([0-9]*\).*/\1/p' | tail -n 1)
    if [ "$verdict" != "guest-check: pass" ]; then
        echo "run.sh: the guest checks did not pass (${verdict:-no verdict})" >&2; exit 1
    fi
    if [ -z "$memtotal_kb" ] || [ -z "$given" ] || (( memtotal_kb * 1024 > given || memtotal_kb * 1024 * 100 < given * 85 )); then
        echo "run.sh: guest MemTotal ${memtotal_kb:-?} kB does not match the ${given:-?} bytes the hypervisor gave" >&2; exit 1
    fi
    echo "run.sh: guest checks passed; MemTotal $memtotal_kb kB of $given bytes given" >&2
fi
if [ "$check" -eq 1 ] && [ "$guests" -ge 1 ] && [ "$outcome" = "hyp-exit: success" ]; then
    # Each guest as the single guest above: its own verdict, and its MemTotal against what the
    # hypervisor says it gave that guest ("hyp-facts: guest=I name=domUI guest_ram_bytes=B ...").
    # Every guest is reported before the run fails.
    failed=""
    for ((i = 1; i <= guests; i++)); do
        facts=$(tr -d '\r' <"$log" | grep -a "^hyp-facts: guest=$i " | tail -n 1 || true)
        name=$(sed -n 's/.* name=\([^ ]*\).*/\1/p' <<<"$facts")
        name=${name:-domU$i}
        given=$(sed -n 's/.* guest_ram_bytes=\([0-9]*\).*/\1/p' <<<"$facts")
        verdict=$(guest_lines "$i" | grep -a '^guest-check: \(pass\|fail\)$' | tail -n 1 || true)
        memtotal_kb=$(guest_lines "$i" | sed -n 's/^guest-check: memtotal_kb=\([0-9]*\).*/\1/p' | tail -n 1)
        if [ "$verdict" != "guest-check: pass" ]; then
            echo "run.sh: guest $i ($name): the guest checks did not pass (${verdict:-no verdict})" >&2
            failed+=" $i"
        elif [ -z "$memtotal_kb" ] || [ -z "$given" ] || (( memtotal_kb * 1024 > given || memtotal_kb * 1024 * 100 < given * 85 )); then
            echo "run.sh: guest $i ($name): MemTotal ${memtotal_kb:-?} kB does not match the ${given:-?} bytes the hypervisor gave" >&2
            failed+=" $i"
        else
            echo "run.sh: guest $i ($name): checks passed; MemTotal $memtotal_kb kB of $given bytes given" >&2
        fi
    done
    [ -z "$failed" ] || { echo "run.sh: the checks failed on guest(s)$failed of $guests" >&2; exit 1; }
fi
if [ "$mode" = selftest ] && [ "$outcome" = "hyp-exit: success" ]; then
    # One summary over the EL2 selftests and the test guest's own summary line.
    el2_ok=$(tr -d '\r' <"$log" | grep -ac '^selftest: el2_[a-z0-9_]* \.\.\. ok' || true)
    el2_failed=$(tr -d '\r' <"$log" | grep -ac '^selftest: el2_[a-z0-9_]* \.\.\. FAILED' || true)
    guest=$(guest_lines | sed -n 's/^selftest: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' | tail -n 1)
    [ -n "$guest" ] || { echo "run.sh: the test guest printed no summary" >&2; echo "selftest: $el2_ok passed, $((el2_failed + 1)) failed"; exit 1; }
    read -r guest_ok guest_failed <<<"$guest"
    failed=$((el2_failed + guest_failed))
    echo "selftest: $((el2_ok + guest_ok)) passed, $failed failed"
    [ "$failed" -eq 0 ] || exit 1
fi
case "$outcome" in
    "hyp-exit: success") exit 0 ;;
    "hyp-exit: failure"*) echo "run.sh: $outcome" >&2; exit 1 ;;
    *) echo "run.sh: QEMU stopped (status $status) without an outcome line from the hypervisor" >&2; exit 1 ;;
esac
