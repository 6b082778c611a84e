// The topology file: common/topology.h.
#include "common/topology.h"

#include <gtest/gtest.h>

#include <string>

#include "common/ring.h"
#include "tests/unit/test_util.h"

namespace chat4all {
namespace {

using unit::TempDir;

constexpr const char* kSource = "t.yaml";
const std::filesystem::path kBase = "/srv/chat4all/topology";

// A small valid topology; tests append or replace parts of it.
const std::string kCluster = R"(cluster:
  name: test
  replication_factor: 2
  partition_count: 16
  virtual_nodes: 8
  data_dir: ../data
)";

const std::string kNodes = R"(nodes:
  - name: fe-1
    role: frontend
    host: 127.0.0.1
    endpoints: {http: 8080, metrics: 9100}
  - name: router-1
    role: router
    host: 127.0.0.1
    endpoints: {rpc: 7100}
  - name: storage-1
    role: storage
    host: 127.0.0.1
    endpoints: {rpc: 7201, metrics: 9201}
  - name: storage-2
    role: storage
    host: 10.0.0.2
    endpoints: {rpc: 7201}
)";

Topology parse(const std::string& text) {
  return parse_topology(text, kSource, kBase);
}

// Parses `text`, expects a TopologyError whose message starts with
// "t.yaml:<line>: " (line 0: "t.yaml: " or any line) and contains `needle`.
void expect_error(const std::string& text, const std::string& needle, int line = -1) {
  try {
    parse(text);
    ADD_FAILURE() << "accepted; expected an error containing '" << needle << "'\n" << text;
  } catch (const TopologyError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(needle), std::string::npos) << "message: " << message;
    if (line > 0) {
      const std::string prefix = std::string(kSource) + ":" + std::to_string(line) + ": ";
      EXPECT_EQ(message.rfind(prefix, 0), 0u) << "expected prefix '" << prefix << "': " << message;
    } else {
      EXPECT_EQ(message.rfind(std::string(kSource) + ":", 0), 0u) << message;
    }
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw something other than TopologyError: " << e.what() << "\n" << text;
  }
}

TEST(TopologyTest, ParsesAValidTopology) {
  const Topology t = parse(kCluster + kNodes);
  EXPECT_EQ(t.source_path, kSource);
  EXPECT_EQ(t.cluster_name, "test");
  EXPECT_EQ(t.replication_factor, 2u);
  EXPECT_EQ(t.partition_count, 16u);
  EXPECT_EQ(t.virtual_nodes, 8u);
  EXPECT_EQ(t.data_dir, "/srv/chat4all/data");
  ASSERT_EQ(t.nodes.size(), 4u);

  const NodeSpec* fe = t.find("fe-1");
  ASSERT_NE(fe, nullptr);
  EXPECT_EQ(fe->role, NodeRole::kFrontend);
  EXPECT_EQ(fe->host, "127.0.0.1");
  EXPECT_EQ(fe->port("http"), 8080);
  EXPECT_EQ(fe->port("metrics"), 9100);
  EXPECT_EQ(fe->port("rpc"), std::nullopt);
  EXPECT_EQ(fe->line, 8);

  EXPECT_EQ(t.find("storage-2")->line, 20);
  EXPECT_EQ(t.find("nope"), nullptr);
  EXPECT_EQ(t.with_role(NodeRole::kRouter).size(), 1u);
  EXPECT_EQ(t.with_role(NodeRole::kStorage).size(), 2u);
  EXPECT_EQ(t.storage_node_names(), (std::vector<std::string>{"storage-1", "storage-2"}));
  EXPECT_EQ(t.node_data_dir("storage-1"), "/srv/chat4all/data/storage-1");
}

TEST(TopologyTest, OmittedSectionsKeepTheirDefaults) {
  const Topology t = parse("cluster: {name: x, data_dir: /var/x}\n" + kNodes);
  EXPECT_EQ(t.replication_factor, 3u);
  EXPECT_EQ(t.partition_count, 64u);
  EXPECT_EQ(t.virtual_nodes, 64u);
  const Limits defaults;
  EXPECT_EQ(t.limits.request_timeout_ms, defaults.request_timeout_ms);
  EXPECT_EQ(t.limits.text_bytes_max, defaults.text_bytes_max);
  EXPECT_EQ(t.limits.history_page_max, defaults.history_page_max);
  EXPECT_EQ(t.storage.map_size_initial_mb, StorageSettings{}.map_size_initial_mb);
  EXPECT_EQ(t.auth.token_ttl_s, 3600u);
  EXPECT_TRUE(t.tenants.empty());
}

TEST(TopologyTest, ParsesEverySection) {
  const Topology t = parse(kCluster + R"(limits:
  request_timeout_ms: 111
  router_timeout_ms: 99
  text_bytes_max: 1000
  body_bytes_max: 5000
  pending_requests_max: 7
  history_page_max: 20
  http_threads: 4
  login_concurrency_max: 3
  login_queue_max: 0
storage:
  map_size_initial_mb: 1
  map_size_max_mb: 1
  batch_messages_max: 10
  tick_ms: 20
  heartbeat_ticks: 3
  election_ticks: 12
  log_retained_max: 100
  clock_skew_max_ms: 250
auth:
  token_ttl_s: 60
  token_secret_file: secrets/key.hex
)" + kNodes);
  EXPECT_EQ(t.limits.request_timeout_ms, 111u);
  EXPECT_EQ(t.limits.router_timeout_ms, 99u);
  EXPECT_EQ(t.limits.text_bytes_max, 1000u);
  EXPECT_EQ(t.limits.body_bytes_max, 5000u);
  EXPECT_EQ(t.limits.pending_requests_max, 7u);
  EXPECT_EQ(t.limits.history_page_max, 20u);
  EXPECT_EQ(t.limits.http_threads, 4u);
  EXPECT_EQ(t.limits.login_concurrency_max, 3u);
  EXPECT_EQ(t.limits.login_queue_max, 0u);
  EXPECT_EQ(t.storage.map_size_initial_mb, 1u);
  EXPECT_EQ(t.storage.map_size_max_mb, 1u);
  EXPECT_EQ(t.storage.batch_messages_max, 10u);
  EXPECT_EQ(t.storage.tick_ms, 20u);
  EXPECT_EQ(t.storage.heartbeat_ticks, 3u);
  EXPECT_EQ(t.storage.election_ticks, 12u);
  EXPECT_EQ(t.storage.log_retained_max, 100u);
  EXPECT_EQ(t.storage.clock_skew_max_ms, 250u);
  EXPECT_EQ(t.auth.token_ttl_s, 60u);
  EXPECT_EQ(t.auth.token_secret_file, kBase / "secrets/key.hex");
}

TEST(TopologyTest, RelativeDataDirIsResolvedAgainstTheBaseDir) {
  EXPECT_EQ(parse(kCluster + kNodes).data_dir, "/srv/chat4all/data");
  EXPECT_EQ(parse("cluster: {name: x, data_dir: var/./here/}\n" + kNodes).data_dir,
            "/srv/chat4all/topology/var/here/");
  EXPECT_EQ(parse("cluster: {name: x, data_dir: /abs/dir}\n" + kNodes).data_dir, "/abs/dir");
  EXPECT_TRUE(parse(kCluster + kNodes).data_dir.is_absolute());
}

TEST(TopologyTest, TokenSecretFileDefaultsToBelowDataDir) {
  EXPECT_EQ(parse(kCluster + kNodes).auth.token_secret_file,
            "/srv/chat4all/data/secrets/token.key");
  EXPECT_EQ(parse(kCluster + "auth: {token_ttl_s: 5}\n" + kNodes).auth.token_secret_file,
            "/srv/chat4all/data/secrets/token.key");
  EXPECT_EQ(parse(kCluster + "auth: {token_secret_file: /etc/k}\n" + kNodes).auth.token_secret_file,
            "/etc/k");
}

TEST(TopologyTest, SamePortOnDifferentHostsIsFine) {
  // storage-1 and storage-2 in kNodes both use rpc 7201, on different hosts.
  EXPECT_NO_THROW(parse(kCluster + kNodes));
}

TEST(TopologyTest, ZmqAddress) {
  const Topology t = parse(kCluster + kNodes + R"(  - name: storage-6
    role: storage
    host: "::1"
    endpoints: {rpc: 7300}
)");
  EXPECT_EQ(t.find("storage-1")->zmq_address("rpc"), "tcp://127.0.0.1:7201");
  EXPECT_EQ(t.find("storage-6")->zmq_address("rpc"), "tcp://[::1]:7300");
  EXPECT_THROW(t.find("router-1")->zmq_address("http"), TopologyError);
}

TEST(TopologyTest, RoleNames) {
  EXPECT_STREQ(role_name(NodeRole::kFrontend), "frontend");
  EXPECT_STREQ(role_name(NodeRole::kRouter), "router");
  EXPECT_STREQ(role_name(NodeRole::kStorage), "storage");
}

TEST(TopologyTest, IsLocalHost) {
  EXPECT_TRUE(is_local_host("127.0.0.1"));
  EXPECT_TRUE(is_local_host("localhost"));
  EXPECT_TRUE(is_local_host("::1"));
  EXPECT_FALSE(is_local_host("192.0.2.77"));  // TEST-NET-1
  EXPECT_FALSE(is_local_host("host.invalid"));
  EXPECT_FALSE(is_local_host(""));
}

// ---- errors -----------------------------------------------------------------

TEST(TopologyErrorTest, BadYamlNamesSourceAndLine) {
  expect_error("cluster:\n  name: [unclosed\n", "invalid YAML");
  expect_error(kCluster + "nodes:\n  - name: a\n   bad indentation: here\n", "invalid YAML", 9);
  expect_error("a: b: c\n", "invalid YAML", 1);
}

TEST(TopologyErrorTest, NotAMapping) {
  expect_error("", "must be a YAML mapping");
  expect_error("- a\n- b\n", "must be a YAML mapping");
  expect_error("just text", "must be a YAML mapping");
}

TEST(TopologyErrorTest, UnknownRole) {
  expect_error(
      kCluster + kNodes + "  - name: x\n    role: database\n    host: h\n    endpoints: {rpc: 1}\n",
      "unknown role 'database'", 25);
}

TEST(TopologyErrorTest, DuplicateNodeName) {
  expect_error(
      kCluster + kNodes +
          "  - name: storage-1\n    role: storage\n    host: h2\n    endpoints: {rpc: 1}\n",
      "duplicate node name 'storage-1'", 24);
}

TEST(TopologyErrorTest, BadNodeName) {
  expect_error(kCluster + kNodes +
                   "  - name: \"a b\"\n    role: storage\n    host: h\n    endpoints: {rpc: 1}\n",
               "may use only letters, digits, - and _", 24);
  expect_error(kCluster + kNodes +
                   "  - name: \"\"\n    role: storage\n    host: h\n    endpoints: {rpc: 1}\n",
               "may use only letters", 24);
}

TEST(TopologyErrorTest, DuplicatePortOnTheSameHost) {
  expect_error(kCluster + kNodes +
                   "  - name: storage-3\n    role: storage\n    host: 127.0.0.1\n    endpoints: "
                   "{rpc: 7203, metrics: 7100}\n",
               "port 7100 on 127.0.0.1 is used twice (router-1.rpc and storage-3.metrics)", 27);
  // Twice within one node.
  expect_error(kCluster + kNodes +
                   "  - name: storage-3\n    role: storage\n    host: h\n    endpoints: {rpc: 5, "
                   "metrics: 5}\n",
               "port 5 on h is used twice", 27);
  // localhost and 127.0.0.1 are the same host.
  expect_error(kCluster + kNodes +
                   "  - name: storage-3\n    role: storage\n    host: localhost\n    endpoints: "
                   "{rpc: 7100}\n",
               "port 7100 on localhost is used twice (router-1.rpc and storage-3.rpc)", 27);
}

TEST(TopologyErrorTest, MissingNodeFields) {
  const std::string head = kCluster + kNodes;
  expect_error(head + "  - role: storage\n    host: h\n    endpoints: {rpc: 1}\n",
               "missing field 'name' in a node", 24);
  expect_error(head + "  - name: s9\n    host: h\n    endpoints: {rpc: 1}\n",
               "missing field 'role' in node 's9'", 24);
  expect_error(head + "  - name: s9\n    role: storage\n    endpoints: {rpc: 1}\n",
               "missing field 'host' in node 's9'", 24);
  expect_error(head + "  - name: s9\n    role: storage\n    host: h\n",
               "missing field 'endpoints' in node 's9'", 24);
}

TEST(TopologyErrorTest, MissingClusterFields) {
  expect_error("cluster:\n  name: x\n" + kNodes, "missing field 'data_dir' in cluster", 2);
  expect_error("cluster:\n  data_dir: d\n" + kNodes, "missing field 'name' in cluster", 2);
  expect_error(kNodes, "missing section 'cluster'");
  expect_error(kCluster, "missing section 'nodes'");
}

TEST(TopologyErrorTest, UnknownKeys) {
  expect_error(kCluster + kNodes + "colour: blue\n", "unknown key 'colour' in the topology", 24);
  expect_error("cluster:\n  name: x\n  data_dir: d\n  replicas: 3\n" + kNodes,
               "unknown key 'replicas' in cluster", 4);
  expect_error(kCluster + "limits:\n  timeout_ms: 5\n" + kNodes,
               "unknown key 'timeout_ms' in limits", 8);
  expect_error(kCluster + "storage:\n  map_mb: 5\n" + kNodes, "unknown key 'map_mb' in storage", 8);
  expect_error(kCluster + "auth:\n  secret: x\n" + kNodes, "unknown key 'secret' in auth", 8);
  expect_error(kCluster + "curve:\n  on: true\n" + kNodes, "unknown key 'on' in curve", 8);
  expect_error(kCluster + "stream:\n  resync: 5\n" + kNodes, "unknown key 'resync' in stream", 8);
  expect_error(kCluster + "webhooks:\n  retries: 5\n" + kNodes, "unknown key 'retries' in webhooks",
               8);
  // A known key beside an unknown one: the unknown one is named.
  expect_error(kCluster + "limits:\n  http_threads: 4\n  threads: 4\n" + kNodes,
               "unknown key 'threads' in limits", 9);
  expect_error(kCluster + "dev:\n  users: []\n" + kNodes, "unknown key 'dev' in the topology", 7);
  expect_error(
      kCluster + kNodes +
          "  - name: s9\n    role: storage\n    host: h\n    endpoints: {rpc: 1}\n    zone: a\n",
      "unknown key 'zone' in a node", 28);
  expect_error(
      kCluster + kNodes +
          "  - name: s9\n    role: storage\n    host: h\n    endpoints: {rpc: 1, grpc: 2}\n",
      "unknown key 'grpc' in node 's9'.endpoints", 27);
}

TEST(TopologyErrorTest, NegativeValues) {
  expect_error("cluster:\n  name: x\n  data_dir: d\n  replication_factor: -1\n" + kNodes,
               "cluster.replication_factor must not be negative", 4);
  expect_error("cluster:\n  name: x\n  data_dir: d\n  partition_count: -64\n" + kNodes,
               "must not be negative", 4);
  expect_error(kCluster + "limits:\n  request_timeout_ms: -5\n" + kNodes,
               "limits.request_timeout_ms must not be negative", 8);
  expect_error(kCluster + "storage:\n  map_size_max_mb: -1\n" + kNodes, "must not be negative", 8);
  expect_error(kCluster + kNodes +
                   "  - name: s9\n    role: storage\n    host: h\n    endpoints: {rpc: -7}\n",
               "node 's9'.endpoints.rpc must not be negative", 27);
}

TEST(TopologyErrorTest, ZeroAndOutOfRangeValues) {
  expect_error("cluster:\n  name: x\n  data_dir: d\n  replication_factor: 0\n" + kNodes,
               "replication_factor must be at least 1", 4);
  expect_error("cluster:\n  name: x\n  data_dir: d\n  partition_count: 0\n" + kNodes,
               "partition_count must be between 1 and 65536", 4);
  expect_error("cluster:\n  name: x\n  data_dir: d\n  partition_count: 65537\n" + kNodes,
               "partition_count must be between 1 and 65536", 4);
  expect_error("cluster:\n  name: x\n  data_dir: d\n  virtual_nodes: 0\n" + kNodes,
               "virtual_nodes must be between 1 and 4096", 4);
  expect_error(kCluster + "limits:\n  router_timeout_ms: 0\n" + kNodes, "timeouts must be positive",
               8);
  expect_error(kCluster + "limits:\n  http_threads: 0\n" + kNodes,
               "http_threads must be between 1 and 64", 8);
  expect_error(kCluster + "limits:\n  http_threads: 65\n" + kNodes, "http_threads must be between",
               8);
  expect_error(kCluster + "limits:\n  login_concurrency_max: 0\n" + kNodes,
               "login_concurrency_max must be positive", 8);
  expect_error(kCluster + "limits:\n  pending_requests_max: 0\n" + kNodes,
               "pending_requests_max must be positive", 8);
  expect_error(kCluster + "limits:\n  history_page_max: 0\n" + kNodes,
               "history_page_max must be positive", 8);
  expect_error(kCluster + "storage:\n  map_size_initial_mb: 0\n" + kNodes, "map sizes must satisfy",
               8);
  expect_error(kCluster + "storage:\n  map_size_initial_mb: 10\n  map_size_max_mb: 5\n" + kNodes,
               "map sizes must satisfy", 8);
  expect_error(kCluster + "storage:\n  batch_messages_max: 0\n" + kNodes,
               "batch_messages_max must be positive", 8);
  expect_error(kCluster + "storage:\n  election_ticks: 2\n" + kNodes,
               "0 < heartbeat_ticks < election_ticks", 8);
  expect_error(kCluster + "storage:\n  tick_ms: 0\n" + kNodes, "tick_ms > 0", 8);
  expect_error(kCluster + "storage:\n  log_retained_max: 0\n" + kNodes,
               "log_retained_max must be positive", 8);
  expect_error(kCluster + "storage:\n  clock_skew_max_ms: 199\n" + kNodes,
               "clock_skew_max_ms must be 0 (no check) or at least 4 * tick_ms", 8);
  EXPECT_EQ(
      parse(kCluster + "storage:\n  clock_skew_max_ms: 0\n" + kNodes).storage.clock_skew_max_ms,
      0u);
  EXPECT_EQ(parse(kCluster + kNodes).storage.clock_skew_max_ms, 1000u);
  expect_error(kCluster + "auth:\n  token_ttl_s: 0\n" + kNodes, "token_ttl_s must be positive", 8);
  expect_error(
      kCluster + kNodes + "  - name: s9\n    role: storage\n    host: h\n    endpoints: {rpc: 0}\n",
      "node 's9'.endpoints.rpc must be a port (1-65535)", 27);
  expect_error(kCluster + kNodes +
                   "  - name: s9\n    role: storage\n    host: h\n    endpoints: {rpc: 65536}\n",
               "must be a port (1-65535)", 27);
}

TEST(TopologyErrorTest, WrongTypes) {
  expect_error("cluster:\n  name: x\n  data_dir: d\n  partition_count: many\n" + kNodes,
               "cluster.partition_count has the wrong type ('many')", 4);
  expect_error("cluster:\n  name: [x]\n  data_dir: d\n" + kNodes, "cluster.name must be a scalar",
               2);
  expect_error(kCluster + kNodes +
                   "  - name: s9\n    role: storage\n    host: h\n    endpoints: {rpc: 80.5}\n",
               "has the wrong type", 27);
  expect_error(kCluster + kNodes +
                   "  - name: s9\n    role: storage\n    host: h\n    endpoints: [rpc, 80]\n",
               "node 's9'.endpoints must be a mapping", 27);
  expect_error(kCluster + "nodes: {a: 1}\n", "nodes must be a non-empty list", 7);
  expect_error(kCluster + "nodes: []\n", "nodes must be a non-empty list", 7);
  expect_error(kCluster + "limits: 5\n" + kNodes, "limits must be a mapping", 7);
}

TEST(TopologyErrorTest, FrontendWithoutHttpEndpoint) {
  expect_error(
      kCluster + kNodes +
          "  - name: fe-2\n    role: frontend\n    host: h\n    endpoints: {rpc: 1, metrics: 2}\n",
      "node 'fe-2' (frontend) needs an 'http' or an 'https' endpoint", 27);
}

const std::string kTls =
    "tls:\n  certificate_file: certs/frontend.crt\n  private_key_file: /etc/chat4all/fe.key\n";

TEST(TopologyTest, AnHttpsOnlyFrontendServesNoPlainHttp) {
  const Topology t =
      parse(kCluster + kTls + kNodes +
            "  - name: fe-2\n    role: frontend\n    host: h\n    endpoints: {https: 8443}\n");
  // Relative to the topology's folder, like every path in it.
  EXPECT_EQ(t.tls.certificate_file, "/srv/chat4all/topology/certs/frontend.crt");
  EXPECT_EQ(t.tls.private_key_file, "/etc/chat4all/fe.key");
  const NodeSpec* fe = t.find("fe-2");
  ASSERT_NE(fe, nullptr);
  EXPECT_EQ(fe->port("https"), 8443);
  EXPECT_FALSE(fe->port("http"));
  EXPECT_FALSE(parse(kCluster + kNodes).tls.configured());
}

TEST(TopologyErrorTest, HttpsNeedsTheTlsSectionAndAFrontend) {
  const std::string fe_https =
      "  - name: fe-2\n    role: frontend\n    host: h\n    endpoints: {https: 8443}\n";
  expect_error(kCluster + kNodes + fe_https, "the topology needs a 'tls' section", 27);
  expect_error(
      kCluster + kTls + kNodes +
          "  - name: r9\n    role: router\n    host: h\n    endpoints: {rpc: 1, https: 2}\n",
      "only frontend nodes have an 'https' endpoint", 30);
  expect_error(kCluster + "tls:\n  certificate_file: a.crt\n" + kNodes + fe_https,
               "missing field 'private_key_file' in tls", 8);
  expect_error(kCluster + kTls + "  min_version: 1.0\n" + kNodes,
               "unknown key 'min_version' in tls", 10);
}

TEST(TopologyErrorTest, StorageOrRouterWithoutRpcEndpoint) {
  expect_error(kCluster + kNodes +
                   "  - name: s9\n    role: storage\n    host: h\n    endpoints: {http: 1}\n",
               "node 's9' (storage) needs an 'rpc' endpoint", 27);
  expect_error(kCluster + kNodes +
                   "  - name: r9\n    role: router\n    host: h\n    endpoints: {metrics: 1}\n",
               "node 'r9' (router) needs an 'rpc' endpoint", 27);
  expect_error(
      kCluster + kNodes + "  - name: s9\n    role: storage\n    host: h\n    endpoints: {}\n",
      "needs an 'rpc' endpoint", 27);
}

TEST(TopologyErrorTest, NoStorageNode) {
  expect_error(kCluster + R"(nodes:
  - name: fe-1
    role: frontend
    host: 127.0.0.1
    endpoints: {http: 8080}
  - name: router-1
    role: router
    host: 127.0.0.1
    endpoints: {rpc: 7100}
)",
               "the topology declares no storage node", 8);
}

TEST(TopologyErrorTest, NoRouterNode) {
  expect_error(kCluster + R"(nodes:
  - name: storage-1
    role: storage
    host: 127.0.0.1
    endpoints: {rpc: 7100}
)",
               "the topology declares no router node", 8);
}

TEST(TopologyErrorTest, ErrorsAreTopologyErrors) {
  // Whatever is wrong, callers only need to catch TopologyError.
  for (const std::string& text :
       {std::string("{"), std::string("cluster: 5\nnodes: 5\n"), kCluster + "nodes: 5\n",
        kCluster + "nodes:\n  - 5\n", kCluster + "nodes:\n  - name: {a: 1}\n",
        kCluster + "nodes:\n  - name: x\n    role: [storage]\n"}) {
    try {
      parse(text);
      ADD_FAILURE() << "accepted:\n" << text;
    } catch (const TopologyError&) {
    } catch (const std::exception& e) {
      ADD_FAILURE() << "threw a " << typeid(e).name() << " (" << e.what() << ") for:\n" << text;
    }
  }
}

TEST(TopologyErrorTest, NonScalarKeyIsATopologyError) {
  // A complex (sequence) key where a field name belongs: still a topology
  // problem with a file and line, not a yaml-cpp conversion exception.
  expect_error("? [a, b]\n: 1\n", "", 1);
  expect_error(kCluster + kNodes +
                   "  - name: s9\n    role: storage\n    host: h\n    endpoints: {[rpc]: 1}\n",
               "", 27);
}

// ---- files ------------------------------------------------------------------

TEST(TopologyFileTest, LoadOfAMissingFileThrows) {
  TempDir dir;
  try {
    load_topology(dir.path() / "absent.yaml");
    ADD_FAILURE() << "no error";
  } catch (const TopologyError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("absent.yaml"), std::string::npos) << message;
    EXPECT_NE(message.find("cannot open"), std::string::npos) << message;
  }
}

TEST(TopologyFileTest, LoadResolvesAgainstTheFilesDirectory) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() / "conf");
  const auto file = dir.path() / "conf" / "cluster.yaml";
  unit::write_text_file(file, kCluster + kNodes);
  const Topology t = load_topology(file);
  EXPECT_EQ(t.source_path, file);
  EXPECT_EQ(t.data_dir, dir.path() / "data");
  EXPECT_EQ(t.auth.token_secret_file, dir.path() / "data" / "secrets" / "token.key");
}

TEST(TopologyFileTest, LoadErrorsNameTheFile) {
  TempDir dir;
  const auto file = dir.path() / "broken.yaml";
  unit::write_text_file(file, kCluster + "nodes: []\n");
  try {
    load_topology(file);
    ADD_FAILURE() << "no error";
  } catch (const TopologyError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(file.string() + ":7: ", 0), 0u) << e.what();
  }
}

TEST(TopologyFileTest, RepositoryLocalTopologyIsValid) {
  const std::filesystem::path path =
      std::filesystem::path(CHAT4ALL_SOURCE_DIR) / "topology/local.yaml";
  const Topology t = load_topology(path);
  EXPECT_GE(t.with_role(NodeRole::kFrontend).size(), 1u);
  EXPECT_GE(t.with_role(NodeRole::kRouter).size(), 1u);
  EXPECT_EQ(t.with_role(NodeRole::kStorage).size(), 3u);
  EXPECT_TRUE(t.data_dir.is_absolute());
  EXPECT_EQ(t.data_dir,
            (std::filesystem::path(CHAT4ALL_SOURCE_DIR) / "var/local").lexically_normal());
  for (const auto* frontend : t.with_role(NodeRole::kFrontend)) EXPECT_TRUE(frontend->port("http"));
  ASSERT_NE(t.tenant("dev"), nullptr);
  for (const auto& client : t.tenant("dev")->admin_clients)
    EXPECT_EQ(client.secret_hash.rfind("$argon2id$", 0), 0u);
  // Its cluster settings make a working ring.
  const Ring ring(t.storage_node_names(), t.partition_count, t.replication_factor, t.virtual_nodes);
  for (PartitionId p = 0; p < ring.partition_count(); ++p)
    EXPECT_EQ(ring.replicas(p).size(), std::min<std::size_t>(3, t.replication_factor));
}

TEST(TopologyTest, PresenceSettingsAreReadAndBounded) {
  EXPECT_EQ(parse(kCluster + kNodes).stream.presence_grace_ms, 3000u);
  EXPECT_EQ(parse(kCluster + kNodes).stream.presence_lease_ms, 15000u);
  const Topology t =
      parse(kCluster + "stream:\n  presence_grace_ms: 0\n  presence_lease_ms: 3000\n" + kNodes);
  EXPECT_EQ(t.stream.presence_grace_ms, 0u);
  EXPECT_EQ(t.stream.presence_lease_ms, 3000u);
  expect_error(kCluster + "stream:\n  presence_lease_ms: 2999\n" + kNodes,
               "presence_lease_ms must be between 3000 and 600000");
  expect_error(kCluster + "stream:\n  presence_grace_ms: 60001\n" + kNodes,
               "presence_grace_ms must be at most 60000");
}

}  // namespace
}  // namespace chat4all

namespace chat4all {
namespace {

const std::string kRetentionHash =
    "\"$argon2id$v=19$m=65536,t=2,p=1$0ggdapFAvRNVZnxkHTpkFw$RDep5ZdPViTXP1aX8oTYmDHVA4B3LQat/"
    "kMidJa5f3g\"";

std::string tenant_with(const std::string& retention_line) {
  return "tenants:\n  - id: acme\n" + retention_line +
         "    admin_clients:\n      - {client_id: acme-admin, secret_hash: " + kRetentionHash +
         "}\n";
}

TEST(TopologyTest, TenantRetentionIsOptionalAndPositive) {
  EXPECT_EQ(parse(kCluster + kNodes + tenant_with("")).tenant("acme")->retention_s, 0);
  EXPECT_EQ(parse(kCluster + kNodes + tenant_with("    retention_s: 86400\n"))
                .tenant("acme")
                ->retention_s,
            86400);
  expect_error(kCluster + kNodes + tenant_with("    retention_s: 0\n"), "retention_s");
  expect_error(kCluster + kNodes + tenant_with("    retention_s: -5\n"), "retention_s");
  expect_error(kCluster + kNodes + tenant_with("    retention_s: soon\n"), "retention_s");
}

}  // namespace
}  // namespace chat4all
