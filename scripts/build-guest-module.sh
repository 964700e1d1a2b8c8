#!/usr/bin/env bash
# Cross-builds the guest kernel module (scripts/guest-module/, hypmem.ko) against the
# headers of the guest kernel (.cache/guest/kernel-package) with the compiler that kernel
# was built with. Installs what it needs first (scripts/setup.sh --module).
#   scripts/build-guest-module.sh      -> target/guest-module/hypmem.ko
# scripts/make-initramfs.sh puts the module into the initramfs as /lib/hypmem.ko when it
# exists; `scripts/run.sh linux --guest-append hyp.modtest=1` loads it and powers off.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
src="$repo/scripts/guest-module"
out="$repo/target/guest-module"
say() { printf 'build-guest-module: %s\n' "$*" >&2; }
die() { printf 'build-guest-module: error: %s\n' "$*" >&2; exit 1; }

"$repo/scripts/setup.sh" --module

hroot="$repo/.cache/guest/headers"
release=$(cat "$hroot/release")
kdir="$hroot/usr/src/linux-headers-$release"
cc=$(sed -n 1p "$hroot/toolchain")
[ -f "$kdir/.config" ] || die "no kernel headers in $kdir"
if grep -qx 'CONFIG_MODULE_SIG_FORCE=y' "$kdir/.config"; then
    die "the guest kernel $release enforces module signatures (CONFIG_MODULE_SIG_FORCE=y): an unsigned module cannot load"
fi

# Build in target/ so the source directory stays clean; copy only what changed so make's
# own timestamps keep the build incremental.
mkdir -p "$out/build"
for f in hypmem.c Kbuild; do
    cmp -s "$src/$f" "$out/build/$f" || cp "$src/$f" "$out/build/$f"
done
# A different kernel release needs a clean build.
if [ "$(cat "$out/build/.release" 2>/dev/null)" != "$release" ]; then
    make -s -C "$kdir" M="$out/build" ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- clean >/dev/null 2>&1 || true
    echo "$release" >"$out/build/.release"
fi
make -s -C "$kdir" M="$out/build" ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- CC="$cc" \
    -j"$(nproc)" modules >&2 || die "module build failed"

ko="$out/build/hypmem.ko"
vermagic=$(tr '\0' '\n' <"$ko" | sed -n 's/^vermagic=//p' | head -n 1)
case "$vermagic" in
    "$release "*) ;;
    *) die "hypmem.ko has vermagic '$vermagic', the guest kernel is $release" ;;
esac
cp "$ko" "$out/hypmem.ko"
say "$out/hypmem.ko (vermagic $vermagic)"
