#!/usr/bin/env bash
# Builds the examples in release mode and runs the cluster demo (scripts/cluster_demo.sh): a local
# etcd on a free loopback port (unless EMBER_ETCD_ENDPOINTS is set), three key-value nodes in a
# master/slave group and a client; the master is killed and a slave takes over.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target kv_node hello_node
exec bash scripts/cluster_demo.sh --bin ./build/release/examples/kv_node \
  --examples examples/03_master_slave "$@"
