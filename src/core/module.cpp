// SPDX-License-Identifier: Apache-2.0
#include <ember/module.hpp>
#include <ember/node.hpp>
#include <ember/service.hpp>

#include "core/node_impl.hpp"
#include "core/service_core.hpp"
#include "timer/cron.hpp"

namespace ember {

Module::Module() = default;
Module::~Module() = default;

detail::ServiceCore* Module::core() const noexcept {
  return service_ != nullptr ? service_->core_.get() : nullptr;
}

Result<ModuleId> Module::add_module(std::unique_ptr<Module> child, ModuleId preset_id) {
  detail::ServiceCore* c = core();
  if (c == nullptr) {
    return Error{Errc::bad_state,
                 "add_module: this module is not attached to a running node yet (add modules "
                 "from on_init or later, not from a constructor)"};
  }
  return c->attach(*this, std::move(child), preset_id);
}

Status Module::release_module(ModuleId id) {
  detail::ServiceCore* c = core();
  if (c == nullptr) {
    return Error{Errc::bad_state, "release_module: module is not attached"};
  }
  return c->release(*this, id);
}

Module* Module::find_module(ModuleId id) const {
  detail::ServiceCore* c = core();
  return c != nullptr ? c->find(id) : nullptr;
}

Module& Module::root() const noexcept {
  return *service_;
}

std::vector<Module*> Module::children() const {
  detail::ServiceCore* c = core();
  return c != nullptr ? c->children_of(*this) : std::vector<Module*>{};
}

TimerId Module::schedule_timer(const char* what, std::chrono::nanoseconds delay,
                               std::chrono::nanoseconds period, std::function<void()> fn,
                               TimerOptions options) {
  detail::ServiceCore* c = core();
  if (c == nullptr || released_ || !fn) {
    system_log().error("{}(): module not attached, released, or empty callback; timer not set",
                       what);
    return {};
  }
  timer::TimerService::Request request;
  request.target = c;
  request.owner = &extras_->timers;
  request.delay = delay;
  request.period = period;
  request.options = options;
  request.callback = std::move(fn);
  return c->timers().schedule(std::move(request));
}

TimerId Module::after(std::chrono::nanoseconds delay, std::function<void()> fn,
                      TimerOptions options) {
  return schedule_timer("after", delay, {}, std::move(fn), options);
}

TimerId Module::every(std::chrono::nanoseconds period, std::function<void()> fn,
                      TimerOptions options) {
  if (detail::ServiceCore* c = core()) {
    period =
        std::max(period, std::chrono::duration_cast<std::chrono::nanoseconds>(c->timers().tick()));
  }
  return schedule_timer("every", period, period, std::move(fn), options);
}

Result<TimerId> Module::cron(std::string_view spec, std::function<void()> fn,
                             TimerOptions options) {
  detail::ServiceCore* c = core();
  if (c == nullptr || released_) {
    return Error{Errc::bad_state, "cron(): module not attached or released"};
  }
  if (!fn) {
    return Error{Errc::invalid_argument, "cron(): empty callback"};
  }
  auto schedule = timer::CronSchedule::parse(spec, c->node().local_zone);
  if (!schedule) {
    return std::move(schedule).error();
  }
  timer::TimerService::Request request;
  request.target = c;
  request.owner = &extras_->timers;
  request.cron = std::make_unique<timer::CronSchedule>(std::move(*schedule));
  request.options = options;
  request.callback = std::move(fn);
  return c->timers().schedule(std::move(request));
}

bool Module::cancel_timer(TimerId id) {
  detail::ServiceCore* c = core();
  return c != nullptr && c->timers().cancel(id);
}

Status Module::post(std::function<void()> fn, PostOptions options) {
  detail::ServiceCore* c = core();
  if (c == nullptr) {
    return Error{Errc::bad_state, "post: module is not attached"};
  }
  if (!fn) {
    return Error{Errc::invalid_argument, "post: empty function"};
  }
  auto* m = runtime::make_message(std::move(fn), options.name);
  m->priority = options.priority;
  m->key = options.key;
  return c->post(m, false);
}

const Logger& Module::log() const {
  detail::ServiceCore* c = core();
  return c != nullptr ? c->logger() : system_log();
}

Node& Module::node() const {
  return *core()->node().owner;
}

void Module::on_release_cleanup(std::function<void()> fn) {
  if (extras_) {
    extras_->cleanups.push_back(std::move(fn));
  }
}

}  // namespace ember
