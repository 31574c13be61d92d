// SPDX-License-Identifier: Apache-2.0
#include "cluster/store/store.hpp"

namespace ember::store {

std::string prefix_end(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xff) {
      ++last;
      return end;
    }
    end.pop_back();  // 0xff carries over
  }
  return std::string(1, '\0');  // every key
}

}  // namespace ember::store
