#!/usr/bin/env bash
# Builds the benchmarks in release mode and runs Ember and CAF side by side (same scenarios, same
# thread count, interleaved repetitions). Prints a table of medians with the Ember/CAF ratio and
# writes one JSON object per line to bench-results.jsonl (or --out FILE).
#   scripts/bench.sh            full run (5 repetitions)
#   scripts/bench.sh --quick    under a minute
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --preset bench >/dev/null
cmake --build --preset bench -j "$(nproc)" --target ember_vs_caf
exec ./build/bench/bench/ember_vs_caf "$@"
