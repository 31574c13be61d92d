#!/usr/bin/env bash
# A real node process: SIGTERM (and SIGINT) must stop it cleanly, in bounded time, exit code 0.
# Usage: sigterm_test.sh NODE_BINARY CONFIG
set -euo pipefail
binary="$1"
config="$2"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

run_with_signal() {
  local signal="$1"
  # A log per run: the shell truncates it in the child, after this script may already read it.
  local log="$work/out-$signal.log"
  DEMO_RUN_FOR_MS=600000 "$binary" --config "$config" >"$log" 2>&1 &
  local pid=$!
  # Wait (bounded) until the node says it started.
  for _ in $(seq 1 200); do
    if grep -q "started 3 services" "$log"; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then echo "node died early"; cat "$log"; return 1; fi
    sleep 0.05
  done
  grep -q "started 3 services" "$log" || { echo "node did not start"; kill -9 "$pid"; return 1; }
  kill "-$signal" "$pid"
  for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.05
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "node still running 5 s after SIG$signal"; kill -9 "$pid"; return 1
  fi
  local code=0
  wait "$pid" || code=$?
  if [ "$code" -ne 0 ]; then echo "exit code $code after SIG$signal"; cat "$log"; return 1; fi
  grep -q "received SIG$signal" "$log" || { echo "no 'received SIG$signal' line"; cat "$log"; return 1; }
  grep -q "room released" "$log" || { echo "services were not released"; cat "$log"; return 1; }
  echo "SIG$signal: clean stop"
}

run_with_signal TERM
run_with_signal INT
echo "sigterm test: ok"
