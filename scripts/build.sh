#!/usr/bin/env bash
# Builds the hypervisor as a raw arm64 Image: target/hypervisor.bin.
#   scripts/build.sh [--debug]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
profile=release
[ "${1:-}" = "--debug" ] && profile=dev
out_dir=$([ "$profile" = dev ] && echo debug || echo release)

cargo build --quiet -p hypervisor --target aarch64-unknown-none-softfloat --profile "$profile"
elf="target/aarch64-unknown-none-softfloat/$out_dir/hypervisor"
sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
objcopy="$sysroot/lib/rustlib/$host/bin/llvm-objcopy"
[ -x "$objcopy" ] || objcopy=$(command -v llvm-objcopy || true)
[ -n "$objcopy" ] || { echo "build: llvm-objcopy not found (rustup component add llvm-tools)" >&2; exit 1; }
"$objcopy" -O binary "$elf" target/hypervisor.bin
python3 "$repo/scripts/check-image.py" target/hypervisor.bin "$elf"
