#!/usr/bin/env bash
# Starts the demo game node on a free port and plays it: with the C++ client (--check BIN), with
# ember-bot (--bot BIN), or in headless Chromium driven by the DevTools probe (--browser PROBE),
# which loads the page the gateway serves, logs in over WebSocket, joins a room, moves, and
# shows its own move pushed back. Every wait is bounded.
set -euo pipefail
bin="" check="" bot="" probe=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --check) check="$2"; shift 2 ;;
    --bot) bot="$2"; shift 2 ;;
    --browser) probe="$2"; shift 2 ;;
    *) echo "play_test: unknown argument $1" >&2; exit 2 ;;
  esac
done
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d /tmp/ember-game.XXXXXX)"
node_pid=""
cleanup() {
  if [ -n "$node_pid" ] && kill -0 "$node_pid" 2>/dev/null; then
    kill -TERM "$node_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$node_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$node_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

GAME_PORT=0 GAME_WEB_DIR="$here/web" "$bin" --config "$here/node.yaml" >"$work/node.log" 2>&1 &
node_pid=$!
address=""
for _ in $(seq 100); do
  address="$(grep -o 'gateway: ws://[0-9.]*:[0-9]*' "$work/node.log" | head -1 | sed 's|gateway: ws://||')" || true
  [ -n "$address" ] && break
  kill -0 "$node_pid" 2>/dev/null || { cat "$work/node.log"; echo "FAILED: the node exited"; exit 1; }
  sleep 0.1
done
[ -n "$address" ] || { cat "$work/node.log"; echo "FAILED: the gateway did not open within 10 s"; exit 1; }
echo "game node listening on $address"

if [ -n "$check" ]; then
  timeout 60 "$check" "ws://$address/ws"
fi

if [ -n "$bot" ]; then
  # 50 players joining rooms 20 times a second each (under GateConf's default rate limit), 2 s.
  timeout 60 "$bot" --url "ws://$address/ws" --connections 50 --route lobby.RpcJoin \
    --payload-bytes 8 --rate 20 --duration 2s --json | tee "$work/bot.jsonl"
  summary="$(grep '"phase":"summary"' "$work/bot.jsonl")"
  echo "$summary" | grep -q '"connections":50,' || { echo "FAILED: not every bot connected"; exit 1; }
  echo "$summary" | grep -q '"errors":0,' || { echo "FAILED: the bots saw errors"; exit 1; }
  echo "$summary" | grep -q '"requests_ok":0,' && { echo "FAILED: no request succeeded"; exit 1; }
  echo "ok: ember-bot ran 50 players against the game"
fi

if [ -n "$probe" ]; then
  chrome="$(command -v chromium || true)"
  [ -n "$chrome" ] || { echo "FAILED: chromium is not installed (scripts/setup.sh installs it)"; exit 1; }
  # The page plays by itself; the probe polls its status line in real time (bounded) until it
  # shows TEXT, then prints the page's log, which must hold LOG_LINE.
  #   play NAME QUERY TEXT LOG_LINE
  play() {
    local name="$1" query="$2" expect="$3" line="$4"
    if ! timeout 90 "$probe" --chrome "$chrome" --profile "$work/chrome-$name" --timeout-ms 60000 \
        --url "http://$address/?name=$name&auto=1&$query" \
        --expression "document.getElementById('status').textContent" \
        --expect "$expect" \
        --report "document.getElementById('log').textContent" >"$work/probe-$name.log" 2>&1; then
      echo "--- probe:"; cat "$work/probe-$name.log"; echo "--- node:"; tail -20 "$work/node.log"
      echo "FAILED: the page of $name did not show '$expect'"
      exit 1
    fi
    cat "$work/probe-$name.log"
    grep -q "$line" "$work/probe-$name.log" ||
      { echo "FAILED: the page's log lacks '$line'"; exit 1; }
  }
  play browser "x=5&y=6" "done: browser at 5,6" "push room.OnMoved: browser moved to 5,6"
  echo "ok: headless Chromium logged in, joined a room and saw its move pushed"
  # Again with a connection dropped before the move: the page resumes its session, then moves.
  play roamer "resume=1&x=3&y=4" "done: roamer at 3,4 (resumed 1)" "resumed session"
  echo "ok: headless Chromium dropped its connection, resumed its session and its move went through"
  exit 0
fi
