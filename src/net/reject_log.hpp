// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <array>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <string>
#include <unordered_map>

#include "net/reject.hpp"

namespace ember::net::detail {

/// Refused connections, summarised per peer IP. The first refusal from an address is logged at
/// once (with its detail, for whoever debugs a misconfigured node); later ones in the same window
/// are only counted, and one line per window reports them. A window that ends without refusals
/// forgets the address, so the next refusal is again logged at once. A stranger reconnecting in a
/// loop thus costs two lines per window instead of one per attempt, and memory stays bounded:
/// past `max_addresses` tracked IPs, refusals share an "other addresses" window. I/O thread only.
class RejectLog {
 public:
  RejectLog(asio::io_context& io, std::chrono::milliseconds window, std::size_t max_addresses)
      : timer_(io), window_(window), max_addresses_(max_addresses) {}

  void set_node(std::string node_id) { node_id_ = std::move(node_id); }

  void add(const std::string& ip, Reject reason, const std::string& why);

  /// Reports what the open windows counted and not yet logged (at shutdown).
  void flush();

 private:
  using Clock = std::chrono::steady_clock;

  struct Window {
    Clock::time_point start;
    Clock::time_point end;
    std::array<std::uint64_t, kRejectReasons> counts{};
    std::uint64_t total = 0;   // refusals in this window
    std::uint64_t logged = 0;  // of which logged one by one
    bool rolled = false;       // follows a window that had a summary: no line at its start
  };

  void arm(Clock::time_point at);
  void expire();
  void summarise(const std::string& who, const Window& w, std::chrono::milliseconds span) const;

  asio::steady_timer timer_;
  std::chrono::milliseconds window_;
  std::size_t max_addresses_;
  std::string node_id_;
  bool armed_ = false;
  std::unordered_map<std::string, Window> windows_;  // by peer IP
  Window others_;                                    // IPs past max_addresses_
};

}  // namespace ember::net::detail
