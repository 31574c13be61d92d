// SPDX-License-Identifier: Apache-2.0
// The only translation unit that includes CLI11 (it costs seconds to compile).
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <ember/node.hpp>
#include <iostream>

namespace ember {

int run_node(int argc, char** argv) {
  CLI::App app{"Ember node: hosts the services listed in its YAML config"};
  const char* env_config = std::getenv("EMBER_CONFIG");
  std::string config_path = env_config != nullptr ? env_config : "node.yaml";
  std::string level_text;
  std::string node_id;
  int threads = -1;
  app.add_option("-c,--config", config_path,
                 "node YAML file (default: $EMBER_CONFIG or node.yaml)");
  app.add_option("--log-level", level_text, "trace|debug|info|warn|error|critical|off");
  app.add_option("--node-id", node_id, "overrides NodeConf.NodeId");
  app.add_option("--threads", threads, "worker threads; overrides NodeConf.WorkerThreads")
      ->check(CLI::Range(0, 1024));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }

  auto config = load_node_config(config_path);
  if (!config) {
    std::cerr << "ember: " << config.error().message() << "\n";
    return 2;
  }
  if (!node_id.empty()) {
    config->node_id = node_id;
  }
  if (threads >= 0) {
    config->worker_threads = threads;
  }
  LogLevel level = LogLevel::info;
  std::string level_source = level_text.empty() ? config->log.level : level_text;
  if (!parse_log_level(level_source, level)) {
    std::cerr << "ember: --log-level: unknown level '" << level_source << "'\n";
    return 2;
  }
  std::string log_file;
  if (!config->log.path.empty()) {
    log_file = config->log.path + "/" + config->log.name + ".log";
  }
  if (Status st = configure_logging(level, log_file); !st) {
    std::cerr << "ember: " << st.error().to_string() << "\n";
    return 2;
  }
  Node node(std::move(*config));
  return node.run();
}

}  // namespace ember
