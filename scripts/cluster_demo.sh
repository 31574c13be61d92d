#!/usr/bin/env bash
# The cluster demo: a replicated key-value store on three nodes plus a client node.
#   1. starts a local etcd on a free loopback port (unless EMBER_ETCD_ENDPOINTS is set),
#   2. starts kv-1, kv-2, kv-3 (one master/slave group) and a client writing every 200 ms,
#   3. shows the keys in etcd, kills the master with SIGKILL and waits for a slave to take over
#      while the client keeps writing,
#   4. stops everything it started. Exits non-zero if any step fails.
# Usage: cluster_demo.sh --bin PATH_TO_kv_node --examples examples/03_master_slave
set -euo pipefail

bin="" examples=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --examples) examples="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[[ -x "$bin" && -d "$examples" ]] || { echo "usage: $0 --bin KV_NODE --examples DIR" >&2; exit 2; }

# shellcheck source=lib/local_cluster.sh
source "$(dirname "$0")/lib/local_cluster.sh"

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do stop_process "$pid"; done
  stop_local_etcd
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n==> %s\n' "$*"; }
fail() {
  echo "FAILED: $*" >&2
  for f in "$work"/*.log; do echo "----- $(basename "$f")"; tail -n 30 "$f"; done >&2
  exit 1
}

start_local_etcd "$work" || fail "etcd did not start"

say "starting kv-1, kv-2, kv-3 (one master/slave group) and a client"
for n in 1 2 3; do
  "$bin" --config "$examples/kv.yaml" --node-id "kv-$n" >"$work/kv-$n.log" 2>&1 &
  pids+=($!)
done
"$bin" --config "$examples/client.yaml" >"$work/client.log" 2>&1 &
client_pid=$!
pids+=("$client_pid")

acked() { grep -Eo '[0-9]+ writes acknowledged' "$work/client.log" | tail -n 1 | cut -d' ' -f1; }
has_acks() { local n; n="$(acked)"; [[ -n "$n" && "$n" -ge "$1" ]]; }
wait_for 20 has_acks 25 || fail "the client got no 25 writes through"
master="$(grep -Eo 'master is kv-[0-9]+' "$work/client.log" | tail -n 1 | awk '{print $3}')"
epoch="$(grep -Eo 'master is kv-[0-9]+ \(epoch [0-9]+\)' "$work/client.log" | tail -n 1 |
  grep -Eo 'epoch [0-9]+' | awk '{print $2}')"
[[ -n "$master" ]] || fail "no master reported"
grep -h "master is\|writes acknowledged" "$work/client.log" | tail -n 3

say "what the cluster wrote in etcd (etcdctl get --prefix /ember/demo)"
etcdctl --endpoints="$EMBER_ETCD_ENDPOINTS" get --prefix /ember/demo

say "killing the master $master (epoch $epoch) with SIGKILL"
index="${master#kv-}"
killed_at="$(date +%s%3N)"
kill -KILL "${pids[$((index - 1))]}"
wait "${pids[$((index - 1))]}" 2>/dev/null || true
new_master_reported() {
  grep -Eo 'master is kv-[0-9]+' "$work/client.log" | tail -n 1 | grep -vq "$master"
}
wait_for 15 new_master_reported || fail "no slave took over within 15 s"
took=$(($(date +%s%3N) - killed_at))
line="$(grep -E 'master is kv-[0-9]+' "$work/client.log" | tail -n 1)"
new_epoch="$(echo "$line" | grep -Eo 'epoch [0-9]+' | awk '{print $2}')"
echo "$line"
echo "failover seen by the client after ${took} ms (lease TTL 3 s); epoch $epoch -> $new_epoch"
((new_epoch > epoch)) || fail "the epoch did not increase"

before="$(acked)"
wait_for 20 has_acks $((before + 25)) || fail "writes did not resume"
grep -h "writes acknowledged" "$work/client.log" | tail -n 1
failed="$(grep -c 'write failed\|write refused' "$work/client.log" || true)"
echo "writes that failed during the failover: $failed"
grep -h "I am the master\|state restored" "$work/"kv-*.log | tail -n 4 || true

say "stopping everything"
kill -TERM "$client_pid"
wait_for 10 bash -c "! kill -0 $client_pid 2>/dev/null" || fail "the client did not stop"
echo "demo complete"
