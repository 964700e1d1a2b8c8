"""Tests of the boot-phase parsing in benchlib/phases.py (no QEMU needed):
    python3 -m unittest discover -s scripts -p 'test_*.py'"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import phases  # noqa: E402


class Milestones(unittest.TestCase):
    def test_first_occurrence_of_each_marker(self):
        lines = [
            (0.10, "[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x000f0510]"),
            (0.12, "[    0.000000] Kernel command line: console=ttyAMA0 earlycon"),
            (0.20, "[    0.000000] SLUB: HWalign=64, Order=0-3, MinObjects=0, CPUs=2, Nodes=1"),
            (0.70, "[    0.000000] ftrace: allocating 43847 entries in 172 pages"),
            (0.71, "[    0.000000] ftrace: allocating again, not a new milestone"),
            (2.90, "guest-check: pass"),
        ]
        marks = phases.milestones(lines)
        self.assertEqual(marks["kernel entered"], 0.10)
        self.assertEqual(marks["ftrace set up"], 0.70)
        self.assertEqual(marks["checks passed"], 2.90)
        self.assertNotIn("userspace", marks)

    def test_hypervisor_lines_are_not_milestones(self):
        lines = [(0.05, "[    0.017] INFO  guest: bootargs \"console=ttyAMA0 earlycon hyp.check=1\"")]
        self.assertEqual(phases.milestones(lines), {})


class Namer(unittest.TestCase):
    def test_names_the_enclosing_symbol_and_refuses_outside_text(self):
        name = phases._namer([(0x1000, "a"), (0x1100, "b"), (0x1200, "c")])
        self.assertEqual(name(0x1000), "a")
        self.assertEqual(name(0x10ff), "a")
        self.assertEqual(name(0x1104), "b")
        self.assertEqual(name(0x0fff), "(not guest kernel text)")
        # Past the last symbol nothing says where the text ends.
        self.assertEqual(name(0x1204), "(not guest kernel text)")


if __name__ == "__main__":
    unittest.main()
