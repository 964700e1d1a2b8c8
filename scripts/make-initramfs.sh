#!/usr/bin/env bash
# Builds the default guest's initramfs: busybox-static for arm64 and an /init script.
#   scripts/make-initramfs.sh OUTPUT.cpio.gz
# /init mounts the usual filesystems and starts a shell on the console. With
# `hyp.check=1` on the kernel command line it runs /check instead and powers off: /check
# prints "guest-check: ..." lines and ends with "guest-check: pass" or "guest-check: fail".
# With `hyp.isolation=1` it runs /isolation: /dev/mem probes of memory that is not the
# guest's, ending with "guest-isolation: pass" or "guest-isolation: fail".
# The guest kernel module target/guest-module/hypmem.ko (scripts/build-guest-module.sh) goes
# in as /lib/hypmem.ko when it has been built; `hyp.modtest=1` makes /init load it.
# The timer-latency probe (tests/guest-tools/timerlat, built here by
# scripts/build-timerlat.sh) goes in as /bin/timerlat; `hyp.timerlat=N` makes /init run it
# for N samples and power off. `hyp.idle=N` makes /init sleep N seconds and power off.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: make-initramfs.sh OUTPUT}
busybox="$repo/.cache/guest/busybox"
[ -x "$busybox" ] || "$repo/scripts/setup.sh" >&2
command -v cpio >/dev/null || { echo "make-initramfs: cpio missing (scripts/setup.sh installs it)" >&2; exit 1; }

timerlat=$("$repo/scripts/build-timerlat.sh" --quiet)
module="$repo/target/guest-module/hypmem.ko"
extra_files=()
[ -f "$module" ] && extra_files+=("$module")
src_stamp=$(cat "$0" "$repo/scripts/guest/init" "$repo/scripts/guest/check" "$repo/scripts/guest/isolation" "$busybox" "$timerlat" "${extra_files[@]}" | sha256sum | cut -c1-16)
if [ -f "$out" ] && [ -f "$out.stamp" ] && [ "$(cat "$out.stamp")" = "$src_stamp" ]; then
    exit 0
fi

mkdir -p "$(dirname "$out")"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,etc,lib,proc,sys,dev,tmp,root}
cp "$busybox" "$root/bin/busybox"
for applet in sh mount umount cat echo grep sed awk nproc poweroff reboot ls dmesg devmem \
              head tail wc sleep uname free mkdir cut tr insmod rmmod lsmod; do
    ln -s busybox "$root/bin/$applet"
done
install -m 0755 "$timerlat" "$root/bin/timerlat"
install -m 0755 "$repo/scripts/guest/init" "$root/init"
install -m 0755 "$repo/scripts/guest/check" "$root/check"
install -m 0755 "$repo/scripts/guest/isolation" "$root/isolation"
[ -f "$module" ] && install -m 0644 "$module" "$root/lib/hypmem.ko"
(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet | gzip -9) >"$out"
echo "$src_stamp" >"$out.stamp"
echo "make-initramfs: $out ($(stat -c %s "$out") bytes)" >&2
