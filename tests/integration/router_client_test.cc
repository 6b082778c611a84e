// The frontend's RouterClient against a stand-in router: a real ZeroMQ
// ROUTER socket on a free loopback port that the test drives by hand.
#include "common/router_client.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>

#include "common/ids.h"
#include "common/transport.h"
#include "tests/integration/cluster.h"

namespace chat4all::frontend {
namespace {

using namespace std::chrono_literals;

// One callback's outcome, waited for with a bound.
class Outcome {
 public:
  RouterClient::Callback callback() {
    return [this](wire::Status status, std::optional<codec::Frame> reply) {
      std::lock_guard lock(mutex_);
      status_ = status;
      reply_type_ = reply ? std::optional(reply->header().type) : std::nullopt;
      done_.notify_all();
    };
  }
  std::optional<wire::Status> wait(std::chrono::milliseconds bound) {
    std::unique_lock lock(mutex_);
    done_.wait_for(lock, bound, [&] { return status_.has_value(); });
    return status_;
  }
  std::optional<wire::MessageType> reply_type() {
    std::lock_guard lock(mutex_);
    return reply_type_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable done_;
  std::optional<wire::Status> status_;
  std::optional<wire::MessageType> reply_type_;
};

std::string read_request(std::uint64_t request_id) {
  const wire::Header header{wire::kWireVersion, wire::MessageType::kReadRequest, request_id,
                            ids::new_trace_id()};
  return codec::encode(header, wire::ReadRequest{"c", 1, 10});
}

class StandInRouter {
 public:
  StandInRouter() : socket_(transport::context(), zmq::socket_type::router) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind("tcp://127.0.0.1:*");
    address_ = socket_.get(zmq::sockopt::last_endpoint);
  }
  const std::string& address() const { return address_; }

  // Next request within `bound`: [peer identity, frame], or empty.
  std::vector<zmq::message_t> receive(std::chrono::milliseconds bound) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    if (transport::poll(&item, 1, bound) <= 0) return {};
    return transport::receive_multipart(socket_);
  }
  void answer(const zmq::message_t& peer, const std::string& frame) {
    transport::send_multipart(socket_, {transport::view(peer), frame});
  }

 private:
  zmq::socket_t socket_;
  std::string address_;
};

// Submits warm-up requests until one reaches the stand-in router (the DEALER
// refuses sends until its connection is up). Returns every warm-up's outcome;
// each is kept alive by its callback, so a late answer never dangles.
std::vector<std::shared_ptr<Outcome>> connect_link(RouterClient& client, StandInRouter& router) {
  std::vector<std::shared_ptr<Outcome>> outcomes;
  for (std::uint64_t attempt = 1; attempt <= 100; ++attempt) {
    auto outcome = std::make_shared<Outcome>();
    outcomes.push_back(outcome);
    client.submit(attempt, read_request(attempt),
                  [outcome](wire::Status status, std::optional<codec::Frame> reply) {
                    outcome->callback()(status, std::move(reply));
                  });
    if (!router.receive(50ms).empty()) return outcomes;
  }
  return {};
}

TEST(RouterClientTest, MatchesRepliesByRequestId) {
  StandInRouter router;
  RouterClient client({router.address()}, /*request_timeout_ms=*/5000, /*pending_max=*/100);
  ASSERT_FALSE(connect_link(client, router).empty());

  Outcome outcome;
  client.submit(42, read_request(42), outcome.callback());
  auto frames = router.receive(2s);
  ASSERT_EQ(frames.size(), 2u);
  const wire::Header reply_header{wire::kWireVersion, wire::MessageType::kReadReply, 42, "t"};
  router.answer(frames[0],
                codec::encode(reply_header, wire::ReadReply{wire::Status::kOk, {}, 0, ""}));
  EXPECT_EQ(outcome.wait(2s), wire::Status::kOk);
  EXPECT_EQ(outcome.reply_type(), wire::MessageType::kReadReply);
}

TEST(RouterClientTest, TimesOutASilentRouterAndRefusesBeyondThePendingBound) {
  StandInRouter router;
  Outcome first, second, third;  // outlive the client, whose thread may still call them
  RouterClient client({router.address()}, /*request_timeout_ms=*/300, /*pending_max=*/1);
  const auto warmups = connect_link(client, router);
  ASSERT_FALSE(warmups.empty());
  // Every warm-up ends (refused, or timed out) and frees its slot.
  for (const auto& warmup : warmups) ASSERT_TRUE(warmup->wait(2s).has_value());

  client.submit(10, read_request(10), first.callback());
  ASSERT_FALSE(router.receive(2s).empty());
  client.submit(11, read_request(11), second.callback());
  // At the bound the refusal is immediate, not after the timeout.
  EXPECT_EQ(second.wait(0ms), wire::Status::kUnavailable);
  EXPECT_FALSE(first.wait(0ms).has_value());
  EXPECT_EQ(first.wait(3s), wire::Status::kTimeout);

  // The slot is free again.
  client.submit(12, read_request(12), third.callback());
  EXPECT_FALSE(router.receive(2s).empty());
}

TEST(RouterClientTest, NoConnectedRouterIsUnavailableAtOnce) {
  const auto ports = testing::free_ports(1);
  RouterClient client({"tcp://127.0.0.1:" + std::to_string(ports[0])}, 5000, 100);
  Outcome outcome;
  client.submit(1, read_request(1), outcome.callback());
  EXPECT_EQ(outcome.wait(1s), wire::Status::kUnavailable);
}

}  // namespace
}  // namespace chat4all::frontend
