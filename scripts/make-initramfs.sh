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
# The drivers of the devices `scripts/run.sh --disk/--net` adds that the guest kernel
# (Debian's cloud arm64) builds as modules, virtio_blk and virtio_net (with net_failover and
# failover), go in as /lib/modules/*.ko, loaded by /init in the order of
# /lib/modules/order when the command line has hyp.disk=1, hyp.net=1 or hyp.diskbench=1;
# virtio_pci and ext4 are built in (the kernel package's modules.builtin says which). They
# come from the kernel package setup.sh downloaded (.cache/guest/debs), unpacked once into
# .cache/guest/modules. /etc/udhcpc.script configures eth0 from a DHCP lease.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: make-initramfs.sh OUTPUT}
busybox="$repo/.cache/guest/busybox"
[ -x "$busybox" ] || "$repo/scripts/setup.sh" >&2
command -v cpio >/dev/null || { echo "make-initramfs: cpio missing (scripts/setup.sh installs it)" >&2; exit 1; }

# The guest kernel's drivers for the virtio-pci disk and NIC and the disk's filesystem, each
# built in or a module (with its dependencies first) from the kernel package, unpacked into
# $mod_dir: the .ko files, `order` (the modules, load order) and `source` (what they came
# from). A kernel package that cannot be had leaves no modules, with a warning: the other
# guest modes do not need them.
guest_drivers="virtio_pci virtio_blk virtio_net ext4"
mod_dir="$repo/.cache/guest/modules"
guest_modules() {
    local kpkg deb listing builtin
    kpkg=$(cat "$repo/.cache/guest/kernel-package" 2>/dev/null) \
        || { echo "make-initramfs: no .cache/guest/kernel-package; the initramfs has no driver modules" >&2; return 0; }
    deb=$(ls -t "$repo/.cache/guest/debs/${kpkg}"_*_arm64.deb 2>/dev/null | head -n 1 || true)
    if [ -z "$deb" ]; then
        echo "make-initramfs: downloading $kpkg:arm64 for its driver modules" >&2
        mkdir -p "$repo/.cache/guest/debs"
        (cd "$repo/.cache/guest/debs" && apt-get download -qq "$kpkg:arm64" >/dev/null 2>&1) || true
        deb=$(ls -t "$repo/.cache/guest/debs/${kpkg}"_*_arm64.deb 2>/dev/null | head -n 1 || true)
    fi
    if [ -z "$deb" ]; then
        echo "make-initramfs: warning: cannot get $kpkg:arm64; the initramfs has no driver modules (--disk/--net will not work)" >&2
        rm -rf "$mod_dir"; return 0
    fi
    [ "$(cat "$mod_dir/source" 2>/dev/null)" = "$(basename "$deb") $guest_drivers" ] && return 0
    rm -rf "$mod_dir"; mkdir -p "$mod_dir"
    listing=$(dpkg-deb --fsys-tarfile "$deb" | tar -t)
    builtin=$(dpkg-deb --fsys-tarfile "$deb" | tar -x -O --wildcards './lib/modules/*/modules.builtin' 2>/dev/null || true)
    [ -n "$builtin" ] || { echo "make-initramfs: $(basename "$deb") has no modules.builtin" >&2; exit 1; }
    local seen=" " built_in="" driver
    # Module NAME (a dependency first), or nothing when it is built in.
    resolve() {
        local name=${1//-/_} pattern path dep
        case "$seen" in *" $name "*) return ;; esac
        seen="$seen$name "
        pattern="/$(printf '%s' "$name" | sed 's/_/[-_]/g')\.ko"
        if printf '%s\n' "$builtin" | grep -qE "$pattern\$"; then
            built_in="$built_in $name"; return
        fi
        path=$(printf '%s\n' "$listing" | grep -E "/kernel/.*$pattern(\.xz|\.zst|\.gz)?\$" | head -n 1)
        [ -n "$path" ] || { echo "make-initramfs: $(basename "$deb") has $name neither built in nor as a module" >&2; exit 1; }
        case "$path" in
            *.xz) dpkg-deb --fsys-tarfile "$deb" | tar -x -O "$path" | xz -dc >"$mod_dir/$name.ko" ;;
            *.zst) dpkg-deb --fsys-tarfile "$deb" | tar -x -O "$path" | zstd -dcq >"$mod_dir/$name.ko" ;;
            *.gz) dpkg-deb --fsys-tarfile "$deb" | tar -x -O "$path" | gzip -dc >"$mod_dir/$name.ko" ;;
            *) dpkg-deb --fsys-tarfile "$deb" | tar -x -O "$path" >"$mod_dir/$name.ko" ;;
        esac
        for dep in $(tr '\0' '\n' <"$mod_dir/$name.ko" | sed -n 's/^depends=//p' | head -n 1 | tr ',' ' '); do
            resolve "$dep"
        done
        echo "$name" >>"$mod_dir/order"
    }
    for driver in $guest_drivers; do resolve "$driver"; done
    touch "$mod_dir/order"
    echo "make-initramfs: guest drivers of $(basename "$deb"): built in:${built_in:- none}; modules: $(tr '\n' ' ' <"$mod_dir/order")" >&2
    echo "$(basename "$deb") $guest_drivers" >"$mod_dir/source"
}
guest_modules
modules=()
if [ -f "$mod_dir/order" ]; then
    while read -r name; do modules+=("$mod_dir/$name.ko"); done <"$mod_dir/order"
    modules+=("$mod_dir/order")
fi

timerlat=$("$repo/scripts/build-timerlat.sh" --quiet)
module="$repo/target/guest-module/hypmem.ko"
extra_files=()
[ -f "$module" ] && extra_files+=("$module")
src_stamp=$(cat "$0" "$repo/scripts/guest/init" "$repo/scripts/guest/check" "$repo/scripts/guest/isolation" "$busybox" "$timerlat" "${extra_files[@]}" "${modules[@]}" | sha256sum | cut -c1-16)
if [ -f "$out" ] && [ -f "$out.stamp" ] && [ "$(cat "$out.stamp")" = "$src_stamp" ]; then
    exit 0
fi

mkdir -p "$(dirname "$out")"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,etc,lib,proc,sys,dev,tmp,root}
cp "$busybox" "$root/bin/busybox"
for applet in sh mount umount cat echo grep sed awk nproc poweroff reboot ls dmesg devmem \
              head tail wc sleep uname free mkdir cut tr insmod rmmod lsmod \
              dd sync sha256sum date rm df ifconfig route udhcpc ping; do
    ln -s busybox "$root/bin/$applet"
done
install -m 0755 "$timerlat" "$root/bin/timerlat"
install -m 0755 "$repo/scripts/guest/init" "$root/init"
install -m 0755 "$repo/scripts/guest/check" "$root/check"
install -m 0755 "$repo/scripts/guest/isolation" "$root/isolation"
[ -f "$module" ] && install -m 0644 "$module" "$root/lib/hypmem.ko"
if [ ${#modules[@]} -gt 0 ]; then
    mkdir -p "$root/lib/modules"
    install -m 0644 "${modules[@]}" "$root/lib/modules/"
fi
# udhcpc's hook (busybox brings none): the lease's address, netmask and router on eth0.
cat >"$root/etc/udhcpc.script" <<'SCRIPT'
#!/bin/sh
case "$1" in
    deconfig) ifconfig "$interface" 0.0.0.0 up ;;
    bound|renew)
        ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" up
        if [ -n "$router" ]; then
            while route del default gw 0.0.0.0 dev "$interface" 2>/dev/null; do :; done
            for gw in $router; do route add default gw "$gw" dev "$interface"; done
        fi ;;
esac
exit 0
SCRIPT
chmod 0755 "$root/etc/udhcpc.script"
# Written aside and renamed: QEMU runs started in parallel (the tests) read a whole
# archive, the old one or the new one, never a half-written one.
(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet | gzip -9) >"$out.tmp.$$"
mv -f "$out.tmp.$$" "$out"
echo "$src_stamp" >"$out.stamp"
echo "make-initramfs: $out ($(stat -c %s "$out") bytes)" >&2
