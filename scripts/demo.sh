#!/usr/bin/env bash
# Builds the examples in release mode and runs the demo node for a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target hello_node
exec ./build/release/examples/hello_node --config examples/01_hello_node/node.yaml "$@"
