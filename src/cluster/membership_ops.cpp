// SPDX-License-Identifier: Apache-2.0
// What the admin listener shows of the cluster: the membership's counters and the transport's.
#include <fmt/format.h>

#include "cluster/membership.hpp"
#include "core/node_impl.hpp"

namespace ember::detail {

void Membership::collect(metrics::Sink& sink) const {
  const MembershipStats m = stats();
  auto count = [&](std::string_view name, std::string_view help, std::uint64_t value) {
    sink.counter(name, help, {}, static_cast<double>(value));
  };
  sink.gauge("ember_cluster_etcd_connected",
             "1 while the node holds a live lease and an up-to-date view of the cluster.", {},
             m.connected ? 1 : 0);
  count("ember_cluster_lease_sessions_total",
        "Leases granted to this node (1 + re-registrations after a loss).", m.sessions);
  count("ember_cluster_lease_renewals_total", "Keep-alive answers from etcd for the node's lease.",
        m.lease_renewals);
  count("ember_cluster_outages_total", "Times etcd stopped answering.", m.outages);
  count("ember_cluster_resyncs_total", "Full reads of the service records.", m.resyncs);
  count("ember_cluster_elections_won_total", "Times a service of this node became master.",
        m.elections_won);
  count("ember_cluster_elections_lost_total",
        "Times a service of this node became slave (another instance won).", m.elections_lost);
  count("ember_cluster_demotions_total", "Times a master of this node gave its role up.",
        m.demotions);
  count("ember_cluster_depositions_total",
        "Masters this node removed because a higher epoch had been seen.", m.depositions);
  sink.gauge("ember_cluster_remote_services", "Services of other nodes this node knows of.", {},
             static_cast<double>(m.remote_services));
  {
    std::lock_guard lock(mu_);
    for (const auto& [uid, local] : locals_) {
      if (local.group.empty() || !local.is_master()) {
        continue;
      }
      sink.gauge("ember_cluster_master_epoch",
                 "Fencing epoch of each group whose master runs on this node.",
                 {{"group", local.group}}, static_cast<double>(local.epoch));
    }
  }
  if (!link_) {
    return;
  }
  const net::TransportStats t = link_->transport_stats();
  sink.gauge("ember_transport_connections", "Open, authenticated node-to-node connections.", {},
             static_cast<double>(t.connections));
  sink.gauge("ember_transport_pending_handshakes", "Inbound connections in their handshake now.",
             {}, static_cast<double>(t.pending_handshakes));
  count("ember_transport_frames_sent_total", "Frames sent to other nodes.", t.frames_out);
  count("ember_transport_frames_received_total", "Frames received from other nodes.", t.frames_in);
  count("ember_transport_sent_bytes_total", "Bytes sent to other nodes.", t.bytes_out);
  count("ember_transport_received_bytes_total", "Bytes received from other nodes.", t.bytes_in);
  count("ember_transport_dropped_frames_total", "Frames dropped because their peer went down.",
        t.dropped);
  count("ember_transport_accept_failures_total",
        "Accepts that failed (out of descriptors, say), then retried.", t.accept_failures);
  const std::pair<std::string_view, std::uint64_t> rejected[] = {
      {"bad_handshake", t.rejected_bad_handshake},
      {"wrong_secret", t.rejected_wrong_secret},
      {"wrong_cluster", t.rejected_wrong_cluster},
      {"bad_frame", t.rejected_bad_frame},
      {"hung_up", t.rejected_hung_up},
      {"handshake_timeout", t.rejected_handshake_timeout},
      {"too_many_pending", t.rejected_too_many_pending},
  };
  for (const auto& [reason, value] : rejected) {
    sink.counter("ember_transport_rejected_connections_total",
                 "Inbound connections refused, by reason.", {{"reason", reason}},
                 static_cast<double>(value));
  }
}

namespace {
std::string escaped(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
    }
    if (static_cast<unsigned char>(c) >= 0x20) {
      out += c;
    }
  }
  return out;
}
}  // namespace

std::string Membership::status() const {
  const MembershipStats m = stats();
  std::string endpoint;
  if (client_) {  // set once at start, before the admin asks
    endpoint = client_->endpoint();
  }
  return fmt::format(
      R"({{"connected":{},"key_prefix":"{}","etcd_endpoint":"{}","lease_sessions":{},)"
      R"("outages":{},"elections_won":{},"elections_lost":{},"remote_services":{}}})",
      m.connected ? "true" : "false", escaped(root_), escaped(endpoint), m.sessions, m.outages,
      m.elections_won, m.elections_lost, m.remote_services);
}

std::string Membership::not_ready() const {
  return stats().connected ? std::string() : "not connected to the cluster (etcd)";
}

}  // namespace ember::detail
