"""The minimal translation table for what a ptdump shows.

The same rule as the engine's checker (hypervisor/pgtable/src/check.rs, minimal_cover):
merge the dump's runs into maximal ranges of one attribute value and one linear output
offset, cover each greedily with the largest leaf (1G, 2M, 4K) that input alignment,
output alignment and the remaining length allow, count the tables those leaves need and
put the contiguous hint on every aligned group of 16 leaves (levels 2 and 3) whose output
is aligned to the group. Leaves plus the table descriptors that link the tables is the
fewest descriptors any engine could write to build that map from empty.
"""

CONT_ENTRIES = 16


def level_shift(level):
    return 12 + 9 * (3 - level)


def level_size(level):
    return 1 << level_shift(level)


def merge_ranges(runs):
    """[(start, end, pa, attrs)] of maximal ranges with one attribute value and output
    offset, from objects with va, end, pa and attrs (ptdump runs), sorted by va."""
    out = []
    for run in sorted(runs, key=lambda r: r.va):
        if out and out[-1][1] == run.va and out[-1][3] == run.attrs \
                and out[-1][2] + (run.va - out[-1][0]) == run.pa:
            out[-1] = (out[-1][0], run.end, out[-1][2], run.attrs)
        else:
            out.append((run.va, run.end, run.pa, run.attrs))
    return out


class Shape:
    def __init__(self, leaves=0, tables=0, contiguous=0, by_level=None):
        self.leaves = leaves          # leaf descriptors
        self.tables = tables          # tables below the root
        self.contiguous = contiguous  # leaves with the contiguous hint
        self.by_level = by_level or {1: 0, 2: 0, 3: 0}

    @property
    def descriptors(self):
        """Leaves plus the table descriptors that link the tables below the root."""
        return self.leaves + self.tables

    @property
    def table_pages(self):
        """Tables including the root."""
        return self.tables + 1

    @property
    def tlb_entries(self):
        """TLB entries the map needs at most: a contiguous group of 16 leaves is one."""
        return self.leaves - self.contiguous + self.contiguous // CONT_ENTRIES


def stage2_start_level(ipa_bits):
    """The level a stage-2 walk starts at for `ipa_bits` of IPA, with up to 16 concatenated
    root tables (the engine's Regime::stage2 rule)."""
    level = 2
    while ipa_bits > level_shift(level) + 9 + 4:
        level -= 1
    return level


def minimal_cover(runs, start_level=0):
    shape = Shape()
    tables = set()
    for start, end, oa, _ in merge_ranges(runs):
        addr = start
        while addr < end:
            out = oa + (addr - start)
            level = next(lv for lv in range(max(start_level, 1), 4)
                         if lv == 3 or (addr % level_size(lv) == 0 and out % level_size(lv) == 0
                                        and addr + level_size(lv) <= end))
            size = level_size(level)
            if level == 3 and (addr % size or out % size):
                raise ValueError("range %#x..%#x is not 4K aligned" % (start, end))
            group = size * CONT_ENTRIES
            group_start = addr & ~(group - 1)
            cont = level >= 2 and group_start >= start and group_start + group <= end \
                and (oa + (group_start - start)) % group == 0
            shape.leaves += 1
            shape.by_level[level] += 1
            shape.contiguous += 1 if cont else 0
            for table_level in range(start_level + 1, level + 1):
                tables.add((table_level, addr >> level_shift(table_level - 1)))
            addr += size
    shape.tables = len(tables)
    return shape


def actual_shape(runs):
    """The leaves and contiguous leaves a dump shows (tables come from map-stats)."""
    shape = Shape()
    for run in runs:
        shape.leaves += run.leaves
        shape.by_level[run.level] += run.leaves
        shape.contiguous += run.leaves if run.cont else 0
    return shape
