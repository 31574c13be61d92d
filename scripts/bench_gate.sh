#!/usr/bin/env bash
# The client gateway's benchmark: ember-bot (another process) against
#   ws_echo_floor     a bare WebSocket server on the same library (bench/gate/ws_floor.cpp)
#   gate_rpc          bots -> gateway -> a backend service -> reply, at full speed, then at half
#                     of that rate for the latency
#   idle_connections  idle logged-in sessions held, and the gateway's memory per connection
#   group_broadcast   one group of 10,000 sessions, broadcasts pushed to all of them
#   directory_claims  what a session directory in etcd could sustain: UIDs claimed as logins
#                     would claim them (fresh, and replacing a holder), 1/8/32 clients, fsync on
# and the session directory end to end (bench/gate/cluster_bench.cpp: its own etcd, fsync on,
# gateway processes in a cluster, a backend node and the clients in the bench process):
#   logins_per_s      logins through one gateway, 64 at once (each claims its UID in etcd)
#   push_to_uid       pushes by UID from the backend at 2,000/s; latency until the client has it
#   resume_elsewhere  1,000 resumable players' connections drop at once; each resumes its session
#                     on a second gateway (from its drop to its Welcome)
#   relogin_after_kill  1,000 players log in again on a second gateway after the first was killed
#                     with SIGKILL; from the kill until each is welcomed
# floor and gate_rpc alternate, --runs times each; medians and ratios at the end. Appends JSON
# lines to bench-results-gate.jsonl (or --out FILE).
#   scripts/bench_gate.sh            full: 200,000 idle sessions, 3 runs, 8 s each
#   scripts/bench_gate.sh --quick    under 2 minutes: 20,000 idle sessions, 3 runs, 3 s each
#   scripts/bench_gate.sh --idle-only  the idle_connections scenario alone
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0 runs=3 out=bench-results-gate.jsonl idle_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --runs) runs="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --idle-only) idle_only=1; shift ;;
    *) echo "bench_gate: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ "$quick" = 1 ]; then idle=20000 seconds=3; else idle=200000 seconds=8; fi
members=10000 blasts=10 conns=100 window=8

cmake --preset bench >/dev/null
cmake --build --preset bench -j "$(nproc)" --target gate_bench_node gate_ws_floor gate_claims_bench \
  gate_cluster_bench ember-bot >/dev/null
bot=build/bench/tools/ember-bot
node_bin=build/bench/bench/gate_bench_node
floor_bin=build/bench/bench/gate_ws_floor
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
# Both ends of every connection live on this machine, each end in its own process. A process
# cannot hold more descriptors than its hard limit; where that cannot be raised (a container
# without CAP_SYS_RESOURCE), the idle scenario holds what fits and says so.
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fd_limit="$(ulimit -n)"
if [ "$fd_limit" != unlimited ] && [ "$idle" -gt $((fd_limit - 1000)) ]; then
  echo "bench_gate: this machine allows $fd_limit descriptors per process; holding $((fd_limit - 1000)) idle sessions instead of $idle" >&2
  idle=$((fd_limit - 1000))
fi

work="$(mktemp -d /tmp/ember-bench-gate.XXXXXX)"
server_pid=""
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
trap 'stop_server; rm -rf "$work"' EXIT

# Waits (bounded) for a line matching $2 in file $1 and prints the host:port in it.
wait_address() {
  local address=""
  for _ in $(seq 200); do
    address="$(grep -o "$2[0-9.]*:[0-9]*" "$1" | head -1 | sed "s|$2||")" || true
    [ -n "$address" ] && { echo "$address"; return 0; }
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  cat "$1" >&2
  echo "bench_gate: the server did not start" >&2
  return 1
}

# Each sets server_pid and address (no subshell: the PID must reach stop_server).
start_floor() {
  "$floor_bin" 0 1 >"$work/floor.log" 2>&1 &
  server_pid=$!
  address="$(wait_address "$work/floor.log" "listening on ")"
}

start_gate() {
  cat >"$work/node.yaml" <<YAML
NodeConf: {NodeId: bench-gate, WorkerThreads: 1}
SystemLogger: {Level: warn}
GateConf:
  WebSocketAddr: 127.0.0.1:0
  Login: auth.RpcLogin
  Routes: [bench.*]
  IoThreads: 1
  MaxConnections: 1000000
  RequestsPerSecond: 1000000
  RequestBurst: 1000000
  MaxInFlight: 1024
  SendQueueBytes: 16777216
  HandshakeTimeout: 120s
  Heartbeat: 10m
  IdleTimeout: 1h
ServiceConf:
  StartServices:
    - {ClassName: Auth, ServiceName: auth}
    - {ClassName: Bench, ServiceName: bench}
YAML
  # info for the one line that names the address, then quiet
  sed -i 's/Level: warn/Level: info/' "$work/node.yaml"
  "$node_bin" --config "$work/node.yaml" >"$work/node.log" 2>&1 &
  server_pid=$!
  address="$(wait_address "$work/node.log" "gateway: ws://")"
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

record() {  # scenario run json-fields...
  local scenario="$1" run="$2"; shift 2
  echo "{\"suite\":\"gate\",\"commit\":\"$commit\",\"scenario\":\"$scenario\",\"run\":$run,$*}" | tee -a "$work/results.jsonl"
}

summary_field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

[ "$idle_only" = 1 ] && runs=0
for run in $(seq "$runs"); do
  # --- floor ---
  start_floor
  line="$("$bot" --url "ws://$address/ws" --connections $conns --window $window --route bench.RpcEcho \
          --payload-bytes 64 --duration "${seconds}s" --json | grep '"phase":"summary"')"
  stop_server
  record ws_echo_floor "$run" "\"msgs_per_s\":$(summary_field "$line" requests_per_s),\"p50_ms\":$(summary_field "$line" p50_ms),\"p99_ms\":$(summary_field "$line" p99_ms)"

  # --- gate_rpc: full speed, then half of it for the latency ---
  start_gate
  line="$("$bot" --url "ws://$address/ws" --connections $conns --window $window --route bench.RpcEcho \
          --payload-bytes 64 --duration "${seconds}s" --json | grep '"phase":"summary"')"
  max="$(summary_field "$line" requests_per_s)"
  record gate_rpc "$run" "\"msgs_per_s\":$max,\"p50_ms\":$(summary_field "$line" p50_ms),\"p99_ms\":$(summary_field "$line" p99_ms)"
  rate="$(python3 -c "print(max(1.0, $max / 2 / $conns))")"
  line="$("$bot" --url "ws://$address/ws" --connections $conns --rate "$rate" --route bench.RpcEcho \
          --payload-bytes 64 --duration "${seconds}s" --json --token-prefix half | grep '"phase":"summary"')"
  record gate_rpc_half_rate "$run" "\"msgs_per_s\":$(summary_field "$line" requests_per_s),\"p50_ms\":$(summary_field "$line" p50_ms),\"p99_ms\":$(summary_field "$line" p99_ms),\"p999_ms\":$(summary_field "$line" p999_ms)"

  # --- group_broadcast: every bot joins one group; one call broadcasts $blasts messages ---
  line="$("$bot" --url "ws://$address/ws" --connections $members --idle --token-prefix member \
          --setup-route bench.RpcJoinAll --trigger-route bench.RpcBlast --trigger-text "$blasts" \
          --expect-pushes $((members * blasts)) --duration 60s --threads 1 --json \
          | grep '"phase":"summary"')"
  record group_broadcast "$run" "\"members\":$members,\"deliveries\":$(summary_field "$line" pushes),\"deliveries_per_s\":$(summary_field "$line" pushes_per_s)"
  stop_server
done

# --- idle_connections: once (it takes the longest) ---
start_gate
sleep 0.5  # the node's own start-up allocations settle (a fixed pause for a baseline, not a wait)
base_kb="$(rss_kb "$server_pid")"
"$bot" --url "ws://$address/ws" --connections $idle --idle --duration 10s --connect-parallel 512 \
  --threads 2 --json >"$work/idle.jsonl" 2>"$work/idle.err" &
bot_pid=$!
for _ in $(seq 6000); do  # up to 10 minutes to log everyone in
  grep -q '"phase":"connected"' "$work/idle.jsonl" 2>/dev/null && break
  kill -0 "$bot_pid" 2>/dev/null || break
  sleep 0.1
done
connected_line="$(grep '"phase":"connected"' "$work/idle.jsonl" || true)"
held_kb="$(rss_kb "$server_pid")"
wait "$bot_pid" || true
stop_server
if [ -n "$connected_line" ]; then
  held="$(summary_field "$connected_line" connections)"
  per="$(python3 -c "print(round(($held_kb - $base_kb) * 1024 / max(1, $held)))")"
  record idle_connections 1 "\"connections\":$held,\"bytes_per_connection\":$per,\"connect_seconds\":$(summary_field "$connected_line" seconds),\"fd_limit\":\"$fd_limit\""
else
  cat "$work/idle.err" >&2
  record idle_connections 1 "\"connections\":0,\"error\":\"the bots did not connect\""
fi

# --- directory_claims: its own etcd, its own repetitions ---
if [ "$idle_only" = 0 ]; then
  EMBER_COMMIT="$commit" build/bench/bench/gate_claims_bench --seconds "$([ "$quick" = 1 ] && echo 1 || echo 3)" \
    --runs 3 --threads 1,8,32 | tee -a "$work/results.jsonl"

  # --- logins_per_s, push_to_uid, resume_elsewhere, relogin_after_kill: its own etcd and
  # gateway processes ---
  cluster_args=(--runs "$runs")
  [ "$quick" = 1 ] && cluster_args+=(--quick)
  EMBER_COMMIT="$commit" build/bench/bench/gate_cluster_bench "${cluster_args[@]}" \
    | tee -a "$work/results.jsonl"
fi

cat "$work/results.jsonl" >>"$out"
python3 - "$work/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(scenario, key):
    values = [r[key] for r in rows if r["scenario"] == scenario and r.get(key) is not None]
    return statistics.median(values) if values else float("nan")
floor, gate = med("ws_echo_floor", "msgs_per_s"), med("gate_rpc", "msgs_per_s")
print(f"\nmedians over {len([r for r in rows if r['scenario'] == 'gate_rpc'])} runs")
print(f"  ws_echo_floor      {floor:>10.0f} msgs/s")
print(f"  gate_rpc           {gate:>10.0f} msgs/s  = {gate / floor:.2f} x floor   p50 {med('gate_rpc', 'p50_ms'):.2f} ms")
print(f"  at half that rate  p50 {med('gate_rpc_half_rate', 'p50_ms'):.2f} ms  p99 {med('gate_rpc_half_rate', 'p99_ms'):.2f} ms  p999 {med('gate_rpc_half_rate', 'p999_ms'):.2f} ms")
print(f"  group_broadcast    {med('group_broadcast', 'deliveries_per_s'):>10.0f} deliveries/s to {med('group_broadcast', 'members'):.0f} members")
print(f"  idle_connections   {med('idle_connections', 'connections'):>10.0f} sessions, {med('idle_connections', 'bytes_per_connection'):.0f} bytes each")
for kind in ("fresh", "replace"):
    cells = []
    for threads in (1, 8, 32):
        values = [r["claims_per_s"] for r in rows if r["scenario"] == "directory_claims" and r["kind"] == kind and r["threads"] == threads]
        if values:
            cells.append(f"{statistics.median(values):.0f}/s at {threads}")
    if cells:
        print(f"  directory_claims   {kind:8} " + ", ".join(cells))
print(f"  logins_per_s       {med('logins_per_s', 'logins_per_s'):>10.0f} logins/s through one gateway (claims in etcd)")
print(f"  push_to_uid        p50 {med('push_to_uid', 'p50_ms'):.2f} ms  p99 {med('push_to_uid', 'p99_ms'):.2f} ms  backend -> gateway -> client")
print(f"  resume_elsewhere   p50 {med('resume_elsewhere', 'p50_ms'):.0f} ms  p99 {med('resume_elsewhere', 'p99_ms'):.0f} ms  all {med('resume_elsewhere', 'players'):.0f} resumed after {med('resume_elsewhere', 'all_back_ms'):.0f} ms")
print(f"  relogin_after_kill p50 {med('relogin_after_kill', 'p50_ms'):.0f} ms  p99 {med('relogin_after_kill', 'p99_ms'):.0f} ms  all {med('relogin_after_kill', 'players'):.0f} back after {med('relogin_after_kill', 'all_back_ms'):.0f} ms, {med('relogin_after_kill', 'retries'):.0f} logins refused on the way")
PY
