// SPDX-License-Identifier: Apache-2.0
#include "net/simulated_transport.hpp"

#include <atomic>
#include <mutex>

namespace ember::net {
namespace {

class SimulatedTransport final : public Transport {
 public:
  SimulatedTransport(runtime::Network& network, TransportOptions options)
      : network_(network), options_(std::move(options)) {}
  ~SimulatedTransport() override { stop(); }

  Status bind(OnFrame on_frame, OnPeer on_peer) {
    return network_.bind(
        options_.node_id,
        [this, on_frame = std::move(on_frame)](const std::string& from, std::string_view payload) {
          ++stats_.frames_in;
          stats_.bytes_in += payload.size();
          on_frame(from, payload);
        },
        [on_peer = std::move(on_peer)](const std::string& node, bool up) {
          on_peer(node, up, PeerLoss{up ? "" : "the connection to " + node + " broke", false});
        });
  }

  [[nodiscard]] std::uint16_t port() const noexcept override { return 0; }

  Status send(const std::string& node, const std::string& /*address*/, std::string_view payload,
              bool /*urgent*/) override {
    if (payload.size() > options_.max_frame) {
      return Error{Errc::invalid_argument,
                   "frame of " + std::to_string(payload.size()) + " bytes is over the limit"};
    }
    Status sent = network_.send(options_.node_id, node, payload);
    if (sent) {
      ++stats_.frames_out;
      stats_.bytes_out += payload.size();
    } else {
      ++stats_.dropped;
    }
    return sent;
  }

  [[nodiscard]] TransportStats stats() const override { return stats_; }

  void stop() override {
    if (!stopped_) {
      stopped_ = true;
      network_.unbind(options_.node_id);
    }
  }

 private:
  runtime::Network& network_;
  TransportOptions options_;
  TransportStats stats_;  // one thread runs a simulated world: no locking
  bool stopped_ = false;
};

}  // namespace

Result<std::unique_ptr<Transport>> start_simulated(runtime::Network& network,
                                                   TransportOptions options,
                                                   Transport::OnFrame on_frame,
                                                   Transport::OnPeer on_peer) {
  if (options.node_id.empty()) {
    return Error{Errc::invalid_argument, "transport: node_id is required"};
  }
  auto transport = std::make_unique<SimulatedTransport>(network, std::move(options));
  if (Status bound = transport->bind(std::move(on_frame), std::move(on_peer)); !bound) {
    return bound.error();
  }
  return std::unique_ptr<Transport>(std::move(transport));
}

}  // namespace ember::net
