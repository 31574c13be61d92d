// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string_view>

namespace ember::admin {

/// The dashboard: one static page (HTML, CSS and script, no build step) that reads the JSON API.
std::string_view dashboard_html() noexcept;

}  // namespace ember::admin
