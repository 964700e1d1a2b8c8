"""Tests of the scale benchmark (benchlib/scale.py): the early stop on the map-stats lines,
their parsing, the goals and the section's text, fed with console lines recorded from real
boots (`-cpu max -smp 2`, one per RAM size and mapping), and run_qemu's early stop on a
stand-in process (no QEMU needed):
    python3 -m unittest discover -s scripts -p 'test_*.py'"""
import copy
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import common, scale  # noqa: E402
from benchlib.common import BenchError  # noqa: E402

# A recorded console from the pool line to the guest's entry (64G, blocks), ptdump lines cut.
CONSOLE_64G = """\
hyp-facts: pool_base=0x1037800000 pool_size=0x8800000 guest_ram_available=68573724672
ptdump: table=el2 va=0x9000000 end=0x9001000 pa=0x9000000 size=0x1000 level=3 leaves=1 cont=0 attrs=rw- device
map-stats: table=el2 table_pages=7 leaves_1g=63 leaves_2m=518 leaves_4k=878 ram_4k_bytes=0 descriptors=1465 \
minimal_descriptors=1465 minimal_tlb_entries=214 tlbi=0 dsb=1 splits_1g=0 splits_2m=0 collapses=0 build_us=5385
heap-stats: bytes=2097152 leaves_2m=1 leaves_4k=0 fallbacks=0 window=0xff0000000000
[    0.081217] INFO  guest: bootargs "console=ttyAMA0 hyp.check=1 hyp.smp=2"
ptdump: table=stage2 va=0x8000000000 end=0x10000000000 pa=0x8000000000 size=0x8000000000 level=1 leaves=512 \
cont=0 attrs=rw- device
map-stats: table=stage2 table_pages=10 leaves_1g=574 leaves_2m=1529 leaves_4k=664 ram_4k_bytes=1048576 \
descriptors=2775 minimal_descriptors=2775 minimal_tlb_entries=772 tlbi=0 dsb=0 splits_1g=0 splits_2m=0 \
collapses=0 build_us=2483
hyp-facts: guest_ram_bytes=68573724672 guest_vcpus=2 guest_entry=0x50000000 guest_dtb=0x40000000 \
stage2_ipa_bits=40 table_allocations=18 injected_failures=0
[    0.087420] INFO  guest: entering at EL1 on 2 vCPU(s)
"""

# The two map-stats lines of each recorded boot: (size, mapping) -> (el2, stage2).
RECORDED = {
    ("1G", "blocks"): (
        "map-stats: table=el2 table_pages=7 leaves_1g=0 leaves_2m=518 leaves_4k=878 ram_4k_bytes=0 descriptors=1402 "
        "minimal_descriptors=1402 minimal_tlb_entries=151 tlbi=0 dsb=1 splits_1g=0 splits_2m=0 collapses=0 "
        "build_us=4896",
        "map-stats: table=stage2 table_pages=9 leaves_1g=512 leaves_2m=1080 leaves_4k=664 ram_4k_bytes=1048576 "
        "descriptors=2263 minimal_descriptors=2263 minimal_tlb_entries=681 tlbi=0 dsb=0 splits_1g=0 splits_2m=0 "
        "collapses=0 build_us=2285"),
    ("1G", "pages"): (
        "map-stats: table=el2 table_pages=518 leaves_1g=0 leaves_2m=7 leaves_4k=262510 ram_4k_bytes=1071644672 "
        "descriptors=263034 minimal_descriptors=1402 minimal_tlb_entries=151 tlbi=0 dsb=1 splits_1g=0 splits_2m=0 "
        "collapses=0 build_us=6171",
        "map-stats: table=stage2 table_pages=513 leaves_1g=512 leaves_2m=575 leaves_4k=258712 ram_4k_bytes=1058013184 "
        "descriptors=260310 minimal_descriptors=2262 minimal_tlb_entries=680 tlbi=0 dsb=0 splits_1g=0 splits_2m=0 "
        "collapses=0 build_us=3583"),
    ("16G", "blocks"): (
        "map-stats: table=el2 table_pages=7 leaves_1g=15 leaves_2m=518 leaves_4k=878 ram_4k_bytes=0 descriptors=1417 "
        "minimal_descriptors=1417 minimal_tlb_entries=166 tlbi=0 dsb=1 splits_1g=0 splits_2m=0 collapses=0 "
        "build_us=10288",
        "map-stats: table=stage2 table_pages=10 leaves_1g=526 leaves_2m=1577 leaves_4k=664 ram_4k_bytes=1048576 "
        "descriptors=2775 minimal_descriptors=2775 minimal_tlb_entries=727 tlbi=0 dsb=0 splits_1g=0 splits_2m=0 "
        "collapses=0 build_us=2508"),
    ("16G", "pages"): (
        "map-stats: table=el2 table_pages=8213 leaves_1g=0 leaves_2m=7 leaves_4k=4194670 ram_4k_bytes=17177772032 "
        "descriptors=4202889 minimal_descriptors=1417 minimal_tlb_entries=166 tlbi=0 dsb=1 splits_1g=0 splits_2m=0 "
        "collapses=0 build_us=66221",
        "map-stats: table=stage2 table_pages=8178 leaves_1g=512 leaves_2m=575 leaves_4k=4175512 "
        "ram_4k_bytes=17101225984 descriptors=4184775 minimal_descriptors=2759 minimal_tlb_entries=726 tlbi=0 dsb=0 "
        "splits_1g=0 splits_2m=0 collapses=0 build_us=57583"),
    ("64G", "blocks"): None,  # CONSOLE_64G
    ("64G", "pages"): (
        "map-stats: table=el2 table_pages=32837 leaves_1g=0 leaves_2m=7 leaves_4k=16777582 ram_4k_bytes=68717379584 "
        "descriptors=16810425 minimal_descriptors=1465 minimal_tlb_entries=214 tlbi=0 dsb=1 splits_1g=0 splits_2m=0 "
        "collapses=0 build_us=228482",
        "map-stats: table=stage2 table_pages=32706 leaves_1g=512 leaves_2m=575 leaves_4k=16709272 "
        "ram_4k_bytes=68439506944 descriptors=16743063 minimal_descriptors=2711 minimal_tlb_entries=768 tlbi=0 dsb=0 "
        "splits_1g=0 splits_2m=0 collapses=0 build_us=231268"),
    ("256G", "blocks"): (
        "map-stats: table=el2 table_pages=7 leaves_1g=255 leaves_2m=518 leaves_4k=878 ram_4k_bytes=0 descriptors=1657 "
        "minimal_descriptors=1657 minimal_tlb_entries=406 tlbi=0 dsb=1 splits_1g=0 splits_2m=0 collapses=0 "
        "build_us=9949",
        "map-stats: table=stage2 table_pages=10 leaves_1g=766 leaves_2m=1337 leaves_4k=664 ram_4k_bytes=1048576 "
        "descriptors=2775 minimal_descriptors=2775 minimal_tlb_entries=952 tlbi=0 dsb=0 splits_1g=0 splits_2m=0 "
        "collapses=0 build_us=2530"),
    ("256G", "pages"): (
        "map-stats: table=el2 table_pages=131333 leaves_1g=0 leaves_2m=7 leaves_4k=67109230 ram_4k_bytes=274875809792 "
        "descriptors=67240569 minimal_descriptors=1657 minimal_tlb_entries=406 tlbi=0 dsb=1 splits_1g=0 splits_2m=0 "
        "collapses=0 build_us=480621",
        "map-stats: table=stage2 table_pages=130816 leaves_1g=512 leaves_2m=575 leaves_4k=66843800 "
        "ram_4k_bytes=273790533632 descriptors=66975701 minimal_descriptors=3029 minimal_tlb_entries=966 tlbi=0 dsb=0 "
        "splits_1g=0 splits_2m=0 collapses=0 build_us=912256"),
}
SIZES = list(scale.SCALE_SIZES)


def console(size, mapping):
    lines = RECORDED[(size, mapping)]
    if lines is None:
        return CONSOLE_64G
    return "hyp-facts: pool_base=0x0\n%s\n[    0.08] INFO  guest: bootargs \"x\"\n%s\n" % lines


def recorded_scale():
    """What run_scale keeps, from the recorded consoles: one run per size and mapping."""
    return {(size, mapping): [scale.Sample(scale.parse_boot(console(size, mapping)), 1.5, 150.0)]
            for size in SIZES for mapping in scale.MAPPINGS}


class FakeContext:
    def __init__(self, data, sizes=None):
        self.scale, self.scale_sizes, self.runs = data, sizes, 1
        self.goal_failures = []


class Parsing(unittest.TestCase):
    def test_sizes_in_gib(self):
        self.assertEqual([scale.mem_gib(s) for s in ("512M", "1G", "16G", "256G", "1T")], [0.5, 1, 16, 256, 1024])
        for bad in ("16", "0G", "1.5G", "2g"):
            with self.subTest(bad=bad), self.assertRaises(ValueError):
                scale.mem_gib(bad)

    def test_both_tables_from_a_recorded_console(self):
        stats = scale.parse_boot(CONSOLE_64G)
        self.assertEqual({f: stats["el2"][f] for f in scale.FIELDS},
                         {"build_us": 5385, "table_pages": 7, "descriptors": 1465, "minimal_descriptors": 1465,
                          "tlbi": 0})
        self.assertEqual({f: stats["stage2"][f] for f in scale.FIELDS},
                         {"build_us": 2483, "table_pages": 10, "descriptors": 2775, "minimal_descriptors": 2775,
                          "tlbi": 0})

    def test_a_missing_line_or_field_is_named(self):
        no_stage2 = "\n".join(l for l in CONSOLE_64G.splitlines() if "table=stage2 table_pages" not in l)
        with self.assertRaises(BenchError) as caught:
            scale.parse_boot(no_stage2)
        self.assertIn("map-stats: table=stage2", str(caught.exception))
        no_tlbi = CONSOLE_64G.replace(" tlbi=0 dsb=1", " dsb=1")
        with self.assertRaises(BenchError) as caught:
            scale.parse_boot(no_tlbi)
        self.assertIn("no tlbi", str(caught.exception))

    def test_stop_after_the_stage2_line_only(self):
        stop = scale.StopAfterStage2()
        fired = [line for line in CONSOLE_64G.splitlines() if stop(line)]
        # Every line from the stage-2 map-stats line on: the first is where QEMU gets stopped.
        self.assertTrue(fired[0].startswith("map-stats: table=stage2 "))
        self.assertEqual(len(fired), 3)

    def test_stage2_before_el2_or_quoted_lines_do_not_stop(self):
        stop = scale.StopAfterStage2()
        self.assertFalse(stop("map-stats: table=stage2 table_pages=10"))
        self.assertFalse(stop("[    0.1] INFO  guest: said map-stats: table=el2 table_pages=7"))
        self.assertFalse(stop("ptdump: table=el2 va=0x0"))
        self.assertTrue(stop("[    0.2] map-stats: table=el2 table_pages=7"))


class Goals(unittest.TestCase):
    def test_the_recorded_boots_meet_every_goal(self):
        goals = scale.goals(recorded_scale(), SIZES)
        self.assertEqual([g.name for g in goals], ["a", "b", "c", "c"])
        self.assertTrue(all(g.ok for g in goals), "\n".join(g.line() for g in goals))
        self.assertIn("10 table pages with blocks against 130,816", goals[0].text)
        self.assertIn("1/13,082", goals[0].text)
        self.assertTrue(goals[0].line().startswith("- PASS (a) "))

    def test_a_fails_above_one_thousandth(self):
        data = recorded_scale()
        data[("256G", "blocks")][0].stats["stage2"]["table_pages"] = 131
        goal = scale.goals(data, SIZES)[0]
        self.assertFalse(goal.ok)
        self.assertTrue(goal.line().startswith("- **FAIL** (a) "))
        data[("256G", "blocks")][0].stats["stage2"]["table_pages"] = 130  # 130 × 1000 <= 130,816
        self.assertTrue(scale.goals(data, SIZES)[0].ok)

    def test_a_without_256g_is_not_met(self):
        data = recorded_scale()
        goal = scale.goals(data, SIZES[:3])[0]
        self.assertFalse(goal.ok)
        self.assertIn("not measured", goal.text)

    def test_b_names_every_run_that_wrote_more_than_the_minimal_cover(self):
        data = recorded_scale()
        extra = copy.deepcopy(data[("16G", "blocks")][0])
        extra.stats["el2"]["descriptors"] += 3
        data[("16G", "blocks")].append(extra)
        goal = scale.goals(data, SIZES)[1]
        self.assertFalse(goal.ok)
        self.assertIn("el2 16G run 2: 1,420 written, minimal 1,417", goal.text)
        self.assertNotIn("run 1", goal.text)

    def test_b_ignores_the_pages_baseline(self):
        goal = scale.goals(recorded_scale(), SIZES)[1]
        self.assertTrue(goal.ok)
        self.assertIn("(4 boot(s))", goal.text)

    def test_c_fails_when_blocks_take_time_with_bytes_mapped(self):
        # An engine that writes the minimal descriptors but walks every 4K page: the blocks
        # build time follows the pages one.
        data = recorded_scale()
        for size in SIZES:
            for table in ("el2", "stage2"):
                pages = data[(size, "pages")][0].stats[table]["build_us"]
                data[(size, "blocks")][0].stats[table]["build_us"] = pages // 2
        goals = scale.goals(data, SIZES)
        self.assertEqual([g.ok for g in goals], [True, True, False, False])
        self.assertIn("build time ×", goals[2].text)

    def test_c_fails_when_the_times_follow_bytes_rather_than_descriptors(self):
        # Blocks grow within the tolerance, but the pages builds do not grow with their
        # descriptors at all: the bytes fit explains the times better.
        data = recorded_scale()
        for size, blocks_us in zip(SIZES, (1000, 2000, 3000, 4500)):
            data[(size, "blocks")][0].stats["el2"]["build_us"] = blocks_us
            data[(size, "pages")][0].stats["el2"]["build_us"] = 3000
        goal = scale.goals(data, SIZES)[2]
        self.assertFalse(goal.ok)
        self.assertIn("build time ×4.50 (goal: at most 4 × 1.18 = 4.73)", goal.text)

    def test_c_survives_pages_builds_in_different_host_modes(self):
        # Recorded: the same 64G and 256G pages builds took ~14 or ~5 ns per descriptor in
        # different runs; the worst mix of them still passes.
        data = recorded_scale()
        data[("16G", "pages")][0].stats["stage2"]["build_us"] = 57693
        data[("64G", "pages")][0].stats["stage2"]["build_us"] = 230121
        data[("256G", "pages")][0].stats["stage2"]["build_us"] = 330000
        self.assertTrue(scale.goals(data, SIZES)[3].ok)

    def test_c_tolerates_twofold_tcg_noise_on_a_small_build(self):
        data = recorded_scale()
        data[("1G", "blocks")][0].stats["el2"]["build_us"] = 4900
        data[("256G", "blocks")][0].stats["el2"]["build_us"] = 9900
        self.assertTrue(scale.goals(data, SIZES)[2].ok)

    def test_affine_fit(self):
        a, b, r2 = scale.fit_affine([1, 2, 3, 4], [12, 14, 16, 18])
        self.assertAlmostEqual(a, 10)
        self.assertAlmostEqual(b, 2)
        self.assertAlmostEqual(r2, 1)
        self.assertAlmostEqual(scale.fit_affine([0, 0, 1, 1], [0, 2, 0, 2])[2], 0)
        self.assertEqual(scale.fit_affine([1, 2], [5, 5]), (5, 0, 1.0))
        with self.assertRaises(ValueError):
            scale.fit_affine([3, 3], [1, 2])


class Section(unittest.TestCase):
    def test_the_section_puts_each_figure_next_to_its_baseline(self):
        ctx = FakeContext(recorded_scale())
        text = scale.section_scale(ctx)
        self.assertEqual(ctx.goal_failures, [])
        self.assertIn("| 256G | blocks (ours) | 2530 | – | 10 | 40 | – | 2,775 | 2,775 | 1.00× | 0 |", text)
        self.assertIn("| 256G | `pages` (baseline) | 912256 | 360.6× | 130,816 | 523,264 | 13,082× | 66,975,701 "
                      "| 3,029 | 22,111.49× | 0 | 13.6 | 3,563.5 |", text)
        self.assertEqual(text.count("- PASS "), 4)
        self.assertIn("8990 ms", text)
        self.assertIn("1312 ms", text)
        self.assertIn("500MB", text)
        self.assertIn("with blocks 28 KiB and 40 KiB: blocks save 513 MiB in the EL2 map and 511 MiB in the stage 2",
                      text)
        self.assertIn("1 TiB is left to `--with-1t`", text)

    def test_a_wide_spread_of_the_pages_builds_is_explained(self):
        data = recorded_scale()
        self.assertNotIn("varied", scale.section_scale(FakeContext(data)))
        slow = copy.deepcopy(data[("64G", "pages")][0])
        slow.stats["stage2"]["build_us"] = 3 * slow.stats["stage2"]["build_us"]
        data[("64G", "pages")].append(slow)
        self.assertIn("The `pages` builds varied up to 3.0× between runs (stage2 at 64G)",
                      scale.section_scale(FakeContext(data)))

    def test_failed_goals_reach_the_context(self):
        data = recorded_scale()
        data[("256G", "blocks")][0].stats["stage2"]["table_pages"] = 500
        ctx = FakeContext(data)
        text = scale.section_scale(ctx)
        self.assertEqual(ctx.goal_failures, ["scale (a)"])
        self.assertIn("- **FAIL** (a) ", text)

    def test_1t_rows_when_asked(self):
        data = recorded_scale()
        for mapping in scale.MAPPINGS:
            data[("1T", mapping)] = copy.deepcopy(data[("256G", mapping)])
        text = scale.section_scale(FakeContext(data, SIZES + ["1T"]))
        self.assertIn("| 1T | blocks (ours) |", text)
        self.assertNotIn("left to `--with-1t`", text)


class EarlyStop(unittest.TestCase):
    def test_run_qemu_stops_the_process_at_the_stage2_line(self):
        # exec: the shell becomes the sleeper, so SIGTERM ends the one process holding the pipe.
        script = ("printf 'hyp-facts: x=1\\n%s\\nptdump: table=stage2 va=0x0\\n%s\\n'; exec sleep 60"
                  % (RECORDED[("1G", "blocks")][0], RECORDED[("1G", "blocks")][1]))
        start = time.monotonic()
        result = common.run_qemu(["sh", "-c", script], timeout=30, stop=scale.StopAfterStage2())
        self.assertLess(time.monotonic() - start, 20)
        self.assertFalse(result.timed_out)
        self.assertIsNotNone(result.stopped)
        self.assertEqual(scale.parse_boot(result.console)["stage2"]["table_pages"], 9)

    def test_without_the_lines_nothing_is_stopped(self):
        result = common.run_qemu(["sh", "-c", "echo hyp-exit: failure: no memory"], timeout=30,
                                 stop=scale.StopAfterStage2())
        self.assertIsNone(result.stopped)
        self.assertEqual(result.code, 0)


if __name__ == "__main__":
    unittest.main()
