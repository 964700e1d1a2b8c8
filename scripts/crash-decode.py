#!/usr/bin/env python3
"""Decodes the hypervisor's crash record (hypervisor/src/crash/record.rs).

Save the crash region from QEMU's monitor (Ctrl-a c in scripts/run.sh), e.g. for a
region at 0xfc000000 of 64 MiB:
    (qemu) pmemsave 0xfc000000 0x10000 crash.bin
then:
    scripts/crash-decode.py crash.bin
The hypervisor prints the region's base in its boot log (`crash region:` line)."""
import struct
import sys
import zlib

HEADER = 320


def decode(data):
    if len(data) < HEADER or data[:8] != b"HYPCRASH":
        raise ValueError("no crash record (magic HYPCRASH not found)")
    version, header_size, total, crc = struct.unpack_from("<IIII", data, 8)
    if version != 1 or header_size != HEADER:
        raise ValueError(f"unsupported record version {version} / header size {header_size}")
    if total > len(data):
        raise ValueError(f"record length {total} exceeds the {len(data)} bytes given")
    body = bytearray(data[:total])
    body[20:24] = b"\0\0\0\0"
    if zlib.crc32(bytes(body)) != crc:
        raise ValueError("checksum mismatch: the record is damaged")
    micros, esr, far, elr, spsr = struct.unpack_from("<QQQQQ", data, 24)
    regs = struct.unpack_from("<31Q", data, 64)
    msg_len, log_len = struct.unpack_from("<II", data, 312)
    message = data[HEADER:HEADER + msg_len].decode("utf-8", "replace")
    log = data[HEADER + msg_len:HEADER + msg_len + log_len].decode("utf-8", "replace")
    return dict(micros=micros, esr=esr, far=far, elr=elr, spsr=spsr, regs=regs, message=message, log=log)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        record = decode(open(sys.argv[1], "rb").read())
    except (OSError, ValueError) as error:
        print(f"crash-decode: {error}", file=sys.stderr)
        return 1
    print(f"hypervisor crash at {record['micros'] / 1e6:.6f} s after boot")
    print(f"message: {record['message']}")
    print(f"ESR_EL2 {record['esr']:#018x}  FAR_EL2 {record['far']:#018x}")
    print(f"ELR_EL2 {record['elr']:#018x}  SPSR_EL2 {record['spsr']:#018x}")
    for i in range(0, 31, 2):
        pair = [f"x{j:<2} {record['regs'][j]:#018x}" for j in range(i, min(i + 2, 31))]
        print("  ".join(pair))
    print("--- last console output ---")
    print(record["log"], end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
