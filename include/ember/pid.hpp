// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <ember/requires_cxx20.hpp>

#include <cstdint>
#include <string>

namespace ember {

/// Identity of one service instance in the cluster, as the repository and selectors see it.
struct Pid {
  std::string node_id{};       ///< node hosting the instance
  std::string name{};          ///< ServiceName
  std::string id{};            ///< ServiceId ("" when the name has one instance)
  std::string type{};          ///< service type
  std::int32_t server_id = 0;  ///< zone / namespace
  std::int64_t version = 0;
  bool master = true;       ///< master/slave role (always true outside a master/slave group)
  std::uint64_t epoch = 0;  ///< fencing token of a master (cluster issue)
  std::string address{};    ///< where its node accepts other nodes ("host:port"); "" for local

  /// "<server_id>.<name>.<id>.<node_id>": unique in the cluster.
  [[nodiscard]] std::string uid() const {
    return std::to_string(server_id) + "." + name + "." + id + "." + node_id;
  }
  /// "name#id@node" for logs.
  [[nodiscard]] std::string to_string() const {
    std::string text = name;
    if (!id.empty()) {
      text += "#" + id;
    }
    return text + "@" + node_id;
  }
  friend bool operator==(const Pid& a, const Pid& b) {
    return a.node_id == b.node_id && a.name == b.name && a.id == b.id && a.server_id == b.server_id;
  }
};

}  // namespace ember
