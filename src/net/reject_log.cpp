// SPDX-License-Identifier: Apache-2.0
#include "net/reject_log.hpp"

#include <algorithm>
#include <ember/log.hpp>
#include <iterator>
#include <optional>

#include "net/log_text.hpp"

namespace ember::net::detail {

void RejectLog::add(const std::string& ip, Reject reason, const std::string& why) {
  const auto now = Clock::now();
  Window* window = nullptr;
  bool shared = false;
  if (auto it = windows_.find(ip); it != windows_.end()) {
    window = &it->second;
  } else if (windows_.size() < max_addresses_) {
    window = &windows_[ip];
  } else {
    window = &others_;
    shared = true;
  }
  const bool first = window->total == 0 && !window->rolled;
  if (first) {
    window->start = now;
    window->end = now + window_;
    arm(window->end);
  }
  ++window->counts[reason_index(reason)];
  ++window->total;
  if (!first) {
    return;
  }
  window->logged = 1;
  system_log().warn(
      "transport {}: refused a connection from {}: {} ({}); {} are summarised "
      "every {}",
      node_id_, ip, kRejectNames[reason_index(reason)], why,
      shared ? "refusals from addresses beyond the " + thousands(max_addresses_) + " tracked"
             : "further refusals from " + ip,
      describe_span(window_));
}

void RejectLog::flush() {
  timer_.cancel();
  // Cut short: the lines say how long the windows actually ran.
  const auto now = Clock::now();
  auto so_far = [&](const Window& w) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(now - w.start);
  };
  for (auto& [ip, window] : windows_) {
    summarise(ip, window, so_far(window));
  }
  summarise("other addresses", others_, so_far(others_));
  windows_.clear();
  others_ = {};
}

void RejectLog::arm(Clock::time_point at) {
  if (armed_) {
    return;  // every window is as long, so the armed one ends first
  }
  armed_ = true;
  timer_.expires_at(at);
  timer_.async_wait([this](const asio::error_code& ec) {
    armed_ = false;
    if (!ec) {
      expire();
    }
  });
}

void RejectLog::expire() {
  const auto now = Clock::now();
  std::optional<Clock::time_point> next;
  auto roll = [&](const std::string& who, Window& w) {  // false: forget the window
    if (w.total == 0 && !w.rolled) {
      return true;  // not in use (others_)
    }
    if (w.end > now) {
      next = next ? std::min(*next, w.end) : w.end;
      return true;
    }
    if (w.total == w.logged) {
      return false;  // quiet window: the next refusal is news again
    }
    summarise(who, w, window_);
    w = Window{};
    w.rolled = true;
    w.start = now;
    w.end = now + window_;
    next = next ? std::min(*next, w.end) : w.end;
    return true;
  };
  for (auto it = windows_.begin(); it != windows_.end();) {
    it = roll(it->first, it->second) ? std::next(it) : windows_.erase(it);
  }
  if (!roll("other addresses", others_)) {
    others_ = {};
  }
  if (next) {
    arm(*next);
  }
}

void RejectLog::summarise(const std::string& who, const Window& w,
                          std::chrono::milliseconds span) const {
  if (w.total == w.logged) {
    return;
  }
  std::string by_reason;
  for (std::size_t i = 0; i < kRejectReasons; ++i) {
    if (w.counts[i] > 0) {
      by_reason += (by_reason.empty() ? "" : ", ") + std::string(kRejectNames[i]) + ": " +
                   thousands(w.counts[i]);
    }
  }
  system_log().warn("transport {}: refused {} connection{} from {} in the last {} ({})", node_id_,
                    thousands(w.total), w.total == 1 ? "" : "s", who, describe_span(span),
                    by_reason);
}

}  // namespace ember::net::detail
