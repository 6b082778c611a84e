// The topology file: which nodes exist, where they listen, and the cluster's
// settings. One YAML file describes the whole cluster; every node loads the
// same file and picks its own entry by name.
//
// Loading validates everything a node would otherwise trip over later and
// throws TopologyError with "<file>:<line>: <problem>" (the line where yaml
// can tell it). Plain data after loading; safe to share read-only.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace chat4all {

enum class NodeRole { kFrontend, kRouter, kStorage };

const char* role_name(NodeRole role);

class TopologyError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct NodeSpec {
  std::string name;
  NodeRole role = NodeRole::kFrontend;
  std::string host;
  // Named ports: "http" (frontend), "rpc" (router, storage), "metrics" (any).
  std::map<std::string, std::uint16_t> endpoints;
  int line = 0;  // 1-based line of the node's entry in the file

  std::optional<std::uint16_t> port(const std::string& endpoint_name) const;
  // "tcp://host:port" for connecting to the named endpoint; throws if absent.
  std::string zmq_address(const std::string& endpoint_name) const;
};

struct Limits {
  std::uint32_t request_timeout_ms = 2000;  // frontend: upstream answer bound
  std::uint32_t router_timeout_ms = 1500;   // router: storage answer bound
  std::uint32_t text_bytes_max = 64 * 1024;
  std::uint32_t body_bytes_max = 1024 * 1024;
  std::uint32_t pending_requests_max = 20000;  // per frontend and per router
  std::uint32_t history_page_max = 500;
  std::uint32_t http_threads = 1;
  std::uint32_t login_concurrency_max = 2;
  std::uint32_t login_queue_max = 64;
};

struct StorageSettings {
  std::uint64_t map_size_initial_mb = 256;
  std::uint64_t map_size_max_mb = 64 * 1024;
  std::uint32_t batch_messages_max = 2048;
  // Consensus timers: leaders send heartbeats every heartbeat_ticks; a replica
  // that heard no leader for election_ticks (plus a rank delay and jitter)
  // campaigns. Failover takes about election_ticks * tick_ms.
  std::uint32_t tick_ms = 50;
  std::uint32_t heartbeat_ticks = 2;
  std::uint32_t election_ticks = 10;
  // Committed log entries a leader keeps for a replica that does not
  // acknowledge them (it is down); beyond, the log is trimmed anyway and that
  // replica catches up from a snapshot of the partition.
  std::uint32_t log_retained_max = 65536;
};

struct AuthSettings {
  std::uint32_t token_ttl_s = 3600;
  std::filesystem::path token_secret_file;  // default: <data_dir>/secrets/token.key
};

struct DevUser {
  std::string id;
  std::string password_hash;  // argon2id, as crypto_pwhash_str produces
};

struct Topology {
  std::filesystem::path source_path;
  std::string cluster_name;
  std::uint32_t replication_factor = 3;
  std::uint32_t partition_count = 64;
  std::uint32_t virtual_nodes = 64;
  std::filesystem::path data_dir;  // absolute after loading
  Limits limits;
  StorageSettings storage;
  AuthSettings auth;
  std::vector<DevUser> dev_users;
  std::vector<NodeSpec> nodes;

  const NodeSpec* find(const std::string& name) const;
  std::vector<const NodeSpec*> with_role(NodeRole role) const;
  std::vector<std::string> storage_node_names() const;
  std::filesystem::path node_data_dir(const std::string& node_name) const;
};

// Reads and validates a topology file. Relative paths inside it are resolved
// against the file's own directory.
Topology load_topology(const std::filesystem::path& path);

// Same, from text; `source_name` names the source in errors.
Topology parse_topology(const std::string& text, const std::string& source_name,
                        const std::filesystem::path& base_dir);

// True when `host` names this machine (loopback names, or the hostname).
bool is_local_host(const std::string& host);

}  // namespace chat4all
