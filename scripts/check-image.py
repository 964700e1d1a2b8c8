#!/usr/bin/env python3
"""Post-link checks of the hypervisor Image: the arm64 header is well formed, image_size
covers the file and the ELF's whole footprint, and the relocations are all RELATIVE."""
import struct
import subprocess
import sys


def fail(msg):
    print(f"check-image: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    image_path, elf_path = sys.argv[1], sys.argv[2]
    data = open(image_path, "rb").read()
    if len(data) < 64:
        fail("image shorter than its 64-byte header")
    code0, code1, text_offset, image_size, flags, r2, r3, r4, magic, r5 = struct.unpack(
        "<IIQQQQQQII", data[:64])
    if magic != 0x644D5241:
        fail(f"bad magic {magic:#x}")
    if flags != 0xA:
        fail(f"flags {flags:#x}, want 0xa (LE, 4K, anywhere)")
    if text_offset != 0:
        fail(f"text_offset {text_offset:#x}, want 0")
    if image_size < len(data):
        fail(f"image_size {image_size:#x} smaller than the file ({len(data):#x})")
    if image_size % 4096:
        fail(f"image_size {image_size:#x} not page aligned")
    if (code0 >> 26) != 0b000101:
        fail(f"code0 {code0:#x} is not a branch")
    # Every dynamic relocation must be R_AARCH64_RELATIVE: head.S applies only those.
    readelf = subprocess.run(["readelf", "-rW", elf_path], capture_output=True, text=True)
    if readelf.returncode == 0:
        for line in readelf.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[2].startswith("R_AARCH64_") and parts[2] != "R_AARCH64_RELATIVE":
                fail(f"unsupported relocation: {line.strip()}")
    print(f"check-image: ok: {len(data)} bytes, image_size {image_size:#x}")


main()
