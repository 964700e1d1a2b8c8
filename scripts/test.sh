#!/usr/bin/env bash
# Runs every test: host unit and property tests of the portable crates, then the QEMU
# boot tests in tests/. Installs what it needs first (scripts/setup.sh).
#   scripts/test.sh [--host-only]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

"$repo/scripts/setup.sh"

echo "== host tests (portable crates)"
cargo test --workspace --exclude qemu-tests

[ "${1:-}" = "--host-only" ] && exit 0

echo "== hypervisor image"
"$repo/scripts/build.sh"

echo "== QEMU tests"
# One QEMU at a time: the machine has two cores and TCG is CPU-bound.
cargo test -p qemu-tests -- --test-threads=1
