"""Tests of scripts/benchlib/ptdump_svg.py and its command scripts/ptdump-svg.py on a
synthetic boot log.

    python3 -m unittest discover -s scripts -p 'test_*.py'     (from the repository)
    cd scripts && python3 -m unittest test_ptdump_svg
"""
import io
import os
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET
from contextlib import redirect_stderr

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from benchlib import ptdump_svg  # noqa: E402
from benchlib.common import BenchError, DumpShape, minimal_cover  # noqa: E402

SCRIPT = os.path.join(HERE, "ptdump-svg.py")

G, M = 1 << 30, 1 << 20

# A console log as QEMU writes it: CRLF, timestamps, another CPU's line in between, a
# first dump of el2 that a second boot in the same log replaces.
SYNTHETIC = "\r\n".join([
    "[    0.001] INFO  hypervisor 0.1.0 at EL2",
    "hyp-facts: memory index=0 base=0x40000000 size=0xc0000000",
    "ptdump: table=el2 va=0x40000000 end=0x40200000 pa=0x40000000 size=0x200000 level=2 leaves=1 cont=0 attrs=rw- normal",
    "map-stats: table=el2 table_pages=3 leaves_1g=0 leaves_2m=1 leaves_4k=0 descriptors=3 build_us=5",
    "[    0.002] INFO  second boot",
    "[    0.003] INFO  crash region: [0xbc000000, 0xc0000000) 64 MiB (unmapped)",
    # A device page run with the contiguous hint and one single page.
    "ptdump: table=el2 va=0x8000000 end=0x8010000 pa=0x8000000 size=0x10000 level=3 leaves=16 cont=1 attrs=rw- device",
    "[    0.004] INFO  a line from the other CPU",
    "ptdump: table=el2 va=0x9000000 end=0x9001000 pa=0x9000000 size=0x1000 level=3 leaves=1 cont=0 attrs=rw- device",
    # 2M block, then 4K pages for the image (r-x then rw-), then 2M+cont, then one 1G block.
    "ptdump: table=el2 va=0x40000000 end=0x40200000 pa=0x40000000 size=0x200000 level=2 leaves=1 cont=0 attrs=rw- normal",
    "[    0.005] ptdump: table=el2 va=0x40200000 end=0x40210000 pa=0x40200000 size=0x10000 level=3 leaves=16 cont=1 attrs=r-x normal",
    "ptdump: table=el2 va=0x40210000 end=0x40400000 pa=0x40210000 size=0x1f0000 level=3 leaves=496 cont=0 attrs=rw- normal",
    "ptdump: table=el2 va=0x40400000 end=0x42400000 pa=0x40400000 size=0x2000000 level=2 leaves=16 cont=1 attrs=rw- normal",
    "ptdump: table=el2 va=0x80000000 end=0xbc000000 pa=0x80000000 size=0x3c000000 level=2 leaves=480 cont=1 attrs=rw- normal",
    "ptdump: table=el2 va=0x100000000 end=0x300000000 pa=0x100000000 size=0x200000000 level=1 leaves=8 cont=0 attrs=rw- normal",
    "ptdump: table=el2 va=0x300000000 end=0x300001000 pa=0x300000000 size=0x1000 level=9 leaves=1 cont=0 attrs=rw- normal",
    "map-stats: table=el2 table_pages=7 leaves_1g=8 leaves_2m=498 leaves_4k=529 descriptors=1040 "
    "minimal_descriptors=1041 minimal_tlb_entries=89 tlbi=0 build_us=99",
    "ptdump: table=stage2 va=0x40000000 end=0x80000000 pa=0x40000000 size=0x40000000 level=1 leaves=1 cont=0 attrs=rwx normal",
    "map-stats: table=stage2 table_pages=2 leaves_1g=1 leaves_2m=0 leaves_4k=0 descriptors=2 build_us=1",
    "hyp-exit: success",
]) + "\r\n"


class ParseTest(unittest.TestCase):
    def setUp(self):
        self.log = ptdump_svg.parse_log(SYNTHETIC)

    def test_last_dump_wins_and_bad_lines_are_skipped(self):
        runs = self.log.dumps["el2"]
        self.assertEqual(len(runs), 8)
        self.assertEqual(runs[0].va, 0x8000000)
        self.assertEqual((runs[0].level, runs[0].leaves, runs[0].cont, runs[0].attrs), (3, 16, 1, "rw- device"))
        self.assertEqual(runs[-1].level, 1)
        self.assertTrue(any("level 9" in w for w in self.log.warnings))

    def test_map_stats_ram_and_crash(self):
        self.assertEqual(self.log.map_stats["el2"]["table_pages"], 7)
        self.assertEqual(self.log.map_stats["stage2"]["descriptors"], 2)
        self.assertEqual(self.log.ram, [(0x40000000, 0x100000000)])
        self.assertEqual(self.log.crash, (0xbc000000, 0xc0000000))

    def test_totals(self):
        counts = ptdump_svg.totals(self.log.dumps["el2"])
        self.assertEqual(counts[1], [8, 0])
        self.assertEqual(counts[2], [1 + 16 + 480, 16 + 480])
        self.assertEqual(counts[3], [16 + 1 + 16 + 496, 16 + 16])


class LayoutTest(unittest.TestCase):
    def setUp(self):
        self.log = ptdump_svg.parse_log(SYNTHETIC)
        self.rows, self.details, self.left_out = ptdump_svg.layout(self.log.dumps["el2"])

    def test_rows_gaps_and_folding(self):
        kinds = [(r[0], r[1]) for r in self.rows]
        # GiB 0 (devices), 1, 2, then GiBs 4..11 folded (8 identical 1G rows) after a 1 GiB gap.
        self.assertEqual(kinds, [("gib", 0), ("gib", 1), ("gib", 2), ("gap", 1), ("gib", 4)])
        self.assertEqual(self.rows[-1][2], 8)
        self.assertTrue(all(c[0] == ptdump_svg.C_1G for c in self.rows[-1][3]))

    def test_cell_categories(self):
        gib1 = self.rows[1][3]
        self.assertEqual(len(gib1), 512)
        self.assertEqual(gib1[0][0], ptdump_svg.C_2M)
        self.assertEqual(gib1[1][0], ptdump_svg.C_4K)  # 16 cont + 496 plain pages: mostly plain
        self.assertTrue(gib1[1][2], "r-x and rw- in one cell are mixed attributes")
        self.assertTrue(gib1[1][3])
        self.assertEqual(gib1[2][0], ptdump_svg.C_2MC)
        self.assertEqual(gib1[18][0], ptdump_svg.C_NONE)
        gib0 = self.rows[0][3]
        self.assertEqual(gib0[0x8000000 // (2 * M)][0], ptdump_svg.C_4K_PART)
        self.assertEqual(gib0[0x8000000 // (2 * M)][1], "rw- device")
        gib2 = self.rows[2][3]
        self.assertEqual(gib2[0][0], ptdump_svg.C_2MC)
        self.assertEqual(gib2[511][0], ptdump_svg.C_NONE)

    def test_cell_category_rules(self):
        cat = ptdump_svg.cell_category
        self.assertEqual(cat({}, 2 * M), ptdump_svg.C_NONE)
        self.assertEqual(cat({(3, 1): 2 * M}, 2 * M), ptdump_svg.C_4KC)
        self.assertEqual(cat({(3, 1): M, (3, 0): M}, 2 * M), ptdump_svg.C_4K)
        self.assertEqual(cat({(3, 1): M}, 2 * M), ptdump_svg.C_4K_PART)
        self.assertEqual(cat({(2, 0): 2 * M}, 2 * M), ptdump_svg.C_2M)
        self.assertEqual(cat({(1, 0): 2 * M}, 2 * M), ptdump_svg.C_1G)

    def test_detail_rows(self):
        bases = [d[1] for d in self.details]
        self.assertEqual(bases, [0x8000000, 0x9000000, 0x40200000])
        image = self.details[2][3]
        self.assertEqual(len(image), 512)
        self.assertEqual(image[0][0], ptdump_svg.C_4KC)
        self.assertEqual(image[0][1], "r-x normal")
        self.assertEqual(image[16][0], ptdump_svg.C_4K)
        self.assertEqual(self.left_out, 0)
        _, details, left_out = ptdump_svg.layout(self.log.dumps["el2"], max_detail=1)
        self.assertEqual((len(details), left_out), (1, 2))


class RenderTest(unittest.TestCase):
    def test_svg_is_well_formed_with_legend(self):
        log = ptdump_svg.parse_log(SYNTHETIC)
        svg = ptdump_svg.render_svg(log, "el2", "synthetic.log")
        root = ET.fromstring(svg.split("\n", 1)[1])
        self.assertTrue(root.tag.endswith("svg"))
        texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
        for label in ("1G block", "2M block", "2M + contiguous", "4K page", "4K + contiguous", "unmapped",
                      "rw- device", "r-x normal", "crash region", "x8 0x0100000000"):
            self.assertIn(label, texts)
        svg2 = ptdump_svg.render_svg(log, "stage2", "synthetic.log")
        self.assertIn("guest stage-2 map", svg2)

    def test_missing_table_is_an_error(self):
        log = ptdump_svg.parse_log(SYNTHETIC)
        with self.assertRaises(ptdump_svg.PtdumpError):
            ptdump_svg.render_svg(log, "nope")


class MinimalCoverTest(unittest.TestCase):
    """The minimal cover is the engine's count (pgtable::MinimalCover), read from the
    map-stats line; the leaves the dump shows are counted from the ptdump lines."""

    def test_minimal_fields_of_map_stats(self):
        log = ptdump_svg.parse_log(SYNTHETIC)
        self.assertEqual(minimal_cover(log.map_stats["el2"], "el2"), (1041, 89))
        self.assertEqual(log.map_stats["el2"]["descriptors"], 1040)
        self.assertEqual(log.map_stats["el2"]["build_us"], 99)

    def test_a_line_without_them_is_a_clear_error(self):
        log = ptdump_svg.parse_log(SYNTHETIC)
        with self.assertRaises(BenchError) as caught:
            minimal_cover(log.map_stats["stage2"], "stage2")
        self.assertIn("minimal_descriptors", str(caught.exception))
        self.assertIn("table=stage2", str(caught.exception))

    def test_dump_shape(self):
        ours = DumpShape(ptdump_svg.parse_log(SYNTHETIC).dumps["el2"])
        self.assertEqual(ours.by_level, {1: 8, 2: 1 + 16 + 480, 3: 16 + 1 + 16 + 496})
        self.assertEqual(ours.leaves, 1034)
        self.assertEqual(ours.contiguous, 16 + 16 + 16 + 480)
        # 1034 leaves, 528 of them in 33 groups of 16.
        self.assertEqual(ours.tlb_entries, 1034 - 528 + 33)


class CommandLineTest(unittest.TestCase):
    def run_script(self, *args, stdin=None):
        return subprocess.run([sys.executable, SCRIPT] + list(args), input=stdin, capture_output=True, text=True)

    def test_writes_svg(self):
        with tempfile.TemporaryDirectory() as tmp:
            log = os.path.join(tmp, "boot.log")
            with open(log, "w", newline="") as f:
                f.write(SYNTHETIC)
            result = self.run_script(log, "--table", "stage2", "-o", os.path.join(tmp, "s2.svg"))
            self.assertEqual(result.returncode, 0, result.stderr)
            ET.parse(os.path.join(tmp, "s2.svg"))
            result = self.run_script(log)
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertTrue(os.path.exists(os.path.join(tmp, "boot.el2.svg")))

    def test_no_ptdump_lines_exit_1(self):
        result = self.run_script("-", "-o", "-", stdin="hello\nmap-stats: nothing\n")
        self.assertEqual(result.returncode, 1)
        self.assertIn("no 'ptdump: table=el2' lines", result.stderr)
        self.assertEqual(result.stdout, "")

    def test_unreadable_file_exit_1(self):
        result = self.run_script("/nonexistent/boot.log")
        self.assertEqual(result.returncode, 1)
        self.assertIn("cannot read", result.stderr)

    def test_main_in_process(self):
        err = io.StringIO()
        with redirect_stderr(err):
            self.assertEqual(ptdump_svg.main(["/nonexistent/x.log"]), 1)


if __name__ == "__main__":
    unittest.main()
