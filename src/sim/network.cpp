// SPDX-License-Identifier: Apache-2.0
#include "sim/network.hpp"

#include <algorithm>
#include <vector>

namespace ember::sim {

bool SimNetwork::chance(double p) noexcept {
  return p > 0 && bits_below(host_.random(), p);
}

Status SimNetwork::bind(const std::string& node, OnFrame on_frame, OnPeer on_peer) {
  if (!endpoints_.emplace(node, Endpoint{std::move(on_frame), std::move(on_peer)}).second) {
    return Error{Errc::already_exists, "node " + node + " is already on the simulated network"};
  }
  return {};
}

void SimNetwork::unbind(const std::string& node) noexcept {
  if (endpoints_.erase(node) == 0) {
    return;
  }
  // Its process is gone: every connection to it breaks.
  std::vector<std::string> peers;
  for (const auto& [id, endpoint] : endpoints_) {
    peers.push_back(id);
  }
  for (const std::string& peer : peers) {
    break_link(node, peer);
  }
}

bool SimNetwork::is_cut(const std::string& a, const std::string& b) const {
  return isolated_.contains(a) || isolated_.contains(b) ||
         cuts_.contains(a < b ? std::pair{a, b} : std::pair{b, a});
}

Status SimNetwork::send(const std::string& from, const std::string& to, std::string_view payload) {
  if (!endpoints_.contains(to) || is_cut(from, to)) {
    return Error{Errc::unavailable, "node " + to + " cannot be reached from " + from};
  }
  auto& slot = links_[{from, to}];
  if (!slot) {
    slot = std::make_unique<Link>();
    slot->network = this;
    slot->from = from;
    slot->to = to;
  }
  Link& link = *slot;
  if (chance(faults_.drop)) {
    ++lost_;
    host_.mix(0xd709);
    return {};
  }
  const auto span = static_cast<std::uint64_t>(std::max<std::int64_t>(
      1, std::chrono::duration_cast<Clock::duration>(max_latency_ - min_latency_).count()));
  Clock::time_point due = host_.now() + std::chrono::duration_cast<Clock::duration>(min_latency_) +
                          Clock::duration(static_cast<std::int64_t>(host_.random() % span));
  const int copies = chance(faults_.duplicate) ? 2 : 1;
  for (int i = 0; i < copies; ++i) {
    if (!link.frames.empty() && chance(faults_.reorder)) {
      // Overtakes the frame before it.
      due = std::min(due, link.frames.back().due);
      link.frames.insert(link.frames.end() - 1, Frame{due, std::string(payload)});
      host_.mix(0x4e0d);
      continue;
    }
    // A connection delivers in order: a frame never arrives before the one sent ahead of it.
    if (!link.frames.empty()) {
      due = std::max(due, link.frames.back().due);
    }
    link.frames.push_back(Frame{due, std::string(payload)});
  }
  return {};
}

std::optional<Clock::time_point> SimNetwork::next_wake() const {
  std::optional<Clock::time_point> next;
  for (const auto& [ends, link] : links_) {
    if (!link->queued && !link->frames.empty() && (!next || link->frames.front().due < *next)) {
      next = link->frames.front().due;
    }
  }
  return next;
}

void SimNetwork::advance_to(Clock::time_point now) {
  for (auto& [ends, link] : links_) {
    if (!link->queued && !link->frames.empty() && link->frames.front().due <= now) {
      link->queued = true;
      host_.ready(link.get());
    }
  }
}

void SimNetwork::deliver(Link& link) {
  link.queued = false;
  // One frame per turn, so that deliveries on different links interleave in the seed's order.
  if (link.frames.empty() || link.frames.front().due > host_.now()) {
    return;
  }
  Frame frame = std::move(link.frames.front());
  link.frames.pop_front();
  auto endpoint = endpoints_.find(link.to);
  if (endpoint == endpoints_.end() || is_cut(link.from, link.to)) {
    ++lost_;
    return;
  }
  ++delivered_;
  if (!link.frames.empty() && link.frames.front().due <= host_.now()) {
    link.queued = true;
    host_.ready(&link);
  }
  // A copy: the callback may unbind the endpoint.
  OnFrame on_frame = endpoint->second.on_frame;
  on_frame(link.from, frame.payload);
}

void SimNetwork::break_link(const std::string& a, const std::string& b) {
  for (const auto& key : {std::pair{a, b}, std::pair{b, a}}) {
    if (auto it = links_.find(key); it != links_.end()) {
      lost_ += it->second->frames.size();
      it->second->frames.clear();
    }
  }
  // Copies: a callback may bind or unbind endpoints.
  for (const auto& [self, peer] : {std::pair{a, b}, std::pair{b, a}}) {
    if (auto it = endpoints_.find(self); it != endpoints_.end()) {
      OnPeer on_peer = it->second.on_peer;
      on_peer(peer, false);
    }
  }
}

void SimNetwork::cut(const std::string& a, const std::string& b) {
  if (cuts_.insert(a < b ? std::pair{a, b} : std::pair{b, a}).second) {
    break_link(a, b);
  }
}

void SimNetwork::isolate(const std::string& node) {
  if (!isolated_.insert(node).second) {
    return;
  }
  std::vector<std::string> peers;
  for (const auto& [id, endpoint] : endpoints_) {
    if (id != node) {
      peers.push_back(id);
    }
  }
  for (const std::string& peer : peers) {
    break_link(node, peer);
  }
}

void SimNetwork::heal() {
  cuts_.clear();
  isolated_.clear();
}

}  // namespace ember::sim
