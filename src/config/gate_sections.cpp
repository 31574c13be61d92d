// SPDX-License-Identifier: Apache-2.0
#include <chrono>
#include <cstdint>
#include <ember/config.hpp>
#include <filesystem>
#include <string>
#include <string_view>

#include "config/field_table.hpp"
#include "config/sections.hpp"
#include "config/yaml_walker.hpp"

namespace ember::config {
namespace {

using namespace std::chrono_literals;

// A listener address, checked as host:port and kept as written.
Result<std::string> read_listen_addr(const Walker& walker, const Entry& e) {
  Result<HostPort> address = walker.read_host_port(e);
  if (!address)
    return address.error();
  return std::move(address->text);
}

bool is_identifier(std::string_view text) {
  if (text.empty())
    return false;
  for (char c : text) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok)
      return false;
  }
  return true;
}

// "service.Method": the login method, or a route.
Result<std::string> read_method_name(const Walker& walker, const Entry& e, bool wildcard_ok) {
  Result<std::string> value = walker.read_string(e, /*non_empty=*/true);
  if (!value)
    return value;
  const std::size_t dot = value->find('.');
  const std::string_view service = std::string_view(*value).substr(0, dot);
  const std::string_view method =
      dot == std::string::npos ? std::string_view{} : std::string_view(*value).substr(dot + 1);
  const bool method_ok = is_identifier(method) || (wildcard_ok && method == "*");
  if (dot == std::string::npos || !is_identifier(service) || !method_ok) {
    return walker.fail(e, std::string("expected \"service.Method\"") +
                              (wildcard_ok ? " or \"service.*\"" : "") + ", got " + quote(*value));
  }
  return value;
}

Result<std::string> read_route(const Walker& walker, const Entry& e) {
  return read_method_name(walker, e, /*wildcard_ok=*/true);
}

Result<std::string> read_path(const Walker& walker, const Entry& e) {
  Result<std::string> value = walker.read_string(e, /*non_empty=*/true);
  if (!value)
    return value;
  if (value->front() != '/' || value->find_first_of(" \t?#") != std::string::npos)
    return walker.fail(e, "expected a URL path such as \"/ws\", got " + quote(*value));
  return value;
}

Result<std::string> read_origin(const Walker& walker, const Entry& e) {
  Result<std::string> value = walker.read_string(e, /*non_empty=*/true);
  if (!value)
    return value;
  if (value->find("://") == std::string::npos || value->back() == '/')
    return walker.fail(e,
                       "expected an origin such as \"https://game.example.com\" (scheme, "
                       "host, optional port, no path), got " +
                           quote(*value));
  return value;
}

// A URL clients connect to, with one of the schemes the client libraries speak.
Result<std::string> read_public_url(const Walker& walker, const Entry& e) {
  Result<std::string> value = walker.read_string(e, /*non_empty=*/true);
  if (!value)
    return value;
  for (const char* scheme : {"ws://", "wss://", "tcp://", "tls://"}) {
    if (value->starts_with(scheme) && value->size() > std::string_view(scheme).size())
      return value;
  }
  return walker.fail(e,
                     "expected a URL such as \"wss://game.example.com/ws\" or "
                     "\"tcp://10.0.0.5:7100\" (ws, wss, tcp or tls), got " +
                         quote(*value));
}

// A path that must exist as a directory (`directory`) or a regular file.
Result<std::string> read_existing(const Walker& walker, const Entry& e, bool directory) {
  Result<std::string> value = walker.read_string(e, /*non_empty=*/true);
  if (!value)
    return value;
  std::error_code ec;
  const bool exists = directory ? std::filesystem::is_directory(*value, ec)
                                : std::filesystem::is_regular_file(*value, ec);
  if (!exists)
    return walker.fail(
        e, std::string(directory ? "no such directory: " : "no such file: ") + quote(*value));
  return value;
}

Result<std::string> read_existing_dir(const Walker& walker, const Entry& e) {
  return read_existing(walker, e, /*directory=*/true);
}

Result<std::string> read_existing_file(const Walker& walker, const Entry& e) {
  return read_existing(walker, e, /*directory=*/false);
}

const Section<GateConfig>& tls_section() {
  static const Section<GateConfig> section{{
      field("CertFile", &GateConfig::cert_file, read_existing_file).required(),
      field("KeyFile", &GateConfig::key_file, read_existing_file).required(),
  }};
  return section;
}

}  // namespace

const Section<GateConfig>& gate_section() {
  static const Section<GateConfig> section{
      {
          field("WebSocketAddr", &GateConfig::websocket_addr, read_listen_addr),
          field("WebSocketPath", &GateConfig::websocket_path, read_path),
          field("TcpAddr", &GateConfig::tcp_addr, read_listen_addr),
          nested("TlsConf", tls_section),
          field("Login", &GateConfig::login,
                [](const Walker& w, const Entry& e) { return read_method_name(w, e, false); })
              .required("the backend method that checks a client's token"),
          field("Routes", &GateConfig::routes, list("a sequence", read_route))
              .required("what clients may call, e.g. [\"lobby.*\"]"),
          field("StaticDir", &GateConfig::static_dir, read_existing_dir),
          field("AllowedOrigins", &GateConfig::allowed_origins, list("a sequence", read_origin)),
          field("IoThreads", &GateConfig::io_threads, Int{1, 64}),
          field("MaxConnections", &GateConfig::max_connections, Int{1, 10'000'000}),
          field("MaxFrameBytes", &GateConfig::max_frame, Int{64, 64 << 20}),
          field("RequestsPerSecond", &GateConfig::requests_per_second, Int{1, 1'000'000}),
          field("RequestBurst", &GateConfig::request_burst, Int{1, 1'000'000}),
          field("MaxInFlight", &GateConfig::max_in_flight, Int{1, 65'536}),
          field("SendQueueBytes", &GateConfig::send_queue_bytes, Int{1024, std::int64_t{1} << 32}),
          field("HandshakeTimeout", &GateConfig::handshake_timeout,
                Duration{10ms, 10min, "10ms..10m"}),
          field("Heartbeat", &GateConfig::heartbeat, Duration{100ms, 1h, "100ms..1h"}),
          field("IdleTimeout", &GateConfig::idle_timeout, Duration{100ms, 24h, "100ms..24h"}),
          field("RequestTimeout", &GateConfig::request_timeout, Duration{1ms, 1h, "1ms..1h"}),
          field("DrainTimeout", &GateConfig::drain_timeout, Duration{0ms, 1h, "0s..1h"}),
          field("PublicUrls", &GateConfig::public_urls, list("a sequence", read_public_url)),
          field("ResumeWindow", &GateConfig::resume_window, Duration{0ms, 1h, "0s..1h"}),
          field("ResumeBufferBytes", &GateConfig::resume_buffer_bytes,
                Int{1024, std::int64_t{1} << 30}),
      },
      [](const Walker& walker, const Entry& section, const Seen& seen, GateConfig& gate) -> Status {
        if (gate.websocket_addr.empty() && gate.tcp_addr.empty()) {
          return walker.fail(section.line, section.path,
                             "no listener: set WebSocketAddr, TcpAddr or both");
        }
        if (gate.idle_timeout <= gate.heartbeat) {
          const Entry* at = seen.find("IdleTimeout");
          if (at == nullptr)
            at = seen.find("Heartbeat");
          return walker.fail(at != nullptr ? at->line : section.line,
                             join_path(section.path, "IdleTimeout"),
                             "must be longer than Heartbeat (a client that heartbeats on time "
                             "would be closed), got " +
                                 std::to_string(gate.idle_timeout.count()) +
                                 "ms <= " + std::to_string(gate.heartbeat.count()) + "ms");
        }
        if (gate.websocket_addr.empty() &&
            (seen.find("StaticDir") || seen.find("AllowedOrigins") || seen.find("WebSocketPath"))) {
          return walker.fail(section.line, section.path,
                             "StaticDir, AllowedOrigins and WebSocketPath need WebSocketAddr");
        }
        return ok_status();
      }};
  return section;
}

}  // namespace ember::config
