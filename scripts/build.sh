#!/usr/bin/env bash
# Builds the hypervisor as a raw arm64 Image: $CARGO_TARGET_DIR/hypervisor.bin
# (target/hypervisor.bin by default).
#   scripts/build.sh [--debug]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
profile=release
[ "${1:-}" = "--debug" ] && profile=dev
out_dir=$([ "$profile" = dev ] && echo debug || echo release)

cargo build --quiet -p hypervisor --target aarch64-unknown-none-softfloat --profile "$profile"
target_dir=${CARGO_TARGET_DIR:-$repo/target}
elf="$target_dir/aarch64-unknown-none-softfloat/$out_dir/hypervisor"
sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
objcopy="$sysroot/lib/rustlib/$host/bin/llvm-objcopy"
[ -x "$objcopy" ] || objcopy=$(command -v llvm-objcopy || true)
[ -n "$objcopy" ] || { echo "build: llvm-objcopy not found (rustup component add llvm-tools)" >&2; exit 1; }
"$objcopy" -O binary "$elf" "$target_dir/hypervisor.bin"
python3 "$repo/scripts/check-image.py" "$target_dir/hypervisor.bin" "$elf"
