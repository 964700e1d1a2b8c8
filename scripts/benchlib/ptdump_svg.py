"""Draws a translation table from a boot log's `ptdump:` lines as an SVG picture.

    scripts/ptdump-svg.py LOGFILE [--table el2|stage2] [-o OUT.svg] [--detail N] [--title TEXT]

(scripts/ptdump-svg.py is the command; this module, benchlib.ptdump_svg, holds the parser
and renderer, which the benchmark report imports: parse_log, render_svg, layout, main.)

LOGFILE is any console log of the hypervisor (`-` reads standard input); other lines,
timestamps and carriage returns may be interleaved. The lines drawn are

    ptdump: table=T va=A end=E pa=P size=S level=L leaves=N cont=0|1 attrs=rwx MEMTYPE

The picture: one row per GiB of input address (VA for el2, IPA for stage2) that has any
mapping, split into 512 cells of 2 MiB. A cell is coloured by the largest leaf covering it
(1G, 2M, 2M with the contiguous hint, 4K, 4K with the contiguous hint; hatched when a cell
of 4K pages is partly unmapped) and marked above the row when it holds 4K pages; a strip
under the row gives the attributes (normal rw-, r-x, r--, rwx, device). Consecutive GiB
rows with the same pattern fold into one row marked xN; GiBs without mappings are skipped
(a gap line says how many). When the log has `hyp-facts: memory` lines, RAM is underlined;
a `crash region: [A, B)` line is marked too. Below the rows, every 2 MiB region holding 4K
pages gets a detail row of its 512 4K pages (identical consecutive regions fold; at most
--detail rows, default 24).

Pure Python 3 standard library. Exit status 1 with a message when the log has no ptdump
line for the table (or cannot be read).

A `map-stats:` line's numbers go to Log.map_stats, including `minimal_descriptors` and
`minimal_tlb_entries`: the minimal cover the engine counted (pgtable::MinimalCover).
"""
import argparse
import os
import re
import sys
from xml.sax.saxutils import escape

GIB = 1 << 30
MIB2 = 2 << 20
PAGE = 4096
LEVEL_SIZE = {1: GIB, 2: MIB2, 3: PAGE}

PTDUMP_RE = re.compile(
    r"ptdump:\s+table=(?P<table>\S+)\s+va=(?P<va>0x[0-9a-fA-F]+)\s+end=(?P<end>0x[0-9a-fA-F]+)"
    r"\s+pa=(?P<pa>0x[0-9a-fA-F]+)\s+size=(?P<size>0x[0-9a-fA-F]+)\s+level=(?P<level>\d+)"
    r"\s+leaves=(?P<leaves>\d+)\s+cont=(?P<cont>[01])\s+attrs=(?P<access>[r-][w-][x-])\s+(?P<memory>[\w-]+)")
MAP_STATS_RE = re.compile(r"map-stats:\s+table=(?P<table>\S+)\s+(?P<rest>.*)")
MEMORY_RE = re.compile(r"hyp-facts:\s+memory\s+index=\d+\s+base=(0x[0-9a-fA-F]+)\s+size=(0x[0-9a-fA-F]+)")
CRASH_RE = re.compile(r"crash region:\s+\[(0x[0-9a-fA-F]+),\s*(0x[0-9a-fA-F]+)\)")

# Leaf categories, in the order of the legend.
C_1G, C_2M, C_2MC, C_4K, C_4KC, C_4K_PART, C_NONE = "1g", "2m", "2mc", "4k", "4kc", "4kpart", "none"
CATEGORY_FILL = {
    C_1G: "#253494",
    C_2M: "#41b6c4",
    C_2MC: "#2c7fb8",
    C_4K: "#d7301f",
    C_4KC: "#fc8d59",
    C_4K_PART: "url(#hatch4k)",
    C_NONE: "#eeeeee",
}
CATEGORY_LABEL = {
    C_1G: "1G block",
    C_2M: "2M block",
    C_2MC: "2M + contiguous",
    C_4K: "4K page",
    C_4KC: "4K + contiguous",
    C_4K_PART: "4K, partly unmapped",
    C_NONE: "unmapped",
}
ATTR_FILL = {
    "rw- normal": "#b0b0b0",
    "r-x normal": "#e7298a",
    "r-- normal": "#e6ab02",
    "rwx normal": "#66a61e",
    "rw- device": "#7570b3",
}
ATTR_OTHER = "#000000"


class PtdumpError(Exception):
    pass


class Run:
    """One ptdump line: [va, end) mapped at pa by `leaves` leaves of `level`."""
    __slots__ = ("table", "va", "end", "pa", "level", "leaves", "cont", "attrs")

    def __init__(self, table, va, end, pa, level, leaves, cont, attrs):
        self.table, self.va, self.end, self.pa = table, va, end, pa
        self.level, self.leaves, self.cont, self.attrs = level, leaves, cont, attrs

    def __repr__(self):
        return "Run(%s %#x..%#x pa=%#x L%d x%d cont=%d %s)" % (
            self.table, self.va, self.end, self.pa, self.level, self.leaves, self.cont, self.attrs)


class Log:
    """What a boot log says about its tables: the last dump of each table, its map-stats,
    the RAM banks and the crash region."""

    def __init__(self):
        self.dumps = {}      # table -> [Run] (the last complete dump)
        self.map_stats = {}  # table -> {key: int}
        self.ram = []        # [(base, end)]
        self.crash = None    # (base, end)
        self.warnings = []


def parse_log(text):
    log = Log()
    current = {}  # table -> the dump being read
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.replace("\r", "")
        if "ptdump:" in line:
            m = PTDUMP_RE.search(line)
            if not m:
                log.warnings.append("line %d: unreadable ptdump line skipped" % lineno)
                continue
            run = Run(m["table"], int(m["va"], 16), int(m["end"], 16), int(m["pa"], 16), int(m["level"]),
                      int(m["leaves"]), int(m["cont"]), m["access"] + " " + m["memory"])
            problem = None
            if run.level not in LEVEL_SIZE:
                problem = "level %d" % run.level
            elif run.end <= run.va:
                problem = "end before start"
            elif int(m["size"], 16) != run.end - run.va:
                problem = "size does not match end - va"
            elif run.leaves * LEVEL_SIZE[run.level] != run.end - run.va:
                problem = "leaves x leaf size does not match the size"
            elif run.va % LEVEL_SIZE[run.level] or run.end % LEVEL_SIZE[run.level]:
                problem = "range not aligned to its leaf size"
            if problem:
                log.warnings.append("line %d: %s; skipped" % (lineno, problem))
                continue
            runs = current.setdefault(run.table, [])
            if runs and run.va < runs[-1].end:
                # Addresses went back: a new dump of this table starts (a second boot in the log).
                log.dumps[run.table] = runs
                runs = current[run.table] = []
            runs.append(run)
            continue
        m = MAP_STATS_RE.search(line)
        if m:
            log.map_stats[m["table"]] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)\b", m["rest"])}
            if m["table"] in current:
                log.dumps[m["table"]] = current.pop(m["table"])
            continue
        m = MEMORY_RE.search(line)
        if m:
            base, size = int(m.group(1), 16), int(m.group(2), 16)
            if (base, base + size) not in log.ram:
                log.ram.append((base, base + size))
            continue
        m = CRASH_RE.search(line)
        if m:
            log.crash = (int(m.group(1), 16), int(m.group(2), 16))
    for table, runs in current.items():
        if runs:
            log.dumps[table] = runs  # a dump without its map-stats line (a cut log)
    return log


# ---------------------------------------------------------------------------------------
# Layout: GiB rows of 2M cells, and 2M detail rows of 4K cells.

def gib_segments(runs):
    """{gib index: [(start offset, end offset, level, cont, attrs)]}, adjacent equal
    segments merged, offsets relative to the GiB."""
    rows = {}
    for run in runs:
        addr = run.va
        while addr < run.end:
            gib = addr // GIB
            stop = min(run.end, (gib + 1) * GIB)
            segs = rows.setdefault(gib, [])
            seg = (addr - gib * GIB, stop - gib * GIB, run.level, run.cont, run.attrs)
            if segs and segs[-1][1] == seg[0] and segs[-1][2:] == seg[2:]:
                segs[-1] = (segs[-1][0], seg[1]) + seg[2:]
            else:
                segs.append(seg)
            addr = stop
    return rows


def cell_category(level_bytes, span):
    """The category of a cell of `span` bytes from {(level, cont): bytes mapped}."""
    if not level_bytes:
        return C_NONE
    best = min(level for level, _ in level_bytes)
    if best == 1:
        return C_1G
    if best == 2:
        cont = level_bytes.get((2, 1), 0)
        return C_2MC if cont >= level_bytes.get((2, 0), 0) else C_2M
    mapped = sum(level_bytes.values())
    if mapped < span:
        return C_4K_PART
    return C_4KC if level_bytes.get((3, 1), 0) == mapped else C_4K


def cells(segments, origin, span, cell_size):
    """Cells of `cell_size` over [origin, origin + span): one (category, attrs, mixed,
    has_4k) per cell. `segments` are (start, end, level, cont, attrs) relative to the
    same base as origin."""
    n = span // cell_size
    level_bytes = [dict() for _ in range(n)]
    attr_bytes = [dict() for _ in range(n)]
    for start, end, level, cont, attrs in segments:
        start, end = max(start, origin), min(end, origin + span)
        if start >= end:
            continue
        first, last = (start - origin) // cell_size, (end - 1 - origin) // cell_size
        for i in range(first, last + 1):
            lo = max(start, origin + i * cell_size)
            hi = min(end, origin + (i + 1) * cell_size)
            key = (level, cont)
            level_bytes[i][key] = level_bytes[i].get(key, 0) + hi - lo
            attr_bytes[i][attrs] = attr_bytes[i].get(attrs, 0) + hi - lo
    out = []
    for lb, ab in zip(level_bytes, attr_bytes):
        attrs = max(ab, key=lambda a: ab[a]) if ab else None
        has_4k = any(level == 3 for level, _ in lb)
        out.append((cell_category(lb, cell_size), attrs, len(ab) > 1, has_4k))
    return out


def fold(items, key):
    """[(first index, count, item)] folding consecutive items with equal keys."""
    out = []
    for i, item in enumerate(items):
        if out and key(out[-1][2]) == key(item) and out[-1][0] + out[-1][1] == i:
            out[-1] = (out[-1][0], out[-1][1] + 1, out[-1][2])
        else:
            out.append((i, 1, item))
    return out


def layout(runs, max_detail=24):
    """The rows to draw: ("gib", first gib, count, cells, summary), ("gap", gibs),
    then ("detail", base address, count, cells, summary) rows; and the detail rows left out."""
    rows_by_gib = gib_segments(runs)
    gibs = sorted(rows_by_gib)
    # Fold consecutive GiBs whose segment pattern is the same.
    groups = []
    for gib in gibs:
        segs = rows_by_gib[gib]
        if groups and groups[-1][0] + groups[-1][1] == gib and groups[-1][2] == segs:
            groups[-1][1] += 1
        else:
            groups.append([gib, 1, segs])
    rows, details = [], []
    prev_end = None
    for gib, count, segs in groups:
        if prev_end is not None and gib > prev_end:
            rows.append(("gap", gib - prev_end))
        prev_end = gib + count
        row_cells = cells(segs, 0, GIB, MIB2)
        rows.append(("gib", gib, count, row_cells, summarize(segs)))
        # Detail rows for the 2M cells with 4K pages (of the first GiB of a folded group).
        for i, cell in enumerate(row_cells):
            if cell[3]:
                base = gib * GIB + i * MIB2
                sub = [s for s in segs if s[0] < (i + 1) * MIB2 and s[1] > i * MIB2]
                rel = [(max(0, s[0] - i * MIB2), min(MIB2, s[1] - i * MIB2)) + s[2:] for s in sub]
                details.append((base, count, rel))
    # Fold consecutive 2M regions with the same 4K pattern.
    folded = []  # [base, consecutive regions, pattern, GiB repeat]
    for base, repeat, rel in details:
        last = folded[-1] if folded else None
        if last and last[2] == rel and last[3] == repeat and last[0] + last[1] * MIB2 == base:
            last[1] += 1
        else:
            folded.append([base, 1, rel, repeat])
    shown = folded[:max_detail]
    detail_rows = [("detail", base, n, cells(rel, 0, MIB2, PAGE), summarize(rel), repeat)
                   for base, n, rel, repeat in shown]
    return rows, detail_rows, len(folded) - len(shown)


def summarize(segments):
    """`2M x14, 4K x881 (cont 448)`-style leaf counts of the segments."""
    counts = {}
    for start, end, level, cont, _ in segments:
        n = (end - start) // LEVEL_SIZE[level]
        c = counts.setdefault(level, [0, 0])
        c[0] += n
        c[1] += n if cont else 0
    parts = []
    for level, name in ((1, "1G"), (2, "2M"), (3, "4K")):
        if level in counts:
            n, cont = counts[level]
            parts.append("%s x%d%s" % (name, n, " (cont %d)" % cont if cont else ""))
    return ", ".join(parts)


def totals(runs):
    counts = {1: [0, 0], 2: [0, 0], 3: [0, 0]}
    for run in runs:
        counts[run.level][0] += run.leaves
        counts[run.level][1] += run.leaves if run.cont else 0
    return counts


# ---------------------------------------------------------------------------------------
# SVG.

LEFT, CELL_W, RIGHT = 150, 2, 260
ROW_W = 512 * CELL_W
WIDTH = LEFT + ROW_W + RIGHT
PITCH, GAP_PITCH = 26, 16
FONT = "font-family='DejaVu Sans Mono, Menlo, Consolas, monospace'"


def fmt_addr(addr):
    return "0x%010x" % addr


def fmt_size(n):
    for unit, size in (("T", 1 << 40), ("G", GIB), ("M", 1 << 20), ("K", 1024)):
        if n >= size and n % size == 0:
            return "%d%s" % (n // size, unit)
    return "%#x" % n


def rle(items, key):
    """[(start index, length, item)] of runs of equal keys."""
    return [(i, n, item) for i, n, item in fold(items, key)]


def draw_row(out, y, row_cells, label, right, ram_mask=None, crash_mask=None):
    """One row of cells at y: 4K marker, leaf bar, attribute strip, RAM line."""
    n = len(row_cells)
    w = ROW_W / n
    out.append("<text x='%d' y='%d' font-size='11' %s text-anchor='end'>%s</text>" % (
        LEFT - 6, y + 16, FONT, escape(label)))
    out.append("<text x='%d' y='%d' font-size='10' %s>%s</text>" % (
        LEFT + ROW_W + 6, y + 16, FONT, escape(right)))
    for i, length, cell in rle(row_cells, key=lambda c: c[0]):
        out.append("<rect x='%.2f' y='%d' width='%.2f' height='12' fill='%s'/>" % (
            LEFT + i * w, y + 6, length * w, CATEGORY_FILL[cell[0]]))
    # Marks above the cells holding 4K pages, at least 3 px wide so one cell shows.
    if w >= 1:
        for i, length, cell in rle(row_cells, key=lambda c: c[3]):
            if cell[3]:
                width = max(length * w, 3)
                out.append("<rect x='%.2f' y='%d' width='%.2f' height='4' fill='#7f0000'/>" % (
                    LEFT + i * w + (length * w - width) / 2, y + 1, width))
    for i, length, cell in rle(row_cells, key=lambda c: c[1]):
        if cell[1] is not None:
            out.append("<rect x='%.2f' y='%d' width='%.2f' height='4' fill='%s'/>" % (
                LEFT + i * w, y + 18, length * w, ATTR_FILL.get(cell[1], ATTR_OTHER)))
    for i, length, cell in rle(row_cells, key=lambda c: c[2]):
        if cell[2]:
            out.append("<rect x='%.2f' y='%d' width='%.2f' height='2' fill='#000'/>" % (
                LEFT + i * w, y + 20, max(length * w, 2)))
    if ram_mask:
        for i, length, on in rle(ram_mask, key=lambda v: v):
            if on:
                out.append("<rect x='%.2f' y='%d' width='%.2f' height='2' fill='#333333'/>" % (
                    LEFT + i * w, y + 23, length * w))
    if crash_mask:
        # The crash region: a red frame around its cells and a red line under them.
        for i, length, on in rle(crash_mask, key=lambda v: v):
            if on:
                out.append("<rect x='%.2f' y='%d' width='%.2f' height='2' fill='#e31a1c'/>" % (
                    LEFT + i * w, y + 23, length * w))
                out.append("<rect x='%.2f' y='%d' width='%.2f' height='13' fill='none' stroke='#e31a1c' "
                           "stroke-width='1.5'/>" % (LEFT + i * w + 0.75, y + 5.5, max(length * w - 1.5, 1)))


def range_mask(ranges, base, span, cell_size):
    """Per cell of [base, base + span): True when any of `ranges` overlaps it."""
    n = span // cell_size
    mask = [False] * n
    for lo, hi in ranges:
        lo, hi = max(lo, base), min(hi, base + span)
        if lo >= hi:
            continue
        for i in range((lo - base) // cell_size, (hi - 1 - base) // cell_size + 1):
            mask[i] = True
    return mask if any(mask) else None


def render_svg(log, table, source="", title=None, max_detail=24):
    runs = log.dumps.get(table)
    if not runs:
        present = ", ".join(sorted(log.dumps)) or "none"
        raise PtdumpError("no 'ptdump: table=%s' lines (tables in the log: %s)" % (table, present))
    rows, detail_rows, left_out = layout(runs, max_detail)
    counts = totals(runs)
    crash = [log.crash] if log.crash else []
    out = []
    y = 22
    heading = title or ("%s map" % ("EL2 stage-1" if table == "el2" else "guest stage-2" if table == "stage2" else table))
    body = []
    body.append("<text x='10' y='%d' font-size='15' font-weight='bold' %s>%s</text>" % (y, FONT, escape(heading)))
    y += 18
    stats = log.map_stats.get(table, {})
    sub = "1G x%d, 2M x%d (cont %d), 4K x%d (cont %d)" % (
        counts[1][0], counts[2][0], counts[2][1], counts[3][0], counts[3][1])
    if stats:
        sub += "; table pages %s, descriptors written %s, build %s us" % (
            stats.get("table_pages", "?"), stats.get("descriptors", "?"), stats.get("build_us", "?"))
    body.append("<text x='10' y='%d' font-size='11' %s>%s</text>" % (y, FONT, escape(sub)))
    y += 14
    if source:
        body.append("<text x='10' y='%d' font-size='10' fill='#555' %s>%s</text>" % (
            y, FONT, escape("from %s; %s addresses, one row per GiB, 2 MiB cells" % (
                source, "virtual" if table == "el2" else "intermediate physical"))))
        y += 14
    # Axis.
    y += 6
    for frac, text in ((0, "+0"), (0.25, "+256M"), (0.5, "+512M"), (0.75, "+768M"), (1, "+1G")):
        x = LEFT + frac * ROW_W
        body.append("<line x1='%.1f' y1='%d' x2='%.1f' y2='%d' stroke='#999'/>" % (x, y, x, y + 5))
        anchor = "start" if frac == 0 else "end" if frac == 1 else "middle"
        body.append("<text x='%.1f' y='%d' font-size='9' %s text-anchor='%s'>%s</text>" % (
            x, y - 2, FONT, anchor, text))
    y += 6
    for row in rows:
        if row[0] == "gap":
            body.append("<text x='%d' y='%d' font-size='10' fill='#777' %s>%s</text>" % (
                LEFT + 4, y + 11, FONT, escape("... %d GiB without mappings ..." % row[1])))
            y += GAP_PITCH
            continue
        _, gib, count, row_cells, summary = row
        label = fmt_addr(gib * GIB)
        right = summary
        if count > 1:
            label = "x%d " % count + label
            right = "x%d GiB, each: %s" % (count, summary)
        crash_mask = range_mask(crash, gib * GIB, GIB, MIB2)
        draw_row(body, y, row_cells, label, right, range_mask(log.ram, gib * GIB, GIB, MIB2), crash_mask)
        if crash_mask:
            body.append("<text x='%d' y='%d' font-size='9' fill='#e31a1c' %s>%s</text>" % (
                LEFT + ROW_W + 6, y + 25, FONT, escape("crash region [%#x, %#x)" % log.crash)))
        y += PITCH
    if detail_rows:
        y += 10
        body.append("<text x='10' y='%d' font-size='12' font-weight='bold' %s>%s</text>" % (
            y + 4, FONT, escape("2 MiB regions holding 4K pages (each row 512 x 4K)")))
        y += 12
        for _, base, n, row_cells, summary, repeat in detail_rows:
            label = fmt_addr(base)
            right = summary
            if n > 1:
                label = "x%d %s" % (n, label)
                right = "x%d consecutive, each: %s" % (n, summary)
            if repeat > 1:
                right += " (same in each of the x%d GiB)" % repeat
            draw_row(body, y, row_cells, label, right,
                     range_mask(log.ram, base, MIB2, PAGE), range_mask(crash, base, MIB2, PAGE))
            y += PITCH
        if left_out:
            body.append("<text x='%d' y='%d' font-size='10' fill='#777' %s>%s</text>" % (
                LEFT + 4, y + 11, FONT, escape("... %d more 2 MiB region(s) with 4K pages not shown (--detail)" % left_out)))
            y += GAP_PITCH
    # Legend.
    y += 12
    x = 10
    body.append("<text x='%d' y='%d' font-size='11' font-weight='bold' %s>leaf</text>" % (x, y + 10, FONT))
    x += 40
    for cat in (C_1G, C_2M, C_2MC, C_4K, C_4KC, C_4K_PART, C_NONE):
        body.append("<rect x='%d' y='%d' width='14' height='12' fill='%s' stroke='#666' stroke-width='0.5'/>" % (
            x, y, CATEGORY_FILL[cat]))
        body.append("<text x='%d' y='%d' font-size='10' %s>%s</text>" % (x + 18, y + 10, FONT, CATEGORY_LABEL[cat]))
        x += 26 + 7 * len(CATEGORY_LABEL[cat])
    body.append("<rect x='%d' y='%d' width='14' height='4' fill='#7f0000'/>" % (x, y + 4))
    body.append("<text x='%d' y='%d' font-size='10' %s>holds 4K pages</text>" % (x + 18, y + 10, FONT))
    y += 20
    x = 10
    body.append("<text x='%d' y='%d' font-size='11' font-weight='bold' %s>attrs</text>" % (x, y + 10, FONT))
    x += 50
    for attrs, fill in ATTR_FILL.items():
        body.append("<rect x='%d' y='%d' width='14' height='5' fill='%s'/>" % (x, y + 4, fill))
        body.append("<text x='%d' y='%d' font-size='10' %s>%s</text>" % (x + 18, y + 10, FONT, attrs))
        x += 26 + 7 * len(attrs)
    marks = [("#000", "mixed attributes", 2)]
    if log.ram:
        marks.append(("#333333", "RAM", 2))
    if log.crash:
        marks.append(("#e31a1c", "crash region", 2))
    for fill, text, h in marks:
        if text == "crash region":
            body.append("<rect x='%d' y='%d' width='14' height='10' fill='none' stroke='%s' stroke-width='1.5'/>" % (
                x, y + 1, fill))
        else:
            body.append("<rect x='%d' y='%d' width='14' height='%d' fill='%s'/>" % (x, y + 6, h, fill))
        body.append("<text x='%d' y='%d' font-size='10' %s>%s</text>" % (x + 18, y + 10, FONT, text))
        x += 26 + 7 * len(text)
    y += 24
    out.append("<?xml version='1.0' encoding='UTF-8'?>")
    out.append("<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' viewBox='0 0 %d %d'>" % (
        WIDTH, y, WIDTH, y))
    out.append("<defs><pattern id='hatch4k' width='4' height='4' patternUnits='userSpaceOnUse' "
               "patternTransform='rotate(45)'><rect width='4' height='4' fill='%s'/>"
               "<rect width='2' height='4' fill='#ffffff'/></pattern></defs>" % CATEGORY_FILL[C_4K])
    out.append("<rect width='100%' height='100%' fill='#ffffff'/>")
    out.append("<g shape-rendering='crispEdges'>")
    out.extend(body)
    out.append("</g></svg>")
    return "\n".join(out) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="ptdump-svg.py", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", metavar="LOGFILE", help="a boot log with ptdump: lines ('-': standard input)")
    parser.add_argument("--table", default="el2", help="el2 (default) or stage2")
    parser.add_argument("-o", "--output", help="the SVG file (default: LOGFILE's name with .TABLE.svg; '-': standard output)")
    parser.add_argument("--detail", type=int, default=24, help="at most this many 4K detail rows (default 24)")
    parser.add_argument("--title", help="the picture's heading")
    args = parser.parse_args(argv)
    try:
        if args.log == "-":
            text = sys.stdin.read()
        else:
            with open(args.log, "rb") as f:
                text = f.read().decode("utf-8", "replace")
    except OSError as error:
        print("ptdump-svg: cannot read %s: %s" % (args.log, error.strerror or error), file=sys.stderr)
        return 1
    log = parse_log(text)
    for warning in log.warnings[:10]:
        print("ptdump-svg: warning: %s" % warning, file=sys.stderr)
    source = "stdin" if args.log == "-" else os.path.basename(args.log)
    try:
        svg = render_svg(log, args.table, source, args.title, max(args.detail, 0))
    except PtdumpError as error:
        print("ptdump-svg: %s: %s" % (source, error), file=sys.stderr)
        return 1
    output = args.output
    if output is None:
        stem = args.log[:-4] if args.log.endswith(".log") else args.log
        output = "%s.%s.svg" % (stem if args.log != "-" else "ptdump", args.table)
    if output == "-":
        sys.stdout.write(svg)
    else:
        try:
            with open(output, "w") as f:
                f.write(svg)
        except OSError as error:
            print("ptdump-svg: cannot write %s: %s" % (output, error.strerror or error), file=sys.stderr)
            return 1
        print("ptdump-svg: wrote %s" % output, file=sys.stderr)
    return 0

