// SPDX-License-Identifier: Apache-2.0
#include "net/handshake.hpp"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

namespace ember::net {

std::string hmac_sha256(const std::string& key, const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

namespace detail {
namespace {

std::string random_bytes(std::size_t n) {
  std::string s(n, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(s.data()), static_cast<int>(n));
  return s;
}

std::string proof(const std::string& secret, const char* role, const std::string& first_nonce,
                  const std::string& second_nonce, const std::string& client_id,
                  const std::string& server_id) {
  std::string text =
      std::string(role) + '\0' + first_nonce + second_nonce + client_id + '\0' + server_id;
  return hmac_sha256(secret, text);
}

bool same(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

wire::Hello Handshake::client_hello(const TransportOptions& options) {
  local_nonce_ = random_bytes(kNonceBytes);
  wire::Hello hello;
  hello.set_version(kVersion);
  hello.set_cluster(options.cluster);
  hello.set_node_id(options.node_id);
  hello.set_nonce(local_nonce_);
  return hello;
}

std::variant<wire::Proof, Refusal> Handshake::answer_server(const TransportOptions& options,
                                                            const std::string& body,
                                                            const std::string& expected,
                                                            const std::string& address) {
  wire::Hello server;
  if (!server.ParseFromString(body) || server.version() != kVersion) {
    return Refusal{Reject::bad_handshake, "bad handshake from server"};
  }
  if (server.cluster() != options.cluster) {
    return Refusal{Reject::wrong_cluster, "server is in cluster '" + server.cluster() + "'"};
  }
  if (server.node_id() != expected) {
    return Refusal{Reject::bad_handshake,
                   "expected node " + expected + ", reached " + server.node_id()};
  }
  std::string expected_proof = proof(options.secret, "server", local_nonce_, server.nonce(),
                                     options.node_id, server.node_id());
  if (!same(expected_proof, server.proof())) {
    // Said to the server too: otherwise it only sees a client hang up, and whoever reads its
    // log never learns that the secrets differ.
    wire::Proof refusal;
    refusal.set_refusal("cluster secret does not match");
    return Refusal{Reject::wrong_secret,
                   "handshake with " + expected + " (" + address +
                       ") refused: cluster secret does not match (" + expected +
                       " proved another ClusterConf.Secret than this node's)",
                   std::move(refusal)};
  }
  wire::Proof mine;
  mine.set_proof(proof(options.secret, "client", server.nonce(), local_nonce_, options.node_id,
                       server.node_id()));
  return mine;
}

std::variant<wire::Hello, Refusal> Handshake::answer_client(const TransportOptions& options,
                                                            const std::string& body) {
  wire::Hello client;
  if (!client.ParseFromString(body) || client.version() != kVersion || client.node_id().empty() ||
      client.nonce().size() != kNonceBytes) {
    return Refusal{Reject::bad_handshake, "bad handshake from client"};
  }
  if (client.cluster() != options.cluster) {
    return Refusal{Reject::wrong_cluster, "client is in cluster '" + client.cluster() + "'"};
  }
  local_nonce_ = random_bytes(kNonceBytes);
  remote_nonce_ = client.nonce();
  client_id_ = client.node_id();
  wire::Hello mine;
  mine.set_version(kVersion);
  mine.set_cluster(options.cluster);
  mine.set_node_id(options.node_id);
  mine.set_nonce(local_nonce_);
  mine.set_proof(
      proof(options.secret, "server", client.nonce(), local_nonce_, client_id_, options.node_id));
  return mine;
}

std::optional<Refusal> Handshake::check_client_proof(const TransportOptions& options,
                                                     const std::string& body) const {
  wire::Proof theirs;
  const bool parsed = theirs.ParseFromString(body);
  if (parsed && !theirs.refusal().empty()) {
    // The client's words are not echoed: a stranger must not write into this log.
    return Refusal{Reject::wrong_secret,
                   "client " + client_id_ + ": cluster secret does not match (" + client_id_ +
                       " could not verify this node's proof: its ClusterConf.Secret differs from "
                       "this node's)"};
  }
  if (!parsed || !same(theirs.proof(), proof(options.secret, "client", local_nonce_, remote_nonce_,
                                             client_id_, options.node_id))) {
    return Refusal{Reject::wrong_secret,
                   "client " + client_id_ + " failed to prove the cluster secret"};
  }
  return std::nullopt;
}

}  // namespace detail
}  // namespace ember::net
