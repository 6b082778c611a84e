#include "tests/integration/cluster.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "common/auth.h"
#include "common/curve.h"
#include "common/ring.h"

namespace chat4all::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Clock = std::chrono::steady_clock;

nlohmann::json HttpResult::json() const {
  return nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
}

HttpResult http_request(std::uint16_t port, const std::string& method, const std::string& target,
                        const std::string& body, const std::map<std::string, std::string>& headers,
                        std::chrono::milliseconds timeout) {
  HttpResult result;
  try {
    asio::io_context io;
    beast::tcp_stream stream(io);
    stream.expires_after(timeout);
    stream.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    http::request<http::string_body> request(http::string_to_verb(method), target, 11);
    request.set(http::field::host, "127.0.0.1");
    for (const auto& [name, value] : headers) request.set(name, value);
    request.body() = body;
    request.prepare_payload();
    http::write(stream, request);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    http::read(stream, buffer, parser);
    const auto& response = parser.get();
    result.status = response.result_int();
    result.body = response.body();
    for (const auto& field : response) {
      std::string name(field.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      result.headers[name] = std::string(field.value());
    }
  } catch (const std::exception&) {
    result.status = 0;
  }
  return result;
}

std::map<std::string, std::string> bearer(const std::string& token) {
  std::map<std::string, std::string> headers{{"Content-Type", "application/json"}};
  if (!token.empty()) headers["Authorization"] = "Bearer " + token;
  return headers;
}

void expect_api_error(const HttpResult& result, int status, const std::string& code,
                      const std::string& field) {
  EXPECT_EQ(result.status, status) << result.body;
  const nlohmann::json body = result.json();
  ASSERT_TRUE(body.is_object() && body.contains("error")) << result.body;
  EXPECT_EQ(body["error"].value("code", ""), code) << result.body;
  EXPECT_FALSE(body["error"].value("message", "").empty()) << result.body;
  if (!field.empty()) {
    EXPECT_EQ(body["error"].value("field", ""), field) << result.body;
  }
}

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "chat4all-test-XXXXXX").string();
  if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

// Ports the kernel hands out for port 0, all held open together so that they
// are distinct, then released for the cluster to bind.
std::vector<std::uint16_t> free_ports(std::size_t count) {
  std::vector<int> sockets;
  std::vector<std::uint16_t> ports;
  for (std::size_t i = 0; i < count; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
      throw std::runtime_error("cannot bind a free port");
    socklen_t length = sizeof address;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
    ports.push_back(ntohs(address.sin_port));
    sockets.push_back(fd);
  }
  for (int fd : sockets) ::close(fd);
  return ports;
}

std::string chat4all_binary() {
  return CHAT4ALL_BINARY;
}

namespace {

// Starts chat4all with `args`, stdout and stderr appended to `output`. The
// child gets SIGTERM if this test process dies, so nothing outlives a crash.
pid_t spawn_chat4all(const std::vector<std::string>& args, const std::filesystem::path& output,
                     const std::vector<std::string>& environment = {}) {
  const std::string binary = chat4all_binary();
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);
    const int fd = ::open(output.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(fd, STDOUT_FILENO);
    ::dup2(fd, STDERR_FILENO);
    for (const auto& entry : environment) putenv(strdup(entry.c_str()));
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(binary.c_str()));
    for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  if (pid < 0) throw std::runtime_error("fork failed");
  return pid;
}

const std::string& admin_secret_hash() {
  static const std::string hash = auth::hash_password(kAdminSecret);
  return hash;
}

}  // namespace

std::string admin_client_id(const std::string& tenant) {
  return tenant + "-admin";
}

TestCluster::TestCluster(ClusterOptions options) : options_(options) {
  auth::init_crypto();
  const bool channels = !options.channels_yaml.empty();
  const bool tls = !options.tls_certificate_file.empty();
  // frontend-1's http and https, the router's two, frontend-2.. N's http, and the rest.
  auto ports = free_ports(3 + static_cast<std::size_t>(options.frontends) +
                          4 * static_cast<std::size_t>(options.storage_nodes) + (channels ? 1 : 0) +
                          2 * static_cast<std::size_t>(options.connectors));
  std::size_t next = 0;
  http_port_ = ports[next++];
  https_port_ = ports[next++];
  if (options.plain_http)
    ports_["frontend-1"]["http"] = http_port_;
  else
    http_port_ = 0;
  if (tls)
    ports_["frontend-1"]["https"] = https_port_;
  else
    https_port_ = 0;
  ports_["router-1"]["rpc"] = ports[next++];
  ports_["router-1"]["metrics"] = ports[next++];
  if (channels) ports_["router-1"]["channels"] = ports[next++];
  std::ostringstream yaml;
  yaml << "cluster:\n  name: test\n  replication_factor: " << options.replication_factor
       << "\n  partition_count: " << kPartitionCount << "\n  data_dir: data\n"
       << "limits:\n  request_timeout_ms: " << options.request_timeout_ms
       << "\n  router_timeout_ms: " << options.router_timeout_ms
       << "\n  text_bytes_max: " << options.text_bytes_max
       << "\n  body_bytes_max: " << options.body_bytes_max
       << "\n  token_requests_per_s: " << options.token_requests_per_s
       << "\n  token_burst: " << options.token_burst << "\n  members_max: " << options.members_max
       << "\n"
       << "storage:\n  map_size_initial_mb: 1\n  map_size_max_mb: " << options.map_size_max_mb
       << "\n  log_retained_max: " << options.log_retained_max
       << "\n  clock_skew_max_ms: " << options.clock_skew_max_ms << "\n"
       << "auth:\n  token_ttl_s: " << options.token_ttl_s << "\n"
       << "stream:\n  queue_bytes_max: " << options.stream_queue_bytes_max
       << "\n  resync_ms: " << options.stream_resync_ms
       << "\n  connections_max: " << options.stream_connections_max
       << "\n  presence_grace_ms: " << options.presence_grace_ms
       << "\n  presence_lease_ms: " << options.presence_lease_ms << "\n";
  if (tls)
    yaml << "tls:\n  certificate_file: \"" << options.tls_certificate_file
         << "\"\n  private_key_file: \"" << options.tls_private_key_file << "\"\n";
  if (options.connectors > 0)
    yaml << "webhooks:\n  allow_loopback: true\n  backoff_initial_ms: 100\n"
         << "  backoff_max_ms: 1000\n  timeout_ms: 2000\n";
  yaml << "files:\n  upload_expiry_s: " << options.files_upload_expiry_s
       << "\n  tenant_quota_bytes: " << options.files_tenant_quota_bytes << "\n";
  if (options.files_size_max > 0) yaml << "  size_max: " << options.files_size_max << "\n";
  yaml << "tenants:\n";
  for (const std::string tenant : {kTenant, kOtherTenant})
    yaml << "  - {id: " << tenant << ", admin_clients: [{client_id: " << admin_client_id(tenant)
         << ", secret_hash: \"" << admin_secret_hash() << "\"}]}\n";
  yaml << "nodes:\n"
       << "  - {name: frontend-1, role: frontend, host: 127.0.0.1, endpoints: {";
  const char* separator = "";
  for (const auto& [endpoint, port] : ports_["frontend-1"]) {
    yaml << separator << endpoint << ": " << port;
    separator = ", ";
  }
  yaml << "}}\n"
       << "  - {name: router-1, role: router, host: 127.0.0.1, endpoints: {rpc: "
       << ports_["router-1"]["rpc"] << ", metrics: " << ports_["router-1"]["metrics"];
  if (channels) yaml << ", channels: " << ports_["router-1"]["channels"];
  yaml << "}}\n";
  for (int i = 2; i <= options.frontends; ++i) {
    const std::string name = "frontend-" + std::to_string(i);
    ports_[name]["http"] = ports[next++];
    yaml << "  - {name: " << name
         << ", role: frontend, host: 127.0.0.1, endpoints: {http: " << ports_[name]["http"]
         << "}}\n";
  }
  for (int i = 1; i <= options.storage_nodes; ++i) {
    const std::string name = "storage-" + std::to_string(i);
    ports_[name]["rpc"] = ports[next++];
    ports_[name]["events"] = ports[next++];
    ports_[name]["metrics"] = ports[next++];
    ports_[name]["chunks"] = ports[next++];
    yaml << "  - {name: " << name
         << ", role: storage, host: 127.0.0.1, endpoints: {rpc: " << ports_[name]["rpc"]
         << ", chunks: " << ports_[name]["chunks"];
    if (options.storage_events) yaml << ", events: " << ports_[name]["events"];
    yaml << ", metrics: " << ports_[name]["metrics"] << "}}\n";
  }
  for (int i = 1; i <= options.connectors; ++i) {
    const std::string name = "connector-" + std::to_string(i);
    ports_[name]["http"] = ports[next++];
    ports_[name]["metrics"] = ports[next++];
    yaml << "  - {name: " << name
         << ", role: connector, host: 127.0.0.1, endpoints: {http: " << ports_[name]["http"]
         << ", metrics: " << ports_[name]["metrics"] << "}}\n";
  }
  if (channels) yaml << options.channels_yaml << "\n";
  topology_text_ = yaml.str();
  topology_path_ = write_file("topology.yaml", topology_text_);
}

void TestCluster::set_provider_url(const std::string& url) {
  static const std::string kPlaceholder = "{{PROVIDER}}";
  std::string text = topology_text_;
  for (auto at = text.find(kPlaceholder); at != std::string::npos;
       at = text.find(kPlaceholder, at + url.size()))
    text.replace(at, kPlaceholder.size(), url);
  write_file("topology.yaml", text);
}

TestCluster::~TestCluster() {
  if (up_pid_ > 0) stop_process(up_pid_);
  for (auto& [name, pid] : node_pids_)
    if (pid > 0) stop_process(pid);
}

std::filesystem::path TestCluster::write_file(const std::string& name,
                                              const std::string& text) const {
  const auto path = dir_.path() / name;
  std::ofstream(path) << text;
  return path;
}

std::filesystem::path TestCluster::log_path(const std::string& process) const {
  return dir_.path() / (process + ".log");
}

std::string TestCluster::read_log(const std::string& process) const {
  std::ifstream in(log_path(process));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::uint16_t TestCluster::port_of(const std::string& node, const std::string& endpoint) const {
  return ports_.at(node).at(endpoint);
}

pid_t TestCluster::spawn(const std::vector<std::string>& args, const std::string& log_name,
                         const std::vector<std::string>& environment) {
  return spawn_chat4all(args, log_path(log_name), environment);
}

bool TestCluster::wait_exit(pid_t pid, std::chrono::milliseconds timeout, int* status) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    const pid_t done = waitpid(pid, status, WNOHANG);
    if (done == pid) return true;
    if (done < 0) return true;  // not our child any more
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

void TestCluster::stop_process(pid_t pid) {
  int status = 0;
  kill(pid, SIGCONT);  // a paused process cannot act on SIGTERM
  kill(pid, SIGTERM);
  if (!wait_exit(pid, std::chrono::seconds(15), &status)) {
    kill(pid, SIGKILL);
    wait_exit(pid, std::chrono::seconds(5), &status);
  }
}

void TestCluster::start_all() {
  up_pid_ = spawn({"up", topology_path_.string()}, "up");
}

bool TestCluster::stop_all() {
  if (up_pid_ <= 0) return false;
  int status = 0;
  kill(up_pid_, SIGTERM);
  bool exited = wait_exit(up_pid_, std::chrono::seconds(20), &status);
  if (!exited) {
    kill(up_pid_, SIGKILL);
    wait_exit(up_pid_, std::chrono::seconds(5), &status);
  }
  up_pid_ = -1;
  return exited && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

pid_t TestCluster::start_node(const std::string& name,
                              const std::vector<std::string>& environment) {
  const pid_t pid =
      spawn({"node", "--topology", topology_path_.string(), "--name", name}, name, environment);
  node_pids_[name] = pid;
  return pid;
}

pid_t TestCluster::start_node_from(const std::filesystem::path& topology, const std::string& name) {
  const pid_t pid = spawn({"node", "--topology", topology.string(), "--name", name}, name);
  node_pids_[name] = pid;
  return pid;
}

std::uint16_t TestCluster::reserve_port(const std::string& node, const std::string& endpoint) {
  return ports_[node][endpoint] = free_ports(1).front();
}

void TestCluster::signal_node(const std::string& name, int signal) {
  kill(node_pids_.at(name), signal);
}

void TestCluster::kill_node(const std::string& name) {
  const pid_t pid = node_pids_.at(name);
  kill(pid, SIGKILL);
  int status = 0;
  wait_exit(pid, std::chrono::seconds(5), &status);
  node_pids_[name] = -1;
}

void TestCluster::present_key(zmq::socket_t& socket, const std::string& as,
                              const std::string& server) const {
  const Topology topology = load_topology(topology_path_);
  const auto own = curve::load_or_create_key_pair(curve::secret_key_file(topology, as));
  socket.set(zmq::sockopt::curve_publickey, own.public_key);
  socket.set(zmq::sockopt::curve_secretkey, own.secret_key);
  socket.set(zmq::sockopt::curve_serverkey, curve::public_key_of(topology, *topology.find(server)));
}

void TestCluster::serve_as(zmq::socket_t& socket, const std::string& as) const {
  const Topology topology = load_topology(topology_path_);
  socket.set(zmq::sockopt::curve_server, 1);
  socket.set(zmq::sockopt::curve_secretkey,
             curve::load_or_create_key_pair(curve::secret_key_file(topology, as)).secret_key);
}

double TestCluster::metric(const std::string& node, const std::string& name) const {
  const auto result = http_request(port_of(node, "metrics"), "GET", "/metrics");
  std::istringstream lines(result.body);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  return -1;
}

bool TestCluster::wait_ready(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string alice;
  while (Clock::now() < deadline) {
    if (http_request(http_port_, "GET", "/healthz", "", {}, std::chrono::seconds(1)).status ==
        200) {
      bool users = true;
      for (const auto& user : kUsers) users = users && create_user(user);
      if (users && alice.empty()) alice = token();
      // Ready means every storage node stores: probe a conversation each leads.
      bool all = !alice.empty();
      for (int i = 1; i <= options_.storage_nodes && all; ++i) {
        const std::string owner = "storage-" + std::to_string(i);
        std::string& conversation = probe_conversations_[owner];
        if (conversation.empty()) conversation = conversation_owned_by(owner, alice);
        all = !conversation.empty() &&
              send_text(alice, conversation, "probe", "probe-" + owner).status == 202;
      }
      if (all) return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

bool TestCluster::owns(const std::string& node, const std::string& conversation_id) const {
  std::vector<std::string> storage_nodes;
  for (int i = 1; i <= options_.storage_nodes; ++i)
    storage_nodes.push_back("storage-" + std::to_string(i));
  const Ring ring(storage_nodes, kPartitionCount, options_.replication_factor);
  return ring.replicas(ring.partition_of(conversation_id)).front() == node;
}

std::string TestCluster::conversation_owned_by(const std::string& node, const std::string& token) {
  // Each try lands on `node` with a chance of about one in storage_nodes.
  for (int attempt = 0; attempt < 100; ++attempt) {
    const std::string id = create_conversation(token, {"bob"});
    if (id.empty()) return "";
    if (owns(node, id)) return id;
  }
  return "";
}

std::string TestCluster::admin_token(const std::string& tenant) {
  std::string& token = admin_tokens_[tenant];
  if (!token.empty()) return token;
  const auto result = http_request(http_port_, "POST", "/v1/auth/token",
                                   nlohmann::json{{"grant_type", "client_credentials"},
                                                  {"tenant_id", tenant},
                                                  {"client_id", admin_client_id(tenant)},
                                                  {"client_secret", kAdminSecret}}
                                       .dump(),
                                   bearer(""));
  if (result.status == 200) token = result.json().value("access_token", "");
  return token;
}

bool TestCluster::create_user(const std::string& user_id, const std::string& tenant) {
  const std::string admin = admin_token(tenant);
  if (admin.empty()) return false;
  const auto result = http_request(
      http_port_, "POST", "/v1/users",
      nlohmann::json{{"user_id", user_id}, {"password", kPassword}}.dump(), bearer(admin));
  return result.status == 201 || result.status == 409;
}

std::string TestCluster::token(const std::string& user, const std::string& tenant) {
  const auto result = http_request(
      http_port_, "POST", "/v1/auth/token",
      nlohmann::json{{"tenant_id", tenant}, {"user_id", user}, {"password", kPassword}}.dump(),
      bearer(""));
  if (result.status != 200) return "";
  return result.json().value("access_token", "");
}

std::string TestCluster::create_conversation(const std::string& token,
                                             const std::vector<std::string>& members,
                                             const std::string& type) {
  const auto result =
      http_request(http_port_, "POST", "/v1/conversations",
                   nlohmann::json{{"type", type}, {"members", members}}.dump(), bearer(token));
  if (result.status != 201 && result.status != 200) return "";
  return result.json().value("conversation_id", "");
}

HttpResult TestCluster::send_text(const std::string& token, const std::string& conversation_id,
                                  const std::string& text, const std::string& message_id) {
  nlohmann::json body = {{"conversation_id", conversation_id},
                         {"payload", {{"type", "text"}, {"text", text}}}};
  if (!message_id.empty()) body["message_id"] = message_id;
  return http_request(http_port_, "POST", "/v1/messages", body.dump(), bearer(token));
}

HttpResult TestCluster::history(const std::string& token, const std::string& conversation_id,
                                const std::string& query) {
  return http_request(
      http_port_, "GET",
      "/v1/conversations/" + conversation_id + "/messages" + (query.empty() ? "" : "?" + query), "",
      {{"Authorization", "Bearer " + token}});
}

std::pair<int, std::string> run_chat4all(const std::vector<std::string>& args) {
  TempDir scratch;
  const auto err_path = scratch.path() / "output";
  const pid_t pid = spawn_chat4all(args, err_path);
  int status = 0;
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (Clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return {-1, "timed out"};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::ifstream in(err_path);
  std::stringstream text;
  text << in.rdbuf();
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, text.str()};
}

bool ProviderSim::available() {
  const char* path = std::getenv("PATH");
  if (!path) return false;
  std::istringstream dirs(path);
  for (std::string dir; std::getline(dirs, dir, ':');)
    if (!dir.empty() && ::access((std::filesystem::path(dir) / "node").c_str(), X_OK) == 0)
      return true;
  return false;
}

ProviderSim::ProviderSim(TestCluster& cluster, ProviderSimOptions options)
    : log_path_(cluster.log_path("provider-sim")) {
  const std::string script =
      (std::filesystem::path(CHAT4ALL_SOURCE_DIR) / "tools/provider-sim/provider-sim.mjs").string();
  const std::string callback =
      "http://127.0.0.1:" + std::to_string(cluster.port_of(options.callback_node, "http")) +
      "/channels/";
  const std::vector<std::string> args = {"node",
                                         script,
                                         "--port",
                                         "0",
                                         "--latency-ms",
                                         std::to_string(options.latency_ms),
                                         "--jitter-ms",
                                         std::to_string(options.jitter_ms),
                                         "--callback-delay-ms",
                                         std::to_string(options.callback_delay_ms),
                                         "--app-secret",
                                         options.app_secret,
                                         "--seed",
                                         std::to_string(options.seed),
                                         "--whatsapp-callback",
                                         callback + "whatsapp/webhook",
                                         "--instagram-callback",
                                         callback + "instagram/webhook"};
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);
    const int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(fd, STDOUT_FILENO);
    ::dup2(fd, STDERR_FILENO);
    std::vector<char*> argv;
    for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    execvp("node", argv.data());
    _exit(127);
  }
  if (pid_ < 0) throw std::runtime_error("fork failed");
  // stdout holds exactly one line: "provider-sim listening on http://HOST:PORT".
  static const std::string kListening = "provider-sim listening on ";
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline) {
    const std::string log = read_log();
    const auto at = log.find(kListening);
    const auto end = at == std::string::npos ? at : log.find('\n', at);
    if (end != std::string::npos) {
      url_ = log.substr(at + kListening.size(), end - at - kListening.size());
      port_ = static_cast<std::uint16_t>(std::stoi(url_.substr(url_.rfind(':') + 1)));
      cluster.set_provider_url(url_);
      return;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("provider-sim exited: " + log);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  throw std::runtime_error("provider-sim did not start within 10 s: " + read_log());
}

ProviderSim::~ProviderSim() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  int status = 0;
  while (waitpid(pid_, &status, WNOHANG) == 0) {
    if (Clock::now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

HttpResult ProviderSim::get(const std::string& path) const {
  return http_request(port_, "GET", path, "", {}, std::chrono::seconds(5));
}

HttpResult ProviderSim::post(const std::string& path, const nlohmann::json& body) const {
  return http_request(port_, "POST", path, body.dump(), {{"Content-Type", "application/json"}},
                      std::chrono::seconds(15));
}

std::vector<std::string> ProviderSim::sent_texts(const std::string& platform,
                                                 const std::string& to) const {
  std::vector<std::string> texts;
  const nlohmann::json body = get("/_sim/" + platform + "/sent?to=" + to).json();
  if (!body.is_object() || !body.contains("messages")) return texts;
  for (const auto& message : body["messages"])
    texts.push_back(message["text"].is_string() ? message["text"].get<std::string>() : "<no text>");
  return texts;
}

std::string ProviderSim::read_log() const {
  std::ifstream in(log_path_);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace chat4all::testing
