"""Tests of the guest-line, hyp-exits and timerlat parsing and of the exits and latency
tables in benchlib (no QEMU needed): python3 -m unittest discover -s scripts -p 'test_*.py'"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import common, sections  # noqa: E402
from benchlib.common import BenchError, QemuResult  # noqa: E402

EXITS = ("hyp-exits: hvc=12 smc=0 sysreg=528 data_abort=0 instruction_abort=0 mmio=44467 irq=2574 wfi=0 "
         "other=0 tlb_conflict=0 el2_us=1931694 kicks=528 sgis=528 unexpected_irqs=0 refused_mmio=0")

HYP_CONSOLE = """\
[    0.014269] INFO  module: kernel [0x50000000, 0x521387c0), bootargs "console=ttyAMA0 hyp.check=1"
guest-devices: guest=1 emulated=gicv3@0x8000000,pl011@0x9000000 passthrough=none refused=none
(g1) [    0.000000] Booting Linux on physical CPU 0x0000000000 [0x000f0510]
(g1) guest: userspace reached on 6.12.95+deb12-cloud-arm64, 2 CPU(s)
(g1) guest-check: nproc=2 ok
(g1) guest-check: memtotal_kb=2010164
(g1) guest-check: kernel log clean ok
(g1) guest-check: pass
(g1) hyp-exits: hvc=1 smc=1 sysreg=1 data_abort=1 instruction_abort=1 mmio=1 irq=1 wfi=1 other=1 el2_us=1
%s
vgic-stats: guest=1 sgis_delivered=528 console_dropped_bytes=0
hyp-exit: success
""" % EXITS

DIRECT_CONSOLE = """\
[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x000f0510]
guest: userspace reached on 6.12.95+deb12-cloud-arm64, 2 CPU(s)
guest-check: memtotal_kb=2016308
guest-check: pass
"""


def result(console, wall=10.0, timed_out=False):
    return QemuResult([], wall, 100.0, console, 0, timed_out, [], None)


def exits_console(scale, el2_us, lines=()):
    """A hyp console whose hyp-exits counts are EXITS' times `scale`, with `el2_us`."""
    counts = common.kv_ints(EXITS)
    counts = {k: v * scale for k, v in counts.items()}
    counts["el2_us"] = el2_us
    line = "hyp-exits: " + " ".join("%s=%d" % kv for kv in counts.items())
    return "\n".join(list(lines) + [line, "hyp-exit: success", ""])


class GuestLines(unittest.TestCase):
    def test_tagged_lines_are_the_guests_without_their_tag(self):
        lines = common.guest_lines(HYP_CONSOLE, True)
        self.assertEqual(lines[0], "[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x000f0510]")
        self.assertIn("guest-check: pass", lines)
        self.assertFalse([l for l in lines if l.startswith(("guest-devices:", "vgic-stats:", "hyp-exit:"))])

    def test_another_guests_lines_are_not_guest_1s(self):
        console = "(g2) guest-check: pass\n(g12) guest-check: pass\nguest-check: pass\n"
        self.assertFalse(common.guest_checks_passed(console, True))
        self.assertEqual(common.guest_lines(console, True, guest=2), ["guest-check: pass"])

    def test_a_direct_console_is_all_the_guests(self):
        self.assertEqual(common.guest_lines(DIRECT_CONSOLE, False), DIRECT_CONSOLE.splitlines())
        self.assertTrue(common.guest_checks_passed(DIRECT_CONSOLE, False))

    def test_memtotal_from_the_guests_line(self):
        self.assertEqual(common.guest_memtotal_kb(HYP_CONSOLE, True), 2010164)
        self.assertEqual(common.guest_memtotal_kb(DIRECT_CONSOLE, False), 2016308)
        # An untagged line under the hypervisor is not the guest's.
        self.assertIsNone(common.guest_memtotal_kb("guest-check: memtotal_kb=5\n", True))


class HypExits(unittest.TestCase):
    def test_the_hypervisors_line_not_a_guest_line_that_imitates_it(self):
        counts = common.hyp_exits(HYP_CONSOLE)
        self.assertEqual((counts["mmio"], counts["irq"], counts["sysreg"], counts["el2_us"]),
                         (44467, 2574, 528, 1931694))
        self.assertEqual(sections.total_exits(counts), 12 + 528 + 44467 + 2574)

    def test_missing_line_or_reason_is_an_error(self):
        with self.assertRaises(BenchError):
            common.hyp_exits(DIRECT_CONSOLE)
        with self.assertRaises(BenchError):
            common.hyp_exits("hyp-exits: hvc=1 smc=0\n")


class Timerlat(unittest.TestCase):
    LINE = "guest-timerlat: samples=2000 min_us=207 median_us=262 p99_us=346 max_us=515"

    def test_tagged_and_direct_lines_parse(self):
        hyp = common.guest_timerlat("guest-devices: x\n(g1) %s\nhyp-exit: success\n" % self.LINE, True)
        self.assertEqual((hyp["samples"], hyp["median_us"], hyp["p99_us"]), (2000, 262, 346))
        self.assertEqual(common.guest_timerlat(self.LINE + "\n", False)["max_us"], 515)

    def test_an_untagged_line_under_the_hypervisor_or_a_failure_is_an_error(self):
        with self.assertRaises(BenchError):
            common.guest_timerlat(self.LINE + "\n", True)
        with self.assertRaises(BenchError):
            common.guest_timerlat("(g1) guest-timerlat: fail (exit 2)\n", True)

    def test_check_latency_wants_every_sample_and_the_hypervisors_success(self):
        ok = "(g1) %s\nhyp-exit: success\n" % self.LINE
        self.assertEqual(sections.check_latency("hyp", result(ok))["min_us"], 207)
        with self.assertRaises(BenchError):
            sections.check_latency("hyp", result("(g1) %s\n" % self.LINE))
        with self.assertRaises(BenchError):
            sections.check_latency("direct", result(self.LINE.replace("2000", "1999") + "\n"))


class BootChecks(unittest.TestCase):
    def test_checks_count_only_from_the_guests_lines(self):
        sections.check_boot("hyp", result(HYP_CONSOLE))
        sections.check_boot("direct", result(DIRECT_CONSOLE))
        untagged = HYP_CONSOLE.replace("(g1) guest-check: pass", "guest-check: pass")
        with self.assertRaises(BenchError):
            sections.check_boot("hyp", result(untagged))

    def test_idle_boot_wants_its_end_line(self):
        sections.check_idle(10, result(exits_console(1, 5, ["(g1) guest-idle: begin 10 s", "(g1) guest-idle: end"])))
        with self.assertRaises(BenchError):
            sections.check_idle(10, result(exits_console(1, 5, ["(g1) guest-idle: begin 10 s"])))


class Arithmetic(unittest.TestCase):
    def test_idle_rate_is_the_difference_per_second_run_by_run(self):
        self.assertEqual(sections.per_idle_second([100, 200], [1100, 400], 10), [100.0, 20.0])

    def test_el2_share_is_of_wall_times_vcpus(self):
        self.assertAlmostEqual(sections.el2_percent(1_000_000, 10, 2), 5.0)


class Ctx:
    runs = 1

    def __init__(self):
        self.boot = {"direct": [result(DIRECT_CONSOLE, 8.0)], "hyp": [result(HYP_CONSOLE, 10.0)]}
        self.idle = {0: [result(exits_console(1, 1_000_000), 10.0)],
                     10: [result(exits_console(2, 1_200_000), 20.5)]}
        self.latency = {"direct": [{"samples": 2000, "min_us": 100, "median_us": 150, "p99_us": 300, "max_us": 900}],
                        "hyp": [{"samples": 2000, "min_us": 200, "median_us": 300, "p99_us": 330, "max_us": 450}]}


class Tables(unittest.TestCase):
    def row(self, text, label):
        rows = [l for l in text.splitlines() if l.startswith("| %s |" % label)]
        self.assertEqual(len(rows), 1, label)
        return [c.strip() for c in rows[0].strip("|").split("|")]

    def test_exits_table_per_boot_and_per_idle_second(self):
        text = sections.section_exits(Ctx())
        # MMIO: 44467 per boot, 4447 per s of a 10 s boot; idle 44467 -> 88934, +4446.7 per s.
        self.assertEqual(self.row(text, "MMIO (emulated GIC, PL011)"),
                         ["MMIO (emulated GIC, PL011)", "44467", "4447", "44467", "88934", "4446.7"])
        self.assertEqual(self.row(text, "EL2 time, ms")[1:], ["1932", "193", "1000", "1200", "20.0"])
        # 1.93 s of 10 s × 2 vCPUs; idle: 20 ms per s of 2 vCPUs.
        share = self.row(text, "EL2 time, % of wall × 2 vCPUs")
        self.assertEqual(share[1:], ["9.66", "–", "5.00", "2.93", "1.000"])
        self.assertIn("took 10.50 s longer", text)

    def test_boot_ratio_is_printed_against_its_limit(self):
        ctx = Ctx()
        self.assertIn("**1.25×** in this run", sections.boot_ratio_check(ctx))
        self.assertIn("within it", sections.boot_ratio_check(ctx))
        ctx.boot["hyp"] = [result(HYP_CONSOLE, 10.5)]
        self.assertIn("**above** it (+0.05)", sections.boot_ratio_check(ctx))

    def test_latency_table_side_by_side_with_ratios(self):
        text = sections.section_latency(Ctx())
        self.assertEqual(self.row(text, "Linux booted directly by QEMU (baseline)")[1:],
                         ["2000", "100", "150", "300", "900"])
        self.assertEqual(self.row(text, "Linux under the hypervisor")[1:], ["2000", "200", "300", "330", "450"])
        self.assertEqual(self.row(text, "under the hypervisor ÷ direct")[1:],
                         ["–", "2.00×", "2.00×", "1.10×", "0.50×"])


if __name__ == "__main__":
    unittest.main()
