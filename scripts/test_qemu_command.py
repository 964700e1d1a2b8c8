"""Tests of the QEMU command lines the benchmarks take from scripts/run.sh --print-qemu:
the parser (benchlib.common.parse_print_qemu), and run.sh itself with setup and builds
skipped on stand-in files (needs qemu-system-aarch64 on PATH, which run.sh checks for):
    python3 -m unittest discover -s scripts -p 'test_*.py'"""
import os
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


@unittest.skipUnless(shutil.which("qemu-system-aarch64"), "run.sh wants qemu-system-aarch64 on PATH")
class RunShPrintQemu(unittest.TestCase):
    """run.sh --print-qemu --skip-setup on stand-in files: the exact argv, nothing built,
    nothing else on standard output, no log touched."""

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


if __name__ == "__main__":
    unittest.main()
