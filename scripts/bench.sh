#!/usr/bin/env bash
# Benchmarks, each printed next to a baseline measured in the same run (see bench.py).
#   scripts/bench.sh map|boot|protect|all [--runs N]
exec python3 "$(dirname "$0")/bench.py" "$@"
