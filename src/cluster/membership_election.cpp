// SPDX-License-Identifier: Apache-2.0
// Election of group masters: the epoch floor, one master key per group created under the lease,
// epochs that only rise, and the deposition of a master whose epoch is below one already seen.
#include <algorithm>
#include <charconv>
#include <string>

#include "cluster/membership.hpp"
#include "core/node_impl.hpp"
#include "core/service_core.hpp"
#include "rpc/messaging.hpp"

namespace ember::detail {

namespace {

using Clock = ember::Clock;

/// An epoch as stored in etcd (decimal). Anything else reads as 0: a damaged base only makes the
/// next raise rewrite it.
std::int64_t parse_epoch(std::string_view text) {
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc{} && end == text.data() + text.size() && value > 0 ? value : 0;
}

}  // namespace

Status Membership::raise_epoch_base() {
  if (epoch_max_ == 0) {
    return {};  // nothing seen: nothing to protect
  }
  const std::string key = root_ + "/epoch-base";
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto got = client_->get(key);
    if (!got) {
      return Error{got.error().code(), "reading the epoch base: " + got.error().message()};
    }
    std::int64_t base = 0;
    std::int64_t mod_revision = 0;
    // The store lost its data when it has no base although this node has seen epochs, or when
    // its revision is below one this node has seen (another survivor already wrote a new base).
    const bool lost_data = got->kvs.empty() || got->revision < revision_seen_.load();
    if (!got->kvs.empty()) {
      base = parse_epoch(got->kvs.front().value);
      mod_revision = got->kvs.front().mod_revision;
    }
    if (lost_data && attempt == 0) {
      // Other survivors may have seen higher epochs than this node; an election before they
      // raise the base too could grant an epoch already used, or one below. Each of them opens
      // its session, and raises the base, within a TTL of the loss.
      elections_held_until_ = Clock::now() + ttl_ + std::chrono::seconds(1);
      revision_seen_.store(got->revision);  // revisions start over: a new history from here
      node_.log.warn(
          "etcd lost its data (no epoch base, or its revision went back); elections wait {} ms "
          "for every surviving node to raise the base to the highest epoch it has seen",
          std::chrono::duration_cast<std::chrono::milliseconds>(ttl_ + std::chrono::seconds(1))
              .count());
    }
    if (base >= epoch_max_) {
      return {};
    }
    auto put = client_->put_if_unchanged(key, std::to_string(epoch_max_), mod_revision, 0);
    if (!put) {
      return Error{put.error().code(), "raising the epoch base: " + put.error().message()};
    }
    if (*put != 0) {
      node_.log.info("epoch base raised from {} to {}, the highest epoch this node has seen", base,
                     epoch_max_);
      return {};
    }
    // Another node raised it meanwhile: read it again.
  }
  return Error{Errc::bad_state, "the epoch base kept changing"};
}

void Membership::elect(const std::string& uid) {
  std::string group;
  {
    std::lock_guard lock(mu_);
    auto it = locals_.find(uid);
    if (it == locals_.end() || !it->second.elect || !session_ok_ || session_lost_) {
      return;
    }
    group = it->second.group;
  }
  const std::string key = master_key(group);
  auto outcome = client_->create_if_absent(key, uid, lease_, root_ + "/epoch-base");
  if (!outcome) {
    node_.log.warn("election of {}: {}", group, outcome.error().to_string());
    return;  // retried on the next pass; a lost etcd also ends the session
  }
  if (!outcome->created && outcome->value == uid) {
    // Our own key from an earlier lease: it dies with that lease, so it proves nothing. Hand it
    // back and run again.
    (void)client_->erase_if_created(key, outcome->create_revision);
    std::lock_guard lock(mu_);
    work_ = true;
    return;
  }
  std::lock_guard lock(mu_);
  auto it = locals_.find(uid);
  if (it == locals_.end()) {
    if (outcome->created) {  // the service left while we won for it
      removals_.push_back(Removal{"", key, outcome->create_revision});
    }
    return;
  }
  if (session_lost_) {
    // The lease fell into doubt while the transaction ran: a win under it must not count.
    if (outcome->created) {
      removals_.push_back(Removal{"", key, outcome->create_revision});
    }
    return;
  }
  Local& local = it->second;
  local.elect = false;
  if (outcome->created) {
    // The base was read in the winning transaction: it covers every epoch the nodes that opened
    // a session before it had seen, even when etcd lost its data and revisions restarted.
    const std::int64_t epoch = parse_epoch(outcome->also_value) + outcome->create_revision;
    ++stats_.elections_won;
    node_.log.info("{} is master of {} (epoch {})", uid, group, epoch);
    local.key_revision = outcome->create_revision;
    set_role_locked(local, Held::master, epoch);
    note_epoch(group, epoch, uid);
  } else {
    set_role_locked(local, Held::slave, 0);
  }
}

void Membership::note_epoch(const std::string& group, std::int64_t epoch,
                            const std::string& holder) {
  std::int64_t& seen = epoch_seen_[group];
  if (epoch > seen) {
    seen = epoch;
    epoch_holder_[group] = holder;
  }
  epoch_max_ = std::max(epoch_max_, epoch);
}

void Membership::note_revision(std::int64_t revision) {
  std::int64_t seen = revision_seen_.load();
  while (revision > seen && !revision_seen_.compare_exchange_weak(seen, revision)) {
  }
}

void Membership::depose_if_stale(const std::string& group, const std::string& uid,
                                 std::int64_t epoch) {
  const std::int64_t seen = epoch_seen_[group];
  // An epoch names one mastership: the same epoch held by another service was granted twice
  // (the store lost its data while the node that knew the epoch could not reach it).
  const bool reused = epoch == seen && epoch_holder_[group] != uid;
  if (epoch > seen || (epoch == seen && !reused)) {
    note_epoch(group, epoch, uid);
    return;
  }
  // A master below an epoch already seen for its group: elected before the epoch base was raised
  // (etcd lost its data and a node that had seen nothing won first). Receivers that check epochs
  // would refuse it forever, so its key goes and the group elects again above the base.
  auto held = master_keys_.find(group);
  if (held == master_keys_.end() || held->second.holder != uid) {
    return;  // a stale record of a master that is gone already
  }
  if (auto erased = client_->erase_if_created(master_key(group), held->second.create_revision);
      erased && *erased) {
    node_.log.warn("deposed {} as master of {}: its epoch {} is {} {} seen before", uid, group,
                   epoch, reused ? "the same as the" : "below", seen);
    std::lock_guard lock(mu_);
    ++stats_.depositions;
  }
}

void Membership::set_role_locked(Local& local, Held role, std::int64_t epoch) {
  const Held before = local.role;
  if (before == role && local.epoch == epoch) {
    return;
  }
  local.role = role;
  local.epoch = role == Held::master ? epoch : 0;
  if (role != Held::master) {
    local.key_revision = 0;
  }
  local.registered = false;  // the record shows the role: rewrite it
  if (before == Held::master) {
    ++stats_.demotions;
  }
  local.anchor->with_core([&](ServiceCore* core) {
    if (core == nullptr) {
      return;
    }
    auto pid = core->set_role(local.is_master(), static_cast<std::uint64_t>(local.epoch));
    Messaging::of(node_).repository().add(std::move(pid), local.anchor);
    if (before == Held::master) {
      core->notify_role(RoleChange::lose_master, 0);
    }
    if (role == Held::master) {
      core->notify_role(RoleChange::become_master, static_cast<std::uint64_t>(epoch));
    } else if (role == Held::slave && before != Held::slave) {
      ++stats_.elections_lost;
      core->notify_role(RoleChange::become_slave, 0);
    }
  });
  if (role == Held::none && before == Held::slave) {
    local.role = Held::slave;  // a slave stays one while the cluster is unsure
  }
}

void Membership::step_down_locked(const std::string& uid, Local& local, const std::string& why) {
  node_.log.warn("{} stops acting as master: {}", uid, why);
  set_role_locked(local, Held::none, 0);
  local.elect = true;
  work_ = true;
}

void Membership::demote_masters_locked(const std::string& why) {
  for (auto& [uid, local] : locals_) {
    if (local.is_master()) {
      step_down_locked(uid, local, why);
    }
  }
}

}  // namespace ember::detail
