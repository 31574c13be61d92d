// SPDX-License-Identifier: Apache-2.0
// A blocking HTTP/1.1 client for tests (Boost.Beast): one request per connection, bounded by a
// socket timeout, so a listener that never answers fails the test instead of hanging it.
#pragma once

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <string>
#include <utility>  // before Boost.Asio: g++ 12 in C++20 needs std::exchange declared first
#include <vector>

namespace ember::testing {

struct HttpReply {
  int status = 0;  ///< 0: no answer (connection refused, timeout); `error` says why
  std::string body;
  std::string content_type;
  std::string error;
};

/// `address` is "host:port"; `target` the path and query.
inline HttpReply http_request(
    const std::string& address, const std::string& method, const std::string& target,
    const std::string& token = {}, std::chrono::seconds timeout = std::chrono::seconds(10),
    const std::vector<std::pair<std::string, std::string>>& headers = {}) {
  namespace beast = boost::beast;
  namespace http = beast::http;
  using tcp = boost::asio::ip::tcp;
  HttpReply reply;
  try {
    boost::asio::io_context io;
    const std::size_t colon = address.rfind(':');
    tcp::resolver resolver(io);
    beast::tcp_stream stream(io);
    stream.expires_after(timeout);
    stream.connect(resolver.resolve(address.substr(0, colon), address.substr(colon + 1)));
    http::request<http::string_body> request(http::string_to_verb(method), target, 11);
    request.set(http::field::host, address);
    if (!token.empty()) {
      request.set(http::field::authorization, "Bearer " + token);
    }
    for (const auto& [name, value] : headers) {
      request.set(name, value);  // after Host: a test may replace it
    }
    request.prepare_payload();
    http::write(stream, request);
    beast::flat_buffer buffer;
    http::response<http::string_body> response;
    http::read(stream, buffer, response);
    reply.status = static_cast<int>(response.result_int());
    reply.body = response.body();
    if (auto it = response.find(http::field::content_type); it != response.end()) {
      reply.content_type = std::string(it->value());
    }
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  } catch (const std::exception& e) {
    reply.error = e.what();
  }
  return reply;
}

inline HttpReply http_get(const std::string& address, const std::string& target,
                          const std::string& token = {}) {
  return http_request(address, "GET", target, token);
}

inline HttpReply http_post(const std::string& address, const std::string& target,
                           const std::string& token = {}) {
  return http_request(address, "POST", target, token);
}

}  // namespace ember::testing
