#include "common/curve.h"

#include <cstring>
#include <fstream>
#include <stdexcept>

#include "common/metrics.h"
#include "common/secret_file.h"
#include "common/transport.h"

namespace chat4all::curve {

namespace {

std::atomic<NodeSecurity*> process_security{nullptr};

constexpr std::size_t kZ85KeyLength = 40;
constexpr std::size_t kBinaryKeyLength = 32;
constexpr auto kPollInterval = std::chrono::milliseconds(100);  // how soon threads see a stop

std::string decode_key(const std::string& z85) {
  std::uint8_t binary[kBinaryKeyLength];
  if (z85.size() != kZ85KeyLength || !zmq_z85_decode(binary, z85.c_str()))
    throw std::invalid_argument("not a Z85 Curve key: '" + z85 + "'");
  return std::string(reinterpret_cast<const char*>(binary), kBinaryKeyLength);
}

std::string encode_key(const std::string& binary) {
  char z85[kZ85KeyLength + 1];
  if (binary.size() != kBinaryKeyLength ||
      !zmq_z85_encode(z85, reinterpret_cast<const std::uint8_t*>(binary.data()), binary.size()))
    return "";
  return z85;
}

// At most one line a second, saying how many were left out before it: a refused peer retries
// every 100 ms (ZeroMQ's reconnect interval), which must not flood the log. Counting is not
// throttled. One per thread.
class LogGate {
 public:
  // True when a line may be written now; `left_out` is then how many were not since the last.
  bool open(std::uint64_t& left_out) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::seconds(1)) {
      ++left_out_;
      return false;
    }
    last_ = now;
    left_out = left_out_;
    left_out_ = 0;
    return true;
  }

 private:
  std::chrono::steady_clock::time_point last_{};
  std::uint64_t left_out_ = 0;
};

const char* handshake_failure_reason(std::uint16_t event) {
  switch (event) {
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
      return "protocol";  // a plaintext peer lands here (mechanism mismatch)
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
      return "auth";  // the ZAP handler refused the key
    default:
      return "no_detail";  // e.g. the peer hung up: a plaintext one that saw CURVE first
  }
}

}  // namespace

bool supported() {
  return zmq_has("curve") != 0;
}

std::filesystem::path secret_key_file(const Topology& topology, const std::string& node_name) {
  return topology.node_data_dir(node_name) / "secrets" / "curve.key";
}

KeyPair load_or_create_key_pair(const std::filesystem::path& secret_file) {
  if (!std::filesystem::exists(secret_file)) {
    char public_key[kZ85KeyLength + 1], secret_key[kZ85KeyLength + 1];
    if (zmq_curve_keypair(public_key, secret_key) != 0)
      throw std::runtime_error("cannot make a Curve key pair: " +
                               std::string(zmq_strerror(zmq_errno())));
    create_secret_file_once(secret_file, std::string(secret_key) + "\n");
  }
  std::ifstream in(secret_file);
  std::string secret_key;
  if (!(in >> secret_key)) throw std::runtime_error(secret_file.string() + ": cannot read");
  char public_key[kZ85KeyLength + 1];
  if (secret_key.size() != kZ85KeyLength || zmq_curve_public(public_key, secret_key.c_str()) != 0)
    throw std::runtime_error(secret_file.string() + ": not a Z85 Curve secret key (40 characters)");
  return {public_key, secret_key};
}

std::string public_key_of(const Topology& topology, const NodeSpec& node,
                          const std::string& self_name) {
  if (!node.curve_public_key.empty()) return node.curve_public_key;
  const auto file = secret_key_file(topology, node.name);
  if (std::filesystem::exists(file) || node.name == self_name || is_local_host(node.host))
    return load_or_create_key_pair(file).public_key;
  throw TopologyError(topology.source_path.string() + ":" + std::to_string(node.line) + ": node '" +
                      node.name +
                      "' runs on another host: list its curve_public_key (`chat4all keygen` on "
                      "that host prints it)");
}

std::vector<std::pair<std::string, std::string>> ensure_local_key_pairs(const Topology& topology,
                                                                        const std::string& host) {
  std::vector<std::pair<std::string, std::string>> made;
  for (const auto& node : topology.nodes) {
    const bool here = host.empty() ? is_local_host(node.host) : node.host == host;
    if (!here) continue;
    made.emplace_back(node.name,
                      load_or_create_key_pair(secret_key_file(topology, node.name)).public_key);
  }
  return made;
}

void ZapPolicy::add_node(const std::string& public_key_z85, const std::string& name,
                         NodeRole role) {
  nodes_[decode_key(public_key_z85)] = {name, role};
}

void ZapPolicy::add_domain(const std::string& domain, std::set<NodeRole> admitted) {
  domains_[domain] = std::move(admitted);
}

ZapPolicy::Decision ZapPolicy::decide(const std::string& domain, const std::string& mechanism,
                                      const std::vector<std::string>& credentials) const {
  const auto admitted = domains_.find(domain);
  if (admitted == domains_.end()) return {Verdict::kUnknownDomain, ""};
  if (mechanism != "CURVE") return {Verdict::kNotCurve, ""};
  if (credentials.size() != 1) return {Verdict::kUnknownKey, ""};
  const auto known = nodes_.find(credentials.front());
  if (known == nodes_.end()) return {Verdict::kUnknownKey, ""};
  if (!admitted->second.contains(known->second.role))
    return {Verdict::kWrongRole, known->second.name};
  return {Verdict::kAdmitted, known->second.name};
}

const char* verdict_name(ZapPolicy::Verdict verdict) {
  switch (verdict) {
    case ZapPolicy::Verdict::kAdmitted:
      return "admitted";
    case ZapPolicy::Verdict::kUnknownDomain:
      return "socket without a ZAP domain";
    case ZapPolicy::Verdict::kNotCurve:
      return "not CURVE";
    case ZapPolicy::Verdict::kUnknownKey:
      return "unknown key";
    case ZapPolicy::Verdict::kWrongRole:
      return "key of a role this socket does not admit";
  }
  return "?";
}

// The monitor of one server socket: a PAIR socket on the monitor's inproc endpoint, read by a
// thread of its own until the NodeSecurity stops.
struct NodeSecurity::Watch {
  std::thread thread;
};

NodeSecurity::NodeSecurity(const Topology& topology, const NodeSpec& self)
    : topology_(topology), self_(self), enabled_(topology.curve.enabled) {
  if (!enabled_) {
    process_security = this;
    log_.warn("curve_off",
              {{"detail",
                "the topology turns Curve off: traffic between nodes is plaintext and any peer "
                "that reaches a node's ports is served"}});
    return;
  }
  if (!supported()) throw std::runtime_error("this libzmq has no Curve support");
  own_ = load_or_create_key_pair(secret_key_file(topology, self.name));
  if (!self.curve_public_key.empty() && self.curve_public_key != own_.public_key)
    throw std::runtime_error(secret_key_file(topology, self.name).string() +
                             ": its public key is not the curve_public_key the topology lists "
                             "for " +
                             self.name);
  for (const auto& node : topology.nodes) {
    const std::string key =
        node.name == self.name ? own_.public_key : public_key_of(topology, node, self.name);
    policy_.add_node(key, node.name, node.role);
    for (const auto& [endpoint, port] : node.endpoints)
      server_keys_[node.zmq_address(endpoint)] = key;
  }

  zmq::socket_t handler(transport::context(), zmq::socket_type::rep);
  handler.set(zmq::sockopt::linger, 0);
  try {
    handler.bind(kZapEndpoint);
  } catch (const zmq::error_t& error) {
    throw std::runtime_error(std::string("cannot start the ZAP handler on ") + kZapEndpoint + ": " +
                             error.what());
  }
  zap_thread_ = std::thread(
      [this, socket = std::move(handler)]() mutable { run_zap_handler(std::move(socket)); });
  process_security = this;
  log_.info("curve_on", {{"public_key", own_.public_key}});
}

NodeSecurity::~NodeSecurity() {
  NodeSecurity* self = this;
  process_security.compare_exchange_strong(self, nullptr);
  stopping_ = true;
  if (zap_thread_.joinable()) zap_thread_.join();
  for (auto& watch : watches_) watch->thread.join();
}

void NodeSecurity::serve(zmq::socket_t& socket, const std::string& domain,
                         std::set<NodeRole> admitted) {
  if (!enabled_) return;
  socket.set(zmq::sockopt::curve_server, 1);
  socket.set(zmq::sockopt::curve_secretkey, own_.secret_key);
  socket.set(zmq::sockopt::zap_domain, domain);

  std::lock_guard lock(mutex_);
  policy_.add_domain(domain, std::move(admitted));
  const std::string monitor_endpoint =
      "inproc://curve-monitor." + domain + "." + std::to_string(watches_.size());
  if (zmq_socket_monitor(socket.handle(), monitor_endpoint.c_str(),
                         ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                             ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                             ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) != 0)
    throw std::runtime_error("cannot monitor the " + domain +
                             " socket: " + zmq_strerror(zmq_errno()));
  zmq::socket_t monitor(transport::context(), zmq::socket_type::pair);
  monitor.set(zmq::sockopt::linger, 0);
  monitor.connect(monitor_endpoint);
  std::map<std::string, Counter*> failures;
  for (const char* reason : {"protocol", "auth", "no_detail"})
    failures[reason] = &metrics().counter(
        "chat4all_curve_handshakes_failed_total",
        "ZeroMQ handshakes refused on a server socket: keys it does not admit (auth), "
        "plaintext peers and broken greetings (protocol, or no_detail when the peer hung up)",
        "socket=\"" + domain + "\",reason=\"" + reason + "\"");
  auto watch = std::make_unique<Watch>();
  watch->thread = std::thread([this, domain, failures, monitor = std::move(monitor)]() mutable {
    LogGate gate;
    zmq::pollitem_t item{monitor.handle(), 0, ZMQ_POLLIN, 0};
    while (!stopping_.load()) {
      if (transport::poll(&item, 1, kPollInterval) <= 0) continue;
      const auto frames = transport::receive_multipart(monitor);
      // Frame 0: the event (16 bits) and its value (32 bits); frame 1: the listening endpoint.
      if (frames.size() < 2 || frames[0].size() < 6) continue;
      std::uint16_t event;
      std::uint32_t value;
      std::memcpy(&event, frames[0].data(), sizeof event);
      std::memcpy(&value, static_cast<const char*>(frames[0].data()) + 2, sizeof value);
      const char* reason = handshake_failure_reason(event);
      failures.at(reason)->add();
      std::uint64_t left_out = 0;
      if (!gate.open(left_out)) continue;
      log_.warn("handshake_failed", {{"socket", domain},
                                     {"not_logged_before", left_out},
                                     {"endpoint", std::string(transport::view(frames[1]))},
                                     {"reason", reason},
                                     {"code", value}});
    }
  });
  watches_.push_back(std::move(watch));
}

void NodeSecurity::connect(zmq::socket_t& socket, const std::string& address) const {
  if (enabled_) {
    std::string server_key;
    {
      std::lock_guard lock(mutex_);
      const auto found = server_keys_.find(address);
      if (found == server_keys_.end())
        throw std::runtime_error("no node of the topology listens on " + address);
      server_key = found->second;
    }
    socket.set(zmq::sockopt::curve_publickey, own_.public_key);
    socket.set(zmq::sockopt::curve_secretkey, own_.secret_key);
    // Read at connect time, so one socket can connect to several servers with their own keys.
    socket.set(zmq::sockopt::curve_serverkey, server_key);
  }
  socket.connect(address);
}

void NodeSecurity::learn(const Topology& next) {
  if (!enabled_) return;
  for (const auto& node : next.nodes) {
    if (node.name == self_.name) continue;
    std::string key;
    try {
      key = public_key_of(next, node, self_.name);
    } catch (const std::exception& error) {
      log_.warn("peer_key_unknown", {{"node", node.name}, {"error", error.what()}});
      continue;
    }
    std::lock_guard lock(mutex_);
    policy_.add_node(key, node.name, node.role);
    for (const auto& [endpoint, port] : node.endpoints)
      server_keys_[node.zmq_address(endpoint)] = key;
  }
}

void NodeSecurity::run_zap_handler(zmq::socket_t socket) {
  LogGate gate;
  zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
  while (!stopping_.load()) {
    if (transport::poll(&item, 1, kPollInterval) <= 0) continue;
    const auto frames = transport::receive_multipart(socket);
    if (frames.empty()) continue;
    // RFC 27: version, request id, domain, address, identity, mechanism, credentials...
    const auto frame = [&](std::size_t i) {
      return i < frames.size() ? std::string(transport::view(frames[i])) : std::string();
    };
    std::vector<std::string> credentials;
    for (std::size_t i = 6; i < frames.size(); ++i) credentials.push_back(frame(i));
    ZapPolicy::Decision decision;
    if (frames.size() >= 6 && frame(0) == "1.0") {
      std::lock_guard lock(mutex_);
      decision = policy_.decide(frame(2), frame(5), credentials);
    }
    const bool admitted = decision.verdict == ZapPolicy::Verdict::kAdmitted;
    std::uint64_t left_out = 0;
    if (!admitted && gate.open(left_out))
      log_.warn("peer_refused",
                {{"socket", frame(2)},
                 {"not_logged_before", left_out},
                 {"peer", frame(3)},
                 {"mechanism", frame(5)},
                 {"key", credentials.size() == 1 ? encode_key(credentials.front()) : ""},
                 {"key_of", decision.node_name},
                 {"reason", verdict_name(decision.verdict)}});
    // A REP socket must answer every request, even a malformed one, to take the next.
    transport::send_multipart(
        socket, {"1.0", frame(1), admitted ? "200" : "400",
                 admitted ? "OK" : verdict_name(decision.verdict), decision.node_name, ""});
  }
}

void serve(zmq::socket_t& socket, const std::string& domain, std::set<NodeRole> admitted) {
  if (NodeSecurity* security = process_security.load())
    security->serve(socket, domain, std::move(admitted));
}

void learn(const Topology& next) {
  if (NodeSecurity* security = process_security.load()) security->learn(next);
}

void connect(zmq::socket_t& socket, const std::string& address) {
  if (NodeSecurity* security = process_security.load())
    security->connect(socket, address);
  else
    socket.connect(address);
}

}  // namespace chat4all::curve
