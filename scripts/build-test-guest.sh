#!/usr/bin/env bash
# Builds the test guest (tests/test-guest) as a raw arm64 Image: $CARGO_TARGET_DIR/test-guest.bin.
#
#   scripts/build-test-guest.sh [--debug] [--run [QEMU ARGS...]]
#
#   --debug   build with the dev profile (default: release; the sweeps are much faster)
#   --run     then boot the Image directly under QEMU at EL1, without the hypervisor
#             (QEMU itself answers PSCI over HVC and returns NOT_SUPPORTED for the vendor
#             calls): -machine virt,gic-version=3 -cpu max -smp 2 -m 2G, plus QEMU ARGS.
#             Exits with QEMU's status (124 after a 120 s timeout).
#
# CARGO_TARGET_DIR is honoured, as in scripts/build.sh: the Image goes to
# $CARGO_TARGET_DIR/test-guest.bin (target/ by default). The header is checked after the objcopy: magic, flags
# (LE, 4K, anywhere = 0xa), text_offset 0, image_size >= the file and the ELF's whole
# footprint, a branch in code0; and the ELF: a PIE with only R_AARCH64_RELATIVE dynamic
# relocations (head.S applies those at entry).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
profile=release
run=0
qemu_extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --debug) profile=dev ;;
        --run) run=1; shift; qemu_extra=("$@"); break ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-test-guest: unknown argument '$1'" >&2; exit 2 ;;
    esac
    shift
done
out_dir=$([ "$profile" = dev ] && echo debug || echo release)
target=aarch64-unknown-none-softfloat
target_dir=${CARGO_TARGET_DIR:-$repo/target}

cargo build --quiet -p test-guest --target "$target" --profile "$profile"
elf="$target_dir/$target/$out_dir/test-guest"
bin="$target_dir/test-guest.bin"
mkdir -p "$target_dir"

sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
objcopy="$sysroot/lib/rustlib/$host/bin/llvm-objcopy"
[ -x "$objcopy" ] || objcopy=$(command -v llvm-objcopy || true)
[ -n "$objcopy" ] || { echo "build-test-guest: llvm-objcopy not found (rustup component add llvm-tools)" >&2; exit 1; }
# For the ELF checks: binutils readelf, or llvm-tools' llvm-readobj in GNU style.
readelf=$(command -v readelf || true)
readobj="$sysroot/lib/rustlib/$host/bin/llvm-readobj"
[ -n "$readelf" ] || { [ -x "$readobj" ] && readelf="$readobj --elf-output-style=GNU"; }
[ -n "$readelf" ] || echo "build-test-guest: warning: no readelf/llvm-readobj: ELF checks skipped" >&2
"$objcopy" -O binary "$elf" "$bin"

python3 - "$bin" "$elf" "$readelf" <<'PY'
import struct, subprocess, sys

image_path, elf_path = sys.argv[1:3]
readelf = sys.argv[3].split()
data = open(image_path, "rb").read()

def fail(msg):
    print(f"build-test-guest: {image_path}: {msg}", file=sys.stderr)
    sys.exit(1)

if len(data) < 64:
    fail("shorter than the 64-byte Image header")
code0, code1, text_offset, image_size, flags, r2, r3, r4, magic, r5 = struct.unpack("<IIQQQQQQII", data[:64])
if magic != 0x644D5241:
    fail(f"magic {magic:#x}, want 0x644d5241 ('ARM\\x64')")
if flags != 0xA:
    fail(f"flags {flags:#x}, want 0xa (little-endian, 4K pages, placement anywhere)")
if text_offset != 0:
    fail(f"text_offset {text_offset:#x}, want 0")
if (code0 >> 26) != 0b000101:
    fail(f"code0 {code0:#x} is not a branch")
if image_size % 4096 or image_size < len(data):
    fail(f"image_size {image_size:#x} must be page aligned and cover the file ({len(data):#x})")
if r2 or r3 or r4 or r5:
    fail("reserved header fields are not zero")
# The ELF's footprint (linked at 0): the highest end of a LOAD segment in memory.
if readelf:
    # Position independence comes from the workspace's .cargo/config.toml rustflags
    # (relocation-model=pie, -pie): without them the Image would only run at 0.
    header = subprocess.run(readelf + ["-hW", elf_path], capture_output=True, text=True).stdout
    if "DYN" not in header:
        fail(f"{elf_path} is not a position-independent executable (ELF type DYN); "
             "check the -pie rustflags in .cargo/config.toml")
    segments = subprocess.run(readelf + ["-lW", elf_path], capture_output=True, text=True).stdout
    top = 0
    for line in segments.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[0] == "LOAD":
            top = max(top, int(parts[2], 16) + int(parts[5], 16))
    if top == 0:
        fail(f"no LOAD segments in {elf_path}")
    if top > image_size:
        fail(f"image_size {image_size:#x} does not cover the ELF's footprint ({top:#x})")
    relocs = subprocess.run(readelf + ["-rW", elf_path], capture_output=True, text=True).stdout
    for line in relocs.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2].startswith("R_AARCH64_") and parts[2] != "R_AARCH64_RELATIVE":
            fail(f"unsupported dynamic relocation (head.S applies only RELATIVE): {line.strip()}")
print(f"build-test-guest: {image_path}: {len(data)} bytes, image_size {image_size:#x}, header ok")
PY

if [ "$run" -eq 1 ]; then
    set +e
    timeout 120 qemu-system-aarch64 -machine virt,gic-version=3 -cpu max -smp 2 -m 2G \
        -nographic -nic none -kernel "$bin" "${qemu_extra[@]}"
    exit $?
fi
