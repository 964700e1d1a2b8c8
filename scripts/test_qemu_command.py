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
