// CurveZMQ between nodes: every ZeroMQ connection from one node to another is encrypted and
// authenticated with the nodes' Curve key pairs, and each server socket admits only the keys of
// the roles allowed to talk to it.
//
// Keys. A node's secret key is <cluster data_dir>/<node>/secrets/curve.key (Z85, mode 0600).
// Its public key is the node's `curve_public_key` in the topology or, when the topology lists
// none, derived from that file, which is made on first use by whichever process on the host
// needs it first (`chat4all up`, `chat4all keygen`, the node or a peer). So a one-host topology
// needs no key handling at all; a topology spread over hosts lists every node's public key
// (`chat4all keygen FILE` on each host makes the pairs and prints the lines).
//
// Admission. The ZAP handler (RFC 27) runs on inproc://zeromq.zap.01 in the process's ZeroMQ
// context. Each server socket carries a ZAP domain naming it ("router.rpc" ...) and the handler
// admits a client key only when it belongs to a node of a role that domain admits. Refused:
// unknown keys, keys of other roles, and (by libzmq, before ZAP) plaintext peers and broken
// handshakes. A socket monitor on each server socket logs every failed handshake and counts it
// in chat4all_curve_handshakes_failed_total{socket,reason}; nothing of a refused peer reaches
// the node's logic.
//
// libzmq without a ZAP handler lets every Curve client in, so NodeSecurity binds the handler
// before any server socket exists and throws when it cannot: such a node refuses to start.
#pragma once

#include <zmq.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "common/json_log.h"
#include "common/topology.h"

namespace chat4all::curve {

inline constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";

struct KeyPair {
  std::string public_key;  // Z85, 40 characters
  std::string secret_key;  // Z85, 40 characters
};

// True when this libzmq was built with Curve (Debian's is, with libsodium).
bool supported();

std::filesystem::path secret_key_file(const Topology& topology, const std::string& node_name);

// Reads the secret key in `secret_file` and derives its public key; makes the file (mode 0600)
// with a fresh key when it does not exist. Throws on an unreadable or malformed file.
KeyPair load_or_create_key_pair(const std::filesystem::path& secret_file);

// `node`'s public key: the topology's, else from its key file, made here when missing and the
// node runs on this host (or is `self`). Throws TopologyError for a node on another host whose
// key is neither listed nor here.
std::string public_key_of(const Topology& topology, const NodeSpec& node,
                          const std::string& self_name = "");

// `chat4all keygen` and `chat4all up`: makes the key pairs missing for the nodes of this host
// (`host` empty) or of `host`. Returns (node name, public key) for each of them; a node whose
// pair does not match the key the topology lists refuses to start until the two agree.
std::vector<std::pair<std::string, std::string>> ensure_local_key_pairs(const Topology& topology,
                                                                        const std::string& host);

// Which node a ZAP request comes from and whether the socket it knocks on admits it. Pure.
class ZapPolicy {
 public:
  enum class Verdict { kAdmitted, kUnknownDomain, kNotCurve, kUnknownKey, kWrongRole };
  struct Decision {
    Verdict verdict = Verdict::kUnknownKey;
    std::string node_name;  // the key's node, when the key is known
  };

  // Throws std::invalid_argument for a key that is not Z85 of 32 bytes.
  void add_node(const std::string& public_key_z85, const std::string& name, NodeRole role);
  void add_domain(const std::string& domain, std::set<NodeRole> admitted);
  // `credentials`: the mechanism's credential frames (CURVE: one, the 32-byte client key).
  Decision decide(const std::string& domain, const std::string& mechanism,
                  const std::vector<std::string>& credentials) const;

 private:
  struct Known {
    std::string name;
    NodeRole role;
  };
  std::map<std::string, Known> nodes_;  // by 32-byte binary public key
  std::map<std::string, std::set<NodeRole>> domains_;
};

const char* verdict_name(ZapPolicy::Verdict verdict);

// A node's side of Curve: its keys, the ZAP handler thread and the monitors of its server
// sockets. Construct it before any ZeroMQ socket of the node and destroy it after them; one per
// process (the ZAP endpoint is one per context). Thread-safe.
class NodeSecurity {
 public:
  // With Curve on: loads (or makes) the node's key pair and every peer's public key and binds
  // the ZAP handler; throws std::runtime_error when it cannot (the node must not start). With
  // Curve off: warns that node traffic is plaintext and unauthenticated.
  NodeSecurity(const Topology& topology, const NodeSpec& self);
  ~NodeSecurity();
  NodeSecurity(const NodeSecurity&) = delete;
  NodeSecurity& operator=(const NodeSecurity&) = delete;

  bool enabled() const { return enabled_; }

  // Before `socket` binds (on the socket's own thread): makes it a Curve server whose ZAP domain
  // `domain` admits the nodes of `admitted`, and watches its failed handshakes. No-op when off.
  void serve(zmq::socket_t& socket, const std::string& domain, std::set<NodeRole> admitted);

  // Connects `socket` to `address`, a "tcp://host:port" of a node of the topology, as a Curve
  // client of that node. Throws for an address the topology does not name. Plain when off.
  void connect(zmq::socket_t& socket, const std::string& address) const;

  // A newer topology version (common/topology_follower.h): its nodes' keys are admitted by
  // role and its endpoints can be connected to from now on. Keys of nodes that left stay known
  // (their connections are dropped by the sockets that held them). A node on another host whose
  // key the topology does not list is skipped and logged: it cannot be reached with Curve.
  void learn(const Topology& next);

 private:
  struct Watch;
  void run_zap_handler(zmq::socket_t socket);

  const Topology& topology_;
  const NodeSpec& self_;
  const bool enabled_;
  KeyPair own_;
  std::map<std::string, std::string> server_keys_;  // by every endpoint's zmq_address; mutex_
  Log log_{"curve"};

  mutable std::mutex mutex_;
  ZapPolicy policy_;  // guarded by mutex_ (serve() adds domains while the handler reads)
  std::vector<std::unique_ptr<Watch>> watches_;

  std::atomic<bool> stopping_{false};
  std::thread zap_thread_;
};

// What node code calls on its sockets: they act through the process's NodeSecurity, which
// `chat4all node` makes before the node and keeps until it is gone. A process without one (a test
// driving a component with stand-in peers) gets plain sockets.
void serve(zmq::socket_t& socket, const std::string& domain, std::set<NodeRole> admitted);
void connect(zmq::socket_t& socket, const std::string& address);
// NodeSecurity::learn on the process's NodeSecurity; no-op without one.
void learn(const Topology& next);

}  // namespace chat4all::curve
