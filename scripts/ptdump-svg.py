#!/usr/bin/env python3
"""Draws a translation table from a boot log's `ptdump:` lines as an SVG picture:

    scripts/ptdump-svg.py LOGFILE [--table el2|stage2] [-o OUT.svg] [--detail N] [--title TEXT]

The command only; the parser and renderer are the module scripts/benchlib/ptdump_svg.py
(`--help` prints its description).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib.ptdump_svg import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
