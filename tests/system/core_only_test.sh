#!/usr/bin/env bash
# A program linked with ember::core alone: it loads none of the cluster's libraries, and a config
# that needs a component it does not link (or a class it does not register) is refused at start
# with exit code 2 and a message that names what to link (or register).
# Usage: core_only_test.sh CORE_ONLY_NODE_BINARY
set -euo pipefail
binary="$1"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failures=0

# 1. Shared libraries: gRPC (and its abseil, c-ares, re2, upb), NATS, OpenSSL.
forbidden='grpc|gpr|absl|cares|re2|upb|nats|ssl|crypto'
if ldd "$binary" | grep -E "$forbidden"; then
  echo "FAIL: a core-only program loads the libraries above"
  failures=$((failures + 1))
else
  echo "ok: $(ldd "$binary" | wc -l) shared objects, none of gRPC, NATS or OpenSSL"
fi

# 2. Configs asking for what the program does not link.
expect_refusal() {
  local name="$1" expected="$2" config="$work/$1.yaml"
  cat >"$config"
  local code=0
  timeout 30 "$binary" --config "$config" >"$work/$name.log" 2>&1 || code=$?
  if [ "$code" -ne 2 ]; then
    echo "FAIL ($name): exit code $code, expected 2"; cat "$work/$name.log"
    failures=$((failures + 1))
  elif ! grep -qF "$expected" "$work/$name.log"; then
    echo "FAIL ($name): the output does not say: $expected"; cat "$work/$name.log"
    failures=$((failures + 1))
  else
    echo "ok ($name): $(grep -F "$expected" "$work/$name.log" | head -1)"
  fi
}

expect_refusal cluster "ClusterConf is set, but this program does not link Ember's cluster component: link ember::cluster (or ember::ember)" <<'YAML'
NodeConf: {NodeId: core-only}
ClusterConf:
  Name: demo
  Secret: s3cret
  ListenAddr: 127.0.0.1:0
  ETCDConf: {Endpoints: [127.0.0.1:1]}
ServiceConf:
  StartServices: []
YAML

expect_refusal nats "EventBusConf.Backend is \"nats\", but this program does not link Ember's NATS component: link ember::nats (or ember::ember)" <<'YAML'
NodeConf: {NodeId: core-only}
EventBusConf:
  Backend: nats
  NatsConf: {Endpoints: ["nats://127.0.0.1:1"]}
ServiceConf:
  StartServices: []
YAML

expect_refusal unknown_class 'unknown service class "Arena": no EMBER_REGISTER_SERVICE(Arena) in this program' <<'YAML'
NodeConf: {NodeId: core-only}
ServiceConf:
  StartServices:
    - {ClassName: Arena, ServiceName: arena}
YAML

[ "$failures" -eq 0 ]
