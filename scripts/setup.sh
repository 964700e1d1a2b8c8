#!/usr/bin/env bash
# Idempotent setup for a fresh Debian bookworm machine: QEMU 10 (bookworm-backports),
# the aarch64 Rust target, host tools, and the default Linux guest (Debian's arm64 cloud
# kernel plus busybox-static), cached under .cache/ (git-ignored).
#
#   scripts/setup.sh            install what is missing, print what it did
#   scripts/setup.sh --no-guest skip the guest kernel and busybox download
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache="$repo/.cache"
guest_dir="$cache/guest"
want_guest=1
[ "${1:-}" = "--no-guest" ] && want_guest=0

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

ensure_guest() {
    [ "$want_guest" -eq 1 ] || return 0
    if [ -s "$guest_dir/Image" ] && [ -x "$guest_dir/busybox" ]; then return; fi
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        say "dpkg --add-architecture arm64"
        as_root dpkg --add-architecture arm64
        apt_updated=0
    fi
    ensure_backports_source
    apt_update
    mkdir -p "$guest_dir"
    local suite=${GUEST_KERNEL_SUITE:-bookworm-backports}
    # Resolve the versioned kernel package through the metapackage's dependency.
    local meta
    meta=$(download_arm64 linux-image-cloud-arm64 "$suite") \
        || die "cannot download linux-image-cloud-arm64:arm64 from $suite"
    local kpkg
    kpkg=$(dpkg-deb -f "$meta" Depends | tr ',' '\n' | sed -n 's/^ *\(linux-image-[^ (]*\).*/\1/p' | head -n 1)
    [ -n "$kpkg" ] || die "cannot resolve the kernel package from $(basename "$meta")"
    kpkg=${kpkg%:arm64}
    say "downloading guest kernel $kpkg ($suite)"
    local kdeb
    kdeb=$(download_arm64 "$kpkg" "$suite") || die "cannot download $kpkg:arm64"
    rm -rf "$guest_dir/kernel-root"
    dpkg-deb -x "$kdeb" "$guest_dir/kernel-root"
    local vmlinuz
    vmlinuz=$(ls "$guest_dir"/kernel-root/boot/vmlinuz-* 2>/dev/null | head -n 1)
    [ -n "$vmlinuz" ] || die "$kpkg has no /boot/vmlinuz-*"
    cp "$vmlinuz" "$guest_dir/Image"
    echo "$kpkg" >"$guest_dir/kernel-package"
    rm -rf "$guest_dir/kernel-root"

    say "downloading busybox-static:arm64"
    local bdeb
    bdeb=$(download_arm64 busybox-static) || die "cannot download busybox-static:arm64"
    rm -rf "$guest_dir/busybox-root"
    dpkg-deb -x "$bdeb" "$guest_dir/busybox-root"
    cp "$guest_dir/busybox-root/bin/busybox" "$guest_dir/busybox"
    chmod +x "$guest_dir/busybox"
    rm -rf "$guest_dir/busybox-root"
}

ensure_host_packages
ensure_qemu
ensure_rust_target
ensure_guest
say "ready: $(qemu-system-aarch64 --version | head -n 1); guest kernel: $(cat "$guest_dir/kernel-package" 2>/dev/null || echo none)"
