"""Scale (issue 19): the EL2 map and the guest's stage 2 of 1, 16, 64 and 256 GiB machines
(1 TiB with --with-1t), blocks against `mapping=pages`, from the `map-stats:` lines of one
boot per size and mapping. Each boot is stopped as soon as the stage-2 line is out (the
guest prepared, not run), so no Linux boot is waited for. The goals of the issue are checked
here and printed as PASS/FAIL lines; the pure functions (parsing, medians, the goals, the
fits) are tested on recorded console lines in scripts/test_scale.py."""
import re

from .common import BenchError, command_line, find_line, kv_ints, median, progress, run_qemu, spread, tail

SCALE_SIZES = ("1G", "16G", "64G", "256G")
SIZE_1T = "1T"
MAPPINGS = ("blocks", "pages")
TABLES = (("el2", "EL2 direct map", "`map-stats: table=el2`, printed once the hypervisor's own map is built"),
          ("stage2", "Guest stage 2", "`map-stats: table=stage2`, printed when the guest is prepared, before it runs"))
FIELDS = ("build_us", "table_pages", "descriptors", "minimal_descriptors", "tlbi")

# Goal (a): a 256 GiB stage 2 with blocks in at most 1/1000 of the table pages of pages.
GOAL_A_SIZE, GOAL_A_RATIO = "256G", 1000
# Goal (c): build time follows descriptors. An affine fit of the build times against
# descriptors must explain them better than one against GiB mapped, and with blocks the time
# from the smallest to the largest size may grow at most this many times more than the
# descriptors did (a build of a few ms under TCG varies up to 2x between runs; the pages
# builds up to 3x, which is why no absolute R² is asked for).
GROWTH_TOLERANCE = 4.0

# Per boot, to the stage-2 line (the 1 TiB pages boot takes ~45 s on a 2-core host).
TIMEOUT_S = 900


def mem_gib(size):
    """GiB of a run.sh --mem size: 512M -> 0.5, 16G -> 16, 1T -> 1024."""
    m = re.fullmatch(r"([1-9][0-9]*)([MGT])", size)
    if not m:
        raise ValueError("not a size like 512M, 16G or 1T: %r" % size)
    return int(m[1]) * {"M": 1 / 1024, "G": 1, "T": 1024}[m[2]]


def _payload(line, prefix):
    """`line` from `prefix` on, when the line starts with it, alone or after a `[..]`
    timestamp (a log line that quotes the prefix later does not count); else None."""
    m = re.match(r"(\[[^\]]*\]\s*)?" + re.escape(prefix), line)
    return line[m.end() - len(prefix):] if m else None


class StopAfterStage2:
    """run_qemu's `stop`: true once both map-stats lines (el2, then stage2) have arrived."""

    def __init__(self):
        self.seen = set()

    def __call__(self, line):
        payload = _payload(line, "map-stats: table=")
        if payload is not None:
            self.seen.add(payload[len("map-stats: table="):].split(" ", 1)[0])
        return {"el2", "stage2"} <= self.seen


def parse_boot(console):
    """{table: {field: int}} of the el2 and stage2 map-stats lines of one console; a
    BenchError names what is missing."""
    out = {}
    for table, _, _ in TABLES:
        line = find_line(console, "map-stats: table=%s " % table)
        if line is None:
            raise BenchError("no 'map-stats: table=%s' line in the console:\n%s" % (table, tail(console)))
        stats = kv_ints(line)
        missing = [f for f in FIELDS if f not in stats]
        if missing:
            raise BenchError("the 'map-stats: table=%s' line has no %s: %s" % (table, ", ".join(missing), line))
        out[table] = stats
    return out


class Sample:
    """One boot: the parsed map-stats of both tables, QEMU's time to the stage-2 line and
    its peak RSS."""

    def __init__(self, stats, seconds, rss_mib):
        self.stats, self.seconds, self.rss_mib = stats, seconds, rss_mib


def run_scale(ctx):
    """One boot per size and mapping, `runs` rounds (sizes and mappings alternate in each
    round), each stopped at its stage-2 map-stats line."""
    if ctx.scale is not None:
        return
    from .sections import GUEST_ARGS, guest_files, hyp_linux
    kernel, initrd = guest_files()
    sizes = ctx.scale_sizes or SCALE_SIZES
    ctx.cpu_models.add("max")
    scale = {}
    for r in range(ctx.runs):
        for size in sizes:
            for mapping in MAPPINGS:
                progress("scale %s mapping=%s, run %d/%d" % (size, mapping, r + 1, ctx.runs))
                args = hyp_linux(ctx, kernel, initrd, GUEST_ARGS, append="mapping=" + mapping, mem=size)
                log = ctx.log("scale-%s-%s.log" % (size, mapping)) if r == 0 else None
                result = run_qemu(args, timeout=TIMEOUT_S, log=log, stop=StopAfterStage2())
                what = "scale %s mapping=%s run %d" % (size, mapping, r + 1)
                if result.timed_out:
                    raise BenchError("%s: no stage-2 map-stats line after %.0f s:\n%s" % (
                        what, result.wall, tail(result.console)))
                if result.stopped is None:
                    raise BenchError("%s: QEMU ended (exit %d) before both map-stats lines:\n%s" % (
                        what, result.code, tail(result.console)))
                scale.setdefault((size, mapping), []).append(
                    Sample(parse_boot(result.console), result.stopped, result.rss_mib))
                ctx.commands.setdefault("scale", command_line(args))
    ctx.scale = scale


# ---------------------------------------------------------------------------------------
# The numbers: medians per (table, size, mapping), the goals, the fits.

def medians(scale, sizes):
    """{(table, size, mapping): {field: median over the runs}}."""
    out = {}
    for size in sizes:
        for mapping in MAPPINGS:
            samples = scale[(size, mapping)]
            for table, _, _ in TABLES:
                out[(table, size, mapping)] = {f: median([s.stats[table][f] for s in samples]) for f in FIELDS}
    return out


def fit_affine(xs, ys):
    """Least squares y = a + b x: (a, b, R²). R² is 1 when the ys do not vary."""
    n = len(xs)
    if n < 2 or len(set(xs)) < 2:
        raise ValueError("a fit wants at least two different x values")
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    a = my - b * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys))
    return a, b, (1.0 - ss_res / ss_tot) if ss_tot else 1.0


class Goal:
    def __init__(self, ok, name, text):
        self.ok, self.name, self.text = ok, name, text

    def line(self):
        return "- %s (%s) %s" % ("PASS" if self.ok else "**FAIL**", self.name, self.text)


def goal_table_pages(med, sizes):
    """(a): the stage 2 of GOAL_A_SIZE with blocks in at most 1/GOAL_A_RATIO of the table
    pages of mapping=pages."""
    if GOAL_A_SIZE not in sizes:
        return Goal(False, "a", "stage 2 table pages at %s: not measured" % GOAL_A_SIZE)
    blocks = med[("stage2", GOAL_A_SIZE, "blocks")]["table_pages"]
    pages = med[("stage2", GOAL_A_SIZE, "pages")]["table_pages"]
    ok = blocks * GOAL_A_RATIO <= pages
    return Goal(ok, "a", "stage 2 of %s: %s table pages with blocks against %s with `mapping=pages`: "
                "1/%s of them (goal: at most 1/%d)" % (
                    GOAL_A_SIZE, _n(blocks), _n(pages), _n(round(pages / blocks)) if blocks else "∞", GOAL_A_RATIO))


def goal_minimal(scale, sizes):
    """(b): with blocks, descriptors written = minimal_descriptors in every run of every
    size, both tables."""
    bad, runs = [], 0
    for size in sizes:
        for i, sample in enumerate(scale[(size, "blocks")]):
            runs += 1
            for table, _, _ in TABLES:
                s = sample.stats[table]
                if s["descriptors"] != s["minimal_descriptors"]:
                    bad.append("%s %s run %d: %s written, minimal %s" % (
                        table, size, i + 1, _n(s["descriptors"]), _n(s["minimal_descriptors"])))
    if bad:
        return Goal(False, "b", "descriptors written ≠ minimal with blocks: " + "; ".join(bad))
    return Goal(True, "b", "descriptors written = minimal descriptors with blocks, EL2 map and stage 2, "
                "at %s (%d boot(s))" % (", ".join(sizes), runs))


def goal_growth(med, sizes, table):
    """(c) for one table: build time follows descriptors, not bytes mapped. With blocks,
    from the smallest to the largest size (bytes grew largest/smallest times), the time may
    grow at most GROWTH_TOLERANCE times what the descriptors grew; and of two affine fits
    over the medians of both mappings at every size, build_us against descriptors and
    against GiB mapped, the descriptor fit must explain the times better (higher R²)."""
    keys = [(size, mapping) for size in sizes for mapping in MAPPINGS]
    ys = [med[(table, s, m)]["build_us"] for s, m in keys]
    a, b, r2_d = fit_affine([med[(table, s, m)]["descriptors"] for s, m in keys], ys)
    a2, c, r2_g = fit_affine([mem_gib(s) for s, m in keys], ys)
    lo, hi = min(sizes, key=mem_gib), max(sizes, key=mem_gib)
    t_lo, t_hi = med[(table, lo, "blocks")]["build_us"], med[(table, hi, "blocks")]["build_us"]
    d_lo, d_hi = med[(table, lo, "blocks")]["descriptors"], med[(table, hi, "blocks")]["descriptors"]
    g_bytes, g_desc, g_time = mem_gib(hi) / mem_gib(lo), d_hi / d_lo, t_hi / t_lo
    ok = r2_d > r2_g and g_time <= GROWTH_TOLERANCE * g_desc
    name = dict((t, n) for t, n, _ in TABLES)[table]
    return Goal(ok, "c", "%s: with blocks %s → %s, bytes ×%s, descriptors ×%.2f, build time ×%.2f (goal: at most "
                "%.0f × %.2f = %.2f); over all medians, build time = %s µs + %.2f ns × descriptors fits with "
                "R² %.3f, against R² %.3f for %s µs + %s µs × GiB mapped (goal: the descriptor fit the better)" % (
                    name, lo, hi, _n(round(g_bytes)), g_desc, g_time, GROWTH_TOLERANCE, g_desc,
                    GROWTH_TOLERANCE * g_desc, _n(round(a)), b * 1000, r2_d, r2_g, _n(round(a2)), _n(round(c))))


def goals(scale, sizes):
    med = medians(scale, sizes)
    return [goal_table_pages(med, sizes), goal_minimal(scale, sizes)] + [
        goal_growth(med, sizes, table) for table, _, _ in TABLES]


# ---------------------------------------------------------------------------------------
# Markdown.

def _n(x):
    """12,345 for integral values, 1.5 otherwise."""
    if isinstance(x, float) and not x.is_integer():
        return "{:,.1f}".format(x)
    return "{:,}".format(int(x))


def _mib(table_pages):
    """4 KiB table pages in MiB, rounded."""
    return _n(round(table_pages * 4 / 1024))


def _same(values):
    """The value when all runs agree, else `median (min–max)` (common.same with thousands
    separators)."""
    values = list(values)
    if len(set(values)) == 1:
        return _n(values[0])
    return spread(values, "{:,.0f}")


def _ratio(a, b, fmt="{:,.1f}×"):
    return fmt.format(a / b) if b else "–"


def table_rows(scale, sizes, table):
    lines = [
        "| RAM | mapping | build µs | pages ÷ blocks | table pages | table KiB | pages ÷ blocks "
        "| descriptors written | minimal descriptors | written ÷ minimal | TLBIs | ns per descriptor | µs per GiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size in sizes:
        base = None
        for mapping in MAPPINGS:
            stats = [s.stats[table] for s in scale[(size, mapping)]]
            med = {f: median([x[f] for x in stats]) for f in FIELDS}
            if mapping == "blocks":
                base = med
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                size, "blocks (ours)" if mapping == "blocks" else "`pages` (baseline)",
                spread([x["build_us"] for x in stats], "{:.0f}"),
                "–" if mapping == "blocks" else _ratio(med["build_us"], base["build_us"]),
                _same([x["table_pages"] for x in stats]), _n(med["table_pages"] * 4),
                "–" if mapping == "blocks" else _ratio(med["table_pages"], base["table_pages"], "{:,.0f}×"),
                _same([x["descriptors"] for x in stats]), _same([x["minimal_descriptors"] for x in stats]),
                _ratio(med["descriptors"], med["minimal_descriptors"], "{:,.2f}×"),
                _same([x["tlbi"] for x in stats]),
                _n(round(med["build_us"] * 1000 / med["descriptors"], 1)) if med["descriptors"] else "–",
                _n(round(med["build_us"] / mem_gib(size), 1))))
    return lines


def cost_rows(scale, sizes):
    lines = ["| RAM | blocks: s to the stage-2 line | `pages`: s | blocks: peak QEMU RSS MiB | `pages`: MiB |",
             "|---|---|---|---|---|"]
    for size in sizes:
        b, p = scale[(size, "blocks")], scale[(size, "pages")]
        lines.append("| %s | %s | %s | %s | %s |" % (
            size, spread([s.seconds for s in b]), spread([s.seconds for s in p]),
            spread([s.rss_mib for s in b], "{:.0f}"), spread([s.rss_mib for s in p], "{:.0f}")))
    return lines


SEED_MAP_MEM = ("Ryan Roberts, \"Speed up boot with faster linear map creation\" (2024): \"a large portion of the "
                "time it takes to create the linear map is issuing TLBIs\"; `map_mem()` on an Ampere Altra VM "
                "with 256G: 8990 ms on v6.9-rc1, 1312 ms with the whole series (lazy-unmap)")
SEED_500MB = ("\"arm64: mm: support large block mapping when rodata=full\" (2025), on an AmpereOne with 256GB: "
              "\"Around 500MB more memory are free to use. The larger the machine, the more memory saved.\"")


def context_lines(med, sizes):
    lines = ["**The seeds' figures, as context only**: they were measured by Linux on real arm64 hardware "
             "(a KVM guest, or the host itself); ours are the hypervisor's CNTPCT under QEMU's TCG on this "
             "host, a different machine doing different work (Linux builds its linear map with the MMU on, "
             "writing its tables through the fixmap; ours are built before the MMU is on or before the "
             "guest runs), so neither the times nor their ratios compare directly.", ""]
    at = GOAL_A_SIZE if GOAL_A_SIZE in sizes else max(sizes, key=mem_gib)
    e_b, e_p = med[("el2", at, "blocks")], med[("el2", at, "pages")]
    s_b, s_p = med[("stage2", at, "blocks")], med[("stage2", at, "pages")]
    lines.append("- %s. Ours at %s: the EL2 map in %s ms with blocks, %s ms with 4K pages, %s TLBIs either way "
                 "(built before the MMU is on); the stage 2 in %s ms with blocks, %s ms with 4K pages, %s TLBIs "
                 "(built before the guest runs)." % (SEED_MAP_MEM, at, _n(round(e_b["build_us"] / 1000, 1)),
                             _n(round(e_p["build_us"] / 1000, 1)), _n(e_b["tlbi"] + e_p["tlbi"]),
                             _n(round(s_b["build_us"] / 1000, 1)), _n(round(s_p["build_us"] / 1000, 1)),
                             _n(s_b["tlbi"] + s_p["tlbi"])))
    lines.append("- %s Ours at %s: with 4K pages the EL2 map takes %s MiB of tables and the stage 2 %s MiB; "
                 "with blocks %s KiB and %s KiB: blocks save %s MiB in the EL2 map and %s MiB in the stage 2." % (
                     SEED_500MB, at, _mib(e_p["table_pages"]), _mib(s_p["table_pages"]),
                     _n(e_b["table_pages"] * 4), _n(s_b["table_pages"] * 4),
                     _mib(e_p["table_pages"] - e_b["table_pages"]), _mib(s_p["table_pages"] - s_b["table_pages"])))
    return lines


def variation_note(scale, sizes):
    """How far the pages builds varied between runs, when they did by 1.5x or more."""
    worst = max(((max(v) / min(v), table, size) for size in sizes for table, _, _ in TABLES
                 for v in [[s.stats[table]["build_us"] for s in scale[(size, "pages")]]] if min(v) > 0),
                default=(1, None, None))
    if worst[0] < 1.5:
        return ""
    return (" The `pages` builds varied up to %.1f× between runs (%s at %s) with the same descriptors "
            "written: that is QEMU's and the host's time (the host's page faults were the same too when we "
            "checked), hence the wide spreads; the goals use the medians." % worst)


def sizes_note(scale, sizes):
    """Which sizes ran, that pages mode is not capped, and what 1 TiB costs."""
    big = max(sizes, key=mem_gib)
    pages = scale[(big, "pages")]
    text = ("Sizes: %s. `mapping=pages` is measured at every size, uncapped: the %s pages boot writes %s "
            "descriptors for the stage 2 alone (about as many for the EL2 map) and reaches its stage-2 line "
            "in %s s (QEMU's peak RSS %s MiB; table *What each boot cost*)." % (
                ", ".join(sizes), big, _n(median([s.stats["stage2"]["descriptors"] for s in pages])),
                "{:.0f}".format(median([s.seconds for s in pages])),
                "{:.0f}".format(median([s.rss_mib for s in pages]))))
    if SIZE_1T not in sizes:
        text += (" 1 TiB is left to `--with-1t`: its pages boot writes ~268 million descriptors per table, "
                 "takes about 45 s per run on a 2-core host and commits ~4.3 GiB of host memory for the 4K "
                 "tables, about three times the rest of this section together.")
    return text


def section_scale(ctx):
    run_scale(ctx)
    sizes = list(ctx.scale_sizes or SCALE_SIZES)
    scale = ctx.scale
    med = medians(scale, sizes)
    checked = goals(scale, sizes)
    ctx.goal_failures += ["scale (%s)" % g.name for g in checked if not g.ok]
    lines = [
        "The hypervisor with the Linux guest, `-cpu max -smp 2 -m SIZE` (above 16G `scripts/run.sh` gives "
        "QEMU a non-reserving RAM backend: the host commits only what is touched), booted once with "
        "`mapping=blocks` (ours, the default) and once with `mapping=pages` (the baseline: 4K pages for RAM, "
        "and for the image in the EL2 map; devices keep their blocks in both), alternating, %d run(s) each; "
        "medians (min–max). Each boot is stopped as soon as the guest's stage 2 is built and its "
        "`map-stats:` line printed: the guest never runs. `build µs` is the hypervisor's own CNTPCT time of "
        "the whole build; under TCG that is QEMU's time, so only the shapes are exact. *Minimal* is the "
        "fewest descriptors for the same translations with 1G/2M/4K leaves (`minimal_descriptors=`, the "
        "engine's `MinimalCover`). *µs per GiB* divides by the machine's RAM (the stage 2 maps the guest's "
        "share of it: RAM less the hypervisor's image and pool).%s" % (ctx.runs, variation_note(scale, sizes)),
        "",
        sizes_note(scale, sizes),
        "",
    ]
    for table, title, source in TABLES:
        lines += ["### %s" % title, "", "From %s." % source, ""] + table_rows(scale, sizes, table) + [""]
    lines += ["### Goals", ""] + [g.line() for g in checked] + [""]
    lines += ["### What each boot cost", "", "Seconds from QEMU's start to the stage-2 `map-stats:` line "
              "(both tables built and walked for their ptdump lines), and QEMU's peak RSS.", ""]
    lines += cost_rows(scale, sizes) + [""]
    lines += context_lines(med, sizes)
    return "\n".join(lines)
