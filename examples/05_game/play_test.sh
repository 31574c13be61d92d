#!/usr/bin/env bash
# Starts the demo game node on a free port and plays it: with the C++ client (--check BIN), or
# in headless Chromium (--browser), which loads the page the gateway serves, logs in over
# WebSocket, joins a room, moves, and shows its own move pushed back. Every wait is bounded.
set -euo pipefail
bin="" check="" bot="" browser=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --check) check="$2"; shift 2 ;;
    --bot) bot="$2"; shift 2 ;;
    --browser) browser=1; shift ;;
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

if [ "$browser" = 1 ]; then
  chrome="$(command -v chromium || true)"
  [ -n "$chrome" ] || { echo "FAILED: chromium is not installed (scripts/setup.sh installs it)"; exit 1; }
  url="http://$address/?name=browser&auto=1&x=5&y=6"
  # The page plays by itself; poll its DOM (bounded) until it shows its own move pushed back.
  # Under --virtual-time-budget the page's own login timer can run out in virtual time while the
  # WebSocket exchange is still under way (about one load in three here): bounded attempts.
  for attempt in 1 2 3 4 5 6; do
    timeout 60 "$chrome" --headless --no-sandbox --disable-gpu --no-first-run \
      --user-data-dir="$work/chrome-$attempt" --virtual-time-budget=10000 \
      --dump-dom "$url" >"$work/dom.html" 2>"$work/chrome.log" || true
    if grep -q 'done: browser at 5,6' "$work/dom.html"; then
      echo "ok: headless Chromium logged in, joined a room and saw its move pushed (attempt $attempt)"
      grep -o 'push room.OnMoved: browser moved to 5,6' "$work/dom.html" | head -1
      exit 0
    fi
  done
  echo "--- page:"; cat "$work/dom.html"; echo "--- chromium:"; tail -20 "$work/chrome.log"
  echo "--- node:"; tail -20 "$work/node.log"
  echo "FAILED: the page did not show its move"
  exit 1
fi
