#!/usr/bin/env bash
# Runs every test: host unit and property tests of the portable crates and the scripts, then the QEMU
# boot tests in tests/, then every fuzz target for FUZZ_SECONDS (default 60; 0 skips). Installs what it needs first (scripts/setup.sh). Ends with one
# line totalling every cargo test result: "tests: N passed, M failed".
#   scripts/test.sh [--host-only]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

"$repo/scripts/setup.sh"

results=$(mktemp)
status=0

output=$(mktemp)
trap 'rm -f "$results" "$output"' EXIT

# Runs a cargo test command, echoing its output and keeping its result lines.
run_tests() {
    local rc
    set +e
    "$@" 2>&1 | tee "$output"
    rc=${PIPESTATUS[0]}
    set -e
    grep -a '^test result:' "$output" >>"$results" || true
    [ "$rc" -eq 0 ] || status=$rc
}

echo "== host tests (portable crates)"
run_tests cargo test --workspace --exclude qemu-tests
# The guest's timer-latency probe is its own workspace (a static no_std Linux binary).
run_tests cargo test --manifest-path "$repo/tests/guest-tools/timerlat/Cargo.toml"

echo "== lint (formatting; clippy's correctness lints and the workspace lints in Cargo.toml fail the run, the others are shown; no import cycle among the hypervisor's modules)"
# A lint failure fails the run at the end but does not skip the QEMU tests.
lint_passed=0
lint_failed=0
lint() {
    if "$@"; then lint_passed=$((lint_passed + 1)); else lint_failed=$((lint_failed + 1)); fi
}
lint cargo fmt --all --check
lint cargo clippy --quiet --workspace --all-targets -- -D clippy::correctness
lint cargo clippy --quiet -p hypervisor --bin hypervisor --target aarch64-unknown-none-softfloat \
    -- -D clippy::correctness
lint cargo clippy --quiet -p test-guest --target aarch64-unknown-none-softfloat -- -D clippy::correctness
lint python3 "$repo/scripts/check-module-cycles.py" "$repo/hypervisor/src"
echo "test result: lint. $lint_passed passed; $lint_failed failed" >>"$results"

echo "== script tests (benchmark parsing, run.sh --print-qemu, ptdump pictures)"
set +e
python3 -m unittest discover -s "$repo/scripts" -p 'test_*.py' 2>&1 | tee "$output"
rc=${PIPESTATUS[0]}
set -e
ran=$(sed -n 's/^Ran \([0-9]*\) tests\{0,1\} in .*/\1/p' "$output" | tail -n 1)
bad=$(sed -n 's/^FAILED (\(.*\))$/\1/p' "$output" | { grep -o '[0-9]\+' || true; } | awk '{ n += $1 } END { print n + 0 }')
if [ -n "$ran" ]; then
    echo "test result: scripts. $((ran - bad)) passed; $bad failed" >>"$results"
else
    echo "test result: scripts. 0 passed; 1 failed" >>"$results"
fi
[ "$rc" -eq 0 ] || status=$rc

if [ "${1:-}" != "--host-only" ] && [ "$status" -eq 0 ]; then
    echo "== hypervisor image, test guest, initramfs"
    "$repo/scripts/build.sh"
    "$repo/scripts/build-test-guest.sh"
    "$repo/scripts/make-initramfs.sh" "$repo/target/initramfs.cpio.gz"
    echo "== QEMU tests"
    # Setup (above) and the builds are done: every scripts/run.sh the tests start skips them
    # (and fails naming the file if one is missing).
    export HYP_SKIP_SETUP=1
    # One QEMU at a time: the machine has two cores and TCG is CPU-bound.
    run_tests cargo test -p qemu-tests -- --test-threads=1
    unset HYP_SKIP_SETUP
fi

fuzz_seconds=${FUZZ_SECONDS:-60}
if [ "${1:-}" != "--host-only" ] && [ "$status" -eq 0 ] && [ "$fuzz_seconds" != 0 ]; then
    echo "== fuzz targets, ${fuzz_seconds} s each"
    set +e
    "$repo/scripts/fuzz.sh" --time "$fuzz_seconds" 2>&1 | tee "$output"
    rc=${PIPESTATUS[0]}
    set -e
    # Each target counts as one test: "fuzz: N targets, M crashes".
    summary=$(grep -a '^fuzz: [0-9]* targets, [0-9]* crash' "$output" | tail -n 1 || true)
    if [ -n "$summary" ]; then
        targets=$(echo "$summary" | sed 's/^fuzz: \([0-9]*\) targets.*/\1/')
        crashes=$(echo "$summary" | sed 's/.*targets, \([0-9]*\) crash.*/\1/')
        echo "test result: fuzz. $((targets - crashes)) passed; $crashes failed" >>"$results"
    else
        echo "test result: fuzz. 0 passed; 1 failed" >>"$results"
    fi
    [ "$rc" -eq 0 ] || status=$rc
fi

[ "$lint_failed" -eq 0 ] || status=1
passed=$(awk '{ for (i = 1; i < NF; i++) if ($(i + 1) ~ /^passed/) n += $i } END { print n + 0 }' "$results")
failed=$(awk '{ for (i = 1; i < NF; i++) if ($(i + 1) ~ /^failed/) n += $i } END { print n + 0 }' "$results")
[ "$status" -eq 0 ] || [ "${failed:-0}" -gt 0 ] || failed=1
echo "tests: ${passed:-0} passed, ${failed:-0} failed"
exit "$status"
