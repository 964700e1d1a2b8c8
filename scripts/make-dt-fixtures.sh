#!/usr/bin/env bash
# Regenerates the device-tree fixtures of platform/tests/fixtures/ (read by
# platform/tests/dt_fixtures.rs; platform/tests/fixtures/README.md says what each is).
#
#   scripts/make-dt-fixtures.sh
#
# Needs qemu-system-aarch64 (QEMU 10, scripts/setup.sh installs it) and dtc/fdtput
# (Debian package device-tree-compiler).
#
# - qemu-*.dtb: dumped by QEMU's virt board (`dumpdtb=`), then compacted with dtc (QEMU
#   pads its blob to 1 MiB) and stripped of /chosen rng-seed and kaslr-seed (random on
#   every run) so that regenerating gives the same bytes.
# - hand-*.dtb: a QEMU tree decompiled to source, edited by appending dts fragments
#   (dtc merges nodes with the same path), recompiled.
# - broken-*.dtb: like hand-*, each with one defect; two are byte edits of a good blob.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
out="$repo/platform/tests/fixtures"
die() { printf 'make-dt-fixtures: error: %s\n' "$*" >&2; exit 1; }
for tool in qemu-system-aarch64 dtc fdtput; do
    command -v "$tool" >/dev/null || die "$tool is missing (scripts/setup.sh; apt-get install device-tree-compiler)"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# Small stand-ins for a guest kernel and initrd: guest-loader records only the file size.
head -c 4000 /dev/zero | tr '\0' 'K' >"$work/kernel.bin"
head -c 3000 /dev/zero | tr '\0' 'I' >"$work/initrd.bin"

# qemu_dtb NAME QEMU-ARGS...: dump the virt board's DTB with these options.
qemu_dtb() {
    local name=$1
    shift
    qemu-system-aarch64 \
        -machine "virt,virtualization=on,gic-version=3,dumpdtb=$work/$name.raw" \
        -nographic -nic none "$@" >/dev/null
    fdtput -d "$work/$name.raw" /chosen rng-seed
    fdtput -d "$work/$name.raw" /chosen kaslr-seed
    dtc -q -I dtb -O dtb -o "$out/$name.dtb" "$work/$name.raw"
}

qemu_dtb qemu-1g-smp1-max -m 1G -smp 1 -cpu max
qemu_dtb qemu-2g-smp2-max -m 2G -smp 2 -cpu max
qemu_dtb qemu-5g-smp4-a72 -m 5G -smp 4 -cpu cortex-a72
qemu_dtb qemu-2g-smp8-n2 -m 2G -smp 8 -cpu neoverse-n2
qemu_dtb qemu-2g-smp2-modules -m 2G -smp 2 -cpu max \
    -device "guest-loader,addr=0x50000000,kernel=$work/kernel.bin,bootargs=console=ttyAMA0" \
    -device "guest-loader,addr=0x58000000,initrd=$work/initrd.bin"
# `-append` needs `-kernel`; the raw file is loaded as is and only the DTB is kept.
qemu_dtb qemu-1g-smp1-bootargs -m 1G -smp 1 -cpu max \
    -kernel "$work/kernel.bin" -append "loglevel=debug crashkernel=64M split=bbm"

# The base for the hand-made fixtures: QEMU's 2 GiB, 2-CPU tree as source.
dtc -q -I dtb -O dts -o "$work/base.dts" "$out/qemu-2g-smp2-max.dtb"

# hand_dtb NAME MEMRESERVE-LINES FRAGMENT: base tree plus /memreserve/ lines (before the
# root node, where dts wants them) plus a fragment merged into the tree.
hand_dtb() {
    local name=$1 memreserve=$2 fragment=$3
    {
        echo '/dts-v1/;'
        printf '%s\n' "$memreserve"
        tail -n +2 "$work/base.dts"
        printf '%s\n' "$fragment"
    } >"$work/$name.dts"
    dtc -q -I dts -O dtb -o "$out/$name.dtb" "$work/$name.dts" ||
        die "dtc failed on $name ($work/$name.dts)"
}

# Good, hand-made.
hand_dtb hand-reserved '/memreserve/ 0x7fe00000 0x200000;' '
/ {
    reserved-memory {
        #address-cells = <2>;
        #size-cells = <2>;
        ranges;
        secmon@7f000000 { reg = <0x0 0x7f000000 0x0 0x100000>; no-map; };
        shmem@7e000000 { reg = <0x0 0x7e000000 0x0 0x400000>; };
        dynamic-pool { size = <0x0 0x1000000>; };
        disabled@7d000000 { reg = <0x0 0x7d000000 0x0 0x1000>; status = "disabled"; };
    };
    chosen {
        bootargs = "loglevel=info split=bbml2 mapping=pages";
        stdout-path = "serial0:115200n8";
    };
};'

hand_dtb hand-two-banks '' '
/ {
    /delete-node/ memory@40000000;
    memory@100000000 { device_type = "memory"; reg = <0x1 0x0 0x0 0x40000000>; };
    memory@40000000 {
        device_type = "memory";
        reg = <0x0 0x40000000 0x0 0x20000000>, <0x0 0x70000000 0x0 0x10000000>;
    };
};'

hand_dtb hand-legacy-modules '' '
/ {
    chosen {
        #address-cells = <1>;
        #size-cells = <1>;
        module@60000000 {
            compatible = "xen,linux-zimage", "xen,multiboot-module";
            reg = <0x60000000 0x200000>;
            bootargs = "console=hvc0 root=/dev/ram";
        };
        module@61000000 {
            compatible = "xen,linux-initrd", "xen,multiboot-module";
            reg = <0x61000000 0x100000>;
        };
        module@62000000 {
            compatible = "multiboot,device-tree", "multiboot,module";
            reg = <0x62000000 0x2000>;
        };
        module@63000000 {
            compatible = "xen,xsm-policy", "multiboot,module";
            reg = <0x63000000 0x1000>;
        };
        module@64000000 {
            compatible = "multiboot,module";
            reg = <0x64000000 0x3000>;
        };
    };
};'

# Version 16 has no struct block size: blob_size accepts it, parse refuses it.
dtc -q -I dtb -O dtb -V 16 -o "$out/hand-v16.dtb" "$out/qemu-1g-smp1-max.dtb"

# Broken: one defect each.
cp "$out/qemu-1g-smp1-max.dtb" "$out/broken-bad-magic.dtb"
printf '\xde\xad\xbe\xef' | dd of="$out/broken-bad-magic.dtb" bs=1 seek=0 conv=notrunc status=none
head -c 4096 "$out/qemu-1g-smp1-max.dtb" >"$out/broken-truncated.dtb"

hand_dtb broken-no-memory '' '/ { /delete-node/ memory@40000000; };'
hand_dtb broken-no-stdout-path '' '/ { chosen { /delete-property/ stdout-path; }; };'
hand_dtb broken-console-not-pl011 '' '/ { chosen { stdout-path = "/pl061@9030000"; }; };'
hand_dtb broken-stdout-unresolvable '' '/ { chosen { stdout-path = "serial7:115200"; }; };'
hand_dtb broken-overlapping-reservations '/memreserve/ 0x7f000000 0x200000;' '
/ {
    reserved-memory {
        #address-cells = <2>;
        #size-cells = <2>;
        ranges;
        firmware@7f100000 { reg = <0x0 0x7f100000 0x0 0x100000>; no-map; };
    };
};'
hand_dtb broken-overlapping-memory '' '
/ { memory@60000000 { device_type = "memory"; reg = <0x0 0x60000000 0x0 0x40000000>; }; };'
hand_dtb broken-address-cells-3 '' '
/ {
    reserved-memory {
        #address-cells = <3>;
        #size-cells = <2>;
        ranges;
        odd@0 { reg = <0x0 0x0 0x7f000000 0x0 0x1000>; };
    };
};'
hand_dtb broken-reg-length '' '/ { memory@40000000 { reg = <0x0 0x40000000 0x80000000>; }; };'
hand_dtb broken-module-overflow '' '
/ {
    chosen {
        module@fffffffffffff000 {
            compatible = "multiboot,module", "multiboot,kernel";
            reg = <0xffffffff 0xfffff000 0x0 0x2000>;
        };
    };
};'
hand_dtb broken-psci-method '' '/ { psci { method = "svc"; }; };'
hand_dtb broken-no-gic '' '/ { intc@8000000 { compatible = "arm,gic-400"; }; };'

ls -l "$out"/*.dtb | awk '{ total += $5 } END { printf "make-dt-fixtures: %d files, %d bytes\n", NR, total }'
