// The router following partition leaders: a real `chat4all node` router
// process whose three storage nodes are ZeroMQ ROUTER sockets this test
// drives by hand, and a DEALER standing in for the frontend. Each storage
// answer is chosen by the test, so every hop the router makes is observed.
#include <gtest/gtest.h>

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/codec.h"
#include "common/ids.h"
#include "common/ring.h"
#include "common/topology.h"
#include "common/transport.h"
#include "nodes/router/router_node.h"
#include "tests/integration/cluster.h"

namespace chat4all::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// A request as a storage node receives it: [router identity][token][frame].
struct Arrival {
  std::string node;  // empty: nothing arrived in time
  std::vector<zmq::message_t> frames;

  explicit operator bool() const { return !node.empty(); }
  std::string token() const { return std::string(transport::view(frames.at(1))); }
  wire::Header header() const {
    auto frame = codec::decode(transport::view(frames.at(2)));
    return frame ? frame->header() : wire::Header{};
  }
};

class FakeStorage {
 public:
  FakeStorage(const TestCluster& cluster, std::string name, std::uint16_t port)
      : name_(std::move(name)), socket_(transport::context(), zmq::socket_type::router) {
    socket_.set(zmq::sockopt::linger, 0);
    cluster.serve_as(socket_, name_);
    socket_.bind("tcp://127.0.0.1:" + std::to_string(port));
  }
  const std::string& name() const { return name_; }
  zmq::socket_t& socket() { return socket_; }

 private:
  std::string name_;
  zmq::socket_t socket_;
};

// One router process with its fake storage nodes and a fake frontend.
class RouterHarness {
 public:
  explicit RouterHarness(std::uint32_t router_timeout_ms, std::set<std::string> down = {})
      : cluster_(options(router_timeout_ms)),
        topology_(load_topology(cluster_.topology_path())),
        ring_(topology_.storage_node_names(), topology_.partition_count,
              topology_.replication_factor, topology_.virtual_nodes),
        frontend_(transport::context(), zmq::socket_type::dealer) {
    // Bound before the router starts, so that its first connect succeeds.
    for (const auto& name : topology_.storage_node_names())
      if (!down.count(name)) storage_.emplace_back(cluster_, name, cluster_.port_of(name, "rpc"));
    cluster_.start_node("router-1");
    frontend_.set(zmq::sockopt::linger, 0);
    cluster_.present_key(frontend_, "frontend-1", "router-1");
    frontend_.connect("tcp://127.0.0.1:" + std::to_string(cluster_.port_of("router-1", "rpc")));
  }

  const Ring& ring() const { return ring_; }
  std::vector<std::string> replicas_of(const std::string& conversation) const {
    return ring_.replicas(ring_.partition_of(conversation));
  }
  PartitionId partition_of(const std::string& conversation) const {
    return ring_.partition_of(conversation);
  }

  // A conversation starting with `prefix` whose preferred leader is `node`.
  std::string conversation_led_by(const std::string& node, const std::string& prefix) const {
    for (int i = 0; i < 100000; ++i) {
      std::string candidate = prefix + "-" + std::to_string(i);
      if (replicas_of(candidate).front() == node) return candidate;
    }
    throw std::runtime_error("no conversation is led by " + node);
  }

  std::uint64_t send_append(const std::string& conversation) {
    const std::uint64_t id = next_request_id_++;
    const wire::Header header{wire::kWireVersion, wire::MessageType::kAppendRequest, id,
                              ids::new_trace_id()};
    const wire::AppendRequest body{conversation, "m-" + std::to_string(id), "alice",
                                   {"bob"},      {"text", "hello"},         0};
    transport::send_multipart(frontend_, {codec::encode(header, body)});
    return id;
  }

  std::uint64_t send_read(const std::string& conversation) {
    const std::uint64_t id = next_request_id_++;
    const wire::Header header{wire::kWireVersion, wire::MessageType::kReadRequest, id,
                              ids::new_trace_id()};
    transport::send_multipart(frontend_,
                              {codec::encode(header, wire::ReadRequest{conversation, 1, 10})});
    return id;
  }

  // The next request of the test's frontend (appends and reads) any fake storage node receives
  // within `bound`. Commands and queries are the router's own work beside forwarding (its
  // locator indexing reads outboxes): left unanswered, as from storage that is busy.
  Arrival next_arrival(std::chrono::milliseconds bound) {
    const auto deadline = Clock::now() + bound;
    std::vector<zmq::pollitem_t> items;
    for (auto& storage : storage_) items.push_back({storage.socket().handle(), 0, ZMQ_POLLIN, 0});
    while (true) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() < 0 || transport::poll(items.data(), items.size(), left) <= 0) return {};
      for (std::size_t i = 0; i < items.size(); ++i) {
        if (!(items[i].revents & ZMQ_POLLIN)) continue;
        auto frames = transport::receive_multipart(storage_[i].socket());
        if (frames.size() != 3) continue;
        Arrival arrival{storage_[i].name(), std::move(frames)};
        const wire::MessageType type = arrival.header().type;
        if (type == wire::MessageType::kAppendRequest || type == wire::MessageType::kReadRequest)
          return arrival;
      }
    }
  }

  // `from` answers `arrival` (which need not have reached `from`) with `reply`.
  void answer(const std::string& from, const Arrival& arrival, const std::string& reply) {
    for (auto& storage : storage_)
      if (storage.name() == from)
        transport::send_multipart(storage.socket(),
                                  {transport::view(arrival.frames.at(0)), arrival.token(), reply});
  }
  void answer(const Arrival& arrival, const std::string& reply) {
    answer(arrival.node, arrival, reply);
  }

  static std::string ok(const Arrival& arrival, const std::string& detail) {
    wire::Header header = arrival.header();
    header.type = wire::MessageType::kAppendReply;
    return codec::encode(header, wire::AppendReply{wire::Status::kOk, "", "", 1, false, detail});
  }
  static std::string read_ok(const Arrival& arrival, const std::string& detail) {
    wire::Header header = arrival.header();
    header.type = wire::MessageType::kReadReply;
    return codec::encode(header, wire::ReadReply{wire::Status::kOk, {}, 0, detail});
  }
  static std::string error(const Arrival& arrival, wire::Status status, const std::string& hint,
                           PartitionId partition, std::uint64_t epoch) {
    wire::Header header = arrival.header();
    header.type = wire::MessageType::kErrorReply;
    return codec::encode(header, wire::ErrorReply{status, "fake storage", hint, partition, epoch});
  }

  // What the router sent back to the frontend within `bound`, if anything.
  std::optional<codec::Frame> frontend_reply(std::chrono::milliseconds bound) {
    zmq::pollitem_t item{frontend_.handle(), 0, ZMQ_POLLIN, 0};
    if (transport::poll(&item, 1, bound) <= 0) return std::nullopt;
    auto frames = transport::receive_multipart(frontend_);
    if (frames.size() != 1) return std::nullopt;
    return codec::decode(transport::view(frames[0]));
  }

  // Waits until the router is connected to every bound fake storage node. A
  // probe of a node's partition that finds it unconnected makes the router
  // guess another leader; the other nodes then name the probed node (epoch
  // 0), which puts the cache back where a fresh router has it. Done when a
  // probe reaches its node at the first hop.
  bool warm_up() {
    const auto deadline = Clock::now() + 20s;
    for (auto& storage : storage_) {
      const std::string conversation = conversation_led_by(storage.name(), "warm-up");
      for (bool direct = false; !direct;) {
        send_append(conversation);
        bool first_hop = true;
        for (bool answered = false; !answered;) {
          if (Clock::now() > deadline) return false;
          if (auto arrival = next_arrival(20ms)) {
            if (arrival.node == storage.name()) {
              direct = first_hop;
              answer(arrival, ok(arrival, "warm-up"));
            } else {
              answer(arrival, error(arrival, wire::Status::kNotOwner, storage.name(),
                                    partition_of(conversation), 0));
            }
            first_hop = false;
          }
          answered = frontend_reply(0ms).has_value();
        }
      }
    }
    return true;
  }

  // A counter or gauge of the router's /metrics; -1 when absent.
  double metric(const std::string& name) const { return cluster_.metric("router-1", name); }

  std::string router_log() const { return cluster_.read_log("router-1"); }

 private:
  static ClusterOptions options(std::uint32_t router_timeout_ms) {
    ClusterOptions options;
    options.storage_nodes = 3;
    options.replication_factor = 3;
    options.router_timeout_ms = router_timeout_ms;
    return options;
  }

  TestCluster cluster_;
  Topology topology_;
  Ring ring_;
  std::vector<FakeStorage> storage_;
  zmq::socket_t frontend_;
  std::uint64_t next_request_id_ = 1000;
};

// The reply the frontend got: its type, request id, status and detail.
struct Seen {
  wire::MessageType type = wire::MessageType::kErrorReply;
  std::uint64_t request_id = 0;
  wire::Status status = wire::Status::kInternal;
  std::string detail;
};

std::optional<Seen> seen(const std::optional<codec::Frame>& frame) {
  if (!frame) return std::nullopt;
  Seen result;
  result.type = frame->header().type;
  result.request_id = frame->header().request_id;
  switch (result.type) {
    case wire::MessageType::kAppendReply:
      if (auto body = frame->body<wire::AppendReply>()) {
        result.status = body->status;
        result.detail = body->detail;
      }
      break;
    case wire::MessageType::kReadReply:
      if (auto body = frame->body<wire::ReadReply>()) {
        result.status = body->status;
        result.detail = body->detail;
      }
      break;
    case wire::MessageType::kErrorReply:
      if (auto body = frame->body<wire::ErrorReply>()) {
        result.status = body->status;
        result.detail = body->detail;
      }
      break;
    default:
      break;
  }
  return result;
}

constexpr auto kBound = 5s;  // generous: only a broken router waits this long
constexpr std::uint32_t kLongDeadlineMs = 20000;

TEST(RouterFailoverTest, FollowsANotOwnerHintAndGoesStraightThereNextTime) {
  RouterHarness h(kLongDeadlineMs);
  ASSERT_TRUE(h.warm_up()) << h.router_log();
  const std::string conversation = h.conversation_led_by("storage-1", "hinted");
  const auto replicas = h.replicas_of(conversation);
  const PartitionId partition = h.partition_of(conversation);
  const double changes = h.metric("chat4all_router_leader_changes_total");
  const double retries = h.metric("chat4all_router_retries_total");

  const auto id = h.send_append(conversation);
  auto first = h.next_arrival(kBound);
  ASSERT_EQ(first.node, replicas[0]);
  // The hint names the last replica, not the next one: the router must follow
  // the hint, not ring order.
  h.answer(first, RouterHarness::error(first, wire::Status::kNotOwner, replicas[2], partition, 3));
  auto second = h.next_arrival(kBound);
  ASSERT_EQ(second.node, replicas[2]);
  EXPECT_EQ(second.token(), first.token());
  h.answer(second, RouterHarness::ok(second, "from " + replicas[2]));
  auto reply = seen(h.frontend_reply(kBound));
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->type, wire::MessageType::kAppendReply);
  EXPECT_EQ(reply->request_id, id);
  EXPECT_EQ(reply->detail, "from " + replicas[2]);

  const auto next_id = h.send_append(conversation);
  auto direct = h.next_arrival(kBound);
  ASSERT_EQ(direct.node, replicas[2]);
  h.answer(direct, RouterHarness::ok(direct, "direct"));
  reply = seen(h.frontend_reply(kBound));
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->request_id, next_id);
  EXPECT_EQ(reply->detail, "direct");

  EXPECT_EQ(h.metric("chat4all_router_leader_changes_total"), changes + 1);
  EXPECT_EQ(h.metric("chat4all_router_retries_total"), retries + 1);
  EXPECT_NE(h.router_log().find("\"leader_changed\""), std::string::npos);
}

TEST(RouterFailoverTest, AHintOfAnOlderEpochDoesNotReplaceTheCache) {
  RouterHarness h(kLongDeadlineMs);
  ASSERT_TRUE(h.warm_up()) << h.router_log();
  const std::string conversation = h.conversation_led_by("storage-2", "epochs");
  const auto replicas = h.replicas_of(conversation);
  const PartitionId partition = h.partition_of(conversation);

  // Learn (replicas[2], epoch 5).
  h.send_append(conversation);
  auto arrival = h.next_arrival(kBound);
  ASSERT_EQ(arrival.node, replicas[0]);
  h.answer(arrival,
           RouterHarness::error(arrival, wire::Status::kNotOwner, replicas[2], partition, 5));
  arrival = h.next_arrival(kBound);
  ASSERT_EQ(arrival.node, replicas[2]);
  h.answer(arrival, RouterHarness::ok(arrival, "epoch 5"));
  ASSERT_TRUE(h.frontend_reply(kBound));

  // The cached leader names another node for epoch 4: the request moves on
  // in ring order (after replicas[2] comes replicas[0]), not to the hint.
  const auto stale_id = h.send_append(conversation);
  arrival = h.next_arrival(kBound);
  ASSERT_EQ(arrival.node, replicas[2]);
  h.answer(arrival,
           RouterHarness::error(arrival, wire::Status::kNotOwner, replicas[1], partition, 4));
  arrival = h.next_arrival(kBound);
  ASSERT_EQ(arrival.node, replicas[0]);
  h.answer(arrival, RouterHarness::ok(arrival, "served"));
  auto reply = seen(h.frontend_reply(kBound));
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->request_id, stale_id);
  EXPECT_EQ(reply->status, wire::Status::kOk);

  // Still (replicas[2], 5).
  h.send_append(conversation);
  arrival = h.next_arrival(kBound);
  ASSERT_EQ(arrival.node, replicas[2]);
  // A newer epoch does replace it.
  h.answer(arrival,
           RouterHarness::error(arrival, wire::Status::kNotOwner, replicas[1], partition, 6));
  arrival = h.next_arrival(kBound);
  ASSERT_EQ(arrival.node, replicas[1]);
  h.answer(arrival, RouterHarness::ok(arrival, "epoch 6"));
  ASSERT_TRUE(h.frontend_reply(kBound));
  h.send_append(conversation);
  arrival = h.next_arrival(kBound);
  EXPECT_EQ(arrival.node, replicas[1]);
}

TEST(RouterFailoverTest, UnavailableAndUnknownLeaderMoveToTheNextReplica) {
  RouterHarness h(kLongDeadlineMs);
  ASSERT_TRUE(h.warm_up()) << h.router_log();
  const std::string conversation = h.conversation_led_by("storage-3", "election");
  const auto replicas = h.replicas_of(conversation);
  const PartitionId partition = h.partition_of(conversation);

  const auto id = h.send_append(conversation);
  auto arrival = h.next_arrival(kBound);
  ASSERT_EQ(arrival.node, replicas[0]);
  h.answer(arrival, RouterHarness::error(arrival, wire::Status::kUnavailable, "", partition, 2));
  arrival = h.next_arrival(kBound);
  ASSERT_EQ(arrival.node, replicas[1]);
  h.answer(arrival, RouterHarness::error(arrival, wire::Status::kNotOwner, "", partition, 2));
  arrival = h.next_arrival(kBound);
  ASSERT_EQ(arrival.node, replicas[2]);
  h.answer(arrival, RouterHarness::ok(arrival, "elected"));
  const auto reply = seen(h.frontend_reply(kBound));
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->request_id, id);
  EXPECT_EQ(reply->type, wire::MessageType::kAppendReply);
  EXPECT_EQ(reply->detail, "elected");
}

TEST(RouterFailoverTest, SkipsAPreferredLeaderThatIsDown) {
  RouterHarness h(kLongDeadlineMs, {"storage-1"});
  ASSERT_TRUE(h.warm_up()) << h.router_log();
  const std::string conversation = h.conversation_led_by("storage-1", "down");
  const auto replicas = h.replicas_of(conversation);

  const auto id = h.send_read(conversation);
  auto arrival = h.next_arrival(kBound);
  ASSERT_EQ(arrival.node, replicas[1]);
  h.answer(arrival, RouterHarness::read_ok(arrival, "replica 2"));
  auto reply = seen(h.frontend_reply(kBound));
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->type, wire::MessageType::kReadReply);
  EXPECT_EQ(reply->request_id, id);

  // The cache moved off the dead node: the next request goes to the live
  // replica first, without a refused send and a retry.
  const double retries = h.metric("chat4all_router_retries_total");
  const auto next_id = h.send_read(conversation);
  arrival = h.next_arrival(kBound);
  ASSERT_EQ(arrival.node, replicas[1]);
  h.answer(arrival, RouterHarness::read_ok(arrival, "replica 2 again"));
  reply = seen(h.frontend_reply(kBound));
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->request_id, next_id);
  EXPECT_EQ(reply->detail, "replica 2 again");
  EXPECT_EQ(h.metric("chat4all_router_retries_total"), retries);
}

TEST(RouterFailoverTest, RunsOutOfAttemptsWithUnavailableBeforeTheDeadline) {
  RouterHarness h(kLongDeadlineMs);
  ASSERT_TRUE(h.warm_up()) << h.router_log();
  const std::string conversation = h.conversation_led_by("storage-1", "leaderless");
  const auto replicas = h.replicas_of(conversation);
  const PartitionId partition = h.partition_of(conversation);

  const auto id = h.send_append(conversation);
  std::vector<std::string> visited;
  std::optional<Seen> reply;
  const auto give_up_at = Clock::now() + kBound;
  while (!reply && Clock::now() < give_up_at) {
    if (auto arrival = h.next_arrival(10ms)) {
      visited.push_back(arrival.node);
      h.answer(arrival,
               RouterHarness::error(arrival, wire::Status::kUnavailable, "", partition, 0));
    }
    reply = seen(h.frontend_reply(0ms));
  }
  ASSERT_TRUE(reply) << h.router_log();
  EXPECT_EQ(reply->request_id, id);
  EXPECT_EQ(reply->status, wire::Status::kUnavailable);
  EXPECT_NE(
      reply->detail.find("partition " + std::to_string(partition) + " has no reachable leader"),
      std::string::npos)
      << reply->detail;
  ASSERT_EQ(visited.size(), static_cast<std::size_t>(router::kAttemptsMax));
  for (std::size_t i = 0; i < visited.size(); ++i)
    EXPECT_EQ(visited[i], replicas[i % replicas.size()]) << "attempt " << i;
  EXPECT_FALSE(h.next_arrival(300ms)) << "a retry after the answer";
}

TEST(RouterFailoverTest, TheDeadlineEndsRetriesWithATimeout) {
  // The backoffs before the last attempt add up to at least 450 ms; the
  // deadline comes first.
  RouterHarness h(200);
  ASSERT_TRUE(h.warm_up()) << h.router_log();
  const std::string conversation = h.conversation_led_by("storage-2", "slow-election");
  const PartitionId partition = h.partition_of(conversation);

  const auto id = h.send_append(conversation);
  std::size_t attempts = 0;
  std::optional<Seen> reply;
  const auto give_up_at = Clock::now() + kBound;
  while (!reply && Clock::now() < give_up_at) {
    if (auto arrival = h.next_arrival(10ms)) {
      ++attempts;
      h.answer(arrival,
               RouterHarness::error(arrival, wire::Status::kUnavailable, "", partition, 0));
    }
    reply = seen(h.frontend_reply(0ms));
  }
  ASSERT_TRUE(reply) << h.router_log();
  EXPECT_EQ(reply->request_id, id);
  EXPECT_EQ(reply->status, wire::Status::kTimeout);
  EXPECT_LT(attempts, static_cast<std::size_t>(router::kAttemptsMax));
  EXPECT_FALSE(h.next_arrival(500ms)) << "a retry after the deadline";
  EXPECT_FALSE(h.frontend_reply(0ms)) << "a second answer";
}

TEST(RouterFailoverTest, AnswersTheFrontendOnceForEachRequest) {
  RouterHarness h(kLongDeadlineMs);
  ASSERT_TRUE(h.warm_up()) << h.router_log();
  const std::string conversation = h.conversation_led_by("storage-1", "once");
  const auto replicas = h.replicas_of(conversation);
  const PartitionId partition = h.partition_of(conversation);
  const double late = h.metric("chat4all_router_late_replies_total");

  const auto id = h.send_append(conversation);
  auto first = h.next_arrival(kBound);
  ASSERT_EQ(first.node, replicas[0]);
  h.answer(first, RouterHarness::error(first, wire::Status::kNotOwner, replicas[1], partition, 1));
  auto second = h.next_arrival(kBound);
  ASSERT_EQ(second.node, replicas[1]);
  // The first node changes its mind about an attempt the router has left
  // behind, and the second answers twice: only one answer may go on.
  h.answer(replicas[0], first, RouterHarness::ok(first, "from the abandoned attempt"));
  h.answer(second, RouterHarness::ok(second, "from the leader"));
  h.answer(second, RouterHarness::ok(second, "duplicate"));

  const auto reply = seen(h.frontend_reply(kBound));
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->request_id, id);
  EXPECT_EQ(reply->detail, "from the leader");
  EXPECT_FALSE(h.frontend_reply(500ms)) << "a second answer to one request";
  EXPECT_EQ(h.metric("chat4all_router_late_replies_total"), late + 2);
}

}  // namespace
}  // namespace chat4all::testing
