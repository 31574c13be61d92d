#!/usr/bin/env bash
# Builds the cross-process benchmarks in release mode and runs them: raw asio TCP floor, Ember
# remote Call and Send, gRPC unary and CAF 0.17 remote actors, each with a server process on
# 127.0.0.1. Prints a table of medians with ratios and appends one JSON object per metric to
# bench-results-remote.jsonl (or --out FILE).
#   scripts/bench_remote.sh            full run (5 interleaved repetitions)
#   scripts/bench_remote.sh --quick    3 repetitions, smaller counts
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --preset bench >/dev/null
cmake --build --preset bench -j "$(nproc)" --target ember_remote_bench
EMBER_COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
export EMBER_COMMIT
exec ./build/bench/bench/ember_remote_bench "$@"
