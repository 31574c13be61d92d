// SPDX-License-Identifier: Apache-2.0
// node.yaml as text: ${VAR} expansion, YAML parsing and validation. Any input must give a config
// or an invalid_argument error; an internal error means an exception escaped the readers.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ember/config.hpp>
#include <string_view>

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "node_config fuzzer: %s\n", what);
    std::abort();
  }
}

void check_parsed(const ember::Result<ember::NodeConfig>& config) {
  if (!config) {
    check(config.error().code() == ember::Errc::invalid_argument,
          "an error other than invalid_argument (an exception escaped the parser)");
    return;
  }
  // What the parser promises the node about an accepted config.
  check(config->worker_threads >= 0, "negative WorkerThreads");
  check(!config->cluster.enabled || !config->cluster.secret.empty(), "a cluster without a secret");
  for (const auto& service : config->services) {
    check(!service.class_name.empty() && !service.name.empty(), "a service without a name");
    check(service.worker.lanes >= 1 && service.worker.lanes <= 1024, "WorkerNum out of range");
    check(service.worker.max_lanes == 0 || service.worker.max_lanes >= service.worker.lanes,
          "MaxWorkerNum below WorkerNum");
    if (const auto& scaling = service.worker.scaling) {
      check(scaling->min_lanes >= 1 && scaling->min_lanes < scaling->max_lanes,
            "scaling bounds out of order");
      check(!scaling->strategy.name.empty(), "a scaling strategy without a name");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check_parsed(ember::parse_node_config(text, "fuzz.yaml"));
  // As load_node_config reads a file: expansion first (unset variables without a default fail).
  if (auto expanded = ember::expand_env(text, "fuzz.yaml")) {
    check_parsed(ember::parse_node_config(*expanded, "fuzz.yaml"));
  } else {
    check(expanded.error().code() == ember::Errc::invalid_argument, "expand_env: unexpected error");
  }
  return 0;
}
