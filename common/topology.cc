#include "common/topology.h"

#include <unistd.h>
#include <yaml-cpp/yaml.h>
#include <zmq.h>

#include <algorithm>
#include <climits>
#include <fstream>
#include <set>
#include <sstream>

#include "common/ids.h"
#include "schema/records.h"

namespace chat4all {

const char* role_name(NodeRole role) {
  switch (role) {
    case NodeRole::kFrontend:
      return "frontend";
    case NodeRole::kRouter:
      return "router";
    case NodeRole::kStorage:
      return "storage";
    case NodeRole::kConnector:
      return "connector";
  }
  return "unknown";
}

std::optional<std::uint16_t> NodeSpec::port(const std::string& endpoint_name) const {
  auto it = endpoints.find(endpoint_name);
  if (it == endpoints.end()) return std::nullopt;
  return it->second;
}

std::string NodeSpec::zmq_address(const std::string& endpoint_name) const {
  auto p = port(endpoint_name);
  if (!p) throw TopologyError("node " + name + " has no '" + endpoint_name + "' endpoint");
  const bool ipv6 = host.find(':') != std::string::npos;
  return "tcp://" + (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(*p);
}

const TenantSpec* Topology::tenant(const std::string& id) const {
  for (const auto& tenant : tenants)
    if (tenant.id == id) return &tenant;
  return nullptr;
}

const ChannelSpec* Topology::channel(const std::string& name) const {
  for (const auto& channel : channels)
    if (channel.name == name) return &channel;
  return nullptr;
}

std::vector<const NodeSpec*> Topology::connectors_of(const std::string& channel) const {
  std::vector<const NodeSpec*> result;
  for (const auto* node : with_role(NodeRole::kConnector))
    if (node->channels.empty() ||
        std::find(node->channels.begin(), node->channels.end(), channel) != node->channels.end())
      result.push_back(node);
  return result;
}

const NodeSpec* Topology::find(const std::string& name) const {
  for (const auto& node : nodes)
    if (node.name == name) return &node;
  return nullptr;
}

std::vector<const NodeSpec*> Topology::with_role(NodeRole role) const {
  std::vector<const NodeSpec*> result;
  for (const auto& node : nodes)
    if (node.role == role) result.push_back(&node);
  return result;
}

std::vector<std::uint32_t> Topology::partitions_read_by(NodeRole role,
                                                        const std::string& name) const {
  std::vector<std::string> names;
  for (const auto* node : with_role(role)) names.push_back(node->name);
  std::sort(names.begin(), names.end());
  const auto found = std::find(names.begin(), names.end(), name);
  std::vector<std::uint32_t> partitions;
  if (found == names.end()) return partitions;
  const auto position = static_cast<std::uint32_t>(found - names.begin());
  for (std::uint32_t p = 0; p < partition_count; ++p)
    if (p % names.size() == position) partitions.push_back(p);
  return partitions;
}

std::vector<std::string> Topology::storage_node_names() const {
  std::vector<std::string> names;
  for (const auto* node : with_role(NodeRole::kStorage)) names.push_back(node->name);
  return names;
}

std::filesystem::path Topology::node_data_dir(const std::string& node_name) const {
  return data_dir / node_name;
}

namespace {

// Collects "<source>:<line>: <problem>" for one file.
class Checker {
 public:
  explicit Checker(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const YAML::Node& at, const std::string& problem) const {
    const YAML::Mark mark = at.Mark();
    if (mark.line >= 0) fail_at_line(mark.line + 1, problem);
    throw TopologyError(source_ + ": " + problem);
  }
  [[noreturn]] void fail_at_line(int line, const std::string& problem) const {
    throw TopologyError(source_ + ":" + std::to_string(line) + ": " + problem);
  }

  void only_keys(const YAML::Node& map, const std::string& where,
                 const std::set<std::string>& allowed) const {
    if (!map.IsMap()) fail(map, where + " must be a mapping");
    for (const auto& item : map) {
      if (!item.first.IsScalar()) fail(item.first, "a key in " + where + " must be a plain name");
      const auto key = item.first.Scalar();
      if (!allowed.count(key)) fail(item.first, "unknown key '" + key + "' in " + where);
    }
  }

  template <typename T>
  T scalar(const YAML::Node& parent, const std::string& key, const std::string& where) const {
    const YAML::Node node = parent[key];
    if (!node) fail(parent, "missing field '" + key + "' in " + where);
    return convert<T>(node, where + "." + key);
  }

  template <typename T>
  void optional_scalar(const YAML::Node& parent, const std::string& key, const std::string& where,
                       T& out) const {
    const YAML::Node node = parent[key];
    if (node) out = convert<T>(node, where + "." + key);
  }

  template <typename T>
  T convert(const YAML::Node& node, const std::string& what) const {
    if (!node.IsScalar()) fail(node, what + " must be a scalar");
    try {
      if constexpr (std::is_unsigned_v<T>) {
        // yaml-cpp happily wraps "-1" into a huge unsigned value.
        if (!node.Scalar().empty() && node.Scalar()[0] == '-')
          fail(node, what + " must not be negative");
      }
      return node.as<T>();
    } catch (const YAML::BadConversion&) {
      fail(node, what + " has the wrong type ('" + node.Scalar() + "')");
    }
  }

 private:
  std::string source_;
};

// One mapping of the file read key by key: each key is named once, where it is read, and
// close() refuses every key that was not read (a misspelt one, or one this version does not know).
class Section {
 public:
  Section(const Checker& check, const YAML::Node& map, std::string where)
      : check_(check), map_(map), where_(std::move(where)) {
    if (!map_.IsMap()) check_.fail(map_, where_ + " must be a mapping");
  }

  template <typename T>
  void optional(const char* key, T& out) {
    keys_.insert(key);
    check_.optional_scalar(map_, key, where_, out);
  }
  // A key read otherwise (a path, a list): named here, so that close() accepts it.
  YAML::Node other(const char* key) {
    keys_.insert(key);
    return map_[key];
  }
  void close() const { check_.only_keys(map_, where_, keys_); }

 private:
  const Checker& check_;
  const YAML::Node& map_;
  const std::string where_;
  std::set<std::string> keys_;
};

NodeRole parse_role(const Checker& check, const YAML::Node& node) {
  const auto text = check.convert<std::string>(node, "role");
  if (text == "frontend") return NodeRole::kFrontend;
  if (text == "router") return NodeRole::kRouter;
  if (text == "storage") return NodeRole::kStorage;
  if (text == "connector") return NodeRole::kConnector;
  check.fail(node, "unknown role '" + text + "' (expected frontend, router, storage or connector)");
}

// "localhost" and "127.0.0.1" are one host when it comes to port clashes.
std::string same_host_key(const std::string& host) {
  return host == "localhost" ? "127.0.0.1" : host;
}

std::filesystem::path resolve(const std::filesystem::path& base_dir, const std::string& path) {
  std::filesystem::path p(path);
  if (p.is_relative()) p = base_dir / p;
  return p.lexically_normal();
}

}  // namespace

Topology parse_topology(const std::string& text, const std::string& source_name,
                        const std::filesystem::path& base_dir) {
  Checker check(source_name);
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    check.fail_at_line(e.mark.line + 1, "invalid YAML: " + e.msg);
  }
  if (!root.IsMap()) throw TopologyError(source_name + ": the topology must be a YAML mapping");
  check.only_keys(root, "the topology",
                  {"cluster", "limits", "storage", "auth", "tls", "curve", "stream", "webhooks",
                   "files", "tenants", "channels", "nodes"});

  Topology topology;
  topology.source_path = source_name;

  const YAML::Node cluster = root["cluster"];
  if (!cluster) check.fail(root, "missing section 'cluster'");
  check.only_keys(cluster, "cluster",
                  {"name", "replication_factor", "partition_count", "virtual_nodes", "data_dir"});
  topology.cluster_name = check.scalar<std::string>(cluster, "name", "cluster");
  topology.data_dir = resolve(base_dir, check.scalar<std::string>(cluster, "data_dir", "cluster"));
  check.optional_scalar(cluster, "replication_factor", "cluster", topology.replication_factor);
  check.optional_scalar(cluster, "partition_count", "cluster", topology.partition_count);
  check.optional_scalar(cluster, "virtual_nodes", "cluster", topology.virtual_nodes);
  if (topology.replication_factor == 0)
    check.fail(cluster["replication_factor"], "replication_factor must be at least 1");
  if (topology.partition_count == 0 || topology.partition_count > 65536)
    check.fail(cluster["partition_count"], "partition_count must be between 1 and 65536");
  if (topology.virtual_nodes == 0 || topology.virtual_nodes > 4096)
    check.fail(cluster["virtual_nodes"], "virtual_nodes must be between 1 and 4096");

  if (const YAML::Node limits = root["limits"]) {
    Section limits_keys(check, limits, "limits");
    auto& l = topology.limits;
    limits_keys.optional("request_timeout_ms", l.request_timeout_ms);
    limits_keys.optional("router_timeout_ms", l.router_timeout_ms);
    limits_keys.optional("text_bytes_max", l.text_bytes_max);
    limits_keys.optional("body_bytes_max", l.body_bytes_max);
    limits_keys.optional("pending_requests_max", l.pending_requests_max);
    limits_keys.optional("history_page_max", l.history_page_max);
    limits_keys.optional("http_threads", l.http_threads);
    limits_keys.optional("login_concurrency_max", l.login_concurrency_max);
    limits_keys.optional("login_queue_max", l.login_queue_max);
    limits_keys.optional("token_requests_per_s", l.token_requests_per_s);
    limits_keys.optional("token_burst", l.token_burst);
    limits_keys.optional("members_max", l.members_max);
    limits_keys.close();
    if (l.token_requests_per_s == 0 || l.token_burst == 0)
      check.fail(limits, "token_requests_per_s and token_burst must be positive");
    if (l.members_max < 2) check.fail(limits, "members_max must be at least 2");
    if (l.request_timeout_ms == 0 || l.router_timeout_ms == 0)
      check.fail(limits, "timeouts must be positive");
    if (l.http_threads == 0 || l.http_threads > 64)
      check.fail(limits, "http_threads must be between 1 and 64");
    if (l.login_concurrency_max == 0) check.fail(limits, "login_concurrency_max must be positive");
    if (l.pending_requests_max == 0) check.fail(limits, "pending_requests_max must be positive");
    if (l.history_page_max == 0) check.fail(limits, "history_page_max must be positive");
    if (l.text_bytes_max == 0 || l.body_bytes_max == 0)
      check.fail(limits, "text_bytes_max and body_bytes_max must be positive");
  }

  if (const YAML::Node storage = root["storage"]) {
    Section storage_keys(check, storage, "storage");
    auto& s = topology.storage;
    storage_keys.optional("map_size_initial_mb", s.map_size_initial_mb);
    storage_keys.optional("map_size_max_mb", s.map_size_max_mb);
    storage_keys.optional("batch_messages_max", s.batch_messages_max);
    storage_keys.optional("tick_ms", s.tick_ms);
    storage_keys.optional("heartbeat_ticks", s.heartbeat_ticks);
    storage_keys.optional("election_ticks", s.election_ticks);
    storage_keys.optional("log_retained_max", s.log_retained_max);
    storage_keys.optional("clock_skew_max_ms", s.clock_skew_max_ms);
    storage_keys.close();
    if (s.map_size_initial_mb == 0 || s.map_size_max_mb < s.map_size_initial_mb)
      check.fail(storage, "map sizes must satisfy 0 < map_size_initial_mb <= map_size_max_mb");
    if (s.batch_messages_max == 0) check.fail(storage, "batch_messages_max must be positive");
    if (s.log_retained_max == 0) check.fail(storage, "log_retained_max must be positive");
    if (s.tick_ms == 0 || s.heartbeat_ticks == 0 || s.election_ticks <= s.heartbeat_ticks)
      check.fail(storage,
                 "timers must satisfy tick_ms > 0 and 0 < heartbeat_ticks < election_ticks");
    if (s.clock_skew_max_ms != 0 &&
        std::uint64_t(s.clock_skew_max_ms) < 4 * std::uint64_t(s.tick_ms))
      check.fail(storage, "clock_skew_max_ms must be 0 (no check) or at least 4 * tick_ms");
  }

  if (const YAML::Node auth = root["auth"]) {
    Section auth_keys(check, auth, "auth");
    auth_keys.optional("token_ttl_s", topology.auth.token_ttl_s);
    if (auth_keys.other("token_secret_file"))
      topology.auth.token_secret_file =
          resolve(base_dir, check.scalar<std::string>(auth, "token_secret_file", "auth"));
    auth_keys.close();
    if (topology.auth.token_ttl_s == 0) check.fail(auth, "token_ttl_s must be positive");
  }
  if (topology.auth.token_secret_file.empty())
    topology.auth.token_secret_file = topology.data_dir / "secrets" / "token.key";

  if (const YAML::Node tls = root["tls"]) {
    check.only_keys(tls, "tls", {"certificate_file", "private_key_file"});
    topology.tls.certificate_file =
        resolve(base_dir, check.scalar<std::string>(tls, "certificate_file", "tls"));
    topology.tls.private_key_file =
        resolve(base_dir, check.scalar<std::string>(tls, "private_key_file", "tls"));
  }

  if (const YAML::Node curve = root["curve"]) {
    Section curve_keys(check, curve, "curve");
    curve_keys.optional("enabled", topology.curve.enabled);
    curve_keys.close();
  }

  if (const YAML::Node stream = root["stream"]) {
    Section stream_keys(check, stream, "stream");
    auto& st = topology.stream;
    stream_keys.optional("queue_bytes_max", st.queue_bytes_max);
    stream_keys.optional("resync_ms", st.resync_ms);
    stream_keys.optional("connections_max", st.connections_max);
    stream_keys.optional("presence_grace_ms", st.presence_grace_ms);
    stream_keys.optional("presence_lease_ms", st.presence_lease_ms);
    stream_keys.close();
    if (st.queue_bytes_max < 65536) check.fail(stream, "queue_bytes_max must be at least 65536");
    if (st.resync_ms == 0 || st.connections_max == 0)
      check.fail(stream, "resync_ms and connections_max must be positive");
    // Renewed at a third of it: at most once a second; at most what a report may ask for.
    if (st.presence_lease_ms < 3000 || st.presence_lease_ms > wire::kPresenceLeaseMsMax)
      check.fail(stream, "presence_lease_ms must be between 3000 and " +
                             std::to_string(wire::kPresenceLeaseMsMax));
    if (st.presence_grace_ms > 60000) check.fail(stream, "presence_grace_ms must be at most 60000");
  }

  if (const YAML::Node files = root["files"]) {
    check.only_keys(
        files, "files",
        {"size_max", "upload_expiry_s", "tenant_quota_bytes", "transfers_max", "chunk_timeout_ms"});
    auto& f = topology.files;
    check.optional_scalar(files, "size_max", "files", f.size_max);
    check.optional_scalar(files, "upload_expiry_s", "files", f.upload_expiry_s);
    check.optional_scalar(files, "tenant_quota_bytes", "files", f.tenant_quota_bytes);
    check.optional_scalar(files, "transfers_max", "files", f.transfers_max);
    check.optional_scalar(files, "chunk_timeout_ms", "files", f.chunk_timeout_ms);
    if (f.size_max == 0) check.fail(files, "size_max must be at least 1");
    if (f.upload_expiry_s == 0) check.fail(files, "upload_expiry_s must be at least 1");
    if (f.transfers_max == 0 || f.transfers_max > 1024)
      check.fail(files, "transfers_max must be between 1 and 1024");
    if (f.chunk_timeout_ms < 100) check.fail(files, "chunk_timeout_ms must be at least 100");
  }

  if (const YAML::Node webhooks = root["webhooks"]) {
    Section webhooks_keys(check, webhooks, "webhooks");
    auto& w = topology.webhooks;
    webhooks_keys.optional("allow_loopback", w.allow_loopback);
    webhooks_keys.optional("allow_private", w.allow_private);
    webhooks_keys.optional("attempts_max", w.attempts_max);
    webhooks_keys.optional("backoff_initial_ms", w.backoff_initial_ms);
    webhooks_keys.optional("backoff_max_ms", w.backoff_max_ms);
    webhooks_keys.optional("timeout_ms", w.timeout_ms);
    webhooks_keys.optional("in_flight_max", w.in_flight_max);
    webhooks_keys.optional("sending_per_webhook_max", w.sending_per_webhook_max);
    webhooks_keys.optional("open_per_webhook_max", w.open_per_webhook_max);
    webhooks_keys.optional("deliveries_kept_max", w.deliveries_kept_max);
    webhooks_keys.close();
    if (w.deliveries_kept_max == 0 || w.deliveries_kept_max > 100000)
      check.fail(webhooks, "deliveries_kept_max must be between 1 and 100000");
    if (w.attempts_max == 0 || w.attempts_max > 100)
      check.fail(webhooks, "attempts_max must be between 1 and 100");
    if (w.backoff_initial_ms == 0 || w.backoff_max_ms < w.backoff_initial_ms)
      check.fail(webhooks, "backoffs must satisfy 0 < backoff_initial_ms <= backoff_max_ms");
    if (w.timeout_ms == 0 || w.in_flight_max == 0)
      check.fail(webhooks, "timeout_ms and in_flight_max must be positive");
    // Below the connector's 1024 open events per partition, so that one webhook cannot hold
    // them all (nodes/connector/connector_node.cc).
    if (w.sending_per_webhook_max == 0 || w.open_per_webhook_max == 0 ||
        w.open_per_webhook_max > 1000)
      check.fail(webhooks,
                 "sending_per_webhook_max must be positive and open_per_webhook_max 1..1000");
  }

  if (const YAML::Node tenants = root["tenants"]) {
    if (!tenants.IsSequence()) check.fail(tenants, "tenants must be a list");
    std::set<std::string> tenant_ids, client_ids;
    for (const auto& entry : tenants) {
      check.only_keys(entry, "a tenant", {"id", "admin_clients", "retention_s"});
      TenantSpec tenant;
      tenant.id = check.scalar<std::string>(entry, "id", "a tenant");
      if (!ids::is_valid_name(tenant.id))
        check.fail(entry["id"],
                   "tenant id '" + tenant.id + "' must be 1-64 characters of a-z A-Z 0-9 . _ -");
      if (!tenant_ids.insert(tenant.id).second)
        check.fail(entry, "duplicate tenant '" + tenant.id + "'");
      const std::string where = "tenant '" + tenant.id + "'";
      check.optional_scalar(entry, "retention_s", where, tenant.retention_s);
      if (entry["retention_s"] &&
          (tenant.retention_s < 1 || tenant.retention_s > TenantSpec::kRetentionSMax))
        check.fail(entry["retention_s"], where + ": retention_s must be 1-" +
                                             std::to_string(TenantSpec::kRetentionSMax) +
                                             " seconds (leave it out to keep messages forever)");
      const YAML::Node clients = entry["admin_clients"];
      if (!clients || !clients.IsSequence() || clients.size() == 0)
        check.fail(entry, where + " needs a non-empty list 'admin_clients'");
      for (const auto& client : clients) {
        check.only_keys(client, "an admin client", {"client_id", "secret_hash"});
        TenantSpec::AdminClient parsed{
            check.scalar<std::string>(client, "client_id", "an admin client of " + where),
            check.scalar<std::string>(client, "secret_hash", "an admin client of " + where)};
        if (!ids::is_valid_name(parsed.client_id))
          check.fail(client["client_id"], "client_id must be 1-64 characters of a-z A-Z 0-9 . _ -");
        if (parsed.secret_hash.rfind("$argon2id$", 0) != 0)
          check.fail(client["secret_hash"],
                     "secret_hash of client '" + parsed.client_id +
                         "' is not an argon2id hash (make one with 'chat4all hash-password')");
        if (!client_ids.insert(tenant.id + "/" + parsed.client_id).second)
          check.fail(client, "duplicate admin client '" + parsed.client_id + "' in " + where);
        tenant.admin_clients.push_back(std::move(parsed));
      }
      topology.tenants.push_back(std::move(tenant));
    }
  }

  if (const YAML::Node channels = root["channels"]) {
    if (!channels.IsSequence()) check.fail(channels, "channels must be a list");
    for (const auto& entry : channels) {
      check.only_keys(entry, "a channel",
                      {"name", "adapter", "tenant", "settings", "inbound_channels", "attempts_max",
                       "backoff_initial_ms", "backoff_max_ms", "timeout_ms", "concurrency",
                       "breaker_failures", "breaker_open_ms"});
      ChannelSpec channel;
      channel.line = entry.Mark().line + 1;
      channel.name = check.scalar<std::string>(entry, "name", "a channel");
      const std::string where = "channel '" + channel.name + "'";
      if (!ids::is_valid_name(channel.name) || channel.name == kChannelAll ||
          channel.name == kChannelInternal)
        check.fail(entry["name"], "channel name '" + channel.name +
                                      "' must be 1-64 characters of a-z A-Z 0-9 . _ - and not "
                                      "'all' or 'internal'");
      if (topology.channel(channel.name))
        check.fail(entry, "duplicate channel '" + channel.name + "'");
      channel.adapter = channel.name;
      check.optional_scalar(entry, "adapter", where, channel.adapter);
      channel.tenant_id = check.scalar<std::string>(entry, "tenant", where);
      if (!topology.tenant(channel.tenant_id))
        check.fail(entry["tenant"], where + " names tenant '" + channel.tenant_id +
                                        "', which the topology does not declare");
      if (const YAML::Node settings = entry["settings"]) {
        if (!settings.IsMap()) check.fail(settings, where + ".settings must be a mapping");
        for (const auto& item : settings)
          channel.settings[item.first.Scalar()] =
              check.convert<std::string>(item.second, where + ".settings." + item.first.Scalar());
      }
      if (const YAML::Node inbound = entry["inbound_channels"]) {
        if (!inbound.IsSequence() || inbound.size() == 0)
          check.fail(inbound, where + ".inbound_channels must be a non-empty list");
        channel.inbound_channels.clear();
        for (const auto& item : inbound)
          channel.inbound_channels.push_back(
              check.convert<std::string>(item, where + ".inbound_channels"));
      }
      check.optional_scalar(entry, "attempts_max", where, channel.attempts_max);
      check.optional_scalar(entry, "backoff_initial_ms", where, channel.backoff_initial_ms);
      check.optional_scalar(entry, "backoff_max_ms", where, channel.backoff_max_ms);
      check.optional_scalar(entry, "timeout_ms", where, channel.timeout_ms);
      check.optional_scalar(entry, "concurrency", where, channel.concurrency);
      check.optional_scalar(entry, "breaker_failures", where, channel.breaker_failures);
      check.optional_scalar(entry, "breaker_open_ms", where, channel.breaker_open_ms);
      if (channel.attempts_max == 0 || channel.attempts_max > 1000)
        check.fail(entry, where + ": attempts_max must be between 1 and 1000");
      if (channel.backoff_initial_ms == 0 || channel.backoff_max_ms < channel.backoff_initial_ms)
        check.fail(entry, where +
                              ": backoffs must satisfy 0 < backoff_initial_ms <= "
                              "backoff_max_ms");
      if (channel.timeout_ms == 0 || channel.concurrency == 0 || channel.concurrency > 1024)
        check.fail(entry, where + ": timeout_ms must be positive, concurrency 1-1024");
      if (channel.breaker_failures == 0 || channel.breaker_open_ms == 0)
        check.fail(entry, where + ": breaker_failures and breaker_open_ms must be positive");
      topology.channels.push_back(std::move(channel));
    }
  }

  const YAML::Node nodes = root["nodes"];
  if (!nodes) check.fail(root, "missing section 'nodes'");
  if (!nodes.IsSequence() || nodes.size() == 0) check.fail(nodes, "nodes must be a non-empty list");
  std::set<std::string> names;
  std::map<std::pair<std::string, std::uint16_t>, std::string> ports_in_use;
  for (const auto& entry : nodes) {
    check.only_keys(entry, "a node",
                    {"name", "role", "host", "endpoints", "channels", "curve_public_key"});
    NodeSpec node;
    node.line = entry.Mark().line + 1;
    node.name = check.scalar<std::string>(entry, "name", "a node");
    const std::string where = "node '" + node.name + "'";
    if (node.name.empty() ||
        node.name.find_first_not_of(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") !=
            std::string::npos)
      check.fail(entry["name"],
                 "node name '" + node.name + "' may use only letters, digits, - and _");
    if (!names.insert(node.name).second)
      check.fail(entry, "duplicate node name '" + node.name + "'");
    if (!entry["role"]) check.fail(entry, "missing field 'role' in " + where);
    node.role = parse_role(check, entry["role"]);
    node.host = check.scalar<std::string>(entry, "host", where);
    const YAML::Node endpoints = entry["endpoints"];
    if (!endpoints) check.fail(entry, "missing field 'endpoints' in " + where);
    check.only_keys(endpoints, where + ".endpoints",
                    {"http", "https", "rpc", "events", "chunks", "channels", "metrics"});
    for (const auto& item : endpoints) {
      const auto key = item.first.Scalar();
      const auto port = check.convert<std::uint32_t>(item.second, where + ".endpoints." + key);
      if (port == 0 || port > 65535)
        check.fail(item.second, where + ".endpoints." + key + " must be a port (1-65535)");
      auto [it, inserted] = ports_in_use.emplace(
          std::pair{same_host_key(node.host), std::uint16_t(port)}, node.name + "." + key);
      if (!inserted)
        check.fail(item.second, "port " + std::to_string(port) + " on " + node.host +
                                    " is used twice (" + it->second + " and " + node.name + "." +
                                    key + ")");
      node.endpoints[key] = static_cast<std::uint16_t>(port);
    }
    if (node.role == NodeRole::kFrontend) {
      if (!node.port("http") && !node.port("https"))
        check.fail(endpoints, where + " (frontend) needs an 'http' or an 'https' endpoint");
    } else if (node.role != NodeRole::kConnector && !node.port("rpc")) {
      check.fail(endpoints, where + " (" + role_name(node.role) + ") needs an 'rpc' endpoint");
    }
    if (node.port("https")) {
      if (node.role != NodeRole::kFrontend)
        check.fail(endpoints["https"], where + ": only frontend nodes have an 'https' endpoint");
      if (!topology.tls.configured())
        check.fail(endpoints["https"],
                   where +
                       " has an 'https' endpoint: the topology needs a 'tls' section with "
                       "certificate_file and private_key_file");
    }
    if (const YAML::Node hosted = entry["channels"]) {
      if (node.role != NodeRole::kConnector)
        check.fail(hosted, where + ": only connector nodes host channels");
      if (!hosted.IsSequence()) check.fail(hosted, where + ".channels must be a list");
      for (const auto& item : hosted) {
        auto name = check.convert<std::string>(item, where + ".channels");
        if (!topology.channel(name))
          check.fail(item,
                     where + " hosts channel '" + name + "', which 'channels' does not declare");
        node.channels.push_back(std::move(name));
      }
    }
    if (const YAML::Node key = entry["curve_public_key"]) {
      node.curve_public_key = check.convert<std::string>(key, where + ".curve_public_key");
      std::uint8_t decoded[32];
      if (node.curve_public_key.size() != 40 ||
          !zmq_z85_decode(decoded, node.curve_public_key.c_str()))
        check.fail(key, where +
                            ".curve_public_key must be a Z85 Curve public key (40 characters, "
                            "as `chat4all keygen` prints it)");
    }
    if (node.role == NodeRole::kRouter && !topology.channels.empty() && !node.port("channels"))
      check.fail(endpoints, where +
                                " (router) needs a 'channels' endpoint: the topology declares "
                                "channels");
    topology.nodes.push_back(std::move(node));
  }
  for (const auto& channel : topology.channels)
    if (topology.connectors_of(channel.name).empty())
      check.fail_at_line(channel.line, "no connector node hosts channel '" + channel.name + "'");
  if (topology.with_role(NodeRole::kStorage).empty())
    check.fail(nodes, "the topology declares no storage node");
  if (topology.with_role(NodeRole::kRouter).empty())
    check.fail(nodes, "the topology declares no router node");
  return topology;
}

Topology load_topology(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw TopologyError(path.string() + ": cannot open the topology file");
  std::stringstream text;
  text << in.rdbuf();
  const auto absolute = std::filesystem::absolute(path);
  Topology topology = parse_topology(text.str(), path.string(), absolute.parent_path());
  topology.source_path = absolute;
  return topology;
}

bool is_local_host(const std::string& host) {
  if (host == "127.0.0.1" || host == "localhost" || host == "::1") return true;
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof name) == 0 && host == name) return true;
  return false;
}

}  // namespace chat4all
