// SPDX-License-Identifier: Apache-2.0
// What a cluster-wide session directory in etcd could sustain: claims of player UIDs as a
// gateway would make them at login, against a real etcd (started here, fsync on, as in
// production). A fresh login is one transaction (put if absent, under the gateway's lease); a
// login that replaces another session reads the holder first, then swaps it (two round trips).
// Clients run on several threads, as the logins of many players would.
//
//   claims_bench [--seconds S] [--threads 1,8,32] [--runs N]   prints one JSON line per result
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "cluster/etcd/etcd_client.hpp"
#include "support/etcd_server.hpp"

namespace {

using Clock = std::chrono::steady_clock;

struct Settings {
  double seconds = 3;
  std::vector<int> threads{1, 8, 32};
  int runs = 3;
};

std::vector<int> parse_list(const char* text) {
  std::vector<int> out;
  for (const char* p = text; *p != '\0';) {
    out.push_back(std::atoi(p));
    while (*p != '\0' && *p != ',') {
      ++p;
    }
    if (*p == ',') {
      ++p;
    }
  }
  return out;
}

// Claims per second with `threads` clients for `seconds`; `replace`: every key is held already.
double run(ember::etcd::Client& etcd, ember::store::LeaseId lease, int threads, double seconds,
           bool replace, int round) {
  std::atomic<std::uint64_t> done{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  const auto start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (std::uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        const std::string key = "/bench/sessions/r" + std::to_string(round) + "-t" +
                                std::to_string(t) + "-" + std::to_string(replace ? i % 64 : i);
        std::int64_t seen = 0;
        if (replace) {
          auto held = etcd.get(key);
          if (!held) {
            failed.fetch_add(1);
            continue;
          }
          seen = held->kvs.empty() ? 0 : held->kvs[0].mod_revision;
        }
        auto claimed = etcd.put_if_unchanged(key, "gate-a/session", seen, lease);
        if (claimed && *claimed != 0) {
          done.fetch_add(1, std::memory_order_relaxed);
        } else {
          failed.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));  // the measured span
  stop = true;
  for (auto& w : workers) {
    w.join();
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  if (failed.load() > 0) {
    std::fprintf(stderr, "claims_bench: %llu claims failed\n",
                 static_cast<unsigned long long>(failed.load()));
  }
  return static_cast<double>(done.load()) / elapsed;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--seconds") {
      s.seconds = std::atof(argv[i + 1]);
    } else if (flag == "--threads") {
      s.threads = parse_list(argv[i + 1]);
    } else if (flag == "--runs") {
      s.runs = std::atoi(argv[i + 1]);
    } else {
      std::fprintf(stderr, "claims_bench: unknown argument %s\n", flag.c_str());
      return 2;
    }
  }
  ember::testing::EtcdServer server;
  server.set_durable(true);
  if (std::string why = server.start(); !why.empty()) {
    std::fprintf(stderr, "claims_bench: etcd: %s\n", why.c_str());
    return 1;
  }
  auto etcd = ember::etcd::Client::connect({.endpoints = {server.endpoint()}});
  if (!etcd) {
    std::fprintf(stderr, "claims_bench: %s\n", etcd.error().to_string().c_str());
    return 1;
  }
  auto lease = (*etcd)->grant(std::chrono::seconds(60));
  if (!lease) {
    std::fprintf(stderr, "claims_bench: %s\n", lease.error().to_string().c_str());
    return 1;
  }
  const char* commit = std::getenv("EMBER_COMMIT");
  int round = 0;
  for (int r = 1; r <= s.runs; ++r) {
    for (const int threads : s.threads) {
      for (const bool replace : {false, true}) {
        const double rate = run(**etcd, *lease, threads, s.seconds, replace, ++round);
        std::printf(
            "{\"suite\":\"gate\",\"commit\":\"%s\",\"scenario\":\"directory_claims\",\"run\":%d,"
            "\"threads\":%d,\"kind\":\"%s\",\"claims_per_s\":%.0f}\n",
            commit != nullptr ? commit : "unknown", r, threads, replace ? "replace" : "fresh",
            rate);
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
