// SPDX-License-Identifier: Apache-2.0
// ember-bot: load-tests a gateway with many client connections. Each bot logs in (token
// "<prefix>-<n>"), optionally calls a setup route once (joining a room), then sends requests at a
// fixed rate, or as fast as a window of requests in flight allows, or nothing at all (holding
// idle sessions). It prints progress every second and a summary at the end, as text or JSON lines.
//
//   ember-bot --url ws://127.0.0.1:7000/ws --connections 1000 --route lobby.RpcEcho --rate 10
//   ember-bot --connections 200000 --idle --duration 30s --json
#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ember/client.hpp>
#include <ember/config.hpp>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

struct Settings {
  std::string url = "ws://127.0.0.1:7000/ws";
  std::size_t connections = 100;
  std::string token_prefix = "bot";
  std::string route = "lobby.RpcEcho";
  std::string setup_route;
  std::string setup_text = "room-1";
  std::string trigger_route;  // one bot calls it once everyone is connected (a broadcast)
  std::string trigger_text;
  std::uint64_t expect_pushes = 0;  // stop early once this many pushes arrived
  double rate = 0;         // requests/s per connection; 0 with --window: as fast as allowed
  std::size_t window = 0;  // requests in flight per connection (closed loop)
  std::size_t payload_bytes = 16;
  bool idle = false;
  std::string duration = "10s";
  std::size_t source_ips = 0;  // 0: enough 127.0.0.x addresses for the connections
  int threads = 1;
  std::size_t connect_parallel = 256;
  bool json = false;
  std::string label = "ember-bot";
};

// Field 1, a string: what the demo's Echo, Join and similar messages start with.
std::string text_payload(std::size_t bytes, const std::string& text = {}) {
  std::string value = text.empty() ? std::string(bytes, 'x') : text;
  std::string out;
  out.push_back('\x0a');
  std::size_t n = value.size();
  while (n >= 0x80) {
    out.push_back(static_cast<char>((n & 0x7f) | 0x80));
    n >>= 7;
  }
  out.push_back(static_cast<char>(n));
  return out + value;
}

/// Latencies in microseconds, a histogram with 1 % resolution (log buckets): constant memory
/// whatever the run's length, and safe to merge from every callback thread.
class Latency {
 public:
  void add(std::chrono::nanoseconds d) {
    const double us = std::max(1.0, static_cast<double>(d.count()) / 1000.0);
    const auto bucket =
        std::min(kBuckets - 1, static_cast<std::size_t>(std::log(us) / std::log(1.01)));
    counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  }
  [[nodiscard]] double percentile_ms(double p) const {
    std::uint64_t total = 0;
    for (const auto& c : counts_) total += c.load(std::memory_order_relaxed);
    if (total == 0)
      return 0;
    const auto rank = static_cast<std::uint64_t>(std::ceil(p * static_cast<double>(total)));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i].load(std::memory_order_relaxed);
      if (seen >= rank)
        return std::pow(1.01, static_cast<double>(i) + 0.5) / 1000.0;
    }
    return 0;
  }

 private:
  static constexpr std::size_t kBuckets = 2400;  // 1.01^2400 us: beyond any run
  std::array<std::atomic<std::uint64_t>, kBuckets> counts_{};
};

struct Totals {
  std::atomic<std::uint64_t> connected{0};
  std::atomic<std::uint64_t> connect_failed{0};
  std::atomic<std::uint64_t> sent{0};
  std::atomic<std::uint64_t> ok{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint64_t> disconnected{0};
  std::atomic<std::uint64_t> pushes{0};
  std::atomic<std::int64_t> first_push_ns{0};
  std::atomic<std::int64_t> last_push_ns{0};
  void pushed() {
    const std::int64_t now = Clock::now().time_since_epoch().count();
    std::int64_t expected = 0;
    first_push_ns.compare_exchange_strong(expected, now, std::memory_order_relaxed);
    last_push_ns.store(now, std::memory_order_relaxed);
    pushes.fetch_add(1, std::memory_order_relaxed);
  }
  [[nodiscard]] double pushes_per_s() const {
    const double span = static_cast<double>(last_push_ns.load() - first_push_ns.load()) / 1e9;
    return span > 0 ? static_cast<double>(pushes.load()) / span : 0;
  }
  Latency latency;
  std::mutex mu;
  std::string first_error;
  void error(const std::string& what) {
    errors.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard lock(mu);
    if (first_error.empty())
      first_error = what;
  }
};

struct Bot {
  std::unique_ptr<ember::client::Client> client;
  std::atomic<std::size_t> in_flight{0};
};

void issue(Bot& bot, Totals& totals, const Settings& s, const std::string& payload,
           std::atomic<bool>& running) {
  bot.in_flight.fetch_add(1, std::memory_order_relaxed);
  totals.sent.fetch_add(1, std::memory_order_relaxed);
  const auto start = Clock::now();
  bot.client->async_call(
      s.route, payload,
      [&bot, &totals, &s, &payload, &running, start](ember::Result<std::string> r) {
        bot.in_flight.fetch_sub(1, std::memory_order_relaxed);
        if (r) {
          totals.ok.fetch_add(1, std::memory_order_relaxed);
          totals.latency.add(Clock::now() - start);
        } else {
          totals.error(r.error().to_string());
        }
        // Closed loop: the answer makes room for the next request.
        if (s.window > 0 && s.rate <= 0 && running.load(std::memory_order_relaxed) &&
            bot.client->connected()) {
          issue(bot, totals, s, payload, running);
        }
      });
}

void print_line(const Settings& s, const char* phase, double seconds, const Totals& t, double rps,
                bool final) {
  if (s.json) {
    std::printf(
        "{\"bench\":\"%s\",\"phase\":\"%s\",\"seconds\":%.1f,\"connections\":%llu,"
        "\"connect_failed\":%llu,\"requests_ok\":%llu,\"errors\":%llu,\"requests_per_s\":%.0f,"
        "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"disconnected\":%llu,"
        "\"pushes\":%llu,\"pushes_per_s\":%.0f}\n",
        s.label.c_str(), phase, seconds, static_cast<unsigned long long>(t.connected.load()),
        static_cast<unsigned long long>(t.connect_failed.load()),
        static_cast<unsigned long long>(t.ok.load()),
        static_cast<unsigned long long>(t.errors.load()), rps, t.latency.percentile_ms(0.50),
        t.latency.percentile_ms(0.99), t.latency.percentile_ms(0.999),
        static_cast<unsigned long long>(t.disconnected.load()),
        static_cast<unsigned long long>(t.pushes.load()), t.pushes_per_s());
    std::fflush(stdout);
  } else {
    std::fprintf(final ? stdout : stderr,
                 "%s %6.1fs  connections %llu (failed %llu)  ok %llu  errors %llu  %.0f req/s  "
                 "p50 %.3f ms  p99 %.3f ms  p999 %.3f ms  pushes %llu\n",
                 phase, seconds, static_cast<unsigned long long>(t.connected.load()),
                 static_cast<unsigned long long>(t.connect_failed.load()),
                 static_cast<unsigned long long>(t.ok.load()),
                 static_cast<unsigned long long>(t.errors.load()), rps,
                 t.latency.percentile_ms(0.50), t.latency.percentile_ms(0.99),
                 t.latency.percentile_ms(0.999), static_cast<unsigned long long>(t.pushes.load()));
  }
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  CLI::App app{"ember-bot: load-tests an Ember gateway with many client connections"};
  app.add_option("--url", s.url, "ws://, wss://, tcp:// or tls:// address of the gateway");
  app.add_option("--connections,-c", s.connections, "client connections to open")
      ->check(CLI::Range(1, 5'000'000));
  app.add_option("--token-prefix", s.token_prefix, "login tokens are <prefix>-<n>");
  app.add_option("--route", s.route, "the route requests call");
  app.add_option("--setup-route", s.setup_route, "a route each bot calls once after login");
  app.add_option("--setup-text", s.setup_text, "the setup call's field 1 (a room name)");
  app.add_option("--rate", s.rate, "requests/s per connection (open loop)");
  app.add_option("--window", s.window, "requests in flight per connection (closed loop)");
  app.add_option("--payload-bytes", s.payload_bytes, "size of the request's field 1");
  app.add_flag("--idle", s.idle, "send no requests: hold the sessions");
  app.add_option("--trigger-route", s.trigger_route,
                 "a route the first bot calls once every bot is connected (a broadcast)");
  app.add_option("--trigger-text", s.trigger_text, "the trigger call's field 1");
  app.add_option("--expect-pushes", s.expect_pushes, "stop once this many pushes arrived");
  app.add_option("--duration", s.duration, "how long to run after connecting (10s, 1m)");
  app.add_option("--source-ips", s.source_ips,
                 "spread connections over 127.0.0.1..127.0.0.N (0: 1 per 25,000 connections)");
  app.add_option("--threads", s.threads, "client I/O threads")->check(CLI::Range(1, 256));
  app.add_option("--connect-parallel", s.connect_parallel, "logins under way at once");
  app.add_flag("--json", s.json, "print JSON lines");
  app.add_option("--label", s.label, "the \"bench\" field of JSON lines");
  CLI11_PARSE(app, argc, argv);

  auto duration = ember::parse_duration(s.duration);
  if (!duration) {
    std::fprintf(stderr, "ember-bot: --duration: %s\n", duration.error().message().c_str());
    return 2;
  }
  if (!s.idle && s.rate <= 0 && s.window == 0) {
    s.window = 1;
  }
  if (s.source_ips == 0) {
    // Linux hands out about 28,000 ephemeral ports per source address by default.
    s.source_ips = std::max<std::size_t>(1, (s.connections + 24'999) / 25'000);
  }
  const bool loopback = s.url.find("://127.") != std::string::npos;

  ember::client::Runtime runtime(s.threads);
  Totals totals;
  std::vector<Bot> bots(s.connections);
  const std::string payload = text_payload(s.payload_bytes);
  const std::string setup_payload = text_payload(0, s.setup_text);
  const auto begin = Clock::now();

  // Log in, a bounded number at a time, with progress.
  {
    std::atomic<std::size_t> next{0};
    std::vector<std::thread> connectors;
    const std::size_t parallel = std::min(s.connect_parallel, s.connections);
    for (std::size_t c = 0; c < parallel; ++c) {
      connectors.emplace_back([&] {
        for (std::size_t i = next.fetch_add(1); i < s.connections; i = next.fetch_add(1)) {
          ember::client::Options options;
          options.url = s.url;
          options.token = s.token_prefix + "-" + std::to_string(i);
          options.client_name = "ember-bot";
          options.runtime = &runtime;
          options.timeout = 20s;
          options.on_push = [&totals](ember::client::Pushed&&) { totals.pushed(); };
          if (loopback && s.source_ips > 1) {
            options.local_address = "127.0.0." + std::to_string(1 + i % s.source_ips);
          }
          auto client = ember::client::Client::connect(options);
          if (!client) {
            totals.connect_failed.fetch_add(1);
            totals.error("connect: " + client.error().to_string());
            continue;
          }
          if (!s.setup_route.empty()) {
            auto r = (*client)->call_bytes(s.setup_route, setup_payload);
            if (!r)
              totals.error("setup: " + r.error().to_string());
          }
          bots[i].client = std::move(*client);
          totals.connected.fetch_add(1);
        }
      });
    }
    std::atomic<bool> connecting{true};
    std::thread progress([&] {
      auto next_print = Clock::now() + 1s;
      while (connecting.load()) {
        std::this_thread::sleep_for(50ms);
        if (Clock::now() >= next_print && !s.json) {
          next_print += 1s;
          const double t = std::chrono::duration<double>(Clock::now() - begin).count();
          print_line(s, "connect", t, totals, 0, false);
        }
      }
    });
    for (auto& t : connectors) t.join();
    connecting = false;
    progress.join();
  }
  const double connect_seconds = std::chrono::duration<double>(Clock::now() - begin).count();
  if (s.json)
    print_line(s, "connected", connect_seconds, totals, 0, false);

  std::atomic<bool> running{true};
  const auto start = Clock::now();
  const auto end = start + *duration;
  const std::uint64_t ok_before = totals.ok.load();
  if (!s.idle && s.window > 0 && s.rate <= 0) {
    for (auto& bot : bots) {
      for (std::size_t w = 0; bot.client && w < s.window; ++w) {
        issue(bot, totals, s, payload, running);
      }
    }
  }
  // Open loop: one pacer spreads every connection's rate evenly over time.
  std::thread pacer;
  if (!s.idle && s.rate > 0) {
    pacer = std::thread([&] {
      const double total_rate = s.rate * static_cast<double>(s.connections);
      std::size_t index = 0;
      std::uint64_t issued = 0;
      while (Clock::now() < end) {
        const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
        const auto due = static_cast<std::uint64_t>(elapsed * total_rate);
        for (; issued < due; ++issued) {
          Bot& bot = bots[index];
          index = (index + 1) % bots.size();
          if (bot.client && bot.in_flight.load(std::memory_order_relaxed) < 64) {
            issue(bot, totals, s, payload, running);
          }
        }
        std::this_thread::sleep_for(200us);
      }
    });
  }
  if (!s.trigger_route.empty()) {
    for (auto& bot : bots) {
      if (bot.client) {
        auto r = bot.client->call_bytes(s.trigger_route, text_payload(0, s.trigger_text));
        if (!r)
          totals.error("trigger: " + r.error().to_string());
        break;
      }
    }
  }
  auto last = start;
  std::uint64_t last_ok = ok_before;
  while (Clock::now() < end) {
    if (s.expect_pushes > 0 && totals.pushes.load() >= s.expect_pushes) {
      break;
    }
    std::this_thread::sleep_for(std::min<Clock::duration>(10ms, end - Clock::now()));
    const auto now = Clock::now();
    if (now - last < 1s) {
      continue;
    }
    const std::uint64_t ok = totals.ok.load();
    const double rps =
        static_cast<double>(ok - last_ok) / std::chrono::duration<double>(now - last).count();
    last = now;
    last_ok = ok;
    if (!s.json) {
      print_line(s, "run", std::chrono::duration<double>(now - begin).count(), totals, rps, false);
    }
  }
  running = false;
  if (pacer.joinable())
    pacer.join();
  const double run_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const double rps = static_cast<double>(totals.ok.load() - ok_before) / run_seconds;
  for (auto& bot : bots) {
    if (bot.client && !bot.client->connected())
      totals.disconnected.fetch_add(1);
  }
  print_line(s, "summary", run_seconds, totals, rps, true);
  if (!totals.first_error.empty() && !s.json) {
    std::fprintf(stderr, "first error: %s\n", totals.first_error.c_str());
  }
  // Exit without tearing the clients down one by one: with hundreds of thousands of connections
  // that takes long, and callbacks still in flight would outlive what they point to. The kernel
  // closes every socket at once.
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(totals.connected.load() == 0 ? 1 : 0);
}
