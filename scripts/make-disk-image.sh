#!/usr/bin/env bash
# Builds the default guest disk: a small ext4 image for `scripts/run.sh --disk`.
#   scripts/make-disk-image.sh [FILE] [SIZE]
# FILE defaults to target/disk.ext4, SIZE (mke2fs's: 128M, 1G...) to 128M: room for the
# guest's 64 MiB throughput file (hyp.diskbench=1) beside what the checks write. The file
# is sparse, so it takes a few MiB of the host's disk.
# The filesystem is made without root by `mke2fs -d` from a staging tree: a README, the
# guest's busybox (bin/busybox) and SHA256SUMS of both, which scripts/guest/check verifies
# to show data the host wrote reads back intact. Every file is owned by root:root in the
# image, whoever builds it.
# The image is rebuilt only when its inputs (this script, busybox, SIZE) change: a stamp
# beside it (FILE.stamp), as scripts/make-initramfs.sh does. What the guest writes into an
# image stays until the next rebuild.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo/target/disk.ext4}
size=${2:-128M}
busybox="$repo/.cache/guest/busybox"
[[ "$size" =~ ^[1-9][0-9]*[KMG]$ ]] || { echo "make-disk-image: SIZE wants a size like 128M or 1G, not '$size'" >&2; exit 2; }
[ -x "$busybox" ] || "$repo/scripts/setup.sh" >&2
mke2fs=$(command -v mke2fs || command -v /sbin/mke2fs || command -v /usr/sbin/mke2fs || true)
[ -n "$mke2fs" ] || { echo "make-disk-image: mke2fs missing (scripts/setup.sh installs e2fsprogs)" >&2; exit 1; }

src_stamp=$( { cat "$0" "$busybox"; echo "$size"; } | sha256sum | cut -c1-16)
if [ -f "$out" ] && [ -f "$out.stamp" ] && [ "$(cat "$out.stamp")" = "$src_stamp" ]; then
    exit 0
fi

mkdir -p "$(dirname "$out")"
stage=$(mktemp -d)
tmp="$out.tmp.$$"
trap 'rm -rf "$stage" "$tmp"' EXIT
mkdir -p "$stage/bin"
cat >"$stage/README" <<'EOF'
The default guest disk of scripts/run.sh --disk (scripts/make-disk-image.sh).
bin/busybox is the guest's busybox; SHA256SUMS lists this file and busybox, and
the guest check (/check with hyp.disk=1) verifies them after mounting the disk.
EOF
cp "$busybox" "$stage/bin/busybox"
chmod 0755 "$stage/bin/busybox"
(cd "$stage" && sha256sum README bin/busybox >SHA256SUMS)
rm -f "$tmp"
truncate -s "$size" "$tmp"
# 4 KiB blocks, as on a larger disk (mke2fs's "small" type would pick 1 KiB).
"$mke2fs" -q -F -t ext4 -b 4096 -J size=4 -L hypdisk -E root_owner=0:0 -d "$stage" "$tmp" >&2
mv -f "$tmp" "$out"
echo "$src_stamp" >"$out.stamp"
echo "make-disk-image: $out ($size ext4, $(du -k "$out" | cut -f1) KiB on disk)" >&2
