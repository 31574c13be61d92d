// SPDX-License-Identifier: Apache-2.0
#include <array>
#include <chrono>
#include <cstdint>
#include <ember/config.hpp>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/field_table.hpp"
#include "config/sections.hpp"
#include "config/yaml_walker.hpp"

namespace ember::config {
namespace {

using namespace std::chrono_literals;

constexpr std::array<std::string_view, 1> kOverflowNames = {"reject"};
constexpr std::array<OverflowPolicy, 1> kOverflows = {OverflowPolicy::reject};

// GrowStep, ShrinkStep: a lane count ("2") or a percentage of the current count ("50%").
struct Step {
  Result<ScalingStep> operator()(const Walker& walker, const Entry& e) const {
    ScalingStep step;
    const std::string& text = e.scalar();
    if (e.is_scalar() && !text.empty() && text.back() == '%') {
      const std::string_view number = std::string_view{text}.substr(0, text.size() - 1);
      const std::optional<std::int64_t> percent = int_in_range(number, 1, 1000);
      // Quotes the part before the '%': the number that failed to parse.
      if (!percent) {
        return walker.fail(
            e, "expected a lane count or a percentage such as 50%, got " + quote(number));
      }
      step.percent = static_cast<int>(*percent);
      return step;
    }
    Result<std::int64_t> lanes = walker.read_int(e, 1, 1024);
    if (!lanes) {
      return walker.fail(
          e, "expected a lane count (1..1024) or a percentage such as 50%, got " + describe(e));
    }
    step.lanes = static_cast<int>(*lanes);
    return step;
  }
};

Status read_start_services(const Walker& walker, const Entry& e,
                           std::vector<ServiceConfig>& services) {
  // (ServiceName, ServiceId) → line of the entry that claimed it first.
  std::map<std::pair<std::string, std::string>, int> identities;
  return walker.for_each_item(
      e, "a sequence", ItemLine::own_line, [&](const Entry& item) -> Status {
        if (Status status = walker.expect_map(item); !status)
          return status;
        ServiceConfig service;
        service.line = item.line;
        if (Status status = service_section().read(walker, item, service); !status)
          return status;
        auto [previous, inserted] =
            identities.emplace(std::pair{service.name, service.id}, service.line);
        if (!inserted) {
          return walker.fail(service.line, item.path,
                             "duplicate service: ServiceName " + quote(service.name) +
                                 " with ServiceId " + quote(service.id) +
                                 " is already defined at line " + std::to_string(previous->second));
        }
        services.push_back(std::move(service));
        return ok_status();
      });
}

// Min and Max default to WorkerNum and MaxWorkerNum, so they are settled, and checked against
// them, once the whole WorkerConf is read: the keys may come in either order.
Status finish_scaling(const Walker& walker, const Entry& scaling_entry, WorkerConfig& worker) {
  ScalingConfig sc = *worker.scaling;
  if (sc.min_lanes == 0)
    sc.min_lanes = worker.lanes;
  if (sc.max_lanes == 0)
    sc.max_lanes = worker.max_lanes;
  if (sc.max_lanes <= sc.min_lanes) {
    return walker.fail(scaling_entry.line, join_path(scaling_entry.path, "Max"),
                       "must be above Min (" + std::to_string(sc.min_lanes) +
                           "); set Scaling.Max or MaxWorkerNum");
  }
  if (worker.lanes < sc.min_lanes || worker.lanes > sc.max_lanes) {
    return walker.fail(scaling_entry, "WorkerNum " + std::to_string(worker.lanes) +
                                          " is outside Min..Max (" + std::to_string(sc.min_lanes) +
                                          ".." + std::to_string(sc.max_lanes) + ")");
  }
  if (worker.max_lanes != 0 && sc.max_lanes > worker.max_lanes) {
    return walker.fail(scaling_entry.line, join_path(scaling_entry.path, "Max"),
                       std::to_string(sc.max_lanes) + " is above MaxWorkerNum " +
                           std::to_string(worker.max_lanes));
  }
  worker.scaling = std::make_shared<const ScalingConfig>(std::move(sc));
  return ok_status();
}

}  // namespace

const Section<std::vector<ServiceConfig>>& service_conf_section() {
  static const Section<std::vector<ServiceConfig>> section{{
      {"StartServices", read_start_services},
  }};
  return section;
}

const Section<ServiceConfig>& service_section() {
  static const Section<ServiceConfig> section{
      {
          field("ClassName", &ServiceConfig::class_name, Text{.non_empty = true}).required(),
          field("ServiceName", &ServiceConfig::name, Text{.non_empty = true}),
          field("ServiceId", &ServiceConfig::id, Text{}),
          field("Type", &ServiceConfig::type, Text{}),
          field("ServerId", &ServiceConfig::server_id,
                Int{std::numeric_limits<std::int32_t>::min(),
                    std::numeric_limits<std::int32_t>::max()}),
          field("Version", &ServiceConfig::version,
                Int{std::numeric_limits<std::int64_t>::min(),
                    std::numeric_limits<std::int64_t>::max()}),
          field("IsPrimarySecondaryMode", &ServiceConfig::primary_secondary, Bool{}),
          field("Pinned", &ServiceConfig::pinned, Bool{}),
          nested("WorkerConf", &ServiceConfig::worker, worker_section),
          field("Params", &ServiceConfig::params, ScalarMap{}),
      },
      [](const Walker&, const Entry&, const Seen&, ServiceConfig& service) -> Status {
        if (service.name.empty())
          service.name = service.class_name;
        return ok_status();
      }};
  return section;
}

const Section<WorkerConfig>& worker_section() {
  static const Section<WorkerConfig> section{
      {
          field("WorkerNum", &WorkerConfig::lanes, Int{1, 1024}),
          field("MaxWorkerNum", &WorkerConfig::max_lanes, Int{0, 1024}),
          field("VirtualWorkerRate", &WorkerConfig::virtual_nodes, Int{1, 1000}),
          field("MailboxSize", &WorkerConfig::mailbox_bound,
                Int{0, std::numeric_limits<std::int64_t>::max()}),
          field("Overflow", &WorkerConfig::overflow,
                Enum<OverflowPolicy>{kOverflowNames,
                                     kOverflows,
                                     {.noun = "overflow policy",
                                      .non_empty = false,
                                      .fold_case = false,
                                      .expected = {}}}),
          {"Scaling",
           [](const Walker& walker, const Entry& e, WorkerConfig& worker) -> Status {
             ScalingConfig scaling;
             if (Status status = scaling_section().read(walker, e, scaling); !status)
               return status;
             worker.scaling = std::make_shared<const ScalingConfig>(std::move(scaling));
             return ok_status();
           }},
      },
      // Checked after the whole map because the keys may come in any order.
      [](const Walker& walker, const Entry&, const Seen& seen, WorkerConfig& worker) -> Status {
        const Entry* max = seen.find("MaxWorkerNum");
        if (max != nullptr && worker.max_lanes != 0 && worker.max_lanes < worker.lanes) {
          return walker.fail(*max, std::to_string(worker.max_lanes) + " is less than WorkerNum " +
                                       std::to_string(worker.lanes) +
                                       " (use 0 to mean the same as WorkerNum)");
        }
        const Entry* scaling = seen.find("Scaling");
        return scaling != nullptr ? finish_scaling(walker, *scaling, worker) : ok_status();
      }};
  return section;
}

const Section<ScalingConfig>& scaling_section() {
  static const Section<ScalingConfig> section{{
      field("Min", &ScalingConfig::min_lanes, Int{1, 1024}),
      field("Max", &ScalingConfig::max_lanes, Int{1, 1024}),
      // A zero cooldown is legitimate (Hysteresis alone spaces the changes); a zero interval
      // would spin the scaler.
      field("Interval", &ScalingConfig::interval, Duration{10ms, 1h, "10ms..1h"}),
      field("Cooldown", &ScalingConfig::cooldown, Duration{0ms, 1h, "0s..1h"}),
      field("GrowStep", &ScalingConfig::grow, Step{}),
      field("ShrinkStep", &ScalingConfig::shrink, Step{}),
      field("ShrinkMaxBusy", &ScalingConfig::shrink_max_busy, Fraction{}),
      field("Hysteresis", &ScalingConfig::hysteresis, Int{1, 100}),
      nested("Strategy", &ScalingConfig::strategy, strategy_section)
          .required("for example {Name: queue_length, Params: {High: 100}}"),
  }};
  return section;
}

const Section<ScalingStrategyConfig>& strategy_section() {
  static const Section<ScalingStrategyConfig> section{
      {
          field("Name", &ScalingStrategyConfig::name, Text{.non_empty = true})
              .required("a registered strategy: queue_length, queue_delay, cpu, all, any, or one "
                        "of your own"),
          field("Params", &ScalingStrategyConfig::params, ScalarMap{}),
          field("Subs", &ScalingStrategyConfig::subs,
                list("a sequence of strategies", Nested<ScalingStrategyConfig>{strategy_section})),
      },
      // The strategy is built when the node starts; its errors then name this place.
      [](const Walker&, const Entry& section, const Seen&, ScalingStrategyConfig& strategy) {
        strategy.path = section.path;
        strategy.line = section.line;
        return ok_status();
      }};
  return section;
}

}  // namespace ember::config
