#!/usr/bin/env bash
# Builds the admin-overhead benchmark in release mode and runs it: fan-in, ping-pong and blocking
# calls on a node without and a node with AdminConf (every message timed), interleaved. Prints a
# table of medians with on/off and appends JSON lines to docs/bench-results-admin.jsonl.
#   scripts/bench_admin.sh            7 repetitions
#   scripts/bench_admin.sh --quick    3 repetitions, smaller sizes
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --preset bench >/dev/null
cmake --build --preset bench -j "$(nproc)" --target ember_admin_overhead_bench
EMBER_COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
export EMBER_COMMIT
exec ./build/bench/bench/ember_admin_overhead_bench "$@"
