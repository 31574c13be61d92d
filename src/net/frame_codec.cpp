// SPDX-License-Identifier: Apache-2.0
#include "net/frame_codec.hpp"

namespace ember::net::detail {

std::string describe_over_limit(std::size_t length, std::size_t limit) {
  return "frame of " + std::to_string(length) + " bytes is over the limit of " +
         std::to_string(limit);
}

void Chunk::append_rest(std::string_view payload, std::size_t written) {
  const auto header = encode_length(payload.size());
  if (written < header.size()) {
    bytes.append(header.data() + written, header.size() - written);
    written = header.size();
  }
  bytes.append(payload.substr(written - header.size()));
  ++frames;
}

}  // namespace ember::net::detail
