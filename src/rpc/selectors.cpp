// SPDX-License-Identifier: Apache-2.0
// Selectors (which services a verb addresses) and the Bus that holds their resolution.
#include <ember/node.hpp>
#include <ember/rpc.hpp>

#include "core/node_impl.hpp"
#include "core/service_core.hpp"
#include "rpc/calls.hpp"
#include "rpc/messaging.hpp"

namespace ember {

Selector Selector::name(std::string service_name) {
  Selector s;
  s.name_ = std::move(service_name);
  return s;
}
Selector Selector::type(std::string service_type) {
  Selector s;
  s.type_ = std::move(service_type);
  return s;
}
Selector Selector::pid(const Pid& exact) {
  Selector s;
  s.uid_ = exact.uid();
  s.role_ = Role::any;
  return s;
}
std::string Selector::to_string() const {
  const Selector& s = *this;
  std::string text;
  auto add = [&](const std::string& k, const std::string& v) {
    text += (text.empty() ? "" : " ") + k + "=" + v;
  };
  if (!s.uid_.empty()) {
    add("pid", s.uid_);
  }
  if (!s.name_.empty()) {
    add("name", s.name_);
  }
  if (!s.type_.empty()) {
    add("type", s.type_);
  }
  if (s.has_id_) {
    add("id", s.id_);
  }
  if (s.has_server_id_) {
    add("server_id", std::to_string(s.server_id_));
  }
  if (s.role_ != Role::master) {
    add("role", s.role_ == Role::slave ? "slave" : "any");
  }
  return text.empty() ? "all" : text;
}

Selector Selector::all() {
  return {};
}
Selector& Selector::id(std::string service_id) {
  id_ = std::move(service_id);
  has_id_ = true;
  return *this;
}
Selector& Selector::server_id(std::int32_t server) {
  server_id_ = server;
  has_server_id_ = true;
  return *this;
}
Selector& Selector::role(Role r) {
  role_ = r;
  return *this;
}
Selector& Selector::key(DispatchKey k) {
  key_ = k;
  return *this;
}
Selector& Selector::where(std::function<bool(const Pid&)> predicate) {
  predicate_ = std::move(predicate);
  return *this;
}

std::size_t Bus::size() const noexcept {
  return selection_ ? selection_->targets.size() : 0;
}

std::vector<Pid> Bus::targets() const {
  std::vector<Pid> out;
  if (selection_) {
    for (const auto& t : selection_->targets) {
      out.push_back(t.pid());
    }
  }
  return out;
}

namespace detail {
std::shared_ptr<const Selection> make_selection(NodeImpl& node, ServiceCore* from,
                                                Module* from_module, const Selector& selector) {
  auto sel = std::make_shared<Selection>();
  sel->node = &node;
  sel->from = from;
  sel->from_module = from_module;
  sel->targets = Messaging::of(node).repository().select(selector);
  sel->description = selector.to_string();
  return sel;
}
}  // namespace detail

Bus select(Node& node, const Selector& selector) {
  return Bus(
      detail::make_selection(ember::detail::NodeAccess::impl(node), nullptr, nullptr, selector));
}

Bus Module::select(const Selector& selector) const {
  detail::ServiceCore* c = core();
  if (c == nullptr) {
    return Bus{};
  }
  return Bus(detail::make_selection(c->node(), c, const_cast<Module*>(this), selector));
}

}  // namespace ember
