"""Tests of the parser that turns the engine comparison (examples/compare.rs) into the
report's table: python3 -m unittest discover -s scripts -p 'test_*.py'"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import sections  # noqa: E402

SAMPLE = """\
9 repetitions each; time = median µs (max - min); pools pre-touched; trees not live
workload                                ours µs  aarch64-paging µs   ratio our pages its pages    written    minimal  w/min
map 1 GiB blocks                 0.130 (  2.194)     0.100 (  0.471)   1.30         2         2          2          2   1.00
map 16 GiB 4K pages           3769.509 (797.655) 12415.952 (3527.409)   0.30      8210      8210    4202513    4202513   1.00
10k page RO on 64 GiB         7934.325 (5232.252) 16064.030 (3605.405)   0.49      8739      8739    4531895          -      -
  same, ours live             7719.726 (1859.824)                   -      - (live tree, FEAT_BBM level 2, host barriers are no-ops)
floor: zeroing one 4 KiB table page 36.2 ns, one Instant pair 49.4 ns; every map row holds at least one
"""


class EngineOutput(unittest.TestCase):
    def rows(self):
        return [m for m in map(sections.ENGINE_ROW.match, SAMPLE.splitlines()[2:]) if m]

    def test_every_workload_row_parses_with_its_columns(self):
        rows = self.rows()
        self.assertEqual([r["name"].strip() for r in rows],
                         ["map 1 GiB blocks", "map 16 GiB 4K pages", "10k page RO on 64 GiB"])
        self.assertEqual((rows[0]["o"], rows[0]["t"], rows[0]["ratio"]), ("0.130", "0.100", "1.30"))
        self.assertEqual((rows[1]["op"], rows[1]["tp"], rows[1]["w"]), ("8210", "8210", "4202513"))
        self.assertEqual((rows[2]["min"], rows[2]["wm"]), ("-", "-"))

    def test_live_row_and_floor_parse(self):
        live = [m for m in map(sections.ENGINE_LIVE.match, SAMPLE.splitlines()) if m]
        self.assertEqual(len(live), 1)
        self.assertEqual(live[0]["o"], "7719.726")
        floor = sections.ENGINE_FLOOR.search(SAMPLE)
        self.assertEqual((floor["zero"], floor["timer"]), ("36.2", "49.4"))


if __name__ == "__main__":
    unittest.main()
