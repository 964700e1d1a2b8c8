#!/usr/bin/env bash
# Builds the guest's timer-latency probe (tests/guest-tools/timerlat): a static
# Linux/aarch64 ELF without libc, entered at _start, for /bin/timerlat in the initramfs.
#
#   scripts/build-timerlat.sh [--quiet]
#
# Output: $CARGO_TARGET_DIR/guest-tools/timerlat (target/ by default), path printed on
# standard output. The crate is its own workspace (not in the root one); it builds for
# aarch64-unknown-none with rust-lld. The ELF is checked: aarch64, EXEC (static, no
# interpreter), entry at the _start code. `cargo test` in the crate runs its host tests.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
crate="$repo/tests/guest-tools/timerlat"
target=aarch64-unknown-none
target_dir=${CARGO_TARGET_DIR:-$repo/target}/guest-tools
out="$target_dir/timerlat"
quiet=()
[ "${1:-}" = "--quiet" ] && quiet=(--quiet)

(cd "$crate" && CARGO_TARGET_DIR="$target_dir" cargo build "${quiet[@]}" --release --target "$target")
elf="$target_dir/$target/release/timerlat"

header=$(LC_ALL=C readelf -hlW "$elf" 2>/dev/null || true)
fail() { echo "build-timerlat: $elf: $*" >&2; exit 1; }
if [ -n "$header" ]; then
    grep -q 'Machine: *AArch64' <<<"$header" || fail "not an AArch64 ELF"
    grep -q 'Type: *EXEC' <<<"$header" || fail "not a static executable (ELF type EXEC)"
    ! grep -q 'INTERP' <<<"$header" || fail "asks for a program interpreter"
else
    echo "build-timerlat: warning: no readelf, ELF checks skipped" >&2
fi
tmp=$(mktemp "$out.XXXXXX")
install -m 0755 "$elf" "$tmp"
mv -f "$tmp" "$out"
echo "$out"
