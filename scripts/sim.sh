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
cmake --build --preset release -j "$(nproc)" --target ember_sim_tests ember_sim_cluster_tests \
  ember_sim_directory_tests
bins=(build/release/src/ember_sim_tests build/release/src/ember_sim_cluster_tests
  build/release/src/ember_sim_directory_tests)

if [ -n "$one" ]; then
  for bin in "${bins[@]}"; do
    EMBER_SIM_SEED="$one" "$bin"
  done
  exit
fi
# One property at a time, in batches of seeds per process: a crashed node's memory is never freed
# (its threads may have stopped anywhere), so one process running thousands of crash-heavy seeds
# grows by gigabytes. Each batch reports a failing seed; the times show where a soak spends.
batch=250
total_start=$(date +%s)
for bin in "${bins[@]}"; do
  for property in $("$bin" --gtest_list_tests | awk '/^[^ ]/ {suite=$1} /^  / {print suite $1}'); do
    start=$(date +%s)
    for ((from = first; from < first + seeds; from += batch)); do
      n=$(( first + seeds - from < batch ? first + seeds - from : batch ))
      EMBER_SIM_SEEDS="$n" EMBER_SIM_FIRST_SEED="$from" "$bin" --gtest_brief=1 \
        --gtest_filter="$property" >"${TMPDIR:-/tmp}/ember-sim-out.$$" 2>&1 || {
        grep -Ev " (info|debug) " "${TMPDIR:-/tmp}/ember-sim-out.$$" | tail -40 >&2
        echo "sim: $property failed in seeds $from..$((from + n - 1)); rerun it with" \
          "--seeds $n --first $from to see which (or --seed N to replay one)" >&2
        exit 1
      }
    done
    echo "sim: $property: $seeds seeds from $first passed in $(( $(date +%s) - start )) s"
  done
done
rm -f "${TMPDIR:-/tmp}/ember-sim-out.$$"
echo "sim: all properties passed in $(( $(date +%s) - total_start )) s"
