// Test harness: a real Chat4All topology on free loopback ports in its own
// temporary directory, plus a small blocking HTTP client.
//
// Every process a TestCluster starts is stopped by pid when it is destroyed
// (SIGTERM, then SIGKILL after a grace period), also when a test fails; each
// child also gets PR_SET_PDEATHSIG so a crashed test binary leaves nothing
// behind. Not thread-safe; one per test.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>
#include <zmq.hpp>

namespace chat4all::testing {

struct HttpResult {
  int status = 0;  // 0: no answer (connection failed or timed out)
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  nlohmann::json json() const;
};

// Content-Type: application/json, and Authorization: Bearer `token` unless it is empty.
std::map<std::string, std::string> bearer(const std::string& token);

// Checks an error answer: its status and {"error":{"code","message","field"?}} (the field
// only when `field` is given).
void expect_api_error(const HttpResult& result, int status, const std::string& code,
                      const std::string& field = "");

// One request on a fresh connection; bounded by `timeout`.
HttpResult http_request(std::uint16_t port, const std::string& method, const std::string& target,
                        const std::string& body = "",
                        const std::map<std::string, std::string>& headers = {},
                        std::chrono::milliseconds timeout = std::chrono::seconds(10));

class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

struct ClusterOptions {
  int storage_nodes = 3;
  std::uint32_t replication_factor = 3;
  std::uint32_t request_timeout_ms = 1500;
  std::uint32_t router_timeout_ms = 1000;
  std::uint32_t text_bytes_max = 4096;
  std::uint32_t body_bytes_max = 65536;
  std::uint32_t token_ttl_s = 3600;
  std::uint64_t map_size_max_mb = 65536;     // LMDB map ceiling of each storage node
  std::uint32_t log_retained_max = 65536;    // entries kept for a replica that is down
  std::uint32_t clock_skew_max_ms = 1000;    // storage: a leader this far off a majority steps down
  std::uint32_t token_requests_per_s = 100;  // per-token rate limit of the frontend
  std::uint32_t token_burst = 200;
  std::uint32_t members_max = 256;  // members per conversation

  // GET /v1/stream (the topology's `stream:` section).
  std::uint32_t stream_queue_bytes_max = 4u << 20;
  std::uint32_t stream_resync_ms = 2000;
  std::uint32_t stream_connections_max = 10000;
  // false: storage nodes get no "events" endpoint, so no change hint ever
  // reaches a frontend (what streams do when every hint is lost).
  bool storage_events = true;
  // The `files` section: size_max (0: the default), upload expiry and per-tenant quota (0: none).
  std::uint64_t files_size_max = 0;
  std::uint32_t files_upload_expiry_s = 86400;
  std::uint64_t files_tenant_quota_bytes = 0;
  std::uint32_t presence_grace_ms = 3000;
  std::uint32_t presence_lease_ms = 15000;

  // frontend-1 .. frontend-N, each with an "http" endpoint (port_of(name, "http")).
  int frontends = 1;

  // Outside channels: the whole `channels:` section of the topology, in which
  // {{PROVIDER}} stands for the simulated provider's base URL (filled in by
  // TestCluster::set_provider_url, which ProviderSim calls). With channels,
  // router-1 gets a "channels" endpoint.
  std::string channels_yaml;
  // connector-1 .. connector-N, each with "http" (the platforms' webhooks) and
  // "metrics" endpoints, hosting every channel. Connectors also deliver the
  // tenants' webhooks, which the test topology lets go to loopback receivers.
  int connectors = 0;
  // Frontend TLS (the topology's `tls` section): with a certificate file, frontend-1 also gets
  // an "https" endpoint (https_port()). Without plain_http it has no "http" endpoint at all
  // (http_port() is 0, and wait_ready() and the helpers that speak plain HTTP cannot be used).
  std::string tls_certificate_file;
  std::string tls_private_key_file;
  bool plain_http = true;
};

// The tenants of every test cluster, each with one admin client whose secret is
// kAdminSecret. wait_ready() creates the users kUsers in kTenant, all with
// password kPassword.
inline constexpr const char* kTenant = "test";
inline constexpr const char* kOtherTenant = "other";
inline constexpr const char* kAdminSecret = "test-admin-secret";
inline constexpr const char* kPassword = "test-password";
inline const std::vector<std::string> kUsers = {"alice", "bob"};
// The admin client of `tenant`: "<tenant>-admin".
std::string admin_client_id(const std::string& tenant);

class TestCluster {
 public:
  explicit TestCluster(ClusterOptions options = {});
  ~TestCluster();
  TestCluster(const TestCluster&) = delete;
  TestCluster& operator=(const TestCluster&) = delete;

  // Writes `text` as a topology file in the cluster's directory; returns its path.
  std::filesystem::path write_file(const std::string& name, const std::string& text) const;
  // Rewrites the topology with {{PROVIDER}} in the channels replaced by `url`.
  void set_provider_url(const std::string& url);

  // `chat4all up` on the cluster's topology, as one supervised process.
  void start_all();
  // Sends SIGTERM to `chat4all up` and waits for it (bounded); true if it exited 0.
  bool stop_all();

  // One node as its own process (`chat4all node`); returns its pid.
  // `environment`: NAME=VALUE entries added to the node's environment.
  pid_t start_node(const std::string& name, const std::vector<std::string>& environment = {});
  // `name` as declared in another topology file (a newer version the test applies), as its
  // own process, stopped like the others.
  pid_t start_node_from(const std::filesystem::path& topology, const std::string& name);
  // A free port for `node`'s `endpoint` in a newer topology file the test writes; port_of()
  // and metric() know it afterwards.
  std::uint16_t reserve_port(const std::string& node, const std::string& endpoint);
  void signal_node(const std::string& name, int signal);
  void kill_node(const std::string& name);  // SIGKILL and reap

  // Waits (bounded) until the frontend answers /healthz and a message can be
  // stored; false if that did not happen in `timeout`.
  bool wait_ready(std::chrono::milliseconds timeout = std::chrono::seconds(20));

  // A token of `tenant`'s admin client (kept for later calls); empty if none came back.
  std::string admin_token(const std::string& tenant = kTenant);
  // Creates `user_id` (password kPassword) with an admin token; true when it
  // exists afterwards (created now or before).
  bool create_user(const std::string& user_id, const std::string& tenant = kTenant);
  // A user's token (password grant); empty if none came back.
  std::string token(const std::string& user = "alice", const std::string& tenant = kTenant);
  // POST /v1/conversations; the new (or existing private) conversation's id, or
  // empty. `members` are besides the token's own user.
  std::string create_conversation(const std::string& token, const std::vector<std::string>& members,
                                  const std::string& type = "group");
  HttpResult send_text(const std::string& token, const std::string& conversation_id,
                       const std::string& text, const std::string& message_id = "");
  HttpResult history(const std::string& token, const std::string& conversation_id,
                     const std::string& query = "");

  // Whether `node` is the preferred leader (first in ring order) of the
  // partition of `conversation_id`: its leader whenever `node` is live.
  bool owns(const std::string& node, const std::string& conversation_id) const;
  // A new group conversation of alice and bob (created with `token`, alice's)
  // whose partition `node` leads by preference. Conversation ids are chosen by
  // the server, so this creates until one lands there; empty if none did.
  std::string conversation_owned_by(const std::string& node, const std::string& token);

  std::uint16_t http_port() const { return http_port_; }
  std::uint16_t https_port() const { return https_port_; }
  // Value of an unlabelled metric on `node`'s metrics endpoint; -1 if absent.
  double metric(const std::string& node, const std::string& name) const;
  std::uint16_t port_of(const std::string& node, const std::string& endpoint) const;
  const std::filesystem::path& topology_path() const { return topology_path_; }
  // Curve keys of the cluster's nodes (made in its data dir on first use, as the nodes do), for
  // sockets of the test that stand in for a node. Call before connect or bind.
  // A client presenting `as`'s key pair to `server`:
  void present_key(zmq::socket_t& socket, const std::string& as, const std::string& server) const;
  // A server with `as`'s key pair (the test process runs no ZAP handler: it admits any key):
  void serve_as(zmq::socket_t& socket, const std::string& as) const;
  const std::filesystem::path& directory() const { return dir_.path(); }
  std::filesystem::path log_path(const std::string& process) const;
  std::string read_log(const std::string& process) const;

 private:
  pid_t spawn(const std::vector<std::string>& args, const std::string& log_name,
              const std::vector<std::string>& environment = {});
  static bool wait_exit(pid_t pid, std::chrono::milliseconds timeout, int* status);
  void stop_process(pid_t pid);

  static constexpr std::uint32_t kPartitionCount = 16;
  ClusterOptions options_;
  TempDir dir_;
  std::filesystem::path topology_path_;
  std::string topology_text_;  // as written by the constructor, placeholders included
  std::uint16_t http_port_ = 0;
  std::uint16_t https_port_ = 0;
  std::map<std::string, std::map<std::string, std::uint16_t>> ports_;
  pid_t up_pid_ = -1;
  std::map<std::string, pid_t> node_pids_;
  std::map<std::string, std::string> probe_conversations_;  // storage node -> conversation
  std::map<std::string, std::string> admin_tokens_;         // tenant -> token
};

// The simulated messaging provider (tools/provider-sim) as a child process
// with its log in the cluster's directory; it is started with the status
// webhooks of WhatsApp and Instagram going to `callback_node`'s
// /channels/<name>/webhook and it tells the cluster its base URL. Stopped by
// pid when destroyed. Not thread-safe.
struct ProviderSimOptions {
  int latency_ms = 5;
  int jitter_ms = 0;
  int callback_delay_ms = 50;
  std::string app_secret = "sim-app-secret";
  std::string callback_node = "connector-1";
  std::uint64_t seed = 1;
};

class ProviderSim {
 public:
  // Whether `node` can be run (it is on PATH); tests skip without it.
  static bool available();

  // Throws std::runtime_error if the simulator did not say it listens within 10 s.
  ProviderSim(TestCluster& cluster, ProviderSimOptions options = {});
  ~ProviderSim();
  ProviderSim(const ProviderSim&) = delete;
  ProviderSim& operator=(const ProviderSim&) = delete;

  const std::string& url() const { return url_; }
  std::uint16_t port() const { return port_; }
  HttpResult get(const std::string& path) const;
  HttpResult post(const std::string& path, const nlohmann::json& body) const;
  // The texts of `/_sim/<platform>/sent?to=<to>`, in arrival order.
  std::vector<std::string> sent_texts(const std::string& platform, const std::string& to) const;
  std::string read_log() const;

 private:
  std::filesystem::path log_path_;
  pid_t pid_ = -1;
  std::string url_;
  std::uint16_t port_ = 0;
};

// `count` distinct loopback ports that were free a moment ago.
std::vector<std::uint16_t> free_ports(std::size_t count);

// The built chat4all executable.
std::string chat4all_binary();

// Runs chat4all with `args` to completion (bounded); returns exit code and stderr.
std::pair<int, std::string> run_chat4all(const std::vector<std::string>& args);

}  // namespace chat4all::testing
