#!/usr/bin/env bash
# Runs the libFuzzer targets of tests/fuzz (cargo-fuzz), each for a bounded time.
#
#   scripts/fuzz.sh [--ci]            every target for 60 s (what CI runs)
#   scripts/fuzz.sh --time N          every target for N seconds (longer campaigns)
#   scripts/fuzz.sh --target NAME     only NAME (repeatable; combines with --time)
#   scripts/fuzz.sh --list            the target names
#
# Installs what it needs on a fresh Debian machine: a C++ compiler (libFuzzer is C++)
# and cargo-fuzz (`cargo install cargo-fuzz --locked`, kept in ~/.cargo/bin). It builds
# with the project's stable toolchain and no sanitizer (`cargo fuzz build -s none`):
# the code under test is safe Rust plus a few audited `unsafe` blocks, and a panic,
# an overflow (debug assertions are on) or a failed property is what the targets catch.
#
# Corpora: tests/fuzz/corpus/<target> holds the committed seeds (real DTBs, kernel
# headers, command lines, and every input that once found a bug) and is only read; new
# inputs go to tests/fuzz/corpus-new/<target> (git-ignored), so runs leave the tree
# clean. Promote a useful new input by copying it into corpus/<target>.
#
# For each target it prints the executions, the corpus size and how many new inputs it
# found; a crash (panic, failed assertion, timeout, out of memory) keeps its input in
# tests/fuzz/artifacts/<target>/ and the libFuzzer log in tests/fuzz/logs/<target>.log,
# and prints how to replay it. Last line: "fuzz: N targets, M crashes"; the exit status
# is 1 when M > 0.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
fuzz_dir="$repo/tests/fuzz"
target_dir="${FUZZ_TARGET_DIR:-$fuzz_dir/target}"
triple=x86_64-unknown-linux-gnu
all_targets=(dt_platform bootargs_crashkernel image_header guest_dtb hypercall_decode pgtable_ops)

say() { printf 'fuzz: %s\n' "$*" >&2; }
die() { printf 'fuzz: error: %s\n' "$*" >&2; exit 2; }

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

seconds=60
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --ci) seconds=60 ;;
        --time)
            [ $# -ge 2 ] || die "--time needs a number of seconds"
            seconds=$2
            shift
            ;;
        --time=*) seconds=${1#--time=} ;;
        --target)
            [ $# -ge 2 ] || die "--target needs a name (see --list)"
            targets+=("$2")
            shift
            ;;
        --target=*) targets+=("${1#--target=}") ;;
        --list)
            printf '%s\n' "${all_targets[@]}"
            exit 0
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || die "--time wants a whole number of seconds, not '$seconds'"
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
for name in "${targets[@]}"; do
    [[ " ${all_targets[*]} " == *" $name "* ]] || die "no fuzz target '$name' (there are: ${all_targets[*]})"
done

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# --- what the build needs -----------------------------------------------------------
command -v cargo >/dev/null || die "cargo is needed (scripts/setup.sh installs the toolchain)"
if ! command -v c++ >/dev/null; then
    say "installing g++ (libFuzzer is C++)"
    as_root apt-get update -qq >/dev/null || die "apt-get update failed"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null ||
        die "apt-get install g++ failed"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked >/dev/null 2>&1 || die "cargo install cargo-fuzz failed"
fi

started=$(date +%s)
say "building ${#targets[@]} target(s): cargo fuzz build -s none ($(cargo fuzz --version))"
build_args=(-s none --target-dir "$target_dir")
if [ ${#targets[@]} -eq 1 ]; then
    build_args+=("${targets[0]}")
fi
(cd "$fuzz_dir" && cargo fuzz build "${build_args[@]}") || die "build failed"
built=$(date +%s)
say "built in $((built - started)) s"

# Per target: libFuzzer options (the largest useful input).
max_len() {
    case "$1" in
        dt_platform | guest_dtb) echo 16384 ;;
        bootargs_crashkernel) echo 4096 ;;
        hypercall_decode) echo 1024 ;;
        image_header | pgtable_ops) echo 512 ;;
    esac
}
dict() {
    case "$1" in
        dt_platform | guest_dtb) echo "$fuzz_dir/dict/dtb.dict" ;;
        bootargs_crashkernel) echo "$fuzz_dir/dict/bootargs.dict" ;;
    esac
}

# The table-engine target builds a fresh table pool per input: keep freed memory in the
# heap instead of returning it to the kernel each time.
export MALLOC_MMAP_THRESHOLD_=67108864 MALLOC_TRIM_THRESHOLD_=268435456

crashes=0
mkdir -p "$fuzz_dir/logs"
for name in "${targets[@]}"; do
    binary="$target_dir/$triple/release/$name"
    [ -x "$binary" ] || die "$binary was not built"
    new_dir="$fuzz_dir/corpus-new/$name"
    seeds="$fuzz_dir/corpus/$name"
    artifacts="$fuzz_dir/artifacts/$name"
    log="$fuzz_dir/logs/$name.log"
    mkdir -p "$new_dir" "$seeds" "$artifacts"
    new_before=$(find "$new_dir" -type f | wc -l)
    found_before=$(find "$artifacts" -type f | wc -l)
    options=(
        -max_total_time="$seconds"
        -max_len="$(max_len "$name")"
        -timeout=30
        -rss_limit_mb=2048
        -print_final_stats=1
        -artifact_prefix="$artifacts/"
    )
    if [ -n "$(dict "$name")" ]; then
        options+=(-dict="$(dict "$name")")
    fi
    say "$name: ${seconds} s"
    set +e
    "$binary" "${options[@]}" "$new_dir" "$seeds" >"$log" 2>&1
    rc=$?
    set -e
    executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    corpus=$(grep -ao 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$log" | tail -n 1 | cut -d' ' -f2)
    new_after=$(find "$new_dir" -type f | wc -l)
    found_after=$(find "$artifacts" -type f | wc -l)
    printf 'fuzz: %-22s executions=%s corpus=%s new_inputs=%s\n' \
        "$name" "${executions:-0}" "${corpus:-?}" "$((new_after - new_before))"
    if [ "$rc" -ne 0 ] || [ "$found_after" -gt "$found_before" ]; then
        crashes=$((crashes + 1))
        artifact=$(grep -ao "Test unit written to [^ ]*" "$log" | tail -n 1 | sed 's/^Test unit written to //')
        printf 'fuzz: %s: CRASH (libFuzzer exit %s); log %s\n' "$name" "$rc" "${log#"$repo"/}"
        grep -a -m 1 -A 4 -E "panicked at|ERROR: libFuzzer" "$log" | sed 's/^/fuzz:   /' || true
        if [ -n "$artifact" ]; then
            printf 'fuzz:   input kept in %s; replay: %s %s\n' \
                "${artifact#"$repo"/}" "${binary#"$repo"/}" "${artifact#"$repo"/}"
        fi
    fi
done

say "total $(($(date +%s) - started)) s (build $((built - started)) s)"
echo "fuzz: ${#targets[@]} targets, $crashes crashes"
[ "$crashes" -eq 0 ]
