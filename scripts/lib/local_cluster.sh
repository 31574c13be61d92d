# Sourced by the scripts that run a cluster on this machine. Needs bash, etcd and etcdctl.
#   stop_process PID           TERM, then KILL if it is still there after 5 s.
#   start_local_etcd WORKDIR   starts etcd on free loopback ports unless EMBER_ETCD_ENDPOINTS is
#                              set; exports EMBER_ETCD_ENDPOINTS and sets etcd_pid (empty when it
#                              did not start one). Returns non-zero if etcd does not start.
#   stop_local_etcd            stops the etcd it started (TERM, then KILL after 5 s).
#   free_port                  prints a loopback port nobody listens on.
#   wait_for SECONDS CMD...    polls CMD every 100 ms until it succeeds or time runs out.

etcd_pid=""

port_is_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 30000))
    if port_is_free "$port"; then echo "$port"; return 0; fi
  done
  return 1
}

wait_for() {
  local limit=$(($1 * 10)); shift
  for _ in $(seq 1 "$limit"); do
    if "$@"; then return 0; fi
    sleep 0.1
  done
  return 1
}

etcd_answers() {
  etcdctl --dial-timeout=1s --command-timeout=1s --endpoints="$EMBER_ETCD_ENDPOINTS" \
    endpoint health >/dev/null 2>&1
}

start_local_etcd() {
  local work="$1" client_port peer_port started give_up_at
  if [[ -n "${EMBER_ETCD_ENDPOINTS:-}" ]]; then
    echo "using etcd at $EMBER_ETCD_ENDPOINTS"
    return 0
  fi
  # A port that looked free may be taken by the time etcd binds it: etcd then exits, and the
  # next attempt takes other ports. Each attempt is bounded (15 s), and so is their number.
  for attempt in 1 2 3; do
    client_port="$(free_port)" && peer_port="$(free_port)" || return 1
    echo "starting etcd on 127.0.0.1:$client_port"
    rm -rf "$work/etcd"
    etcd --name local --data-dir "$work/etcd" \
      --listen-client-urls "http://127.0.0.1:$client_port" \
      --advertise-client-urls "http://127.0.0.1:$client_port" \
      --listen-peer-urls "http://127.0.0.1:$peer_port" \
      --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
      --initial-cluster "local=http://127.0.0.1:$peer_port" \
      --log-level warn --logger zap >"$work/etcd.log" 2>&1 &
    etcd_pid=$!
    export EMBER_ETCD_ENDPOINTS="127.0.0.1:$client_port"
    started=no
    give_up_at=$((SECONDS + 15))
    for _ in $(seq 1 150); do
      if etcd_answers; then started=yes; break; fi
      kill -0 "$etcd_pid" 2>/dev/null || break
      ((SECONDS < give_up_at)) || break
      sleep 0.1
    done
    [[ "$started" == yes ]] && return 0
    echo "etcd did not start (attempt $attempt):" >&2
    tail -n 5 "$work/etcd.log" >&2
    kill -KILL "$etcd_pid" 2>/dev/null || true
    wait "$etcd_pid" 2>/dev/null || true
    etcd_pid=""
    unset EMBER_ETCD_ENDPOINTS
  done
  return 1
}

stop_process() {
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$1" 2>/dev/null || true
}

stop_local_etcd() {
  if [[ -n "$etcd_pid" ]]; then
    stop_process "$etcd_pid"
    etcd_pid=""
  fi
}
