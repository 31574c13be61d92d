// SPDX-License-Identifier: Apache-2.0
#include "core/service_anchor.hpp"

#include "core/service_core.hpp"

namespace ember::detail {

Status ServiceAnchor::post(runtime::Message* m, bool external) noexcept {
  Pin pin(*this);
  if (pin.core == nullptr) {
    // Same contract as ServiceCore::post: a refused message is deleted, not rejected; the
    // returned error is the one report of the refusal.
    delete m;
    return Error{Errc::stopping, "the service is gone"};
  }
  return pin.core->post(m, external);
}

}  // namespace ember::detail
