"""Tests of the minimal-cover arithmetic the report compares the maps against:
    python3 -m unittest discover -s scripts -p 'test_*.py'"""
import collections
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import minimal  # noqa: E402

GIB = 1 << 30
Run = collections.namedtuple("Run", "va end pa attrs")


def runs(*ranges):
    return [Run(start, end, start, "rw-") for start, end in ranges]


class StartLevel(unittest.TestCase):
    def test_matches_the_engines_concatenation_rule(self):
        # Level 2 up to 34 bits (16 tables), level 1 up to 43, else level 0.
        self.assertEqual([minimal.stage2_start_level(b) for b in (32, 34, 35, 39, 40, 43, 44, 48)],
                         [2, 2, 1, 1, 1, 1, 0, 0])


class MinimalCover(unittest.TestCase):
    def test_one_gib_block_needs_a_level_1_table_only_below_a_level_0_root(self):
        ranges = runs((GIB, 2 * GIB))
        self.assertEqual(minimal.minimal_cover(ranges, 0).descriptors, 2)
        self.assertEqual(minimal.minimal_cover(ranges, 1).descriptors, 1)

    def test_a_page_under_a_level_1_root_needs_two_tables(self):
        ranges = runs((GIB, GIB + 4096))
        shape = minimal.minimal_cover(ranges, 1)
        self.assertEqual((shape.leaves, shape.tables), (1, 2))


if __name__ == "__main__":
    unittest.main()
