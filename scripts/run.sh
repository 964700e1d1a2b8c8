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
#
# Options
#   --cpu MODEL             QEMU CPU model (default max; cortex-a72 has no FEAT_BBML2)
#   --smp N                 CPUs (default 2)
#   --mem SIZE              RAM, QEMU syntax (default 2G)
#   --append "ARGS"         the hypervisor's command line (/chosen/bootargs), e.g.
#                           "loglevel=debug crashkernel=64M"
#   --guest-append "ARGS"   the guest kernel's command line
#   --kernel FILE           guest kernel Image (default: .cache/guest/Image)
#   --initrd FILE           guest initramfs (default: built from busybox)
#   --check                 run the guest-side checks and power off (linux mode)
#   --timeout SECONDS       stop QEMU after this long (default: none interactively,
#                           300 with --check and for none/selftest)
#   --log FILE              also write the console to FILE (default: target/run.log)
#   --debug                 use a debug build of the hypervisor
#   -h, --help              this text
#
# Exit status: 0 when the hypervisor's last line is "hyp-exit: success"; 1 when it
# reports a failure or never reports (QEMU stopped without the marker); 124 on timeout;
# 2 on a usage error.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
mode=linux
cpu=max
smp=2
mem=2G
append=""
guest_append=""
kernel=""
initrd=""
check=0
timeout_s=""
log="$repo/target/run.log"
build_flag=""
extra=()

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
die_usage() { echo "run.sh: $*" >&2; echo "try: scripts/run.sh --help" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        linux|selftest|none) mode=$1 ;;
        --cpu) cpu=${2:?--cpu needs a model}; shift ;;
        --smp) smp=${2:?--smp needs a number}; shift ;;
        --mem) mem=${2:?--mem needs a size}; shift ;;
        --append) append=${2?--append needs arguments}; shift ;;
        --guest-append) guest_append=${2?--guest-append needs arguments}; shift ;;
        --kernel) kernel=${2:?--kernel needs a file}; shift ;;
        --initrd) initrd=${2:?--initrd needs a file}; shift ;;
        --check) check=1 ;;
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
[[ "$mem" =~ ^[1-9][0-9]*[MG]?$ ]] || die_usage "--mem wants a size like 512M or 2G, not '$mem'"
if [ -n "$timeout_s" ]; then
    [[ "$timeout_s" =~ ^[1-9][0-9]*$ ]] || die_usage "--timeout wants seconds, not '$timeout_s'"
elif [ "$check" -eq 1 ] || [ "$mode" != linux ] || [ ! -t 0 ]; then
    timeout_s=300
fi

mem_mib() {
    case "$1" in
        *G) echo $(( ${1%G} * 1024 )) ;;
        *M) echo "${1%M}" ;;
        *) echo $(( $1 / 1024 / 1024 )) ;;
    esac
}

setup_args=()
[ "$mode" = linux ] || setup_args=(--no-guest)
"$repo/scripts/setup.sh" "${setup_args[@]}"
"$repo/scripts/build.sh" $build_flag >&2

qemu=(qemu-system-aarch64
    -machine virt,virtualization=on,gic-version=3
    -cpu "$cpu" -smp "$smp" -m "$mem"
    -nographic -nic none
    -kernel "${CARGO_TARGET_DIR:-$repo/target}/hypervisor.bin")
[ -n "$append" ] && [ "$mode" != selftest ] && qemu+=(-append "$append")

ram_base=$((0x40000000))
if [ "$mode" = linux ]; then
    kernel=${kernel:-$repo/.cache/guest/Image}
    [ -f "$kernel" ] || die_usage "guest kernel '$kernel' not found"
    if [ -z "$initrd" ]; then
        initrd="$repo/target/initramfs.cpio.gz"
        "$repo/scripts/make-initramfs.sh" "$initrd" >&2
    fi
    [ -f "$initrd" ] || die_usage "initrd '$initrd' not found"
    # Modules go 256 MiB into RAM, clear of the hypervisor (RAM base + 2 MiB) and of the
    # DTB QEMU places at RAM base + 128 MiB; the initrd follows the kernel, 2 MiB aligned.
    (( $(mem_mib "$mem") >= 512 )) || die_usage "linux mode needs --mem of at least 512M"
    kernel_addr=$((ram_base + 0x10000000))
    kernel_size=$(stat -c %s "$kernel")
    initrd_addr=$(( (kernel_addr + kernel_size + 0x3fffff) & ~0x1fffff ))
    initrd_size=$(stat -c %s "$initrd")
    ram_end=$((ram_base + $(mem_mib "$mem") * 1024 * 1024))
    (( initrd_addr + initrd_size <= ram_end )) || die_usage "kernel and initrd do not fit in --mem $mem"
    bootargs="console=ttyAMA0 earlycon=pl011,0x9000000 $guest_append"
    [ "$check" -eq 1 ] && bootargs="$bootargs hyp.check=1 hyp.smp=$smp"
    qemu+=(-device "guest-loader,addr=$(printf '0x%x' "$kernel_addr"),kernel=$kernel,bootargs=${bootargs//,/,,}"
           -device "guest-loader,addr=$(printf '0x%x' "$initrd_addr"),initrd=$initrd")
elif [ "$mode" = selftest ]; then
    # The EL2 selftests, then the EL1 test guest through the same guest-loader path.
    "$repo/scripts/build-test-guest.sh" >&2
    # A crash region, so the selftests can check it stays unmapped.
    # --guest-append becomes the test guest's /chosen/bootargs (e.g. isolation_probe=).
    guest_loader="guest-loader,addr=0x50000000,kernel=${CARGO_TARGET_DIR:-$repo/target}/test-guest.bin"
    [ -n "$guest_append" ] && guest_loader="$guest_loader,bootargs=${guest_append//,/,,}"
    qemu+=(-append "crashkernel=32M${append:+ $append} selftest" -device "$guest_loader")
fi

mkdir -p "$(dirname "$log")"
: >"$log"
# The console goes both to the terminal (interactive) and to the log the outcome is read from.
qemu+=(-chardev "stdio,id=console,mux=on,signal=off,logfile=$log"
       -serial chardev:console -mon chardev=console)
qemu+=("${extra[@]}")

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
outcome=$(tr -d '\r' <"$log" | grep -a '^hyp-exit:' | tail -n 1 || true)
if [ "$check" -eq 1 ] && [ "$outcome" = "hyp-exit: success" ]; then
    # The guest's own verdict, and its memory against what the hypervisor gave it:
    # MemTotal excludes the kernel's reserved memory, so it must lie in [85%, 100%].
    verdict=$(tr -d '\r' <"$log" | grep -a '^guest-check: \(pass\|fail\)$' | tail -n 1 || true)
    memtotal_kb=$(tr -d '\r' <"$log" | sed -n 's/^guest-check: memtotal_kb=\([0-9]*\).*/\1/p' | tail -n 1)
    given=$(tr -d '\r' <"$log" | sed -n 's/^hyp-facts: guest_ram_bytes=\([0-9]*\).*/\1/p' | tail -n 1)
    if [ "$verdict" != "guest-check: pass" ]; then
        echo "run.sh: the guest checks did not pass (${verdict:-no verdict})" >&2; exit 1
    fi
    if [ -z "$memtotal_kb" ] || [ -z "$given" ] || (( memtotal_kb * 1024 > given || memtotal_kb * 1024 * 100 < given * 85 )); then
        echo "run.sh: guest MemTotal ${memtotal_kb:-?} kB does not match the ${given:-?} bytes the hypervisor gave" >&2; exit 1
    fi
    echo "run.sh: guest checks passed; MemTotal $memtotal_kb kB of $given bytes given" >&2
fi
if [ "$mode" = selftest ] && [ "$outcome" = "hyp-exit: success" ]; then
    # One summary over the EL2 selftests and the test guest's own summary line.
    el2_ok=$(tr -d '\r' <"$log" | grep -ac '^selftest: el2_[a-z0-9_]* \.\.\. ok' || true)
    el2_failed=$(tr -d '\r' <"$log" | grep -ac '^selftest: el2_[a-z0-9_]* \.\.\. FAILED' || true)
    guest=$(tr -d '\r' <"$log" | sed -n 's/^selftest: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' | tail -n 1)
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
