"""Tests of the diskbench, smmu-stats and hypmem parsing and of the disk and SMMU tables in
benchlib (no QEMU needed): python3 -m unittest discover -s scripts -p 'test_*.py'"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import common, devices  # noqa: E402
from benchlib.common import BenchError, QemuResult  # noqa: E402

DISKBENCH = ("guest-diskbench: write_mib_s=%s read_mib_s=%s mib=64 bs=1M write_ns=560167729 read_ns=313534349 "
             "io=direct dev=/dev/vda fs=ext4")
EXITS = ("hyp-exits: hvc=%d smc=0 sysreg=875 data_abort=0 instruction_abort=0 mmio=37766 irq=3532 wfi=0 other=0 "
         "tlb_conflict=0 el2_us=1971387 kicks=875 sgis=875 unexpected_irqs=0 refused_mmio=0")


def hyp_console(guest, commands=2, syncs=1, events=0, hvc=12, success=True):
    """A console under the hypervisor: `guest` lines tagged (g1), then its power-off lines.
    The guest also prints an imitation of the hypervisor's smmu-stats line."""
    lines = ["guest-devices: guest=1 emulated=gicv3@0x8000000,pl011@0x9000000 passthrough=pcie@0x4010000000 "
             "refused=none",
             "[    0.246424] INFO  SMMU /smmuv3@9050000: driven; 1 stream range(s) of the guest translate "
             "through its stage 2, every other stream aborts",
             "(g1) smmu-stats: commands=999 syncs=999 events=999"]
    lines += ["(g1) " + line for line in guest]
    lines += [EXITS % hvc, "smmu-stats: commands=%d syncs=%d events=%d" % (commands, syncs, events)]
    if success:
        lines.append("hyp-exit: success")
    return "\n".join(lines) + "\n"


def direct_console(write, read):
    return "[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x000f0510]\n%s\n" % (DISKBENCH % (write, read))


HYPMEM = [
    "[    5.226781] hypmem: CALL_UID: 61015b77 28436ebe 3368b7bc 1da22b09",
    "[    5.248501] hypmem: MEM_QUERY before: ipa=0x0000000051dab000 status=0 perms=rwx level=2 leaf_size=0x200000",
    "[    5.255574] hypmem: STATS before: status=0 splits_1g=0 splits_2m=0 collapses=0",
    "[    5.264212] hypmem: MEM_PROTECT(ipa=0x0000000051dab000, size=0x1000, perms=r--) = 0",
    "[    5.275483] hypmem: write to the read-only page: write_nofault = -14 (stage-2 permission fault taken "
    "and fixed up)",
    "[    5.289564] hypmem: MEM_PROTECT(ipa=0x0000000051dab000, size=0x1000, perms=rwx) = 0",
    "[    5.301868] hypmem: STATS after: status=0 splits_1g=0 splits_2m=1 collapses=1",
    "[    5.308486] hypmem: pass",
    "guest-modtest: insmod ok",
    "guest-modtest: rmmod ok",
    "guest-modtest: pass",
]
# What the module would print with group 1 read too (the line the section asks for).
HYPMEM_TLBI = HYPMEM[:3] + ["[    5.255600] hypmem: STATS before: status=0 tlbi_by_va=3 tlbi_range=0 tlbi_all=0"] \
    + HYPMEM[3:7] + ["[    5.301900] hypmem: STATS after: status=0 tlbi_by_va=5 tlbi_range=2 tlbi_all=0"] + HYPMEM[7:]
IDLE = ["guest-idle: begin 0 s", "guest-idle: end"]


def result(console, args=(), timed_out=False):
    return QemuResult(list(args), 10.0, 100.0, console, 0, timed_out, [], None)


class Parsing(unittest.TestCase):
    def test_numbers_with_and_without_a_fraction(self):
        values = common.kv_numbers(DISKBENCH % ("114.3", "204"))
        self.assertEqual((values["write_mib_s"], values["read_mib_s"], values["mib"]), (114.3, 204, 64))
        self.assertIsInstance(values["write_ns"], int)
        self.assertNotIn("bs", values)  # 1M is not a number

    def test_diskbench_from_the_guests_line_tagged_or_direct(self):
        hyp = common.guest_diskbench(hyp_console([DISKBENCH % ("104.6", "146.1")]), True)
        self.assertEqual((hyp["write_mib_s"], hyp["read_mib_s"]), (104.6, 146.1))
        direct = common.guest_diskbench(direct_console("101.3", "258.3"), False)
        self.assertEqual((direct["write_mib_s"], direct["read_mib_s"]), (101.3, 258.3))

    def test_diskbench_untagged_under_the_hypervisor_missing_or_failed_is_an_error(self):
        with self.assertRaises(BenchError):
            common.guest_diskbench(DISKBENCH % ("1.0", "2.0") + "\n", True)
        with self.assertRaises(BenchError):
            common.guest_diskbench(hyp_console(["guest: userspace reached"]), True)
        with self.assertRaises(BenchError):
            common.guest_diskbench("guest-diskbench: no /dev/vda (virtio_blk: 0 loaded) FAIL\n", False)
        with self.assertRaises(BenchError):
            common.guest_diskbench("guest-diskbench: read_mib_s=3.0\n", False)

    def test_smmu_stats_are_the_hypervisors_not_the_guests_imitation(self):
        self.assertEqual(common.smmu_stats(hyp_console([], 20, 4, 0)), {"commands": 20, "syncs": 4, "events": 0})
        with self.assertRaises(BenchError):
            common.smmu_stats("(g1) smmu-stats: commands=1 syncs=1 events=0\nhyp-exit: success\n")
        with self.assertRaises(BenchError):
            common.smmu_stats("smmu-stats: commands=1\n")

    def test_hypmem_report(self):
        report = common.hypmem_report(hyp_console(HYPMEM), True)
        self.assertEqual(report["protects"], [0, 0])
        self.assertEqual(report["stats"]["after"], {"status": 0, "splits_1g": 0, "splits_2m": 1, "collapses": 1})
        self.assertTrue(report["passed"])
        # Untagged, they are not the guest's.
        self.assertEqual(common.hypmem_report("\n".join(HYPMEM), True)["protects"], [])
        # Both STATS groups of one moment merge.
        stats = common.hypmem_report(hyp_console(HYPMEM_TLBI), True)["stats"]
        self.assertEqual((stats["before"]["tlbi_by_va"], stats["before"]["splits_2m"]), (3, 0))
        self.assertEqual(devices.stats_delta({"stats": stats}, devices.TLBI_KEYS),
                         {"tlbi_by_va": 2, "tlbi_range": 2, "tlbi_all": 0})
        self.assertIsNone(devices.stats_delta(common.hypmem_report(hyp_console(HYPMEM), True), devices.TLBI_KEYS))

    def test_disk_cache_mode_of_the_drive(self):
        argv = ["qemu-system-aarch64", "-drive", "if=none,id=disk0,file=/x/disk.ext4,format=raw,cache=none",
                "-device", "virtio-blk-pci,drive=disk0,romfile="]
        self.assertEqual(devices.disk_cache_mode(argv), "none")
        self.assertEqual(devices.disk_cache_mode(["qemu-system-aarch64"]), "?")


class Checks(unittest.TestCase):
    def test_disk_boots(self):
        self.assertEqual(devices.check_disk("hyp", result(hyp_console([DISKBENCH % ("1.5", "2.5")])))["read_mib_s"],
                         2.5)
        self.assertEqual(devices.check_disk("direct", result(direct_console("3.0", "4.0")))["write_mib_s"], 3.0)
        with self.assertRaises(BenchError):
            devices.check_disk("hyp", result(hyp_console([DISKBENCH % ("1.5", "2.5")], success=False)))
        with self.assertRaises(BenchError):
            devices.check_disk("direct", result(direct_console("3.0", "4.0"), timed_out=True))

    def test_smmu_boots(self):
        base = devices.check_smmu("baseline", result(hyp_console(IDLE)))
        self.assertEqual((base["smmu"]["commands"], base["exits"]["hvc"]), (2, 12))
        work = devices.check_smmu("workload", result(hyp_console(HYPMEM, 20, 4, 0, 21)))
        self.assertEqual(work["hypmem"]["protects"], [0, 0])
        with self.assertRaises(BenchError):
            devices.check_smmu("baseline", result(hyp_console(IDLE[:1])))
        with self.assertRaises(BenchError):
            devices.check_smmu("workload", result(hyp_console(HYPMEM[:-1] + ["guest-modtest: fail"])))
        refused = [line.replace("perms=rwx) = 0", "perms=rwx) = -3") for line in HYPMEM]
        with self.assertRaises(BenchError):
            devices.check_smmu("workload", result(hyp_console(refused)))


class Ctx:
    runs = 2

    def __init__(self):
        self.disk = {
            "direct": [result(direct_console("100.0", "250.0")), result(direct_console("110.0", "270.0"))],
            "hyp": [result(hyp_console([DISKBENCH % ("99.0", "150.0")])),
                    result(hyp_console([DISKBENCH % ("105.0", "160.0")], events=1))],
        }
        self.smmu = {
            "baseline": [devices.check_smmu("baseline", result(hyp_console(IDLE, 2, 1)))] * 2,
            "workload": [devices.check_smmu("workload", result(hyp_console(HYPMEM, 20, 4, 0, 21))),
                         devices.check_smmu("workload", result(hyp_console(HYPMEM, 22, 5, 0, 21)))],
        }


class Tables(unittest.TestCase):
    def row(self, text, label):
        rows = [line for line in text.splitlines() if line.startswith("| %s |" % label)]
        self.assertEqual(len(rows), 1, label)
        return [c.strip() for c in rows[0].strip("|").split("|")]

    def test_disk_table_side_by_side_with_the_ratio_and_its_target(self):
        text = devices.section_disk(Ctx())
        self.assertEqual(self.row(text, devices.DISK_VARIANTS[0][1])[1:],
                         ["105.0 (100.0–110.0)", "260.0 (250.0–270.0)", "–"])
        self.assertEqual(self.row(text, devices.DISK_VARIANTS[1][1])[1:],
                         ["102.0 (99.0–105.0)", "155.0 (150.0–160.0)", "0.5 (0–1)"])
        # 102 ÷ 105 and 155 ÷ 260, of the medians.
        self.assertEqual(self.row(text, "under the hypervisor ÷ direct")[1:3], ["0.97×", "0.60×"])
        self.assertIn("write **0.97×** meets it, read **0.60×** is **below** it", text)
        self.assertIn("write 0.97 (0.95–0.99)×", text)

    def test_smmu_table_per_mem_protect_against_the_baseline(self):
        text = devices.section_smmu(Ctx())
        self.assertEqual(self.row(text, "MEM_PROTECT calls")[1:], ["0", "2", "2", "–"])
        # 18 and 20 commands over the baseline's 2, for 2 calls: 9 and 10 per call.
        self.assertEqual(self.row(text, "SMMU commands")[1:], ["2", "21 (20–22)", "19 (18–20)", "9.50 (9.00–10.00)"])
        self.assertEqual(self.row(text, "SMMU CMD_SYNCs waited for")[3:], ["3.5 (3–4)", "1.75 (1.50–2.00)"])
        self.assertEqual(self.row(text, "DMA fault events")[1:], ["0", "0", "0", "–"])
        self.assertEqual(self.row(text, "HVC exits (all hypercalls and PSCI)")[3:], ["9", "–"])
        self.assertEqual(self.row(text, "CPU TLBIs")[3:], ["not exposed", "not exposed"])
        self.assertIn("**The CPU's TLBIs per MEM_PROTECT are not measured**", text)

    def test_smmu_table_takes_the_cpus_tlbis_when_the_module_prints_them(self):
        ctx = Ctx()
        ctx.smmu["workload"] = [devices.check_smmu("workload", result(hyp_console(HYPMEM_TLBI, 20, 4, 0, 21)))] * 2
        text = devices.section_smmu(ctx)
        self.assertEqual(self.row(text, "CPU TLBIs (STATS group 1, after − before in the workload)")[3:],
                         ["4", "2.00"])
        self.assertEqual(self.row(text, "CPU TLBIs, by va")[3:], ["2", "1.00"])
        self.assertNotIn("not exposed", text)


if __name__ == "__main__":
    unittest.main()
