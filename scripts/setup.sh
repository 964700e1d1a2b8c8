#!/usr/bin/env bash
# Idempotent setup for a fresh Debian bookworm machine: QEMU 10 (bookworm-backports),
# the aarch64 Rust target, host tools, and the default Linux guest (Debian's arm64 cloud
# kernel plus busybox-static), cached under .cache/ (git-ignored).
#
#   scripts/setup.sh            install what is missing, print what it did
#   scripts/setup.sh --no-guest skip the guest kernel and busybox download
#   scripts/setup.sh --module   also install what cross-building guest kernel modules needs
#                               (scripts/build-guest-module.sh)
#   scripts/setup.sh --stable-kernel
#                               also Debian bookworm's own arm64 cloud kernel (an older
#                               stable series than the default guest's backports one), as
#                               .cache/guest-stable/Image: a second stock kernel for the
#                               tests that boot different kernels side by side
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache="$repo/.cache"
guest_dir="$cache/guest"
want_guest=1
want_module=0
want_stable_kernel=0
for arg in "$@"; do
    case "$arg" in
        --no-guest) want_guest=0 ;;
        --module) want_module=1 ;;
        --stable-kernel) want_stable_kernel=1 ;;
        *) printf 'setup: error: unknown argument %s\n' "$arg" >&2; exit 2 ;;
    esac
done

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_update() {
    [ "$apt_updated" -eq 1 ] && return
    say "apt-get update"
    as_root apt-get update -qq >/dev/null || die "apt-get update failed"
    apt_updated=1
}

# The suite and components of the machine's own bookworm entry, reused for backports.
ensure_backports_source() {
    if grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        return
    fi
    local uri="" components=""
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        if grep -qE '^Suites:.*\bbookworm\b' "$f" && grep -qE '^URIs:.*debian/?$' "$f"; then
            uri=$(awk '/^URIs:/ {print $2; exit}' "$f")
            components=$(awk -F': ' '/^Components:/ {print $2; exit}' "$f")
            break
        fi
    done
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        read -r uri components < <(awk '$1=="deb" && $3=="bookworm" {print $2, substr($0, index($0,$4)); exit}' /etc/apt/sources.list) || true
    fi
    [ -n "$uri" ] || die "cannot find the machine's bookworm apt source to derive bookworm-backports from"
    say "adding bookworm-backports ($uri, ${components:-main})"
    as_root tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null <<SRC
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: ${components:-main}
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt_updated=0
}

qemu_major() {
    command -v qemu-system-aarch64 >/dev/null || { echo 0; return; }
    qemu-system-aarch64 --version | sed -n 's/^QEMU emulator version \([0-9]*\).*/\1/p'
}

ensure_qemu() {
    if [ "$(qemu_major)" -ge 10 ]; then return; fi
    ensure_backports_source
    apt_update
    say "installing qemu-system-arm from bookworm-backports"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -t bookworm-backports qemu-system-arm >/dev/null \
        || die "could not install qemu-system-arm from bookworm-backports"
    [ "$(qemu_major)" -ge 10 ] || die "qemu-system-aarch64 is older than 10 after install"
}

ensure_host_packages() {
    local missing=()
    command -v cpio >/dev/null || missing+=(cpio)
    command -v dtc >/dev/null || missing+=(device-tree-compiler)
    command -v gzip >/dev/null || missing+=(gzip)
    command -v python3 >/dev/null || missing+=(python3)
    # make-disk-image.sh (mke2fs -d); make-initramfs.sh unpacks the kernel's .ko.xz modules.
    command -v mke2fs >/dev/null || [ -x /sbin/mke2fs ] || [ -x /usr/sbin/mke2fs ] || missing+=(e2fsprogs)
    command -v xz >/dev/null || missing+=(xz-utils)
    [ ${#missing[@]} -eq 0 ] && return
    apt_update
    say "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "could not install ${missing[*]}"
}

ensure_rust_target() {
    command -v rustup >/dev/null || die "rustup is needed (https://rustup.rs)"
    # rust-toolchain.toml names the target and components; this installs them on first use.
    (cd "$repo" && rustup show active-toolchain >/dev/null 2>&1) || true
    local target
    for target in aarch64-unknown-none-softfloat aarch64-unknown-none; do
        if ! (cd "$repo" && rustup target list --installed | grep -qx "$target"); then
            say "adding rust target $target"
            (cd "$repo" && rustup target add "$target" >/dev/null) || die "rustup target add $target failed"
        fi
    done
    if ! (cd "$repo" && rustup component list --installed | grep -q '^llvm-tools'); then
        say "adding rust component llvm-tools"
        (cd "$repo" && rustup component add llvm-tools >/dev/null) || die "rustup component add llvm-tools failed"
    fi
}

# Downloads an arm64 package into $guest_dir/debs; prints the .deb path.
download_arm64() {
    local name=$1 suite=${2:-}
    mkdir -p "$guest_dir/debs"
    local opts=()
    [ -n "$suite" ] && opts=(-t "$suite")
    (cd "$guest_dir/debs" && apt-get download -qq "${opts[@]}" "$name:arm64" >/dev/null 2>&1) \
        || return 1
    ls -t "$guest_dir/debs/${name}"_*_arm64.deb 2>/dev/null | head -n 1
}

# apt can fetch arm64 packages (dpkg's foreign architecture) from bookworm and
# bookworm-backports, with an up-to-date index.
ensure_arm64_packages() {
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        say "dpkg --add-architecture arm64"
        as_root dpkg --add-architecture arm64
        apt_updated=0
    fi
    ensure_backports_source
    apt_update
}

# Debian's arm64 cloud kernel of `suite` as `dir`/Image, its package name in
# `dir`/kernel-package (resolved through the metapackage, so nothing names a version).
fetch_kernel() {
    local suite=$1 dir=$2
    mkdir -p "$dir"
    local meta
    meta=$(download_arm64 linux-image-cloud-arm64 "$suite") \
        || die "cannot download linux-image-cloud-arm64:arm64 from $suite"
    local kpkg
    kpkg=$(dpkg-deb -f "$meta" Depends | tr ',' '\n' | sed -n 's/^ *\(linux-image-[^ (]*\).*/\1/p' | head -n 1)
    [ -n "$kpkg" ] || die "cannot resolve the kernel package from $(basename "$meta")"
    kpkg=${kpkg%:arm64}
    say "downloading kernel $kpkg ($suite) into ${dir#"$repo"/}"
    local kdeb
    kdeb=$(download_arm64 "$kpkg" "$suite") || die "cannot download $kpkg:arm64"
    rm -rf "$dir/kernel-root"
    dpkg-deb -x "$kdeb" "$dir/kernel-root"
    local vmlinuz
    vmlinuz=$(ls "$dir"/kernel-root/boot/vmlinuz-* 2>/dev/null | head -n 1)
    [ -n "$vmlinuz" ] || die "$kpkg has no /boot/vmlinuz-*"
    cp "$vmlinuz" "$dir/Image"
    echo "$kpkg" >"$dir/kernel-package"
    rm -rf "$dir/kernel-root"
}

ensure_stable_kernel() {
    [ "$want_stable_kernel" -eq 1 ] || return 0
    [ -s "$cache/guest-stable/Image" ] && return
    ensure_arm64_packages
    fetch_kernel bookworm "$cache/guest-stable"
}

ensure_guest() {
    [ "$want_guest" -eq 1 ] || return 0
    if [ -s "$guest_dir/Image" ] && [ -x "$guest_dir/busybox" ]; then return; fi
    ensure_arm64_packages
    mkdir -p "$guest_dir"
    fetch_kernel "${GUEST_KERNEL_SUITE:-bookworm-backports}" "$guest_dir"

    say "downloading busybox-static:arm64"
    local bdeb
    bdeb=$(download_arm64 busybox-static) || die "cannot download busybox-static:arm64"
    rm -rf "$guest_dir/busybox-root"
    dpkg-deb -x "$bdeb" "$guest_dir/busybox-root"
    cp "$guest_dir/busybox-root/bin/busybox" "$guest_dir/busybox"
    chmod +x "$guest_dir/busybox"
    rm -rf "$guest_dir/busybox-root"
}

# What cross-building an out-of-tree module for the guest kernel needs, resolved from the
# guest kernel package (.cache/guest/kernel-package) so nothing names a version:
#   - the kernel's headers, linux-headers-<release>:arm64 and the linux-headers-*-common it
#     depends on, at the kernel package's exact version. They are extracted into
#     .cache/guest/headers, not installed: through apt the :arm64 headers package depends on
#     the arm64 kernel image (whose postinst wants initramfs-tools) and on gcc-12:arm64,
#     which is not co-installable with the host's gcc-12 and would remove build-essential.
#   - installed with apt for the host: the kbuild tools the headers' scripts/ and tools/
#     links point at (linux-kbuild-<version>, amd64) and the cross compiler the kernel was
#     built with, named by the headers' CONFIG_CC_VERSION_TEXT
#     ("aarch64-linux-gnu-gcc-12" -> gcc-12-aarch64-linux-gnu).
# Prints nothing when all is in place. The build tree is then
# .cache/guest/headers/usr/src/linux-headers-<release> (its name is in headers/release).
ensure_guest_module_toolchain() {
    [ -s "$guest_dir/kernel-package" ] || { want_guest=1; ensure_guest; }
    local kpkg release hroot build
    kpkg=$(cat "$guest_dir/kernel-package")
    release=${kpkg#linux-image-}
    hroot="$guest_dir/headers"
    build="$hroot/usr/src/linux-headers-$release"
    if [ "$(cat "$hroot/release" 2>/dev/null)" = "$release" ] && [ -f "$build/.config" ] \
        && [ -f "$hroot/toolchain" ] && command -v "$(sed -n 1p "$hroot/toolchain")" >/dev/null \
        && [ -d "$(sed -n 2p "$hroot/toolchain")/scripts" ]; then
        return
    fi
    ensure_arm64_packages

    # The kernel package's version (the headers must be the same build).
    local kdeb version
    kdeb=$(ls -t "$guest_dir/debs/${kpkg}"_*_arm64.deb 2>/dev/null | head -n 1 || true)
    if [ -n "$kdeb" ]; then
        version=$(dpkg-deb -f "$kdeb" Version)
    else
        version=$(apt-cache show "$kpkg:arm64" 2>/dev/null | sed -n 's/^Version: //p' | head -n 1)
    fi
    [ -n "$version" ] || die "cannot find the version of $kpkg"

    local debs="$guest_dir/debs" hpkg="linux-headers-$release"
    mkdir -p "$debs"
    say "downloading $hpkg:arm64 $version"
    (cd "$debs" && apt-get download -qq "$hpkg:arm64=$version" >/dev/null 2>&1) \
        || die "cannot download $hpkg:arm64=$version (apt-cache policy $hpkg:arm64)"
    local hdeb common kbuild
    hdeb="$debs/${hpkg}_${version//:/%3a}_arm64.deb"
    common=$(dpkg-deb -f "$hdeb" Depends | tr ',' '\n' | sed -n 's/^ *\(linux-headers-[^ ]*-common\) .*/\1/p' | head -n 1)
    kbuild=$(dpkg-deb -f "$hdeb" Depends | tr ',' '\n' | sed -n 's/^ *\(linux-kbuild-[^ ]*\).*/\1/p' | head -n 1)
    [ -n "$common" ] && [ -n "$kbuild" ] || die "cannot resolve the common headers and kbuild packages from $(basename "$hdeb")"
    say "downloading $common $version"
    (cd "$debs" && apt-get download -qq "$common=$version" >/dev/null 2>&1) \
        || die "cannot download $common=$version"
    local cdeb
    cdeb="$debs/${common}_${version//:/%3a}_all.deb"
    [ -f "$hdeb" ] && [ -f "$cdeb" ] || die "apt-get download left no $hdeb or $cdeb"

    rm -rf "$hroot"
    mkdir -p "$hroot"
    dpkg-deb -x "$hdeb" "$hroot"
    dpkg-deb -x "$cdeb" "$hroot"
    [ -f "$build/.config" ] && [ -f "$build/Makefile" ] || die "$hpkg has no usr/src/$hpkg/.config"
    # The arch tree's Makefile includes the common tree by its absolute /usr/src path.
    sed -i "s|/usr/src/$common/|$hroot/usr/src/$common/|" "$build/Makefile"
    # scripts/ and tools/ are relative links to ../../lib/$kbuild: point that at the host's.
    mkdir -p "$hroot/usr/lib"
    ln -sfn "/usr/lib/$kbuild" "$hroot/usr/lib/$kbuild"

    local cc triplet gccver compiler
    cc=$(sed -n 's/^CONFIG_CC_VERSION_TEXT="\([^ ]*\) .*/\1/p' "$build/.config")
    case "$cc" in
        *-gcc-[0-9]*) triplet=${cc%-gcc-*}; gccver=${cc##*-gcc-}; compiler="gcc-$gccver-$triplet" ;;
        *) die "the guest kernel was built with '$cc', not a versioned cross gcc this script knows" ;;
    esac
    say "installing $compiler and $kbuild $version (host)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "$compiler" "$kbuild=$version" make >/dev/null \
        || die "could not install $compiler $kbuild=$version"
    command -v "$cc" >/dev/null || die "$compiler installed no $cc"
    [ -d "/usr/lib/$kbuild/scripts" ] || die "$kbuild installed no /usr/lib/$kbuild/scripts"
    printf '%s\n%s\n' "$cc" "/usr/lib/$kbuild" >"$hroot/toolchain"
    echo "$release" >"$hroot/release"
    say "guest module toolchain ready: $cc, headers in $build"
}

ensure_host_packages
ensure_qemu
ensure_rust_target
ensure_guest
ensure_stable_kernel
[ "$want_module" -eq 1 ] && ensure_guest_module_toolchain
say "ready: $(qemu-system-aarch64 --version | head -n 1); guest kernel: $(cat "$guest_dir/kernel-package" 2>/dev/null || echo none)"
