#!/usr/bin/env bash
# The load test across two processes: a local etcd (unless EMBER_ETCD_ENDPOINTS is set), the
# target node, then the driver node, which prints one result block per mode and exits. Exits
# non-zero if a node fails or a request was lost.
#   run.sh --bin PATH_TO_load_test [--total N] [--concurrency N] [--mode send|call|asyncCall|coCall|all]
#          [--json FILE]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="" total=100000 concurrency=500 mode=all json=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --total) total="$2"; shift 2 ;;
    --concurrency) concurrency="$2"; shift 2 ;;
    --mode) mode="$2"; shift 2 ;;
    --json) json="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[[ -x "$bin" ]] || { echo "usage: $0 --bin LOAD_TEST [--total N] [--concurrency N] [--mode M]" >&2; exit 2; }

# shellcheck source=../../scripts/lib/local_cluster.sh
source "$here/../../scripts/lib/local_cluster.sh"

work="$(mktemp -d)"
target_pid=""
driver_pid=""
cleanup() {
  for pid in $driver_pid $target_pid; do stop_process "$pid"; done
  stop_local_etcd
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAILED: $*" >&2
  for f in "$work"/*.log; do echo "----- $(basename "$f")"; tail -n 30 "$f"; done >&2
  exit 1
}

start_local_etcd "$work" >/dev/null || fail "etcd did not start"
"$bin" --config "$here/target.yaml" >"$work/target.log" 2>&1 &
target_pid=$!

# The driver bounds its own wait for the target (30 s) and each request (30 s); the whole run is
# bounded here too, generously: 1 ms per request per mode, plus a minute.
export LOAD_TOTAL="$total" LOAD_CONCURRENCY="$concurrency" LOAD_MODE="$mode" LOAD_JSON="$json"
limit=$((60 + total * 4 / 1000))
set +e
timeout --signal=TERM --kill-after=10 "$limit" "$bin" --config "$here/driver.yaml" 2>"$work/driver.log" &
driver_pid=$!
wait "$driver_pid"
code=$?
driver_pid=""
set -e
kill -0 "$target_pid" 2>/dev/null || fail "the target node died"
[[ "$code" -eq 0 ]] || fail "the driver exited with $code"
