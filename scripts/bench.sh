#!/usr/bin/env bash
# Benchmarks, each next to a baseline measured in the same run (see bench.py --help).
#   scripts/bench.sh [report] [--runs N] [--quick] [--with-xen] [--with-1t]   bench-report/<timestamp>/report.md
#   scripts/bench.sh map|boot|stage2|heap|scale|protect|engine|phases|exits|latency|guests|all [--runs N] [--with-1t]   tables on stdout
exec python3 "$(dirname "$0")/bench.py" "$@"
