#!/usr/bin/env bash
# Builds the event fan-out benchmark in release mode and runs it: one event to 10,000 services
# over 3 nodes with the "cluster" and "nats" backends, the in-process floor, and plain NATS in
# the same run. Starts its own etcd and nats-server on free loopback ports. Prints a table of
# medians and appends one JSON object per metric to bench-results-events.jsonl (or --out FILE).
#   scripts/bench_events.sh            full run (5 interleaved repetitions, 200 events)
#   scripts/bench_events.sh --quick    3 repetitions, 50 events
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --preset bench >/dev/null
cmake --build --preset bench -j "$(nproc)" --target ember_events_bench
EMBER_COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
export EMBER_COMMIT
exec ./build/bench/bench/ember_events_bench "$@"
