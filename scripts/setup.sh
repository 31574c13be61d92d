#!/usr/bin/env bash
# Installs the Debian 12 packages Ember needs to build, test, fuzz and benchmark. Idempotent: when
# everything is present it installs nothing and prints one line.
set -euo pipefail

PACKAGES=(
  cmake ninja-build g++ pkg-config git python3 python3-yaml
  libfmt-dev libspdlog-dev libyaml-cpp-dev libcli11-dev tzdata
  libprotobuf-dev protobuf-compiler libgrpc++-dev protobuf-compiler-grpc etcd-server etcd-client
  libasio-dev libssl-dev openssl libboost-dev nats-server libnats-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev libcaf-dev
  clang libclang-rt-14-dev
  chromium prometheus
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing packages: ${missing[*]}; run as root (or with sudo) to install them" >&2
  exit 1
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
echo "setup: done"
