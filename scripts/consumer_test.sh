#!/usr/bin/env bash
# Uses Ember the way a project outside this checkout does, and fails on any step that breaks:
#   1. build Ember (Release, no tests), cmake --install it into a temporary prefix, check the tree;
#   2. build examples/template against it with find_package, run its tests and its node;
#   3. build the README's service ("A service in twenty lines") against it and run it;
#   4. build with pkg-config instead of CMake (core alone, and every component);
#   5. build the template with add_subdirectory of this checkout;
#   and check that no compile line of the user's code names Ember's private directories and that
#   a core-only program loads no cluster library.
# Usage: scripts/consumer_test.sh [--keep]   (--keep leaves the temporary directory for a look)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
keep=0
[ "${1:-}" = --keep ] && keep=1
work="$(mktemp -d /tmp/ember-consumer.XXXXXX)"
cleanup() { if [ "$keep" -eq 0 ]; then rm -rf "$work"; else echo "kept $work"; fi; }
trap cleanup EXIT
prefix="$work/prefix"
jobs="$(nproc)"
step() { printf '\n== %s\n' "$*"; }
fail() { echo "consumer_test: FAIL: $*" >&2; exit 1; }

# Runs a node until it logs `started N services`, then SIGTERM; it must exit 0 within 10 s.
run_node_briefly() {
  local log="$1"; shift
  "$@" >"$log" 2>&1 &
  local pid=$! started=0
  for _ in $(seq 1 300); do
    if grep -q "started [0-9]* services" "$log"; then started=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if [ "$started" -ne 1 ]; then kill -9 "$pid" 2>/dev/null || true; cat "$log"; fail "$* did not start"; fi
  kill -TERM "$pid"
  local code=0
  for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fail "$* still running 10 s after SIGTERM"; fi
  wait "$pid" || code=$?
  [ "$code" -eq 0 ] || { cat "$log"; fail "$* exited $code after SIGTERM"; }
  echo "ok: $(grep -m1 "started [0-9]* services" "$log" | sed 's/.*\] //')"
}

# The user's compile lines (template sources and their generated .pb.cc) must not name Ember's
# private directories: its src/, or the generated headers in its build tree.
check_compile_lines() {
  python3 - "$1" "$root" <<'PY' || fail "a compile line of the user's code names Ember's private directories"
import json, re, sys
db, root = sys.argv[1], sys.argv[2]
entries = json.load(open(db))
user = [e for e in entries if "/examples/template/" in e["file"] or "/ember_protos/" in e["file"]]
if not user:
    sys.exit(f"no user translation unit in {db}")
bad = re.compile(r"-I\s*\S*(" + re.escape(root) + r"/src\b|/ember/src\b|/etcd_gen\b)")
leaks = [(e["file"], m.group(0)) for e in user
         for m in [bad.search(e.get("command", " ".join(e.get("arguments", []))))] if m]
for f, flag in leaks:
    print(f"{f}: {flag}")
if leaks:
    sys.exit(1)
print(f"ok: no private Ember include path on the user's compile lines ({len(user)} TUs)")
PY
}

check_no_cluster_libraries() {
  if ldd "$1" | grep -E 'grpc|gpr|absl|cares|re2|upb|nats|ssl|crypto'; then
    fail "$1 links ember::core alone but loads the libraries above"
  fi
  echo "ok: $(basename "$1") loads $(ldd "$1" | wc -l) shared objects, none of gRPC, NATS or OpenSSL"
}

step "1. build and install Ember into $prefix"
cmake -S . -B "$work/ember-build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DEMBER_BUILD_TESTS=OFF -DEMBER_BUILD_EXAMPLES=OFF -DEMBER_INSTALL=ON >/dev/null
cmake --build "$work/ember-build" -j "$jobs"
cmake --install "$work/ember-build" --prefix "$prefix" >/dev/null
for f in include/ember/ember.hpp lib/libember_core.a lib/libember_cluster.a lib/libember_nats.a \
         lib/libember_wire.a lib/libember_sim.a lib/libember_gate.a lib/libember_gate_proto.a \
         lib/libember_client.a lib/libember_admin.a include/ember/gate.pb.h \
         lib/cmake/ember/ember-config.cmake \
         lib/cmake/ember/ember-config-version.cmake lib/cmake/ember/EmberProtos.cmake \
         lib/pkgconfig/ember-core.pc lib/pkgconfig/ember-admin.pc lib/pkgconfig/ember.pc; do
  [ -e "$prefix/$f" ] || fail "cmake --install did not install $f"
done
# Beside the headers: the gateway's public messages (a login method's request and reply).
if find "$prefix/include" -type f ! -path "$prefix/include/ember/*.hpp" \
    ! -path "$prefix/include/ember/gate.pb.h" ! -path "$prefix/include/ember/gate.proto" | grep .; then
  fail "private headers were installed (above)"
fi
echo "ok: $(find "$prefix" -type f | wc -l) files installed; headers are include/ember/*.hpp and the gateway's messages"

step "2. examples/template with find_package(ember 0.2 COMPONENTS core sim)"
cmake -S examples/template -B "$work/template" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
cmake --build "$work/template" -j "$jobs"
ctest --test-dir "$work/template" --output-on-failure
check_compile_lines "$work/template/compile_commands.json"
check_no_cluster_libraries "$work/template/greeter_node"
run_node_briefly "$work/template.log" "$work/template/greeter_node" --config examples/template/node.yaml

step "3. the README's service, with find_package(ember) (every component)"
readme="$work/readme"
mkdir -p "$readme"
# Code blocks that follow a line <!-- consumer-test: FILE --> in the README.
awk -v dir="$readme" '
  /^<!-- consumer-test: .* -->$/ { file = $3; next }
  file != "" && /^```/ && !inside { inside = 1; out = dir "/" file; printf "" > out; next }
  inside && /^```/ { inside = 0; close(out); file = ""; next }
  inside { print >> out }
' README.md
for f in main.cpp node.yaml; do [ -s "$readme/$f" ] || fail "README has no block marked consumer-test: $f"; done
cat >"$readme/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.25)
project(readme_service LANGUAGES CXX)
find_package(ember 0.2 CONFIG REQUIRED)
add_executable(lobby main.cpp)
target_compile_options(lobby PRIVATE -Wall -Wextra -Wpedantic -Werror)
target_link_libraries(lobby PRIVATE ember::ember)
CMAKE
cmake -S "$readme" -B "$readme/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$readme/build" -j "$jobs"
run_node_briefly "$work/readme.log" "$readme/build/lobby" --config "$readme/node.yaml"

step "4. pkg-config"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
pc="$work/pkgconfig"
mkdir -p "$pc"
protoc --proto_path=examples/template/proto --cpp_out="$pc" examples/template/proto/greeter.proto
# shellcheck disable=SC2046
g++ -std=c++20 -O1 -I"$pc" -Iexamples/template/src $(pkg-config --cflags ember-core) \
  examples/template/src/main.cpp examples/template/src/greeter.cpp "$pc/greeter.pb.cc" \
  $(pkg-config --libs ember-core) -o "$pc/greeter_core"
check_no_cluster_libraries "$pc/greeter_core"
run_node_briefly "$work/pc-core.log" "$pc/greeter_core" --config examples/template/node.yaml
# shellcheck disable=SC2046
g++ -std=c++20 -O1 -I"$pc" -Iexamples/template/src $(pkg-config --cflags ember) \
  examples/template/src/main.cpp examples/template/src/greeter.cpp "$pc/greeter.pb.cc" \
  $(pkg-config --libs ember) -o "$pc/greeter_all"
# (grep reads all of the output: with -q and pipefail, the writer's SIGPIPE would fail the check)
ldd "$pc/greeter_all" | grep grpc >/dev/null || fail "pkg-config ember did not link the cluster component"
nm "$pc/greeter_all" | grep ember_nats_component >/dev/null \
  || fail "pkg-config ember did not link the NATS component"
echo "ok: pkg-config builds for ember-core and ember (all components)"
# The cluster component is really there: a ClusterConf is tried (etcd is unreachable on port 1),
# not refused for want of the component.
cat >"$pc/cluster.yaml" <<'YAML'
NodeConf: {NodeId: pc-1}
ClusterConf:
  Name: consumer
  Secret: s3cret
  ListenAddr: 127.0.0.1:0
  ETCDConf: {Endpoints: ["127.0.0.1:1"], DialTimeout: 500ms}
ServiceConf:
  StartServices: []
YAML
code=0
timeout 60 "$pc/greeter_all" --config "$pc/cluster.yaml" >"$work/pc-cluster.log" 2>&1 || code=$?
[ "$code" -ne 0 ] || fail "a node with an unreachable etcd started"
if grep -q "does not link" "$work/pc-cluster.log"; then
  cat "$work/pc-cluster.log"; fail "pkg-config ember: the cluster component is not installed in the node"
fi
echo "ok: pkg-config ember installs the cluster component (exit $code: etcd unreachable)"

# The admin component is there too: a node with an AdminConf opens its listener.
cat >"$pc/admin.yaml" <<'YAML'
NodeConf: {NodeId: pc-admin}
AdminConf: {ListenAddr: "127.0.0.1:0"}
ServiceConf:
  StartServices: []
YAML
run_node_briefly "$work/pc-admin.log" "$pc/greeter_all" --config "$pc/admin.yaml"
grep -q "admin listening on http://127.0.0.1:" "$work/pc-admin.log" ||
  { cat "$work/pc-admin.log"; fail "pkg-config ember: the admin component did not open its listener"; }
echo "ok: pkg-config ember installs the admin component"

step "5. examples/template with add_subdirectory(ember checkout)"
# (no optimisation: this step checks how the targets are wired, and -O0 halves its build time)
cmake -S examples/template -B "$work/subdir" -G Ninja \
  -DEMBER_SOURCE_DIR="$root" -DBUILD_TESTING=OFF -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
cmake --build "$work/subdir" -j "$jobs" --target greeter_node
check_compile_lines "$work/subdir/compile_commands.json"
run_node_briefly "$work/subdir.log" "$work/subdir/greeter_node" --config examples/template/node.yaml

echo
echo "consumer_test: all steps passed"
