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

enum class NodeRole { kFrontend, kRouter, kStorage, kConnector };

const char* role_name(NodeRole role);

class TopologyError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct NodeSpec {
  std::string name;
  NodeRole role = NodeRole::kFrontend;
  std::string host;
  // Named ports: "http" (frontend: plain HTTP and WebSocket; connector: the platforms'
  // webhooks), "https" (frontend: HTTPS and WSS with the topology's `tls` certificate; a
  // frontend without "http" serves no plain HTTP at all), "rpc" (router, storage), "events"
  // (storage: PUB of change hints), "chunks" (storage: file chunks), "channels" (router: where
  // connectors take channel deliveries), "metrics" (any).
  std::map<std::string, std::uint16_t> endpoints;
  // Connector: the channels (ChannelSpec::name) it hosts; empty: every one.
  std::vector<std::string> channels;
  // The node's CurveZMQ public key (Z85, 40 characters). Empty: its key pair lives in its data
  // dir (common/curve.h) and is made there on first use, which only works on its own host.
  std::string curve_public_key;
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
  // Per token and frontend node: a token bucket refilled at this rate (429 when empty).
  std::uint32_t token_requests_per_s = 100;
  std::uint32_t token_burst = 200;
  std::uint32_t members_max = 256;  // per conversation
};

// The real-time stream (frontend, GET /v1/stream).
struct StreamSettings {
  std::uint32_t queue_bytes_max = 4u << 20;  // per connection; beyond, it is closed (1008)
  std::uint32_t resync_ms = 2000;  // re-read every conversation of a connection this often, in
                                   // case an event hint was lost
  std::uint32_t connections_max = 10000;  // per frontend node
  // Presence: a user's last stream closed this long ago before others see
  // `offline` (a reconnect within it is not seen); and the lease a frontend
  // holds on what it reported (its users go offline this long after it
  // crashed), renewed at a third of it.
  std::uint32_t presence_grace_ms = 3000;
  std::uint32_t presence_lease_ms = 15000;
};

// Files (the `files` section): uploads through the frontends, chunks on the storage nodes'
// "chunks" endpoints (a storage node without one stores no files, and a topology whose storage
// nodes have none answers the files API 503).
struct FileSettings {
  std::uint64_t size_max = 2ull << 30;    // bytes per file: a larger Upload-Length gets 413
  std::uint32_t upload_expiry_s = 86400;  // an upload unfinished this long is dropped, bytes freed
  std::uint64_t tenant_quota_bytes = 0;  // per tenant, every file's bytes; 0: no quota. 507 past it
  // Uploads and downloads moving bytes at once through one frontend (each holds one chunk,
  // 4 MiB, in memory); more get 503 with Retry-After.
  std::uint32_t transfers_max = 8;
  std::uint32_t chunk_timeout_ms = 10000;  // one chunk's put or get on one storage node
};

// Outgoing webhook calls (connector nodes).
struct WebhookSettings {
  bool allow_loopback = false;  // URLs resolving to 127/8 or ::1 (tests, development)
  bool allow_private = false;   // ... to private, link-local or CGNAT ranges
  std::uint32_t attempts_max = 8;
  std::uint32_t backoff_initial_ms = 1000;
  std::uint32_t backoff_max_ms = 300000;
  std::uint32_t timeout_ms = 5000;
  std::uint32_t in_flight_max = 64;  // per connector node
  // Per webhook on one connector node (nodes/connector/webhook_limiter.h): attempts under way at
  // once (more wait their turn), and deliveries open (beyond, a new event's delivery to that
  // webhook is recorded failed without an attempt), so one dead receiver cannot take every
  // sending slot or stall the outbox for the others.
  std::uint32_t sending_per_webhook_max = 8;
  std::uint32_t open_per_webhook_max = 256;
  // Delivery records kept per webhook (GET /v1/webhooks/{id}/deliveries): the newest ones; a new
  // record beyond this removes the oldest.
  std::uint32_t deliveries_kept_max = 1000;
};

// A tenant and the service clients that administer it; everything else of a
// tenant (users, more clients, conversations, webhooks) lives in storage.
struct TenantSpec {
  struct AdminClient {
    std::string client_id;
    std::string secret_hash;  // argon2id
  };
  std::string id;
  std::vector<AdminClient> admin_clients;
  // Messages are kept this many seconds after they were stored, then expire
  // (nodes/storage/retention.h); 0: forever.
  std::int64_t retention_s = 0;
  static constexpr std::int64_t kRetentionSMax = 100ll * 366 * 24 * 3600;
};

// An outside channel (WhatsApp, Instagram, Telegram ...) served by an adapter
// on the connector nodes. `name` is the channel as identities and messages
// name it; `adapter` the adapter type (nodes/connector/adapters/<type>/),
// `settings` what that adapter reads (base URL, tokens ...), uninterpreted
// here. One channel belongs to one tenant: the platform account is theirs.
struct ChannelSpec {
  std::string name;
  std::string adapter;  // default: the name
  std::string tenant_id;
  std::map<std::string, std::string> settings;
  // Where a message that arrives from this channel goes next ("all": every
  // channel each other member has an identity on).
  std::vector<std::string> inbound_channels{"all"};
  // Deliveries: per attempt, then exponential backoff with full jitter; after
  // the last attempt the delivery is dead-lettered (state "failed").
  std::uint32_t attempts_max = 10;
  std::uint32_t backoff_initial_ms = 500;
  std::uint32_t backoff_max_ms = 30000;
  std::uint32_t timeout_ms = 10000;  // one send to the platform
  std::uint32_t concurrency = 16;    // sends at once, per connector
  // Circuit breaker per connector: this many failures in a row open it; it
  // lets one probe through after breaker_open_ms (doubling while probes fail,
  // up to 16 times).
  std::uint32_t breaker_failures = 5;
  std::uint32_t breaker_open_ms = 5000;
  int line = 0;
};

// Names a message's `channels` may use that are not outside channels.
inline constexpr const char* kChannelAll = "all";
inline constexpr const char* kChannelInternal = "internal";

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
  // A leader whose wall clock differs from a majority of its replica set by
  // more than this steps down and does not lead again until it agrees: it
  // stamps stored_at_ms. Measured to within about a tick, so it must be 0
  // (no check) or at least 4 * tick_ms.
  std::uint32_t clock_skew_max_ms = 1000;
};

// The certificate the frontends' "https" endpoints present (the `tls` section). Both files are
// PEM: the certificate chain (leaf first) and its private key, read at start and again on SIGHUP.
struct TlsSettings {
  std::filesystem::path certificate_file;
  std::filesystem::path private_key_file;

  bool configured() const { return !certificate_file.empty(); }
};

// CurveZMQ between nodes (the `curve` section; common/curve.h): on unless the topology turns it
// off, which every node then warns about at start.
struct CurveSettings {
  bool enabled = true;
};

struct AuthSettings {
  std::uint32_t token_ttl_s = 3600;
  std::filesystem::path token_secret_file;  // default: <data_dir>/secrets/token.key
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
  TlsSettings tls;
  CurveSettings curve;
  StreamSettings stream;
  WebhookSettings webhooks;
  FileSettings files;
  std::vector<TenantSpec> tenants;
  std::vector<ChannelSpec> channels;
  std::vector<NodeSpec> nodes;

  const NodeSpec* find(const std::string& name) const;
  const TenantSpec* tenant(const std::string& id) const;
  const ChannelSpec* channel(const std::string& name) const;
  // The connectors that host `channel`, in file order.
  std::vector<const NodeSpec*> connectors_of(const std::string& channel) const;
  std::vector<const NodeSpec*> with_role(NodeRole role) const;
  // The partitions whose outboxes the node `name` of `role` reads: the nodes of the role sorted
  // by name, node i of n takes every p with p % n == i, so each partition has exactly one reader
  // of each role while all of them run. Empty for a name that is not of the role.
  std::vector<std::uint32_t> partitions_read_by(NodeRole role, const std::string& name) const;
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
