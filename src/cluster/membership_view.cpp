// SPDX-License-Identifier: Apache-2.0
// The membership's cluster view: other nodes' service records read into the repository (a full
// snapshot, then the watch), and this node's own records written under its lease.
#include <google/protobuf/util/json_util.h>

#include <set>
#include <string>

#include "cluster/membership.hpp"
#include "core/node_impl.hpp"
#include "core/service_core.hpp"
#include "ember/wire.pb.h"
#include "rpc/messaging.hpp"

namespace ember::detail {

bool Membership::resync() {
  watch_.reset();  // joins the watch thread: no event of the old watch arrives after this
  const std::string& services = services_prefix_;
  auto snapshot = client_->get_prefix(root_ + "/");  // services, masters and event channels
  if (!snapshot) {
    std::lock_guard lock(mu_);
    // While the session is down the outage has been reported once; this is one more symptom.
    const auto level = session_ok_ && !session_lost_ ? LogLevel::warn : LogLevel::debug;
    node_.log.log(level, "etcd resync: {}", snapshot.error().to_string());
    return false;
  }
  std::uint64_t generation = 0;
  {
    std::lock_guard lock(mu_);
    generation = ++watch_generation_;
    batches_.clear();
    // A master key may have gone while we were not watching.
    for (auto& [uid, local] : locals_) {
      if (!local.group.empty() && !local.is_master()) {
        local.elect = true;
      }
    }
    ++stats_.resyncs;
  }
  std::set<std::string> present;
  for (const auto& kv : snapshot->kvs) {
    if (kv.key.starts_with(services)) {
      present.insert(kv.key.substr(services.size()));
    }
  }
  if (channels_) {
    channels_->forget_others();  // rebuilt from the snapshot below
  }
  for (auto it = remote_.begin(); it != remote_.end();) {
    if (present.count(*it) == 0) {
      Messaging::of(node_).repository().remove(*it);
      it = remote_.erase(it);
    } else {
      ++it;
    }
  }
  note_revision(snapshot->revision);
  master_keys_.clear();  // rebuilt from the snapshot (keys sort masters before services)
  for (const auto& kv : snapshot->kvs) {
    etcd::Event put;
    put.kv = kv;
    apply(put);
  }
  {
    // A master whose key is gone or is another incarnation lost it while we were not watching.
    std::lock_guard lock(mu_);
    for (auto& [uid, local] : locals_) {
      if (!local.is_master()) {
        continue;
      }
      auto held = master_keys_.find(local.group);
      if (held == master_keys_.end() || held->second.holder != uid ||
          held->second.create_revision != local.key_revision) {
        step_down_locked(uid, local, "the master key of " + local.group + " is no longer its own");
      }
    }
  }
  auto watch = client_->watch_prefix(
      root_ + "/", snapshot->revision + 1,
      [this, generation](std::vector<etcd::Event>&& events, std::int64_t revision) {
        note_revision(revision);
        std::lock_guard lock(mu_);
        batches_.push_back(WatchBatch{generation, std::move(events)});
        cv_.notify_all();
      },
      [this, generation](const Error& error) {
        node_.log.warn("etcd watch ended: {}", error.to_string());
        std::lock_guard lock(mu_);
        if (generation == watch_generation_) {
          resync_due_ = true;
          cv_.notify_all();
        }
      });
  if (!watch) {
    node_.log.warn("etcd watch: {}", watch.error().to_string());
    return false;
  }
  watch_ = std::move(*watch);
  return true;
}

void Membership::apply(const etcd::Event& event) {
  const std::string& services = services_prefix_;
  const std::string& masters = masters_prefix_;
  const std::string& key = event.kv.key;
  if (key.starts_with(services)) {
    std::string uid = key.substr(services.size());
    if (event.type == etcd::Event::Type::erase) {
      if (remote_.erase(uid) > 0) {
        Messaging::of(node_).repository().remove(uid);
      }
    } else {
      wire::ServiceRecord record;
      google::protobuf::util::JsonParseOptions options;
      options.ignore_unknown_fields = true;  // records written by newer nodes
      auto parsed = google::protobuf::util::JsonStringToMessage(event.kv.value, &record, options);
      if (!parsed.ok() || record.node_id().empty() || record.name().empty() ||
          record.address().empty()) {
        node_.log.warn("ignoring malformed service record {}: {}", key,
                       parsed.ok() ? "node_id, name or address missing" : parsed.ToString());
        return;
      }
      if (record.node_id() == node_.config.node_id) {
        return;  // our own services are in the repository already
      }
      auto pid = std::make_shared<Pid>();
      pid->node_id = record.node_id();
      pid->name = record.name();
      pid->id = record.id();
      pid->type = record.type();
      pid->server_id = record.server_id();
      pid->version = record.version();
      pid->master = record.master();
      pid->epoch = record.epoch();
      pid->address = record.address();
      if (pid->uid() != uid) {
        node_.log.warn("ignoring service record {}: its key does not match its uid {}", key,
                       pid->uid());
        return;
      }
      if (record.master() && record.epoch() > 0) {
        depose_if_stale(
            record.name() + "." + record.id() + "." + std::to_string(record.server_id()), uid,
            static_cast<std::int64_t>(record.epoch()));
      }
      Messaging::of(node_).repository().add(std::move(pid), nullptr);
      remote_.insert(uid);
    }
    std::lock_guard lock(mu_);
    stats_.remote_services = remote_.size();
    return;
  }
  if (channels_ && channels_->owns(key)) {
    channels_->apply(key, event.kv.value, event.type == etcd::Event::Type::erase);
    return;
  }
  if (key.starts_with(masters)) {
    const std::string group = key.substr(masters.size());
    if (event.type == etcd::Event::Type::put) {
      master_keys_[group] = MasterKey{event.kv.create_revision, event.kv.value};
      return;
    }
    master_keys_.erase(group);
    std::lock_guard lock(mu_);
    for (auto& [uid, local] : locals_) {
      if (local.group != group) {
        continue;
      }
      if (local.is_master()) {
        if (event.kv.mod_revision <= local.key_revision) {
          continue;  // an older incarnation's deletion, replayed
        }
        // Someone removed our key (a node that saw a higher epoch deposed us): whoever wins
        // next may act as master, so this one must stop now.
        step_down_locked(uid, local, "the master key of " + group + " was deleted");
        continue;
      }
      local.elect = true;
      work_ = true;
    }
  }
}

std::string Membership::record_json_locked(const Local& local) const {
  return local.anchor->with_core([&](ServiceCore* core) -> std::string {
    if (core == nullptr) {
      return {};
    }
    const Pid& pid = core->pid();
    wire::ServiceRecord record;
    record.set_node_id(pid.node_id);
    record.set_name(pid.name);
    record.set_id(pid.id);
    record.set_type(pid.type);
    record.set_server_id(pid.server_id);
    record.set_version(pid.version);
    record.set_master(pid.master);
    record.set_epoch(pid.epoch);
    record.set_address(link_->address());
    std::string json;
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    options.always_print_primitive_fields = true;
    (void)google::protobuf::util::MessageToJsonString(record, &json, options);
    return json;
  });
}

void Membership::register_pending() {
  std::vector<std::pair<std::string, std::string>> writes;  // uid, record
  {
    std::lock_guard lock(mu_);
    if (!session_ok_ || session_lost_) {
      return;
    }
    for (const auto& [uid, local] : locals_) {
      // A group member is written once it knows its role, so nobody routes to a maybe-master.
      if (local.publish_record && !local.registered && !local.elect) {
        std::string json = record_json_locked(local);
        if (!json.empty()) {
          writes.emplace_back(uid, std::move(json));
        }
      }
    }
  }
  for (auto& [uid, json] : writes) {
    auto put = client_->put(record_key(uid), json, lease_);
    if (!put) {
      node_.log.warn("registering {}: {}", uid, put.error().to_string());
      return;  // retried on the next pass
    }
    std::lock_guard lock(mu_);
    auto it = locals_.find(uid);
    if (it != locals_.end()) {
      it->second.registered = true;
    } else {  // unpublished meanwhile: its removal may have run before this put
      removals_.push_back(Removal{record_key(uid), "", 0});
    }
  }
}

void Membership::apply_removals(std::vector<Removal> removals) {
  for (const auto& removal : removals) {
    if (!removal.record_key.empty()) {
      if (auto erased = client_->erase(removal.record_key); !erased) {
        node_.log.warn("unregistering {}: {} (the lease will remove it)", removal.record_key,
                       erased.error().to_string());
      }
    }
    if (!removal.master_key.empty()) {
      (void)client_->erase_if_created(removal.master_key, removal.key_revision);
    }
  }
}

}  // namespace ember::detail
