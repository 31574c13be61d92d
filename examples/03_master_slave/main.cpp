// SPDX-License-Identifier: Apache-2.0
// The seed's master/slave example in Ember: a replicated key-value store.
//
// KvStore instances on several nodes form one master/slave group (IsPrimarySecondaryMode). The
// master takes writes, numbers them and streams each one to the slaves; a slave that becomes
// master pushes its snapshot to the others (system priority); a new slave fetches the master's
// snapshot. Every write carries the master's epoch, so a slave refuses a stale master.
// KvClient writes every 200 ms to whichever instance is master and reports master changes.
//
//   kv_node --config kv.yaml --node-id kv-1        (and kv-2, kv-3)
//   kv_node --config client.yaml
#include <ember/ember.hpp>
#include <map>
#include <string>

#include "kv.pb.h"

using ember::Errc;
using ember::Result;
using ember::Role;
using ember::RoleChange;
using ember::Selector;

class KvStore : public ember::Service {
 public:
  ember::Status on_init() override {
    if (auto st = handle("RpcSet", &KvStore::set); !st) {
      return st;
    }
    if (auto st = handle("RpcReplicate", &KvStore::replicate); !st) {
      return st;
    }
    if (auto st = handle("RpcRestore", &KvStore::restore); !st) {
      return st;
    }
    return handle("RpcGetAll",
                  [this](const kv::Empty&) -> Result<kv::Snapshot> { return snapshot(); });
  }

  void on_role_change(RoleChange change, std::uint64_t epoch) override {
    switch (change) {
      case RoleChange::become_master:
        highest_epoch_ = std::max(highest_epoch_, epoch);
        log().info("I am the master now (epoch {}), at version {}", epoch, version_);
        // Slaves may have missed writes of the old master: give them this state, before
        // anything else they have queued.
        (void)slaves().send("RpcRestore", snapshot(), {.priority = ember::Priority::system});
        break;
      case RoleChange::become_slave:
        log().info("I am a slave; fetching the master's state");
        catch_up();
        break;
      case RoleChange::lose_master: log().warn("I am no longer the master; refusing writes"); break;
    }
  }

 private:
  ember::Bus slaves() const { return select(Selector::name(name()).role(Role::slave)); }

  kv::Snapshot snapshot() const {
    kv::Snapshot s;
    s.set_version(version_);
    s.set_epoch(epoch());
    s.mutable_data()->insert(data_.begin(), data_.end());
    return s;
  }

  Result<kv::Ack> set(const kv::SetReq& request) {
    if (!is_master()) {
      // Nothing written: the caller may send it again, and it reaches the next master.
      return ember::Error{Errc::unavailable, "not the master"};
    }
    data_[request.key()] = request.value();
    kv::Entry entry;
    entry.set_version(++version_);
    entry.set_key(request.key());
    entry.set_value(request.value());
    entry.set_epoch(epoch());
    (void)slaves().send("RpcReplicate", entry);  // to every slave; none is fine
    kv::Ack ack;
    ack.set_version(version_);
    ack.set_node(pid().node_id);
    ack.set_epoch(epoch());
    return ack;
  }

  ember::Status replicate(const kv::Entry& entry) {
    if (entry.epoch() < highest_epoch_) {
      log().warn("refused write v{} from a stale master (epoch {} < {})", entry.version(),
                 entry.epoch(), highest_epoch_);
      return ember::Error{Errc::bad_state, "stale master"};
    }
    highest_epoch_ = entry.epoch();
    if (entry.version() != version_ + 1) {
      log().info("gap (have v{}, got v{}): fetching the master's state", version_, entry.version());
      catch_up();
      return {};
    }
    data_[entry.key()] = entry.value();
    version_ = entry.version();
    return {};
  }

  ember::Status restore(const kv::Snapshot& s) {
    if (s.epoch() < highest_epoch_) {
      return ember::Error{Errc::bad_state, "stale master"};
    }
    highest_epoch_ = s.epoch();
    data_ = {s.data().begin(), s.data().end()};
    version_ = s.version();
    log().info("state restored at version {} from the master (epoch {})", version_, s.epoch());
    return {};
  }

  void catch_up() {
    auto handle =
        select(Selector::name(name()))
            .async_call<kv::Snapshot>("RpcGetAll", kv::Empty{}, [this](Result<kv::Snapshot> s) {
              if (s) {
                (void)restore(*s);
              } else {
                log().warn("catching up failed: {}", s.error().to_string());
              }
            });
    if (!handle) {
      log().info("no master to catch up from yet: {}", handle.error().message());
    }
  }

  std::map<std::string, std::string> data_;
  std::uint64_t version_ = 0;
  std::uint64_t highest_epoch_ = 0;
};
EMBER_REGISTER_SERVICE(KvStore);

class KvClient : public ember::Service {
 public:
  void on_started() override {
    auto period = ember::parse_duration(param("Period", "200ms"));
    goal_ = std::stoll(std::string(param("Writes", "0")));
    every(period ? *period : std::chrono::milliseconds{200}, [this] { write(); });
  }

 private:
  void write() {
    if (in_flight_) {
      return;  // one write at a time keeps the log readable
    }
    kv::SetReq request;
    request.set_key("counter");
    request.set_value(std::to_string(acked_ + 1));
    auto handle = select(Selector::name("kv"))
                      .async_call<kv::Ack>("RpcSet", request,
                                           [this](Result<kv::Ack> ack) { on_ack(std::move(ack)); });
    if (!handle) {
      ++failed_;
      log().warn("write refused: {}", handle.error().to_string());
      return;
    }
    in_flight_ = true;
  }

  void on_ack(Result<kv::Ack> ack) {
    in_flight_ = false;
    if (!ack) {
      ++failed_;
      log().warn("write failed: {}", ack.error().to_string());
      return;
    }
    ++acked_;
    if (ack->node() != master_ || ack->epoch() != epoch_) {
      log().info("master is {} (epoch {})", ack->node(), ack->epoch());
      master_ = ack->node();
      epoch_ = ack->epoch();
    }
    if (acked_ % 25 == 0) {
      log().info("{} writes acknowledged, {} failed, version {}", acked_, failed_, ack->version());
    }
    if (goal_ > 0 && acked_ >= goal_) {
      log().info("done: {} writes acknowledged, {} failed", acked_, failed_);
      node().request_stop();
    }
  }

  std::int64_t goal_ = 0;
  std::int64_t acked_ = 0;
  std::int64_t failed_ = 0;
  bool in_flight_ = false;
  std::string master_;
  std::uint64_t epoch_ = 0;
};
EMBER_REGISTER_SERVICE(KvClient);

int main(int argc, char** argv) {
  return ember::run_node(argc, argv);
}
