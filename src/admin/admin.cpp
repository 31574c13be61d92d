// SPDX-License-Identifier: Apache-2.0
#include "admin/admin.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <cctype>
#include <cstdio>
#include <ember/node.hpp>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "admin/dashboard.hpp"
#include "core/node_impl.hpp"
#include "core/service_core.hpp"
#include "metrics/prometheus_text.hpp"
#include "ops/observable.hpp"
#include "rpc/messaging.hpp"
#include "runtime/message.hpp"

namespace ember::admin {

namespace {

using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

constexpr auto kSampleEvery = std::chrono::seconds(5);
constexpr auto kHistoryWindow = std::chrono::seconds(60);

std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(SteadyClock::now().time_since_epoch())
      .count();
}

HttpResponse text(int status, std::string body) {
  return HttpResponse{status, "text/plain; charset=utf-8", std::move(body), {}};
}

HttpResponse json_response(int status, const json& value) {
  return HttpResponse{status, "application/json", value.dump() + "\n", {}};
}

HttpResponse error_response(const Error& error) {
  int status = 500;
  switch (error.code()) {
    case Errc::invalid_argument: status = 400; break;
    case Errc::not_found: status = 404; break;
    case Errc::bad_state:
    case Errc::already_exists: status = 409; break;
    case Errc::unavailable:
    case Errc::stopping: status = 503; break;
    default: break;
  }
  return json_response(
      status, json{{"error", std::string(errc_name(error.code()))}, {"message", error.message()}});
}

// The smallest bound under which `q` of the observations fall (seconds), 0 without observations;
// null when the quantile lies in the overflow bucket, above the last bound: no figure can be given.
json quantile(const metrics::HistogramSnapshot& h, double q) {
  const std::uint64_t total = h.count();
  if (total == 0) {
    return 0.0;
  }
  const auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total)));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < metrics::kTimeBounds.size(); ++i) {
    seen += h.counts[i];
    if (seen >= rank) {
      return metrics::kTimeBounds[i];
    }
  }
  return nullptr;
}

metrics::HistogramSnapshot minus(metrics::HistogramSnapshot a,
                                 const metrics::HistogramSnapshot& b) {
  for (std::size_t i = 0; i < metrics::kTimeBuckets; ++i) {
    a.counts[i] = a.counts[i] >= b.counts[i] ? a.counts[i] - b.counts[i] : 0;
  }
  a.sum_seconds = std::max(0.0, a.sum_seconds - b.sum_seconds);
  return a;
}

std::string service_key(const ServiceConfig& c) {
  return c.id.empty() ? c.name : c.name + "#" + c.id;
}

std::string_view state_name(ServiceState state) {
  switch (state) {
    case ServiceState::created: return "created";
    case ServiceState::initialized: return "initialized";
    case ServiceState::running: return "running";
    case ServiceState::stopping: return "stopping";
    case ServiceState::stopped: return "stopped";
  }
  return "unknown";
}

// --- process figures, from /proc ---------------------------------------------------------------

struct ProcessFigures {
  double rss_bytes = 0;
  double virtual_bytes = 0;
  double threads = 0;
  double cpu_seconds = 0;
  double start_time_seconds = 0;
  double open_fds = 0;
  double max_fds = 0;
};

// The boot time as the kernel keeps it (btime): a constant, so the start time does not jitter
// from one scrape to the next as now-minus-uptime does.
std::int64_t boot_time_seconds() {
  std::ifstream stat("/proc/stat");
  std::string key;
  while (stat >> key) {
    if (key == "btime") {
      std::int64_t btime = 0;
      stat >> btime;
      return btime;
    }
    stat.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return 0;
}

ProcessFigures process_figures() {
  ProcessFigures p;
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  {
    std::ifstream stat("/proc/self/stat");
    std::string line;
    std::getline(stat, line);
    // Fields after the command name, which may hold spaces: it ends at the last ')'.
    const std::size_t close = line.rfind(')');
    if (close != std::string::npos) {
      std::istringstream rest(line.substr(close + 2));
      std::vector<std::string> f;
      std::string field;
      while (rest >> field) {
        f.push_back(field);
      }
      // rest[0] is field 3 (state): utime 14, stime 15, num_threads 20, starttime 22,
      // vsize 23, rss 24.
      auto at = [&](std::size_t field_no) -> double {
        const std::size_t i = field_no - 3;
        return i < f.size() ? std::strtod(f[i].c_str(), nullptr) : 0.0;
      };
      p.cpu_seconds = (at(14) + at(15)) / ticks;
      p.threads = at(20);
      p.virtual_bytes = at(23);
      p.rss_bytes = at(24) * page;
      p.start_time_seconds = static_cast<double>(boot_time_seconds()) + at(22) / ticks;
    }
  }
  if (DIR* dir = opendir("/proc/self/fd")) {
    int count = 0;
    while (dirent* entry = readdir(dir)) {
      if (entry->d_name[0] != '.') {
        ++count;
      }
    }
    closedir(dir);
    p.open_fds = count - 1;  // the directory itself
  }
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    p.max_fds = static_cast<double>(limit.rlim_cur);
  }
  return p;
}

template <class Fn>
void each_observable(detail::NodeImpl& node, Fn&& fn) {
  node.each_subsystem([&](detail::Subsystem& sub) {
    if (auto* observable = dynamic_cast<ops::Observable*>(&sub)) {
      fn(*observable);
    }
  });
}

// A Message that runs a timer fire on a worker: the proof that the workers turn.
class Turn final : public runtime::Runnable {
 public:
  Turn(runtime::Message* fire, std::function<void()> then) : fire_(fire), then_(std::move(then)) {}
  void run_slice() override {
    fire_->run();
    delete fire_;
    then_();
    delete this;  // the scheduler touches a runnable no more once its slice returned
  }

 private:
  runtime::Message* fire_;
  std::function<void()> then_;
};

}  // namespace

Admin::Admin(detail::NodeImpl& node) : node_(node) {
  detail::TimingOptions timing;
  timing.slow = node.config.admin.slow_handler;
  timing.very_slow = node.config.admin.very_slow_handler;
  node.timing = timing;
}

Admin::~Admin() = default;

Admin* Admin::of(detail::NodeImpl& node) noexcept {
  return static_cast<Admin*>(node.subsystem(detail::subsystem_slot<Admin>()));
}

Status Admin::start() {
  const std::int64_t now = steady_ns();
  timer_turned_ns_.store(now);
  worker_turned_ns_.store(now);
  Result<std::unique_ptr<HttpListener>> listener = HttpListener::open(
      node_.config.admin.listen_addr, [this](const HttpRequest& r) { return answer_promptly(r); },
      [this](const HttpRequest& r) { return serve(r); }, node_.log);
  if (!listener) {
    return listener.error();
  }
  listener_ = std::move(*listener);
  // Under a simulation there are no threads to watch, and time is virtual.
  if (node_.driver == nullptr) {
    std::lock_guard lock(heartbeat_mu_);
    ticking_.store(true, std::memory_order_release);
    arm_heartbeat();
  }
  node_.log.info("admin listening on http://{}{}", listener_->address(),
                 node_.config.admin.token.empty() ? "" : " (bearer token required)");
  return {};
}

Status Admin::settle() {
  readiness_.store(Readiness::ready, std::memory_order_release);
  return {};
}

void Admin::stopping() {
  readiness_.store(Readiness::stopping, std::memory_order_release);
}

void Admin::stop() {
  readiness_.store(Readiness::stopping, std::memory_order_release);
  if (listener_) {
    listener_->stop();
  }
  std::lock_guard lock(heartbeat_mu_);  // no Turn arms a beat after this
  if (ticking_.exchange(false)) {
    node_.timers->cancel_all(ticker_owner_);
  }
}

std::string Admin::address() const {
  return listener_ ? listener_->address() : std::string();
}

void Admin::arm_heartbeat() {
  timer::TimerService::Request beat;
  beat.target = this;
  beat.owner = &ticker_owner_;
  // Several beats per HealthStall, so that a healthy node is never seen stalled.
  beat.delay = std::min<std::chrono::milliseconds>(std::chrono::seconds(1),
                                                   node_.config.admin.health_stall / 4);
  beat.callback = [] {};
  node_.timers->schedule(std::move(beat));
}

void Admin::post_timer_fire(runtime::Message* m) noexcept {
  timer_turned_ns_.store(steady_ns(), std::memory_order_relaxed);
  // The next beat is armed by the worker that ran this one: one beat at a time, so a stalled
  // pool piles nothing up.
  node_.scheduler->submit(new Turn(m, [this] {
    worker_turned_ns_.store(steady_ns(), std::memory_order_relaxed);
    std::lock_guard lock(heartbeat_mu_);
    if (ticking_.load(std::memory_order_acquire)) {
      arm_heartbeat();
    }
  }));
}

std::string Admin::unhealthy() const {
  const std::int64_t stall =
      std::chrono::duration_cast<std::chrono::nanoseconds>(node_.config.admin.health_stall).count();
  const std::int64_t now = steady_ns();
  if (!ticking_.load(std::memory_order_acquire)) {
    return {};
  }
  // One beat at a time: the timer thread stamps it, a worker stamps it again and arms the next.
  // A stuck pool stops both stamps, the worker's first (the timer posted a beat no worker took);
  // a stuck timer thread too, its own first (a worker armed a beat that never fired).
  const std::int64_t timer_at = timer_turned_ns_.load(std::memory_order_relaxed);
  const std::int64_t worker_at = worker_turned_ns_.load(std::memory_order_relaxed);
  const std::int64_t age = now - std::min(timer_at, worker_at);
  std::string why;
  if (age <= stall) {
    return why;
  }
  if (worker_at <= timer_at) {
    why = fmt::format(
        "no worker thread has been free for {} ms (handlers stuck, or the pool "
        "overloaded)\n",
        (now - worker_at) / 1'000'000);
  } else {
    why = fmt::format("the timer thread has not turned for {} ms\n", (now - timer_at) / 1'000'000);
  }
  return why;
}

std::vector<std::string> Admin::not_ready() const {
  std::vector<std::string> why;
  switch (readiness_.load(std::memory_order_acquire)) {
    case Readiness::starting: why.emplace_back("the node is starting"); break;
    case Readiness::stopping: why.emplace_back("the node is stopping"); break;
    case Readiness::ready: break;
  }
  each_observable(node_, [&](ops::Observable& o) {
    std::string reason = o.not_ready();
    if (!reason.empty()) {
      why.push_back(std::move(reason));
    }
  });
  return why;
}

bool Admin::authorized(const HttpRequest& request) const {
  const std::string& token = node_.config.admin.token;
  if (token.empty()) {
    return true;
  }
  constexpr std::string_view kScheme = "Bearer ";
  if (request.authorization.size() != kScheme.size() + token.size() ||
      !request.authorization.starts_with(kScheme)) {
    return false;
  }
  // Compared in constant time: the comparison's duration says nothing about the token.
  unsigned char diff = 0;
  for (std::size_t i = 0; i < token.size(); ++i) {
    diff |= static_cast<unsigned char>(request.authorization[kScheme.size() + i] ^ token[i]);
  }
  return diff == 0;
}

namespace {

bool is_ip_literal(std::string_view host) {
  boost::system::error_code ec;
  (void)boost::asio::ip::make_address(std::string(host), ec);
  return !ec;
}

// "host:port", "[v6]:port" or "host" without its port, lower case.
std::string host_of(std::string_view host_port) {
  std::string host;
  if (host_port.starts_with('[')) {
    host = std::string(host_port.substr(1, host_port.find(']') - 1));
  } else {
    host = std::string(host_port.substr(0, host_port.rfind(':')));
  }
  std::transform(host.begin(), host.end(), host.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return host;
}

bool same_text(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace

std::optional<HttpResponse> Admin::answer_promptly(const HttpRequest& request) const {
  const std::string& path = request.path;
  const bool get = request.method == "GET" || request.method == "HEAD";
  if (path == "/healthz" && get) {
    std::string why = unhealthy();
    return why.empty() ? text(200, "ok\n") : text(503, std::move(why));
  }
  if (path == "/readyz" && get) {
    std::vector<std::string> why = not_ready();
    if (why.empty()) {
      return text(200, "ready\n");
    }
    std::string body;
    for (const std::string& w : why) {
      body += w + "\n";
    }
    return text(503, std::move(body));
  }
  // Without a token the listener is on loopback, and a web page the operator visits could still
  // reach it through a name it rebinds to 127.0.0.1: such a request names that host, not this
  // listener's address.
  if (node_.config.admin.token.empty() && !request.host.empty()) {
    const std::string host = host_of(request.host);
    if (host != "localhost" && !is_ip_literal(host)) {
      return json_response(403, json{{"error", "forbidden"},
                                     {"message",
                                      "this listener answers to its address or "
                                      "localhost, not to Host: " +
                                          request.host}});
    }
  }
  // A browser says where a request comes from: an action from another site's page is forged.
  if (!get && !request.origin.empty()) {
    const std::size_t scheme = request.origin.find("://");
    const std::string_view origin_host = scheme == std::string::npos
                                             ? std::string_view{}
                                             : std::string_view(request.origin).substr(scheme + 3);
    if (origin_host.empty() || !same_text(origin_host, request.host)) {
      return json_response(
          403, json{{"error", "forbidden"},
                    {"message",
                     "an action from the page of another site (Origin: " + request.origin + ")"}});
    }
  }
  if ((path == "/" || path == "/index.html") && get) {
    // The page holds no data: it asks the API, with the token the operator types in.
    return HttpResponse{200, "text/html; charset=utf-8", std::string(dashboard_html()), {}};
  }
  if (!authorized(request)) {
    HttpResponse denied = json_response(
        401, json{{"error", "unauthorized"},
                  {"message", request.authorization.empty()
                                  ? "this admin listener needs \"Authorization: Bearer <token>\""
                                  : "wrong token"}});
    denied.www_authenticate = "Bearer realm=\"ember-admin\"";
    return denied;
  }
  return std::nullopt;
}

HttpResponse Admin::serve(const HttpRequest& request) {
  if (readiness_.load(std::memory_order_acquire) != Readiness::starting &&
      SteadyClock::now() - last_sample_ >= kSampleEvery) {
    sample_history();
  }
  const std::string& path = request.path;
  const bool get = request.method == "GET" || request.method == "HEAD";
  if (path == "/metrics" && get) {
    return metrics();
  }
  constexpr std::string_view kApi = "/api/";
  if (path.starts_with(kApi)) {
    const std::string_view topic = std::string_view(path).substr(kApi.size());
    if (get) {
      return api_get(topic, request);
    }
    if (request.method == "POST") {
      return api_post(topic, request);
    }
    return json_response(
        405, json{{"error", "method_not_allowed"}, {"message", "GET reads, POST acts"}});
  }
  return json_response(404, json{{"error", "not_found"}, {"message", "no such page: " + path}});
}

// --- /metrics ----------------------------------------------------------------------------------

HttpResponse Admin::metrics() {
  metrics::PrometheusText out;
  const NodeStats stats = node_.owner->stats();
  const std::string version = EMBER_VERSION_STRING;
  out.gauge("ember_node_info", "The node: its id and Ember's version (always 1).",
            {{"node", node_.config.node_id}, {"version", version}}, 1);
  out.gauge("ember_node_ready", "1 when /readyz answers ready.", {}, not_ready().empty() ? 1 : 0);
  out.gauge("ember_calls_pending", "Calls made on this node waiting for their outcome.", {},
            static_cast<double>(stats.pending_calls));
  out.counter("ember_late_replies_total",
              "Replies that arrived after their call had completed (timeout, cancel).", {},
              static_cast<double>(stats.late_replies));
  out.gauge("ember_timers_pending", "Timers scheduled on this node.", {},
            static_cast<double>(stats.pending_timers));
  out.gauge("ember_repository_services", "Services this node can select (its own and others').", {},
            static_cast<double>(stats.services));
  out.counter("ember_events_published_total", "publish() calls on this node.", {},
              static_cast<double>(stats.events.published));
  out.counter("ember_events_delivered_total", "Event handler runs on this node.", {},
              static_cast<double>(stats.events.delivered));
  out.counter("ember_events_sent_total", "Events sent to other nodes (or the NATS server).", {},
              static_cast<double>(stats.events.sent));
  out.counter("ember_events_received_total", "Events received from other nodes.", {},
              static_cast<double>(stats.events.received));
  out.counter("ember_events_send_failures_total", "Events the backend could not send (lost).", {},
              static_cast<double>(stats.events.send_failures));
  out.counter("ember_events_receive_errors_total", "Events received but unreadable.", {},
              static_cast<double>(stats.events.receive_errors));
  out.counter("ember_events_dropped_total", "Events the backend dropped (a slow consumer).", {},
              static_cast<double>(stats.events.dropped));
  out.counter("ember_scaling_evaluations_total", "Autoscaler evaluations.", {},
              static_cast<double>(stats.scaling.evaluations));
  out.counter("ember_scaling_grows_total", "Lane-count increases by the autoscaler.", {},
              static_cast<double>(stats.scaling.grows));
  out.counter("ember_scaling_shrinks_total", "Lane-count decreases by the autoscaler.", {},
              static_cast<double>(stats.scaling.shrinks));

  node_.each_service_core([&](detail::ServiceCore& core) {
    const ServiceConfig& c = core.config();
    const metrics::Labels service = {{"service", c.name}, {"id", c.id}};
    auto& mailbox = core.mailbox();
    out.gauge("ember_service_queued_messages", "Messages waiting in the service's mailbox.",
              service, static_cast<double>(mailbox.queued()));
    out.gauge("ember_service_lanes", "Lanes of the service now.", service,
              static_cast<double>(mailbox.lane_count()));
    out.counter("ember_service_handler_failures_total", "Handlers that threw.", service,
                static_cast<double>(core.handler_failures()));
    out.counter("ember_service_rejected_messages_total",
                "Messages refused unrun because the service had stopped.", service,
                static_cast<double>(core.rejected()));
    out.gauge("ember_service_retired", "1 once the service is retired.", service,
              core.retired.load(std::memory_order_acquire) ? 1 : 0);
    const Pid& pid = core.pid();
    if (c.primary_secondary) {
      out.gauge("ember_service_master", "1 while this master/slave group member is master.",
                service, pid.master ? 1 : 0);
      out.gauge("ember_service_epoch", "Fencing epoch of the current mastership (0: not master).",
                service, static_cast<double>(pid.epoch));
    }
    if (const detail::ServiceTimings* timings = core.timings()) {
      const detail::ServiceTimings::Snapshot t = timings->snapshot();
      out.counter("ember_service_messages_total", "Messages the service handled.", service,
                  static_cast<double>(t.run.count()));
      out.histogram("ember_service_queue_wait_seconds",
                    "How long messages waited in the mailbox before their handler started.",
                    service, t.wait);
      out.histogram("ember_service_handler_seconds", "How long handlers ran.", service, t.run);
      for (const detail::SlowMethod& m : timings->slow_methods()) {
        out.counter("ember_service_slow_handlers_total",
                    "Handler runs over AdminConf.SlowHandler (level slow) and over "
                    "VerySlowHandler (level very_slow).",
                    {{"service", c.name}, {"id", c.id}, {"method", m.method}, {"level", "slow"}},
                    static_cast<double>(m.slow));
        out.counter(
            "ember_service_slow_handlers_total",
            "Handler runs over AdminConf.SlowHandler (level slow) and over "
            "VerySlowHandler (level very_slow).",
            {{"service", c.name}, {"id", c.id}, {"method", m.method}, {"level", "very_slow"}},
            static_cast<double>(m.very_slow));
      }
    }
    if (const detail::ServiceMessaging* messaging = detail::ServiceMessaging::find(core)) {
      out.counter("ember_service_expired_requests_total",
                  "Requests dropped unrun because their deadline passed in the mailbox.", service,
                  static_cast<double>(messaging->expired()));
      const auto results = messaging->results();
      for (std::size_t code = 0; code < results.size(); ++code) {
        if (results[code] == 0 && code != 0) {
          continue;
        }
        out.counter(
            "ember_service_calls_total", "Calls the service answered, by outcome.",
            {{"service", c.name}, {"id", c.id}, {"code", errc_name(static_cast<Errc>(code))}},
            static_cast<double>(results[code]));
      }
    }
  });

  each_observable(node_, [&](ops::Observable& o) { o.collect(out); });

  const ProcessFigures p = process_figures();
  out.gauge("process_resident_memory_bytes", "Resident memory size in bytes.", {}, p.rss_bytes);
  out.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", {}, p.virtual_bytes);
  out.gauge("process_open_fds", "Open file descriptors.", {}, p.open_fds);
  out.gauge("process_max_fds", "The limit of open file descriptors.", {}, p.max_fds);
  out.gauge("process_threads", "Threads of the process.", {}, p.threads);
  out.counter("process_cpu_seconds_total", "User and system CPU time spent in seconds.", {},
              p.cpu_seconds);
  out.gauge("process_start_time_seconds", "Start time of the process since the Unix epoch.", {},
            p.start_time_seconds);
  return HttpResponse{200, std::string(metrics::PrometheusText::kContentType), out.text(), {}};
}

// --- /api --------------------------------------------------------------------------------------

void Admin::sample_history() {
  const auto now = SteadyClock::now();
  last_sample_ = now;
  std::map<std::string, std::deque<Sample>> next;
  node_.each_service_core([&](detail::ServiceCore& core) {
    const detail::ServiceTimings* timings = core.timings();
    if (timings == nullptr) {
      return;
    }
    const std::string key = service_key(core.config());
    std::deque<Sample> samples;
    if (auto it = history_.find(key); it != history_.end()) {
      samples = std::move(it->second);
    }
    const detail::ServiceTimings::Snapshot t = timings->snapshot();
    samples.push_back(Sample{now, t.wait, t.run});
    while (samples.size() > 1 && now - samples.front().at > kHistoryWindow) {
      samples.pop_front();
    }
    next.emplace(key, std::move(samples));
  });
  history_ = std::move(next);  // services that went away leave with their history
}

std::string Admin::node_json() const {
  const NodeStats stats = node_.owner->stats();
  json out;
  out["node"] = node_.config.node_id;
  out["version"] = EMBER_VERSION_STRING;
  out["uptime_seconds"] = std::chrono::duration<double>(SteadyClock::now() - started_).count();
  std::vector<std::string> why = not_ready();
  out["ready"] = why.empty();
  out["not_ready"] = why;
  const std::string sick = unhealthy();
  out["healthy"] = sick.empty();
  out["log_level"] = [] {
    static constexpr const char* kNames[] = {"trace", "debug",    "info", "warn",
                                             "error", "critical", "off"};
    return kNames[static_cast<int>(log_level())];
  }();
  out["stats"] = json{{"pending_calls", stats.pending_calls},
                      {"late_replies", stats.late_replies},
                      {"expired", stats.expired},
                      {"services", stats.services},
                      {"pending_timers", stats.pending_timers},
                      {"events",
                       {{"published", stats.events.published},
                        {"delivered", stats.events.delivered},
                        {"sent", stats.events.sent},
                        {"received", stats.events.received},
                        {"dropped", stats.events.dropped}}}};
  json parts = json::object();
  each_observable(node_, [&](ops::Observable& o) {
    const std::string_view key = o.status_key();
    if (!key.empty()) {
      parts[std::string(key)] = json::parse(o.status(), nullptr, false);
    }
  });
  out["subsystems"] = parts;
  return out.dump();
}

std::string Admin::services_json() {
  json list = json::array();
  node_.each_service_core([&](detail::ServiceCore& core) {
    const ServiceConfig& c = core.config();
    const Pid& pid = core.pid();
    json s;
    s["name"] = c.name;
    s["id"] = c.id;
    s["state"] = state_name(core.state());
    s["retired"] = core.retired.load(std::memory_order_acquire);
    s["group"] = c.primary_secondary;
    s["master"] = pid.master;
    s["epoch"] = pid.epoch;
    s["lanes"] = core.mailbox().lane_count();
    s["queued"] = core.mailbox().queued();
    s["failures"] = core.handler_failures();
    if (const detail::ServiceTimings* timings = core.timings()) {
      const detail::ServiceTimings::Snapshot t = timings->snapshot();
      s["handled"] = t.run.count();
      // Over the last minute: against the oldest sample in it (all of it before the first).
      metrics::HistogramSnapshot wait = t.wait;
      metrics::HistogramSnapshot run = t.run;
      double window = std::chrono::duration<double>(SteadyClock::now() - started_).count();
      // A window shorter than one sample period says little: then since the start.
      if (auto it = history_.find(service_key(c));
          it != history_.end() && !it->second.empty() &&
          SteadyClock::now() - it->second.front().at >= kSampleEvery) {
        const Sample& oldest = it->second.front();
        wait = minus(wait, oldest.wait);
        run = minus(run, oldest.run);
        window = std::chrono::duration<double>(SteadyClock::now() - oldest.at).count();
      }
      s["window_seconds"] = window;
      s["handled_in_window"] = run.count();
      s["wait_p99_seconds"] = quantile(wait, 0.99);
      s["run_p99_seconds"] = quantile(run, 0.99);
      s["run_mean_seconds"] =
          run.count() > 0 ? run.sum_seconds / static_cast<double>(run.count()) : 0.0;
    }
    if (const detail::ServiceMessaging* messaging = detail::ServiceMessaging::find(core)) {
      json calls = json::object();
      const auto results = messaging->results();
      for (std::size_t code = 0; code < results.size(); ++code) {
        if (results[code] != 0) {
          calls[std::string(errc_name(static_cast<Errc>(code)))] = results[code];
        }
      }
      s["calls"] = calls;
      s["expired"] = messaging->expired();
    }
    list.push_back(std::move(s));
  });
  return json{{"services", list}}.dump();
}

std::string Admin::slow_json() const {
  json list = json::array();
  node_.each_service_core([&](detail::ServiceCore& core) {
    if (const detail::ServiceTimings* timings = core.timings()) {
      for (const detail::SlowMethod& m : timings->slow_methods()) {
        list.push_back(json{{"service", service_key(core.config())},
                            {"method", m.method},
                            {"slow", m.slow},
                            {"very_slow", m.very_slow},
                            {"max_seconds", m.max_seconds},
                            {"last_trace_id", fmt::format("{:016x}", m.last_trace_id)}});
      }
    }
  });
  std::sort(list.begin(), list.end(), [](const json& a, const json& b) {
    return a["max_seconds"].get<double>() > b["max_seconds"].get<double>();
  });
  return json{
      {"slow", list},
      {"threshold_seconds", std::chrono::duration<double>(node_.config.admin.slow_handler).count()},
      {"very_slow_threshold_seconds",
       std::chrono::duration<double>(node_.config.admin.very_slow_handler).count()}}
      .dump();
}

std::string Admin::cluster_json() const {
  // Every instance this node can select, by node: its own and, in a cluster, what discovery
  // told it of the others.
  std::map<std::string, json> nodes;
  for (const detail::Target& target : detail::Messaging::of(node_).repository().all()) {
    const Pid& pid = target.pid();
    json& entry = nodes[pid.node_id];
    if (entry.is_null()) {
      entry = json{{"node", pid.node_id}, {"address", pid.address}, {"services", json::array()}};
    }
    entry["services"].push_back(json{{"name", pid.name},
                                     {"id", pid.id},
                                     {"type", pid.type},
                                     {"server_id", pid.server_id},
                                     {"master", pid.master},
                                     {"epoch", pid.epoch}});
  }
  json list = json::array();
  for (auto& [id, entry] : nodes) {
    list.push_back(std::move(entry));
  }
  return json{
      {"self", node_.config.node_id}, {"clustered", node_.config.cluster.enabled}, {"nodes", list}}
      .dump();
}

HttpResponse Admin::api_get(std::string_view topic, const HttpRequest& request) {
  auto raw = [](std::string body) {
    return HttpResponse{200, "application/json", std::move(body) + "\n", {}};
  };
  if (topic == "node") {
    return raw(node_json());
  }
  if (topic == "services") {
    return raw(services_json());
  }
  if (topic == "slow") {
    return raw(slow_json());
  }
  if (topic == "cluster") {
    return raw(cluster_json());
  }
  const std::string who = request.peer;
  const ops::Request req{who, request.query};
  std::optional<Result<std::string>> answer;
  each_observable(node_, [&](ops::Observable& o) {
    if (!answer) {
      answer = o.query(topic, req);
    }
  });
  if (!answer) {
    return json_response(
        404, json{{"error", "not_found"},
                  {"message", "no such API on this node: GET /api/" + std::string(topic)}});
  }
  if (!*answer) {
    return error_response(answer->error());
  }
  return raw(std::move(**answer));
}

void Admin::audit(const std::string& line) const {
  // Written whatever the log level: an operator's action must leave a trace, also the one that
  // turned logging down.
  node_.log.write(LogLevel::warn, line);
}

HttpResponse Admin::api_post(std::string_view action, const HttpRequest& request) {
  const std::string who =
      request.operator_name.empty() ? request.peer : request.operator_name + "@" + request.peer;
  const ops::Request req{who, request.query};
  auto done = [&](std::string what) {
    audit(fmt::format("admin: {} (asked by {})", what, who));
    return json_response(200, json{{"ok", true}, {"done", what}});
  };
  if (action == "log-level") {
    const std::string* level_text = req.param("level");
    LogLevel level{};
    if (level_text == nullptr || !parse_log_level(*level_text, level)) {
      return error_response(Error{Errc::invalid_argument,
                                  "level=trace|debug|info|warn|error|critical|off is required"});
    }
    set_log_level(level);
    return done("log level set to " + *level_text);
  }
  if (action == "retire") {
    const std::string* service = req.param("service");
    if (service == nullptr || service->empty()) {
      return error_response(Error{Errc::invalid_argument,
                                  "service=<name> is required (and id= "
                                  "for one of several instances)"});
    }
    const std::string* id = req.param("id");
    // Not a plain lock: the node's stop holds the lifecycle lock while it waits for this thread
    // (the listener closes in it), and services starting or stopping hold it for seconds.
    Status retired =
        Error{Errc::unavailable, "the node is starting, stopping or changing services: try again"};
    const auto give_up = SteadyClock::now() + std::chrono::seconds(2);
    while (readiness_.load(std::memory_order_acquire) != Readiness::stopping &&
           SteadyClock::now() < give_up) {
      std::unique_lock lifecycle(node_.lifecycle_mu, std::try_to_lock);
      if (lifecycle.owns_lock()) {
        retired = node_.retire_locked(*service, id != nullptr ? *id : "");
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!retired) {
      audit(fmt::format("admin: retire {} refused: {} (asked by {})", *service,
                        retired.error().message(), who));
      return error_response(retired.error());
    }
    return done("retired service " + *service + (id != nullptr && !id->empty() ? "#" + *id : ""));
  }
  std::optional<Result<std::string>> answer;
  each_observable(node_, [&](ops::Observable& o) {
    if (!answer) {
      answer = o.act(action, req);
    }
  });
  if (!answer) {
    return json_response(
        404, json{{"error", "not_found"},
                  {"message", "no such action on this node: POST /api/" + std::string(action)}});
  }
  if (!*answer) {
    audit(
        fmt::format("admin: {} refused: {} (asked by {})", action, answer->error().message(), who));
    return error_response(answer->error());
  }
  audit(fmt::format("admin: {} done: {} (asked by {})", action, **answer, who));
  return HttpResponse{200, "application/json", std::move(**answer) + "\n", {}};
}

}  // namespace ember::admin
