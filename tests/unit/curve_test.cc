// CurveZMQ between nodes: common/curve.h. Real sockets on loopback in this process: a storage
// node's server socket and clients presenting the keys of other nodes, of no node, or none.
#include "common/curve.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <thread>

#include "common/metrics.h"
#include "common/transport.h"
#include "tests/unit/test_util.h"

namespace chat4all::curve {
namespace {

using namespace std::chrono_literals;
using unit::TempDir;

std::string topology_text(const std::string& extra_storage_line = "",
                          const std::string& sections = "") {
  return R"(cluster:
  name: test
  replication_factor: 1
  partition_count: 4
  virtual_nodes: 4
  data_dir: data
)" + sections +
         R"(nodes:
  - name: fe-1
    role: frontend
    host: 127.0.0.1
    endpoints: {http: 18080}
  - name: router-1
    role: router
    host: 127.0.0.1
    endpoints: {rpc: 17100}
  - name: storage-1
    role: storage
    host: 127.0.0.1
    endpoints: {rpc: 17201}
)" + extra_storage_line;
}

Topology parse_in(const TempDir& dir, const std::string& text) {
  return parse_topology(text, "t.yaml", dir.path());
}

std::uint64_t failures(const std::string& socket, const std::string& reason) {
  return metrics()
      .counter("chat4all_curve_handshakes_failed_total", "",
               "socket=\"" + socket + "\",reason=\"" + reason + "\"")
      .value();
}

// Waits (bounded) until the counter moves past `before`.
bool failure_counted(const std::string& socket, const std::string& reason, std::uint64_t before) {
  for (int i = 0; i < 100; ++i) {
    if (failures(socket, reason) > before) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

// A storage node's "rpc" socket that admits routers and storage nodes.
class StorageServer {
 public:
  explicit StorageServer(NodeSecurity& security)
      : socket_(transport::context(), zmq::socket_type::router) {
    socket_.set(zmq::sockopt::linger, 0);
    security.serve(socket_, "storage.rpc", {NodeRole::kRouter, NodeRole::kStorage});
    socket_.bind("tcp://127.0.0.1:*");
    address_ = socket_.get(zmq::sockopt::last_endpoint);
  }
  const std::string& address() const { return address_; }

  // The payload of the next message, or "" when none comes within `bound`.
  std::string receive(std::chrono::milliseconds bound) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    if (transport::poll(&item, 1, bound) <= 0) return "";
    const auto frames = transport::receive_multipart(socket_);
    return frames.size() == 2 ? std::string(transport::view(frames[1])) : "";
  }

 private:
  zmq::socket_t socket_;
  std::string address_;
};

// A DEALER that presents `keys` (none: plaintext) and sends "read" to `address`.
zmq::socket_t send_read(const std::string& address, const KeyPair* keys,
                        const std::string& server_key) {
  zmq::socket_t socket(transport::context(), zmq::socket_type::dealer);
  socket.set(zmq::sockopt::linger, 0);
  if (keys) {
    socket.set(zmq::sockopt::curve_publickey, keys->public_key);
    socket.set(zmq::sockopt::curve_secretkey, keys->secret_key);
    socket.set(zmq::sockopt::curve_serverkey, server_key);
  }
  socket.connect(address);
  EXPECT_TRUE(transport::send_multipart(socket, {"read"}));
  return socket;
}

TEST(CurveKeys, MadeOnceWithMode0600AndReadBackTheSame) {
  ASSERT_TRUE(supported());
  TempDir dir;
  const auto file = dir.path() / "node" / "secrets" / "curve.key";
  const KeyPair made = load_or_create_key_pair(file);
  EXPECT_EQ(made.public_key.size(), 40u);
  EXPECT_EQ(made.secret_key.size(), 40u);
  struct stat info {};
  ASSERT_EQ(::stat(file.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  const KeyPair again = load_or_create_key_pair(file);
  EXPECT_EQ(again.public_key, made.public_key);
  EXPECT_EQ(again.secret_key, made.secret_key);
}

TEST(CurveKeys, MalformedSecretKeyFileIsAnError) {
  TempDir dir;
  unit::write_text_file(dir.path() / "curve.key", "not-a-key\n");
  EXPECT_THROW(load_or_create_key_pair(dir.path() / "curve.key"), std::runtime_error);
}

TEST(CurveKeys, ListedKeyWinsAndUnlistedRemoteNodeIsAnError) {
  TempDir dir;
  const KeyPair listed = load_or_create_key_pair(dir.path() / "elsewhere.key");
  const Topology topology = parse_in(dir, topology_text(R"(  - name: storage-2
    role: storage
    host: 10.9.9.9
    endpoints: {rpc: 17201}
    curve_public_key: ")" + listed.public_key + R"("
  - name: storage-3
    role: storage
    host: 10.9.9.8
    endpoints: {rpc: 17201}
)"));
  EXPECT_EQ(public_key_of(topology, *topology.find("storage-2")), listed.public_key);
  EXPECT_THROW(public_key_of(topology, *topology.find("storage-3")), TopologyError);
  // A local node's pair is made on first use, under its data dir.
  const std::string local = public_key_of(topology, *topology.find("router-1"));
  EXPECT_TRUE(std::filesystem::exists(secret_key_file(topology, "router-1")));
  EXPECT_EQ(load_or_create_key_pair(secret_key_file(topology, "router-1")).public_key, local);
  // keygen makes the pairs of this host's nodes whose keys are not listed.
  const auto made = ensure_local_key_pairs(topology, "");
  ASSERT_EQ(made.size(), 3u);
  EXPECT_EQ(made[1].first, "router-1");
  EXPECT_EQ(made[1].second, local);
}

TEST(CurveTopology, OnByDefaultOffWhenSaidAndKeysChecked) {
  TempDir dir;
  EXPECT_TRUE(parse_in(dir, topology_text()).curve.enabled);
  EXPECT_FALSE(parse_in(dir, topology_text("", "curve:\n  enabled: false\n")).curve.enabled);
  try {
    parse_in(dir, topology_text("    curve_public_key: short\n"));
    ADD_FAILURE() << "a malformed curve_public_key was accepted";
  } catch (const TopologyError& error) {
    EXPECT_NE(std::string(error.what()).find("curve_public_key"), std::string::npos);
  }
}

TEST(ZapPolicy, AdmitsOnlyKnownKeysOfTheDomainsRoles) {
  char public_key[41], secret_key[41];
  ASSERT_EQ(zmq_curve_keypair(public_key, secret_key), 0);
  char stranger[41];
  ASSERT_EQ(zmq_curve_keypair(stranger, secret_key), 0);
  std::uint8_t binary[32];
  zmq_z85_decode(binary, public_key);
  const std::string router_key(reinterpret_cast<char*>(binary), 32);
  zmq_z85_decode(binary, stranger);
  const std::string stranger_key(reinterpret_cast<char*>(binary), 32);

  ZapPolicy policy;
  policy.add_node(public_key, "router-1", NodeRole::kRouter);
  policy.add_domain("storage.rpc", {NodeRole::kRouter});
  policy.add_domain("storage.events", {NodeRole::kFrontend});

  const auto admitted = policy.decide("storage.rpc", "CURVE", {router_key});
  EXPECT_EQ(admitted.verdict, ZapPolicy::Verdict::kAdmitted);
  EXPECT_EQ(admitted.node_name, "router-1");
  EXPECT_EQ(policy.decide("storage.events", "CURVE", {router_key}).verdict,
            ZapPolicy::Verdict::kWrongRole);
  EXPECT_EQ(policy.decide("storage.rpc", "CURVE", {stranger_key}).verdict,
            ZapPolicy::Verdict::kUnknownKey);
  EXPECT_EQ(policy.decide("storage.rpc", "NULL", {}).verdict, ZapPolicy::Verdict::kNotCurve);
  EXPECT_EQ(policy.decide("", "CURVE", {router_key}).verdict, ZapPolicy::Verdict::kUnknownDomain);
  EXPECT_EQ(policy.decide("storage.rpc", "CURVE", {}).verdict, ZapPolicy::Verdict::kUnknownKey);
  EXPECT_THROW(policy.add_node("short", "x", NodeRole::kRouter), std::invalid_argument);
}

TEST(NodeSecurity, ServerAdmitsTheRolesItNamesAndRefusesEveryoneElse) {
  TempDir dir;
  const Topology topology = parse_in(dir, topology_text());
  NodeSecurity security(topology, *topology.find("storage-1"));
  ASSERT_TRUE(security.enabled());
  StorageServer server(security);
  const std::string server_key = public_key_of(topology, *topology.find("storage-1"));

  const KeyPair router = load_or_create_key_pair(secret_key_file(topology, "router-1"));
  auto admitted = send_read(server.address(), &router, server_key);
  EXPECT_EQ(server.receive(5000ms), "read");

  // A frontend's key on a socket for routers and storage nodes.
  const std::uint64_t auth_before = failures("storage.rpc", "auth");
  const KeyPair frontend = load_or_create_key_pair(secret_key_file(topology, "fe-1"));
  auto wrong_role = send_read(server.address(), &frontend, server_key);
  EXPECT_TRUE(failure_counted("storage.rpc", "auth", auth_before));
  EXPECT_EQ(server.receive(300ms), "");

  // A key no node of the topology has.
  const std::uint64_t unknown_before = failures("storage.rpc", "auth");
  const KeyPair stranger = load_or_create_key_pair(dir.path() / "stranger.key");
  auto unknown = send_read(server.address(), &stranger, server_key);
  EXPECT_TRUE(failure_counted("storage.rpc", "auth", unknown_before));
  EXPECT_EQ(server.receive(300ms), "");

  // A plaintext peer never gets past the greeting (the ZAP handler does not even see it).
  // Whichever side sees the mechanisms differ first ends it: a protocol error, or the peer
  // hanging up mid-handshake.
  const std::uint64_t plain_before =
      failures("storage.rpc", "protocol") + failures("storage.rpc", "no_detail");
  auto plaintext = send_read(server.address(), nullptr, "");
  bool plain_counted = false;
  for (int i = 0; i < 100 && !plain_counted; ++i) {
    plain_counted =
        failures("storage.rpc", "protocol") + failures("storage.rpc", "no_detail") > plain_before;
    if (!plain_counted) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(plain_counted);
  EXPECT_EQ(server.receive(300ms), "");
}

TEST(NodeSecurity, RefusesToStartWhenTheZapHandlerCannotBind) {
  TempDir dir;
  const Topology topology = parse_in(dir, topology_text());
  zmq::socket_t squatter(transport::context(), zmq::socket_type::rep);
  squatter.set(zmq::sockopt::linger, 0);
  squatter.bind(kZapEndpoint);
  EXPECT_THROW(NodeSecurity(topology, *topology.find("storage-1")), std::runtime_error);
}

TEST(NodeSecurity, RefusesASecretKeyThatDoesNotMatchTheListedPublicKey) {
  TempDir dir;
  const KeyPair other = load_or_create_key_pair(dir.path() / "other.key");
  const Topology topology =
      parse_in(dir, topology_text("    curve_public_key: \"" + other.public_key + "\"\n"));
  EXPECT_THROW(NodeSecurity(topology, *topology.find("storage-1")), std::runtime_error);
}

TEST(NodeSecurity, OffWhenTheTopologySaysSoAndThenPlaintextIsServed) {
  TempDir dir;
  const Topology topology = parse_in(dir, topology_text("", "curve:\n  enabled: false\n"));
  NodeSecurity security(topology, *topology.find("storage-1"));
  EXPECT_FALSE(security.enabled());
  StorageServer server(security);
  auto plaintext = send_read(server.address(), nullptr, "");
  EXPECT_EQ(server.receive(5000ms), "read");
  EXPECT_FALSE(std::filesystem::exists(secret_key_file(topology, "storage-1")));
}

}  // namespace
}  // namespace chat4all::curve
