#!/usr/bin/env bash
# Builds the autoscaling burst benchmark in release mode and runs it: offered load jumps 10x for
# a few seconds; queueing delay (p50/p99, p99 during the burst), CPU time and lane counts with
# autoscaling off, with queue_length, with queue_delay, and with the lanes fixed at Max. Prints
# a table of medians and appends one JSON object per metric to bench-results-scaling.jsonl.
#   scripts/bench_scaling.sh            full run (5 interleaved repetitions, 3 s burst)
#   scripts/bench_scaling.sh --quick    3 repetitions, 2 s burst
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --preset bench >/dev/null
cmake --build --preset bench -j "$(nproc)" --target ember_scaling_bench
EMBER_COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
export EMBER_COMMIT
exec ./build/bench/bench/ember_scaling_bench "$@"
