// SPDX-License-Identifier: GPL-2.0
/*
 * hypmem: drives the block-mapping hypervisor's vendor hypercalls (README "Guest
 * hypercalls") from a stock Linux kernel, as a self-test that runs on load.
 *
 * It checks the hypervisor's UID and FEATURES, write-protects one page of its own memory in
 * stage 2 with MEM_PROTECT (read only), tries to write it with a nofault store, whose
 * exception-table fixup turns the permission fault the hypervisor injects (a data abort
 * taken from EL1, DFSC permission fault, WnR) into -EFAULT instead of an oops, checks
 * the page is intact and still readable, reads the stage-2 leaf with MEM_QUERY, restores
 * RWX and checks a write now lands. Every line starts with "hypmem:"; the last is
 * "hypmem: pass" or "hypmem: fail: <why>". Loading fails (-EIO) when the test fails.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/arm-smccc.h>
#include <linux/errno.h>
#include <linux/gfp.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#define HYP_CALL_UID	ARM_SMCCC_VENDOR_HYP_CALL_UID_FUNC_ID	/* 0x8600ff01 */
#define HYP_FEATURES	0xc6000000
#define HYP_MEM_PROTECT	0xc6000001
#define HYP_MEM_QUERY	0xc6000002
#define HYP_STATS	0xc6000003

/* Status codes (x0), STATS groups (x1) and FEATURES bits: hyp-abi's, checked by its tests. */
#define HYP_SUCCESS		0
#define HYP_NOT_SUPPORTED	(-1)
#define HYP_INVALID_PARAMETER	(-3)
#define HYP_DENIED		(-4)
#define HYP_NO_MEMORY		(-5)
#define HYP_STATS_SPLITS	0
#define HYP_STATS_TLBI		1
#define HYP_FEATURE_MEM_PROTECT	BIT(1)
#define HYP_FEATURE_MEM_QUERY	BIT(2)

#define PERM_R		1
#define PERM_W		2
#define PERM_X		4
#define PERM_RWX	(PERM_R | PERM_W | PERM_X)

/* 775b0161-be6e-4328-bcb7-6833092ba21d, as SMCCC returns it in w0..w3. */
static const u32 hyp_uid[4] = { 0x61015b77, 0x28436ebe, 0x3368b7bc, 0x1da22b09 };

#define PATTERN		0x6879706d656d0000ULL	/* "hypmem\0\0" + word index */

/*
 * copy_to_kernel_nofault() for one word. That function is not exported to modules, so this
 * is its body: the store carries an exception-table entry (in this module's __ex_table,
 * which the arm64 fault handler searches), and with page faults disabled a fault at it
 * resumes at the error label.
 */
static long write_nofault(u64 *dst, u64 val)
{
	pagefault_disable();
	__put_kernel_nofault(dst, &val, u64, efault);
	pagefault_enable();
	return 0;
efault:
	pagefault_enable();
	return -EFAULT;
}

static struct arm_smccc_res hyp_call(u32 fn, unsigned long a1, unsigned long a2,
				     unsigned long a3)
{
	struct arm_smccc_res res;

	arm_smccc_1_1_invoke(fn, a1, a2, a3, &res);
	return res;
}

struct leaf {
	long status;
	unsigned long perms, level, size;
};

static struct leaf mem_query(phys_addr_t ipa)
{
	struct arm_smccc_res res = hyp_call(HYP_MEM_QUERY, ipa, 0, 0);

	return (struct leaf){ (long)res.a0, res.a1, res.a2, res.a3 };
}

static long mem_protect(phys_addr_t ipa, unsigned long size, unsigned long perms)
{
	return (long)hyp_call(HYP_MEM_PROTECT, ipa, size, perms).a0;
}

static void show_leaf(const char *when, phys_addr_t ipa, struct leaf l)
{
	pr_info("MEM_QUERY %s: ipa=%pa status=%ld perms=%c%c%c level=%lu leaf_size=%#lx\n",
		when, &ipa, l.status, l.perms & PERM_R ? 'r' : '-',
		l.perms & PERM_W ? 'w' : '-', l.perms & PERM_X ? 'x' : '-', l.level, l.size);
}

static void show_stats(const char *when)
{
	struct arm_smccc_res s = hyp_call(HYP_STATS, HYP_STATS_SPLITS, 0, 0);
	struct arm_smccc_res t = hyp_call(HYP_STATS, HYP_STATS_TLBI, 0, 0);

	pr_info("STATS %s: status=%ld splits_1g=%lu splits_2m=%lu collapses=%lu\n",
		when, (long)s.a0, s.a1, s.a2, s.a3);
	/* The CPU's TLBIs on this guest's stage 2, for the SMMU benchmark's per-call ratio. */
	pr_info("STATS %s: status=%ld tlbi_by_va=%lu tlbi_range=%lu tlbi_all=%lu\n",
		when, (long)t.a0, t.a1, t.a2, t.a3);
}

/* Whether every word of the page still holds the pattern, read both plainly and nofault. */
static bool page_intact(u64 *page)
{
	unsigned int i;
	u64 v;

	for (i = 0; i < PAGE_SIZE / sizeof(u64); i++)
		if (READ_ONCE(page[i]) != (PATTERN | i))
			return false;
	return !copy_from_kernel_nofault(&v, &page[7], sizeof(v)) && v == (PATTERN | 7);
}

/* Returns NULL on success, else why it failed. */
static const char *hypmem_test(void)
{
	struct arm_smccc_res res;
	const char *why = NULL;
	struct leaf before, ro, after;
	phys_addr_t ipa;
	unsigned int i;
	u64 *page, v;
	long ret, status;

	if (arm_smccc_1_1_get_conduit() != SMCCC_CONDUIT_HVC)
		return "SMCCC 1.1 HVC conduit not available (no hypervisor PSCI over HVC)";

	res = hyp_call(HYP_CALL_UID, 0, 0, 0);
	pr_info("CALL_UID: %08lx %08lx %08lx %08lx\n", res.a0, res.a1, res.a2, res.a3);
	if ((u32)res.a0 != hyp_uid[0] || (u32)res.a1 != hyp_uid[1] ||
	    (u32)res.a2 != hyp_uid[2] || (u32)res.a3 != hyp_uid[3])
		return "hypervisor UID is not 775b0161-be6e-4328-bcb7-6833092ba21d";
	pr_info("hypervisor UID 775b0161-be6e-4328-bcb7-6833092ba21d ok\n");

	res = hyp_call(HYP_FEATURES, 0, 0, 0);
	pr_info("FEATURES: %#lx\n", res.a0);
	if ((long)res.a0 < 0 || !(res.a0 & HYP_FEATURE_MEM_PROTECT) ||
	    !(res.a0 & HYP_FEATURE_MEM_QUERY))
		return "FEATURES lacks MEM_PROTECT or MEM_QUERY";

	page = (u64 *)__get_free_page(GFP_KERNEL);
	if (!page)
		return "cannot allocate a page";
	for (i = 0; i < PAGE_SIZE / sizeof(u64); i++)
		page[i] = PATTERN | i;
	ipa = virt_to_phys(page);
	pr_info("test page: va=%px ipa=%pa, pattern written\n", page, &ipa);

	/* Control: before MEM_PROTECT the same store must land. */
	ret = write_nofault(&page[0], PATTERN | 0);
	pr_info("write before protecting: write_nofault = %ld\n", ret);
	if (ret) {
		why = "a write to the page failed before it was protected";
		goto free;
	}

	before = mem_query(ipa);
	show_leaf("before", ipa, before);
	show_stats("before");
	if (before.status != HYP_SUCCESS || (before.perms & PERM_RWX) != PERM_RWX) {
		why = "MEM_QUERY before protecting did not report RWX";
		goto free;
	}

	status = mem_protect(ipa, PAGE_SIZE, PERM_R);
	pr_info("MEM_PROTECT(ipa=%pa, size=%#lx, perms=r--) = %ld\n", &ipa, PAGE_SIZE, status);
	if (status != HYP_SUCCESS) {
		why = "MEM_PROTECT read-only failed";
		goto free;
	}

	ro = mem_query(ipa);
	show_leaf("read-only", ipa, ro);
	if (ro.status != HYP_SUCCESS || ro.perms != PERM_R || ro.level != 3 || ro.size != PAGE_SIZE)
		why = "MEM_QUERY after MEM_PROTECT is not a read-only level-3 4K leaf";

	/* The write must fault at stage 2; the nofault helper's fixup returns -EFAULT. */
	v = ~0ULL;
	ret = write_nofault(&page[0], v);
	pr_info("write to the read-only page: write_nofault = %ld%s\n", ret,
		ret == -EFAULT ? " (stage-2 permission fault taken and fixed up)" : "");
	if (ret != -EFAULT && !why)
		why = "a write to the read-only page did not fault";
	ret = write_nofault(&page[PAGE_SIZE / sizeof(u64) - 1], v);
	pr_info("write to the page's last word: write_nofault = %ld\n", ret);
	if (ret != -EFAULT && !why)
		why = "a write to the read-only page's last word did not fault";

	if (page_intact(page)) {
		pr_info("read of the read-only page ok, pattern intact\n");
	} else if (!why) {
		why = "the read-only page changed or could not be read";
	}

	status = mem_protect(ipa, PAGE_SIZE, PERM_RWX);
	pr_info("MEM_PROTECT(ipa=%pa, size=%#lx, perms=rwx) = %ld\n", &ipa, PAGE_SIZE, status);
	if (status != HYP_SUCCESS) {
		/* Leave the page allocated: it must never be reused while read-only. */
		pr_info("leaking the page, it stays read-only\n");
		return why ?: "MEM_PROTECT restoring RWX failed";
	}

	after = mem_query(ipa);
	show_leaf("restored", ipa, after);
	show_stats("after");
	if (!why && (after.status != HYP_SUCCESS || after.perms != PERM_RWX))
		why = "MEM_QUERY after restoring is not RWX";
	if (!why && (after.level != before.level || after.size != before.size))
		why = "restoring RWX did not collapse the leaf back to its original size";

	v = 0x776f726b73ULL;	/* "works" */
	ret = write_nofault(&page[0], v);
	WRITE_ONCE(page[1], v);
	pr_info("write after restoring: write_nofault = %ld, read back %s\n", ret,
		READ_ONCE(page[0]) == v && READ_ONCE(page[1]) == v ? "ok" : "WRONG");
	if (!why && (ret || READ_ONCE(page[0]) != v || READ_ONCE(page[1]) != v))
		why = "a write after restoring RWX failed";
free:
	free_page((unsigned long)page);
	return why;
}

static unsigned int exhaust;
module_param(exhaust, uint, 0444);
MODULE_PARM_DESC(exhaust,
		 "instead of the self-test: split up to this many 2 MiB stage-2 blocks until the hypervisor's per-guest table cap answers NO_MEMORY");

/*
 * The per-guest cap on stage-2 table pages (hypervisor option stage2_table_cap=): one
 * read-only page in each of up to @chunks 2 MiB-aligned 2 MiB chunks this module owns
 * splits one block each, one more table page each, until MEM_PROTECT says NO_MEMORY.
 * Then every page is made RWX again (the blocks collapse, the tables are freed) and one
 * more split must succeed: the cap counts what the guest holds now, not what it once
 * took. Returns NULL on success.
 */
static const char *hypmem_exhaust(unsigned int chunks)
{
	unsigned long *blocks;
	unsigned int i, got = 0, split = 0;
	long status = HYP_SUCCESS, again;
	const char *why = NULL;
	phys_addr_t ipa;

	blocks = kcalloc(chunks, sizeof(*blocks), GFP_KERNEL);
	if (!blocks)
		return "cannot allocate the chunk list";
	for (i = 0; i < chunks; i++) {
		blocks[i] = __get_free_pages(GFP_KERNEL | __GFP_NOWARN, get_order(SZ_2M));
		if (!blocks[i])
			break;
		got++;
	}
	show_stats("before exhausting");
	for (i = 0; i < got; i++) {
		ipa = virt_to_phys((void *)blocks[i]);
		status = mem_protect(ipa, PAGE_SIZE, PERM_R);
		if (status != HYP_SUCCESS)
			break;
		split++;
	}
	pr_info("exhaust: chunks=%u split=%u then status=%ld\n", got, split, status);
	if (status != HYP_NO_MEMORY)
		why = "the table cap never answered NO_MEMORY";
	for (i = 0; i < split; i++) {
		ipa = virt_to_phys((void *)blocks[i]);
		if (mem_protect(ipa, PAGE_SIZE, PERM_RWX) != HYP_SUCCESS) {
			/* Never free a page that may still be read-only. */
			pr_info("exhaust: restoring chunk %u failed, leaking the chunks\n", i);
			kfree(blocks);
			return "restoring RWX failed";
		}
	}
	show_stats("after restoring");
	if (got) {
		ipa = virt_to_phys((void *)blocks[0]);
		again = mem_protect(ipa, PAGE_SIZE, PERM_R);
		pr_info("exhaust: a split after restoring = %ld\n", again);
		if (again == HYP_SUCCESS && mem_protect(ipa, PAGE_SIZE, PERM_RWX) != HYP_SUCCESS) {
			kfree(blocks);
			return "restoring RWX after the last split failed";
		}
		if (again != HYP_SUCCESS && !why)
			why = "no split was possible after restoring: the cap kept freed tables";
	}
	for (i = 0; i < got; i++)
		free_pages(blocks[i], get_order(SZ_2M));
	kfree(blocks);
	return why;
}

static int __init hypmem_init(void)
{
	const char *why = exhaust ? hypmem_exhaust(exhaust) : hypmem_test();

	if (why) {
		pr_info("fail: %s\n", why);
		return -EIO;
	}
	pr_info("pass\n");
	return 0;
}

static void __exit hypmem_exit(void)
{
}

module_init(hypmem_init);
module_exit(hypmem_exit);
MODULE_DESCRIPTION("Self-test of the block-mapping hypervisor's MEM_PROTECT/MEM_QUERY hypercalls");
MODULE_LICENSE("GPL");
