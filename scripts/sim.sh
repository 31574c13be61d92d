#!/usr/bin/env bash
# Soaks the simulator's properties under many seeds (Release build, no sanitizers, so thousands
# of seeds take minutes).
#   scripts/sim.sh                       2000 seeds per property, starting at seed 1
#   scripts/sim.sh --seeds 10000 --first 50000
#   scripts/sim.sh --seed 1234           replay one seed (with its log lines)
# A failure prints the seed; replay it with --seed and keep it as a regression seed in the test.
set -euo pipefail
cd "$(dirname "$0")/.."

seeds=2000
first=1
one=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) seeds="$2"; shift 2 ;;
    --first) first="$2"; shift 2 ;;
    --seed) one="$2"; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "sim: unknown option $1" >&2; exit 2 ;;
  esac
done

cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target ember_sim_tests ember_sim_cluster_tests
bins=(build/release/src/ember_sim_tests build/release/src/ember_sim_cluster_tests)

if [ -n "$one" ]; then
  for bin in "${bins[@]}"; do
    EMBER_SIM_SEED="$one" "$bin"
  done
  exit
fi
start=$(date +%s)
for bin in "${bins[@]}"; do
  EMBER_SIM_SEEDS="$seeds" EMBER_SIM_FIRST_SEED="$first" "$bin" --gtest_brief=1
done
echo "sim: $seeds seeds from $first per property passed in $(( $(date +%s) - start )) s"
