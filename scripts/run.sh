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
#   --hypervisor FILE       boot FILE as the hypervisor instead of target/hypervisor.bin,
#                           which is then not built (a copy of it, or another hypervisor's
#                           arm64 Image such as Xen's)
#   --check                 run the guest-side checks and power off (linux, direct)
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
# Exit status: 0 when the hypervisor's last line is "hyp-exit: success" (direct: when the
# guest's checks passed with --check, else QEMU's status); 1 when it reports a failure or
# never reports (QEMU stopped without the marker); 124 on timeout; 2 on a usage error or
# a missing input file.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
mode=linux
cpu=max
smp=2
mem=2G
append=""
guest_append=""
guest_cmdline=""
guest_cmdline_set=0
kernel=""
initrd=""
hypervisor=""
check=0
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

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
die_usage() { echo "run.sh: $*" >&2; echo "try: scripts/run.sh --help" >&2; exit 2; }
# A file the run needs is missing: say which and what makes it.
die_missing() {
    echo "run.sh: $1 not found; $2" >&2
    [ "$skip_setup" -eq 0 ] || echo "run.sh: (setup and builds were skipped: --skip-setup or HYP_SKIP_SETUP=1)" >&2
    exit 2
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
        --mem) mem=${2:?--mem needs a size}; shift ;;
        --append) append=${2?--append needs arguments}; shift ;;
        --guest-append) guest_append=${2?--guest-append needs arguments}; shift ;;
        --guest-cmdline) guest_cmdline=${2?--guest-cmdline needs arguments}; guest_cmdline_set=1; shift ;;
        --kernel) kernel=${2:?--kernel needs a file}; shift ;;
        --initrd) initrd=${2:?--initrd needs a file}; shift ;;
        --hypervisor) hypervisor=${2:?--hypervisor needs a file}; shift ;;
        --check) check=1 ;;
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

mem_mib() {
    case "$1" in
        *T) echo $(( ${1%T} * 1024 * 1024 )) ;;
        *G) echo $(( ${1%G} * 1024 )) ;;
        *M) echo "${1%M}" ;;
        *) echo $(( $1 / 1024 / 1024 )) ;;
    esac
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
qemu=(qemu-system-aarch64
    -machine "$machine"
    -cpu "$cpu" -smp "$smp" -m "$mem"
    "${memory_backend[@]}"
    -nographic -nic none)
[ "$mode" = direct ] || qemu+=(-kernel "$hypervisor")
[ -n "$append" ] && [ "$mode" != selftest ] && qemu+=(-append "$append")

ram_base=$((0x40000000))
if [ "$mode" = linux ] || [ "$mode" = direct ]; then
    kernel=${kernel:-$repo/.cache/guest/Image}
    [ -f "$kernel" ] || die_usage "guest kernel '$kernel' not found (scripts/setup.sh fetches the default one)"
    if [ -z "$initrd" ]; then
        initrd="$repo/target/initramfs.cpio.gz"
        # Even with --skip-setup: a cheap stamp check, which also packs a hypmem.ko built
        # since (scripts/build-guest-module.sh, as the hypercall QEMU test does).
        [ "$skip_setup" -eq 0 ] || [ -x "$repo/.cache/guest/busybox" ] \
            || die_missing "$repo/.cache/guest/busybox" "scripts/setup.sh fetches it"
        "$repo/scripts/make-initramfs.sh" "$initrd" >&2
    fi
    [ -f "$initrd" ] || die_usage "initrd '$initrd' not found"
    if [ "$guest_cmdline_set" -eq 1 ]; then
        bootargs="$guest_cmdline${guest_append:+ $guest_append}"
    else
        bootargs="console=ttyAMA0 earlycon=pl011,0x9000000 $guest_append"
    fi
    [ "$check" -eq 1 ] && bootargs="$bootargs hyp.check=1 hyp.smp=$smp"
fi
if [ "$mode" = direct ]; then
    # QEMU's own Linux loader, at EL2 on the same machine: the benchmarks' baseline.
    qemu+=(-kernel "$kernel" -initrd "$initrd" -append "$bootargs")
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
    # --guest-append becomes the test guest's /chosen/bootargs (e.g. isolation_probe=).
    guest_loader="guest-loader,addr=0x50000000,kernel=$target_dir/test-guest.bin"
    [ -n "$guest_append" ] && guest_loader="$guest_loader,bootargs=${guest_append//,/,,}"
    qemu+=(-append "crashkernel=32M${append:+ $append} selftest" -device "$guest_loader")
fi

# The console goes both to the terminal (interactive) and to the log the outcome is read from.
qemu+=(-chardev "stdio,id=console,mux=on,signal=off,logfile=$log"
       -serial chardev:console -mon chardev=console)
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
