// SPDX-License-Identifier: Apache-2.0
#include <chrono>
#include <ember/config.hpp>
#include <string>
#include <string_view>

#include "config/field_table.hpp"
#include "config/sections.hpp"
#include "config/yaml_walker.hpp"

namespace ember::config {
namespace {

using namespace std::chrono_literals;

bool is_loopback(std::string_view host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || host.starts_with("127.");
}

}  // namespace

const Section<AdminConfig>& admin_section() {
  static const Section<AdminConfig> section{
      {
          field("ListenAddr", &AdminConfig::listen_addr,
                [](const Walker& walker, const Entry& e) -> Result<std::string> {
                  Result<HostPort> address = walker.read_host_port(e);
                  if (!address)
                    return address.error();
                  return std::move(address->text);
                }),
          field("Token", &AdminConfig::token, Text{.non_empty = true}),
          field("SlowHandler", &AdminConfig::slow_handler, Duration{1ms, 1h, "1ms..1h"}),
          field("VerySlowHandler", &AdminConfig::very_slow_handler, Duration{1ms, 1h, "1ms..1h"}),
          field("HealthStall", &AdminConfig::health_stall, Duration{1s, 1h, "1s..1h"}),
      },
      [](const Walker& walker, const Entry& section, const Seen& seen,
         AdminConfig& admin) -> Status {
        const std::string_view addr = admin.listen_addr;
        const std::string_view host = addr.substr(0, addr.rfind(':'));
        const Entry* token = seen.find("Token");
        if (!is_loopback(host) && admin.token.size() < 16) {
          return walker.fail(token != nullptr ? token->line : section.line,
                             join_path(section.path, "Token"),
                             "the admin listener on " + admin.listen_addr +
                                 " is reachable from other machines: set a Token of at least 16 "
                                 "characters (e.g. \"${EMBER_ADMIN_TOKEN}\")");
        }
        if (admin.very_slow_handler < admin.slow_handler) {
          const Entry* at = seen.find("VerySlowHandler");
          return walker.fail(at != nullptr ? at->line : section.line,
                             join_path(section.path, "VerySlowHandler"),
                             "must not be shorter than SlowHandler, got " +
                                 std::to_string(admin.very_slow_handler.count()) + "ms < " +
                                 std::to_string(admin.slow_handler.count()) + "ms");
        }
        return ok_status();
      }};
  return section;
}

}  // namespace ember::config
