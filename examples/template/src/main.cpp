#include <ember/node.hpp>

// Flags: --config node.yaml, --log-level, --node-id, --threads (see --help).
int main(int argc, char** argv) {
  return ember::run_node(argc, argv);
}
