"""Tests of the QEMU command lines the benchmarks take from scripts/run.sh --print-qemu:
the parser (benchlib.common.parse_print_qemu), and run.sh itself with setup and builds
skipped on stand-in files (needs qemu-system-aarch64 on PATH, which run.sh checks for):
    python3 -m unittest discover -s scripts -p 'test_*.py'"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from benchlib import common  # noqa: E402
from benchlib.common import BenchError, machine_summary, parse_print_qemu  # noqa: E402

RUN_SH = os.path.join(HERE, "run.sh")
TRICKY = "a b,c 'q' \"d\" $HOME \\x;*"


class ParsePrintQemu(unittest.TestCase):
    def test_bare_and_quoted_arguments(self):
        line = ("qemu-system-aarch64 -machine virt,virtualization=on,gic-version=3 -m 2G "
                "-append 'console=ttyAMA0 it'\\''s $x' -device 'guest-loader,bootargs=a,,b c' ''\n")
        self.assertEqual(parse_print_qemu(line), [
            "qemu-system-aarch64", "-machine", "virt,virtualization=on,gic-version=3", "-m", "2G",
            "-append", "console=ttyAMA0 it's $x", "-device", "guest-loader,bootargs=a,,b c", ""])

    def test_blank_lines_around_the_line_are_ignored(self):
        self.assertEqual(parse_print_qemu("\nqemu-system-aarch64 -m 1G\n\n"), ["qemu-system-aarch64", "-m", "1G"])

    def test_anything_but_one_qemu_line_is_an_error(self):
        for text in ("", "setup: ready\nqemu-system-aarch64 -m 1G\n", "ls -l\n", "qemu-system-aarch64 'open\n"):
            with self.subTest(text=text), self.assertRaises(BenchError):
                parse_print_qemu(text)

    def test_machine_summary(self):
        argv = ["qemu-system-aarch64", "-machine", "virt,gic-version=3", "-cpu", "max", "-nographic",
                "-nic", "none", "-kernel", "x"]
        self.assertEqual(machine_summary(argv), "-machine virt,gic-version=3 -nographic -nic none")


class RunShCase(unittest.TestCase):
    """Stand-in files in a temporary directory, and run.sh on them."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.hyp = self.file("hyp.bin", 4096)
        self.kernel = self.file("Image", 3 << 20)
        self.initrd = self.file("initrd.cpio.gz", 1 << 20)
        self.log = os.path.join(self.tmp.name, "never.log")

    def file(self, name, size):
        path = os.path.join(self.tmp.name, name)
        with open(path, "wb") as f:
            f.truncate(size)
        return path

    def run_sh(self, *args, env=None):
        return subprocess.run([RUN_SH] + list(args), capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              env=dict(os.environ, **(env or {})))

    def print_qemu(self, *args, env=None):
        result = self.run_sh(*(["--log", self.log, "--print-qemu", "--skip-setup"] + list(args)), env=env)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertFalse(os.path.exists(self.log), "--print-qemu must not touch the log")
        return parse_print_qemu(result.stdout)

    def console(self):
        return ["-chardev", "stdio,id=console,mux=on,signal=off,logfile=" + self.log,
                "-serial", "chardev:console", "-mon", "chardev=console", "-echr", "0x14"]


@unittest.skipUnless(shutil.which("qemu-system-aarch64"), "run.sh wants qemu-system-aarch64 on PATH")
class RunShPrintQemu(RunShCase):
    """run.sh --print-qemu --skip-setup on stand-in files: the exact argv, nothing built,
    nothing else on standard output, no log touched."""

    def test_none_mode_with_tricky_arguments(self):
        argv = self.print_qemu("none", "--cpu", "cortex-a72", "--smp", "4", "--mem", "16G", "--hypervisor",
                               self.hyp, "--append", TRICKY, "--", "-qmp", "unix:/tmp/x y,server=on", TRICKY)
        self.assertEqual(argv, ["qemu-system-aarch64", "-machine", "virt,virtualization=on,gic-version=3",
                                "-cpu", "cortex-a72", "-smp", "4", "-m", "16G", "-nographic", "-nic", "none",
                                "-kernel", self.hyp, "-append", TRICKY] + self.console()
                         + ["-qmp", "unix:/tmp/x y,server=on", TRICKY])

    def test_linux_mode_places_the_modules_like_before(self):
        argv = self.print_qemu("linux", "--hypervisor", self.hyp, "--kernel", self.kernel, "--initrd",
                               self.initrd, "--guest-cmdline", "console=ttyAMA0 a,b", "--append", "mapping=pages")
        initrd_addr = (0x50000000 + (3 << 20) + 0x3fffff) & ~0x1fffff
        self.assertEqual(argv[argv.index("-append") + 1], "mapping=pages")
        devices = [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]
        self.assertEqual(devices, [
            "guest-loader,addr=0x50000000,kernel=%s,bootargs=console=ttyAMA0 a,,b" % self.kernel,
            "guest-loader,addr=0x%x,initrd=%s" % (initrd_addr, self.initrd)])

    def test_default_guest_command_line_and_check(self):
        argv = self.print_qemu("linux", "--hypervisor", self.hyp, "--kernel", self.kernel, "--initrd",
                               self.initrd, "--check", "--smp", "3")
        self.assertIn("guest-loader,addr=0x50000000,kernel=%s,bootargs=console=ttyAMA0 earlycon=pl011,,0x9000000 "
                      " hyp.check=1 hyp.smp=3" % self.kernel, argv)

    def test_direct_mode_boots_the_kernel_itself(self):
        argv = self.print_qemu("direct", "--kernel", self.kernel, "--initrd", self.initrd, "--guest-cmdline",
                               "console=ttyAMA0 nokaslr", "--smp", "1")
        self.assertEqual(argv[argv.index("-kernel"):argv.index("-chardev")],
                         ["-kernel", self.kernel, "-initrd", self.initrd, "-append", "console=ttyAMA0 nokaslr"])
        self.assertNotIn(self.hyp, argv)

    def cache_mode(self, path):
        """run.sh's cache= for `path`: none when its filesystem takes O_DIRECT."""
        try:
            os.close(os.open(path, os.O_RDONLY | getattr(os, "O_DIRECT", 0)))
            return "none" if hasattr(os, "O_DIRECT") else "writeback"
        except OSError:
            return "writeback"

    def test_direct_mode_disk_and_net(self):
        disk = self.file("my disk,1.img", 1 << 20)
        argv = self.print_qemu("direct", "--kernel", self.kernel, "--initrd", self.initrd, "--check",
                               "--disk", disk, "--net")
        self.assertEqual(argv[argv.index("-append") + 1],
                         "console=ttyAMA0 earlycon=pl011,0x9000000  hyp.check=1 hyp.smp=2 hyp.disk=1 hyp.net=1")
        self.assertEqual(argv[argv.index("-drive"):argv.index("-chardev")], [
            "-drive", "if=none,id=disk0,file=%s,format=raw,cache=%s" % (disk.replace(",", ",,"),
                                                                       self.cache_mode(disk)),
            "-device", "virtio-blk-pci,drive=disk0,romfile=",
            "-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0,romfile="])
        # No SMMU without the hypervisor: the baseline guest drives the devices itself.
        self.assertEqual(argv[argv.index("-machine") + 1], "virt,virtualization=on,gic-version=3")
        self.assertNotIn("-global", argv)

    def test_linux_mode_disk_and_net_add_the_smmu(self):
        disk = self.file("disk.img", 1 << 20)
        argv = self.print_qemu("linux", "--hypervisor", self.hyp, "--kernel", self.kernel, "--initrd",
                               self.initrd, "--net", "--disk", disk)
        self.assertEqual(argv[argv.index("-machine") + 1], "virt,virtualization=on,gic-version=3,iommu=smmuv3")
        self.assertEqual(argv[argv.index("-global") + 1], "arm-smmuv3.stage=2")
        self.assertIn("-device", argv[argv.index("-drive"):])
        # iommu_platform=on: otherwise QEMU's virtio devices DMA past the SMMU.
        self.assertIn("virtio-blk-pci,drive=disk0,romfile=,disable-legacy=on,iommu_platform=on", argv)
        self.assertIn("virtio-net-pci,netdev=net0,romfile=,disable-legacy=on,iommu_platform=on", argv)
        self.assertTrue(argv[argv.index("-device") + 1].endswith("hyp.disk=1 hyp.net=1"))
        # --net alone: the NIC, still behind the SMMU, and no disk.
        argv = self.print_qemu("linux", "--hypervisor", self.hyp, "--kernel", self.kernel, "--initrd",
                               self.initrd, "--net")
        self.assertIn("arm-smmuv3.stage=2", argv)
        self.assertNotIn("-drive", argv)
        # Neither: the machine as before.
        argv = self.print_qemu("linux", "--hypervisor", self.hyp, "--kernel", self.kernel, "--initrd", self.initrd)
        self.assertEqual(argv[argv.index("-machine") + 1], "virt,virtualization=on,gic-version=3")
        self.assertNotIn("-global", argv)

    def test_disk_takes_a_file_only_when_one_follows(self):
        # A mode or an option after --disk is not its FILE (the second --disk names the file,
        # so no default image is built): "direct" stays the mode (else linux mode would want a
        # hypervisor, missing under this CARGO_TARGET_DIR), "--net" stays an option.
        disk = self.file("disk.img", 1 << 20)
        argv = self.print_qemu("--disk", "direct", "--disk", "--net", "--disk", disk, "--kernel", self.kernel,
                               "--initrd", self.initrd, env={"CARGO_TARGET_DIR": self.tmp.name})
        self.assertEqual(argv[argv.index("-kernel") + 1], self.kernel)
        self.assertIn("virtio-net-pci,netdev=net0,romfile=", argv)
        self.assertEqual(argv.count("-drive"), 1)
        missing = os.path.join(self.tmp.name, "missing.img")
        result = self.run_sh("direct", "--kernel", self.kernel, "--initrd", self.initrd, "--disk", missing,
                             "--print-qemu", "--skip-setup")
        self.assertEqual(result.returncode, 2)
        self.assertEqual(result.stdout, "")
        self.assertIn("disk image '%s' not found" % missing, result.stderr)

    def test_disk_and_net_are_refused_where_no_guest_can_use_them(self):
        for mode, option, message in (
            ("none", "--disk", "--disk is for the linux, direct and selftest modes"),
            ("selftest", "--net", "--net is for the linux and direct modes"),
        ):
            with self.subTest(mode=mode):
                result = self.run_sh(mode, option, "--print-qemu", "--skip-setup", "--hypervisor", self.hyp)
                self.assertEqual(result.returncode, 2)
                self.assertIn(message, result.stderr)

    def test_environment_variable_skips_setup(self):
        result = self.run_sh("none", "--print-qemu", "--hypervisor", self.hyp, "--log", self.log,
                             env={"HYP_SKIP_SETUP": "1"})
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertNotIn("setup:", result.stderr)
        self.assertEqual(parse_print_qemu(result.stdout)[-len(self.console()) - 2:][:2], ["-kernel", self.hyp])
        bad = self.run_sh("none", "--print-qemu", env={"HYP_SKIP_SETUP": "yes"})
        self.assertEqual(bad.returncode, 2)
        self.assertIn("HYP_SKIP_SETUP wants 0 or 1", bad.stderr)

    def test_a_missing_binary_is_named(self):
        missing = os.path.join(self.tmp.name, "no-such.bin")
        result = self.run_sh("none", "--print-qemu", "--skip-setup", "--hypervisor", missing)
        self.assertEqual(result.returncode, 2)
        self.assertEqual(result.stdout, "")
        self.assertIn(missing, result.stderr)
        self.assertIn("setup and builds were skipped", result.stderr)
        # The default image under an empty target directory: named with what builds it.
        result = self.run_sh("selftest", "--print-qemu", "--skip-setup", env={"CARGO_TARGET_DIR": self.tmp.name})
        self.assertEqual(result.returncode, 2)
        self.assertIn(os.path.join(self.tmp.name, "hypervisor.bin") + " not found; scripts/build.sh", result.stderr)

    def test_qemu_command_asks_run_sh(self):
        argv = common.qemu_command("none", "--hypervisor", self.hyp, "--mem", "1G", "--append", TRICKY)
        self.assertEqual(argv[0], "qemu-system-aarch64")
        self.assertEqual(argv[argv.index("-append") + 1], TRICKY)
        self.assertIn("stdio,id=console,mux=on,signal=off,logfile=" + os.devnull, argv)
        with self.assertRaises(BenchError) as caught:
            common.qemu_command("none", "--smp", "zero")
        self.assertIn("--smp wants a positive number", str(caught.exception))


def parse_dts(text):
    """dtc's DTS output as {node path: {property: value}}, the paths in the order of the
    text; a value is a list of strings, a list of cells, or True for an empty property."""
    nodes, stack = {}, []
    for line in text.splitlines():
        line = line.strip()
        opened = re.fullmatch(r"(?:[\w-]+: )?([^\s{}=;]+) \{", line)
        if opened:
            name = opened.group(1)
            stack.append("" if name == "/" else name)
            nodes["/".join(stack) or "/"] = {}
        elif line == "};":
            stack.pop()
        else:
            prop = re.fullmatch(r"([^\s=;]+)(?: = (.*))?;", line)
            if prop and stack:
                name, value = prop.groups()
                if value is None:
                    value = True
                elif value.startswith("<"):
                    value = [int(cell, 0) for cell in value.strip("<>").split()]
                elif value.startswith('"'):
                    # "a", "b" or, from a binary blob, "a\0b".
                    value = [part for quoted in re.findall(r'"((?:[^"\\]|\\.)*)"', value)
                             for part in quoted.split("\\0")]
                nodes["/".join(stack) or "/"][name] = value
    return nodes


def cells64(*values):
    """64-bit values as pairs of 32-bit cells, as in a reg or memory property."""
    return [cell for value in values for cell in (value >> 32, value & 0xFFFFFFFF)]


MIB = 1 << 20


@unittest.skipUnless(all(map(shutil.which, ("qemu-system-aarch64", "fdtput", "dtc"))),
                     "run.sh --guests wants qemu-system-aarch64 and fdtput, these tests dtc")
class RunShGuests(RunShCase):
    """run.sh --guests N: the QEMU command line, and the dom0less DTB it writes to
    $CARGO_TARGET_DIR/guests-<hash>.dtb (here the temporary directory)."""

    def guests(self, *args):
        """(argv, {path: props} of guests.dtb, the DTS text) of run.sh --print-qemu with args."""
        argv = self.print_qemu("--hypervisor", self.hyp, *args, env={"CARGO_TARGET_DIR": self.tmp.name})
        dtb = argv[argv.index("-dtb") + 1]
        self.assertRegex(dtb, "^" + re.escape(os.path.join(self.tmp.name, "guests-")) + "[0-9a-f]{16}[.]dtb$")
        dts = subprocess.run(["dtc", "-I", "dtb", "-O", "dts", dtb], capture_output=True, text=True)
        self.assertEqual(dts.returncode, 0, dts.stderr)
        return argv, parse_dts(dts.stdout), dts.stdout

    def loaders(self, argv):
        """[(file, address)] of the -device loader arguments, in order."""
        found = []
        for i, arg in enumerate(argv[:-1]):
            if arg == "-device" and argv[i + 1].startswith("loader,"):
                m = re.fullmatch(r"loader,file=(.*),addr=(0x[0-9a-f]+),force-raw=on", argv[i + 1])
                self.assertIsNotNone(m, argv[i + 1])
                found.append((m.group(1).replace(",,", ","), int(m.group(2), 16)))
        self.assertFalse([a for a in argv if a.startswith("guest-loader")], "guest-loader would write its own modules")
        return found

    def check_guest(self, nodes, index, kernel, initrd, kernel_addr, initrd_addr, mem_mib, cpus, bootargs):
        node = "/chosen/domU%d" % index
        props = nodes[node]
        self.assertEqual(props["compatible"], ["xen,domain"])
        self.assertEqual(props["#address-cells"], [2])
        self.assertEqual(props["#size-cells"], [2])
        self.assertEqual(props["memory"], cells64(mem_mib * 1024), "%s: memory in KiB, two cells" % node)
        self.assertEqual(props["cpus"], [cpus])
        self.assertIs(props["vpl011"], True)
        modules = [path for path in nodes if path.startswith(node + "/")]
        self.assertEqual(modules, ["%s/module@%x" % (node, kernel_addr), "%s/module@%x" % (node, initrd_addr)])
        self.assertEqual(nodes[modules[0]], {
            "compatible": ["multiboot,kernel", "multiboot,module"],
            "reg": cells64(kernel_addr, os.path.getsize(kernel)),
            "bootargs": [bootargs]})
        self.assertEqual(nodes[modules[1]], {
            "compatible": ["multiboot,ramdisk", "multiboot,module"],
            "reg": cells64(initrd_addr, os.path.getsize(initrd))})

    def test_modules_loaded_and_described(self):
        kernel = self.file("Image-odd", 3 * MIB + 5)
        initrd = self.file("initrd-odd", MIB + 3)
        argv, nodes, dts = self.guests("--guests", "3", "--smp", "5", "--kernel", kernel, "--initrd", initrd,
                                       "--check", "--append", "loglevel=debug")
        # --mem defaults to (N+1)G; the hypervisor keeps -kernel and -append.
        self.assertEqual(argv[argv.index("-m") + 1], "4G")
        self.assertEqual(argv[argv.index("-kernel") + 1], self.hyp)
        self.assertEqual(argv[argv.index("-append") + 1], "loglevel=debug")
        loaded = self.loaders(argv)
        self.assertEqual([f for f, _ in loaded], [kernel, initrd] * 3)
        self.assertEqual(loaded[0][1], 0x50000000)
        end = 0
        for path, addr in loaded:
            self.assertEqual(addr % (2 * MIB), 0, "%#x is not 2 MiB aligned" % addr)
            self.assertGreaterEqual(addr, end, "modules overlap at %#x" % addr)
            end = addr + os.path.getsize(path)
        self.assertLessEqual(end, 0x40000000 + (4 << 30))
        # The guests in DT order (the hypervisor numbers them so), nothing else under /chosen.
        self.assertEqual([n for n in nodes if n.startswith("/chosen/") and n.count("/") == 2],
                         ["/chosen/domU1", "/chosen/domU2", "/chosen/domU3"])
        self.assertLess(dts.index("domU1 {"), dts.index("domU2 {"))
        # (4G - 1G) / 3 is 1G each; 5 CPUs split 2, 2, 1.
        for index, cpus in ((1, 2), (2, 2), (3, 1)):
            k, r = loaded[2 * index - 2][1], loaded[2 * index - 1][1]
            self.check_guest(nodes, index, kernel, initrd, k, r, 1024, cpus,
                             "console=ttyAMA0 earlycon=pl011,0x9000000  hyp.check=1 hyp.smp=%d" % cpus)

    def test_per_guest_options_land_on_their_guest(self):
        kernel2 = self.file("Image,2", 5 * MIB)
        initrd2 = self.file("initrd 2", 2 * MIB)
        # --guests after the sections, --smp inside one: neither is any guest's.
        argv, nodes, _ = self.guests(
            "--kernel", self.kernel, "--initrd", self.initrd, "--guest-append", "all", "--mem", "5G", "--check",
            "--guest", "2", "--kernel", kernel2, "--initrd", initrd2, "--guest-append", "hyp.isolation=1 a,b",
            "--guest-mem", "512M", "--guest-cpus", "2",
            "--guest", "3", "--guest-cmdline", "console=ttyAMA0 quiet", "--smp", "4",
            "--guests", "3")
        loaded = self.loaders(argv)
        self.assertEqual([f for f, _ in loaded], [self.kernel, self.initrd, kernel2, initrd2, self.kernel, self.initrd])
        self.assertIn("loader,file=%s,addr=0x%x,force-raw=on" % (kernel2.replace(",", ",,"), loaded[2][1]), argv)
        self.assertEqual(argv[argv.index("-smp") + 1], "4")
        # (5G - 1G) / 3 rounded down to 256M is 1280M; guest 2 takes 2 of the 4 CPUs, the
        # other two split what is left.
        self.check_guest(nodes, 1, self.kernel, self.initrd, loaded[0][1], loaded[1][1], 1280, 1,
                         "console=ttyAMA0 earlycon=pl011,0x9000000 all hyp.check=1 hyp.smp=1")
        self.check_guest(nodes, 2, kernel2, initrd2, loaded[2][1], loaded[3][1], 512, 2,
                         "console=ttyAMA0 earlycon=pl011,0x9000000 hyp.isolation=1 a,b hyp.check=1 hyp.smp=2")
        self.check_guest(nodes, 3, self.kernel, self.initrd, loaded[4][1], loaded[5][1], 1280, 1,
                         "console=ttyAMA0 quiet all hyp.check=1 hyp.smp=1")

    def test_memory_defaults(self):
        for args, mem, mem_mib in ((("--guests", "1"), "2G", 1024),
                                   (("--guests", "3", "--smp", "3", "--mem", "3G"), "3G", 512),
                                   (("--guests", "2", "--mem", "1G"), "1G", 256),
                                   (("--guests", "2", "--mem", "20G"), "20G", 9728)):
            with self.subTest(args=args):
                argv, nodes, _ = self.guests("--kernel", self.kernel, "--initrd", self.initrd, *args)
                self.assertEqual(argv[argv.index("-m") + 1], mem)
                guests = int(args[1])
                self.assertEqual([nodes["/chosen/domU%d" % i]["memory"] for i in range(1, guests + 1)],
                                 [cells64(mem_mib * 1024)] * guests)
        # Above 16G the dump and the run both use the non-reserving backend.
        self.assertIn("memory-backend-ram,id=ram,size=20G,reserve=off", argv)

    def test_qemu_keeps_the_guests_in_chosen(self):
        """QEMU rewrites /memory of a -dtb blob and sets /chosen/bootargs from -append, and
        leaves the guests alone: dumpdtb= on the printed command line shows what the
        hypervisor gets."""
        argv, nodes, _ = self.guests("--guests", "2", "--kernel", self.kernel, "--initrd", self.initrd,
                                     "--mem", "3G", "--append", "loglevel=debug")
        final = os.path.join(self.tmp.name, "final.dtb")
        argv[argv.index("-machine") + 1] += ",dumpdtb=" + final
        run = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
        self.assertEqual(run.returncode, 0, run.stderr)
        dts = subprocess.run(["dtc", "-I", "dtb", "-O", "dts", final], capture_output=True, text=True)
        seen = parse_dts(dts.stdout)
        for path in nodes:
            if path.startswith("/chosen/"):
                self.assertEqual(seen[path], nodes[path], path)
        self.assertEqual(seen["/chosen"]["bootargs"], ["loglevel=debug"])
        self.assertEqual(seen["/memory@40000000"]["reg"], cells64(0x40000000, 3 << 30))

    def test_usage_errors(self):
        big = os.path.join(self.tmp.name, "big")
        with open(big, "wb") as f:
            f.truncate(1800 * MIB)  # sparse
        empty = self.file("empty", 0)
        files = ["--kernel", self.kernel, "--initrd", self.initrd]
        for args, message in (
            (["--guests", "0"], "--guests wants a number of guests from 1, not '0'"),
            (["--guests", "two"], "--guests wants a number of guests from 1"),
            (["selftest", "--guests", "2"], "--guests is for the linux mode"),
            (["none", "--guests", "2"], "--guests is for the linux mode"),
            (["--guests", "2", "--disk", self.initrd], "--disk does not work with --guests"),
            (["--guests", "2", "--net"], "--net does not work with --guests"),
            (["--guests", "2", "--probe-devices"], "--probe-devices does not work with --guests"),
            (["--guests", "2", "--guest", "3"], "--guest 3: there are guests 1 to 2 only"),
            (["--guest", "3", "--guests", "2"], "--guest 3: there are guests 1 to 2 only"),
            (["--guests", "2", "--guest", "0"], "--guest wants a guest number from 1 to N"),
            (["--guest", "1"], "--guest 1 is for several guests: give --guests N too"),
            (["--guests", "2", "--guest-mem", "512M"], "--guest-mem is one guest's: put it after --guest I"),
            (["--guest-cpus", "1", "--guests", "2", "--guest", "1"], "--guest-cpus is one guest's"),
            (["--guests", "2", "--guest", "1", "--guest-mem", "512"], "--guest-mem (guest 1) wants a size"),
            (["--guests", "2", "--guest", "2", "--guest-cpus", "0"], "--guest-cpus (guest 2) wants a positive number"),
            (["--guests", "3", "--smp", "2"], "--smp 2 leaves 2 CPU(s) to the 3 guest(s) without --guest-cpus"),
            (["--guests", "2", "--smp", "3", "--guest", "1", "--guest-cpus", "4"],
             "the guests' --guest-cpus add up to 4 vCPUs, more than --smp 3"),
            (["--guests", "2", "--mem", "2G", "--guest", "1", "--guest-mem", "1280M"],
             "the guests' RAM adds up to 1792M, which leaves less than 512M of --mem 2G"),
            (["--guests", "1", "--guest", "1", "--kernel", big], "the guests' modules do not fit in --mem 2G: guest 1's kernel"),
            (["--guests", "2", "--guest", "2", "--initrd", empty], "guest 2's initrd '%s' is empty" % empty),
            (["--guests", "2", "--guest", "2", "--kernel", empty + ".missing"], "guest 2's kernel '%s.missing' not found" % empty),
        ):
            with self.subTest(args=args):
                result = self.run_sh(*(["--print-qemu", "--skip-setup", "--hypervisor", self.hyp] + files + args),
                                     env={"CARGO_TARGET_DIR": self.tmp.name})
                self.assertEqual(result.returncode, 2, result.stderr)
                self.assertEqual(result.stdout, "")
                self.assertIn("run.sh: " + message, result.stderr)
        result = self.run_sh("direct", "--guests", "2", "--print-qemu", "--skip-setup", *files)
        self.assertEqual(result.returncode, 2)
        self.assertIn("--guests is for the linux mode", result.stderr)

    def fake_qemu_run(self, console, *args):
        """run.sh --check with a qemu-system-aarch64 that dumps DTBs for real but 'runs' the
        machine by printing `console` to the log."""
        bin_dir = os.path.join(self.tmp.name, "bin")
        os.makedirs(bin_dir, exist_ok=True)
        fake = os.path.join(bin_dir, "qemu-system-aarch64")
        with open(fake, "w") as f:
            f.write('#!/bin/sh\n'
                    'case "$*" in *dumpdtb=*) exec "$REAL_QEMU" "$@" ;; esac\n'
                    'for a; do case "$a" in *logfile=*) log=${a##*logfile=} ;; esac; done\n'
                    'tee "$log" <"$FAKE_CONSOLE"\n')
        os.chmod(fake, 0o755)
        text = os.path.join(self.tmp.name, "console.txt")
        with open(text, "w", newline="") as f:
            f.write("".join(line + "\r\n" for line in console))
        return self.run_sh("--check", "--skip-setup", "--log", self.log, "--hypervisor", self.hyp,
                           "--kernel", self.kernel, "--initrd", self.initrd, *args,
                           env={"CARGO_TARGET_DIR": self.tmp.name, "REAL_QEMU": shutil.which("qemu-system-aarch64"),
                                "FAKE_CONSOLE": text, "PATH": bin_dir + os.pathsep + os.environ["PATH"]})

    GIB = 1 << 30
    TWO_GUESTS = ["hyp-facts: guest=1 name=domU1 guest_ram_bytes=%d guest_vcpus=1 guest_entry=0x40200000" % GIB,
                  "hyp-facts: guest=2 name=domU2 guest_ram_bytes=%d guest_vcpus=1" % GIB,
                  "(g2) guest-check: memtotal_kb=990000",
                  "(g1) guest-check: memtotal_kb=1000000",
                  "(g1) guest-check: fail",
                  "(g1) guest-check: pass",
                  "(g2) guest-check: pass"]

    def test_check_judges_every_guest(self):
        result = self.fake_qemu_run(self.TWO_GUESTS + ["hyp-exit: success"], "--guests", "2")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("run.sh: guest 1 (domU1): checks passed; MemTotal 1000000 kB of %d bytes given" % self.GIB,
                      result.stderr)
        self.assertIn("run.sh: guest 2 (domU2): checks passed; MemTotal 990000 kB of %d bytes given" % self.GIB,
                      result.stderr)
        for console, guest, why in (
            (self.TWO_GUESTS[:-1], 2, "the guest checks did not pass (no verdict)"),
            (self.TWO_GUESTS + ["(g2) guest-check: fail"], 2, "the guest checks did not pass (guest-check: fail)"),
            (self.TWO_GUESTS + ["(g1) guest-check: memtotal_kb=800000"], 1,
             "MemTotal 800000 kB does not match the %d bytes the hypervisor gave" % self.GIB),
            (self.TWO_GUESTS[1:], 1, "MemTotal 1000000 kB does not match the ? bytes the hypervisor gave"),
        ):
            with self.subTest(guest=guest, why=why):
                result = self.fake_qemu_run(console + ["hyp-exit: success"], "--guests", "2")
                self.assertEqual(result.returncode, 1, result.stderr)
                self.assertIn("run.sh: guest %d (domU%d): %s" % (guest, guest, why), result.stderr)
                self.assertIn("run.sh: the checks failed on guest(s) %d of 2" % guest, result.stderr)
        # The hypervisor's own outcome still decides first.
        result = self.fake_qemu_run(self.TWO_GUESTS + ["hyp-exit: failure (guest 2 aborted)"], "--guests", "2")
        self.assertEqual(result.returncode, 1)
        self.assertIn("run.sh: hyp-exit: failure (guest 2 aborted)", result.stderr)
        self.assertNotIn("checks passed", result.stderr)

    def test_check_single_guest_as_before(self):
        result = self.fake_qemu_run(["hyp-facts: guest_ram_bytes=%d guest_vcpus=2" % self.GIB,
                                     "(g1) guest-check: memtotal_kb=1000000", "(g1) guest-check: pass",
                                     "hyp-exit: success"])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("run.sh: guest checks passed; MemTotal 1000000 kB of %d bytes given" % self.GIB, result.stderr)


if __name__ == "__main__":
    unittest.main()
