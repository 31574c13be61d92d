// SPDX-License-Identifier: Apache-2.0
#include "cluster/event_channels.hpp"

#include <ember/log.hpp>
#include <optional>
#include <utility>
#include <vector>

#include "cluster/cluster_link.hpp"

namespace ember::detail {

EventChannels::EventChannels(std::string prefix, std::string node_id,
                             std::shared_ptr<ClusterLink> link, std::function<void()> wake)
    : prefix_(std::move(prefix)),
      node_id_(std::move(node_id)),
      link_(std::move(link)),
      wake_(std::move(wake)) {}

std::string EventChannels::channel_name(EventType type, EventScope scope) {
  std::string name = scope.is_global() ? std::string("global.")
                                       : "server." + std::to_string(scope.server_id()) + ".";
  return name + std::to_string(type);
}

void EventChannels::want(EventType type, EventScope scope, bool wanted) {
  {
    std::lock_guard lock(mu_);
    const std::string channel = channel_name(type, scope);
    if (wanted) {
      wanted_.insert(channel);
    } else {
      wanted_.erase(channel);
    }
    due_[channel] = wanted;
  }
  wake_();  // outside mu_: the loop takes its own lock, then this one
}

void EventChannels::forward(const AnyMessage& payload, const EventInfo& info) {
  std::vector<std::pair<std::string, std::string>> nodes;
  {
    std::shared_lock lock(others_mu_);
    auto it = others_.find(channel_name(info.type, info.scope));
    if (it == others_.end()) {
      return;  // no other node wants it: nothing goes on the wire
    }
    nodes.assign(it->second.begin(), it->second.end());
  }
  link_->send_event(payload, info, nodes);
}

EventStats EventChannels::event_stats() const {
  return link_->event_stats();
}

void EventChannels::session_opened() {
  std::lock_guard lock(mu_);
  for (const auto& channel : wanted_) {
    due_[channel] = true;
  }
}

void EventChannels::write_due(store::Store& store, store::LeaseId lease, const Logger& log) {
  std::map<std::string, bool> writes;
  {
    std::lock_guard lock(mu_);
    writes.swap(due_);
  }
  const std::string own = prefix_ + node_id_ + "/";
  for (auto it = writes.begin(); it != writes.end(); ++it) {
    const auto& [channel, present] = *it;
    std::optional<Error> failed;
    if (present) {
      if (auto put = store.put(own + channel, link_->address(), lease); !put) {
        failed = put.error();
      }
    } else if (auto erased = store.erase(own + channel); !erased) {
      failed = erased.error();
    }
    if (failed) {
      log.warn("event subscription {}: {}", channel, failed->to_string());
      std::lock_guard lock(mu_);
      for (auto rest = it; rest != writes.end(); ++rest) {
        due_.try_emplace(rest->first, rest->second);  // newer wishes win
      }
      return;
    }
  }
}

bool EventChannels::settled() const {
  std::lock_guard lock(mu_);
  return due_.empty();
}

void EventChannels::forget_others() {
  std::unique_lock lock(others_mu_);
  others_.clear();
}

void EventChannels::apply(const std::string& key, const std::string& value, bool erased) {
  // <prefix><node>/<channel>, value: the node's address.
  const std::string rest = key.substr(prefix_.size());
  const auto slash = rest.find('/');
  if (slash == std::string::npos) {
    return;
  }
  const std::string node = rest.substr(0, slash);
  const std::string channel = rest.substr(slash + 1);
  if (node == node_id_) {
    return;  // local subscribers get local events directly
  }
  std::unique_lock lock(others_mu_);
  if (erased) {
    auto it = others_.find(channel);
    if (it != others_.end()) {
      it->second.erase(node);
      if (it->second.empty()) {
        others_.erase(it);
      }
    }
  } else if (!value.empty()) {
    others_[channel][node] = value;
  }
}

}  // namespace ember::detail
