// SPDX-License-Identifier: Apache-2.0
#include <algorithm>
#include <ember/service.hpp>
#include <map>
#include <mutex>

#include "core/service_core.hpp"

namespace ember {
namespace {

struct Registry {
  std::mutex mu;
  std::map<std::string, ServiceFactory, std::less<>> factories;
};

Registry& registry() {
  static Registry r;
  return r;
}

const ServiceConfig& empty_config() {
  static const ServiceConfig c;
  return c;
}

}  // namespace

namespace detail {
ServiceFactory find_factory(std::string_view class_name) {
  auto& r = registry();
  std::lock_guard lock(r.mu);
  auto it = r.factories.find(class_name);
  return it == r.factories.end() ? ServiceFactory{} : it->second;
}

/// Says which registration is missing, and which registered name was probably meant: the name
/// registered by EMBER_REGISTER_SERVICE is the text between its parentheses, namespace included.
std::string unknown_class(const std::string& class_name) {
  const std::vector<std::string> names = registered_services();
  std::string known;
  std::string meant;
  for (const auto& name : names) {
    known += (known.empty() ? "" : ", ") + name;
    const bool qualified_here = name.size() > class_name.size() + 2 &&
                                name.ends_with("::" + class_name);  // config lacks the namespace
    const bool qualified_there = class_name.size() > name.size() + 2 &&
                                 class_name.ends_with("::" + name);  // registered without it
    if (meant.empty() && (qualified_here || qualified_there)) {
      meant = name;
    }
  }
  std::string text = "unknown service class \"" + class_name + "\": no EMBER_REGISTER_SERVICE(" +
                     class_name + ") in this program";
  if (!meant.empty()) {
    text += "; \"" + meant +
            "\" is registered (a class registers under its name as written in "
            "EMBER_REGISTER_SERVICE, namespace included)";
  }
  return text + " (registered: " + (known.empty() ? "none" : known) + ")";
}
}  // namespace detail

Status register_service(std::string class_name, ServiceFactory factory) {
  if (class_name.empty() || !factory) {
    return Error{Errc::invalid_argument, "register_service: empty class name or factory"};
  }
  auto& r = registry();
  std::lock_guard lock(r.mu);
  if (r.factories.count(class_name) != 0) {
    return Error{Errc::already_exists, "service class '" + class_name + "' is already registered"};
  }
  r.factories.emplace(std::move(class_name), std::move(factory));
  return {};
}

std::vector<std::string> registered_services() {
  auto& r = registry();
  std::lock_guard lock(r.mu);
  std::vector<std::string> names;
  for (const auto& [name, f] : r.factories) {
    names.push_back(name);
  }
  return names;
}

Service::Service() = default;
Service::~Service() = default;

const std::string& Service::name() const noexcept {
  return config().name;
}
const std::string& Service::service_id() const noexcept {
  return config().id;
}
const std::string& Service::type() const noexcept {
  return config().type;
}
std::int32_t Service::server_id() const noexcept {
  return config().server_id;
}

const Pid& Service::pid() const noexcept {
  return core_->pid();
}

const ServiceConfig& Service::config() const noexcept {
  return core_ ? core_->config() : empty_config();
}

std::string_view Service::param(std::string_view key, std::string_view fallback) const {
  const auto& params = config().params;
  auto it = params.find(std::string(key));
  return it == params.end() ? fallback : std::string_view(it->second);
}

ServiceState Service::state() const noexcept {
  return core_ ? core_->state() : ServiceState::created;
}

bool Service::retired() const noexcept {
  return core_ && core_->retired.load(std::memory_order_acquire);
}

int Service::lane_count() const {
  return core_ ? core_->mailbox().lane_count() : 0;
}

void Service::set_lane_count(int lanes) {
  if (!core_) {
    return;
  }
  int max = config().worker.max_lanes > 0 ? config().worker.max_lanes : runtime::Mailbox::kMaxLanes;
  core_->mailbox().resize(std::clamp(lanes, 1, max));
}

int Service::lane_of(DispatchKey key) const {
  if (!core_ || !key.has_value()) {
    return -1;
  }
  return core_->mailbox().lane_for_key(key.hash());
}

std::int64_t Service::queued_messages() const {
  return core_ ? core_->mailbox().queued() : 0;
}

ScalingStatus Service::scaling() const {
  ScalingStatus out;
  if (!core_ || core_->scaling_probe() == nullptr) {
    out.lanes = lane_count();
    return out;
  }
  const ScalingConfig& sc = *config().worker.scaling;
  detail::ScalingProbe::Status s = core_->scaling_probe()->status();
  out.enabled = true;
  out.lanes = lane_count();
  out.min_lanes = sc.min_lanes;
  out.max_lanes = sc.max_lanes;
  out.evaluations = s.evaluations;
  out.grows = s.grows;
  out.shrinks = s.shrinks;
  out.user_wait_p99 = s.user_wait_p99;
  out.system_wait_p99 = s.system_wait_p99;
  out.cpu_per_lane = s.cpu_per_lane;
  out.busy_per_lane = s.busy_per_lane;
  out.last_decision = std::move(s.last_decision);
  return out;
}

}  // namespace ember
