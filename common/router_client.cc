#include "common/router_client.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <stdexcept>

#include "common/curve.h"
#include "common/deadline_queue.h"
#include "common/metrics.h"
#include "common/topology_change.h"
#include "common/transport.h"

namespace chat4all {

using Clock = std::chrono::steady_clock;

RouterClient::RouterClient(std::vector<std::string> router_addresses,
                           std::uint32_t request_timeout_ms, std::uint32_t pending_requests_max)
    : router_addresses_(std::move(router_addresses)),
      timeout_(request_timeout_ms),
      pending_max_(pending_requests_max) {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) throw std::runtime_error("eventfd failed");
  thread_ = std::thread([this] { run(); });
}

RouterClient::~RouterClient() {
  stopping_ = true;
  const std::uint64_t one = 1;
  (void)::write(wake_fd_, &one, sizeof one);
  thread_.join();
  ::close(wake_fd_);
}

void RouterClient::submit(std::uint64_t request_id, std::string frame, Callback callback) {
  bool first_in_inbox = false;
  {
    std::lock_guard lock(mutex_);
    if (in_flight_ < pending_max_) {
      ++in_flight_;
      first_in_inbox = inbox_.empty();
      inbox_.push_back({request_id, std::move(frame), std::move(callback)});
      callback = nullptr;
    }
  }
  if (callback) {
    // At the bound: refuse now rather than queue without limit.
    callback(wire::Status::kUnavailable, std::nullopt);
    return;
  }
  // The client thread takes the whole inbox at once, so only the submission
  // that finds it empty needs to wake it: one syscall per burst, not per request.
  if (first_in_inbox) {
    const std::uint64_t one = 1;
    (void)::write(wake_fd_, &one, sizeof one);
  }
}

void RouterClient::set_routers(std::vector<std::string> router_addresses) {
  {
    std::lock_guard lock(mutex_);
    routers_wanted_ = std::move(router_addresses);
  }
  const std::uint64_t one = 1;
  (void)::write(wake_fd_, &one, sizeof one);
}

void RouterClient::run() {
  Counter& rejected_frames = transport::rejected_frames_counter();
  Counter& timeouts = metrics().counter("chat4all_frontend_upstream_timeouts_total",
                                        "Requests the routers did not answer in time");
  Counter& unavailable = metrics().counter("chat4all_frontend_upstream_unavailable_total",
                                           "Requests refused: no router connected or at the bound");

  zmq::socket_t socket(transport::context(), zmq::socket_type::dealer);
  transport::configure(socket, static_cast<int>(pending_max_));
  socket.set(zmq::sockopt::immediate, 1);
  for (const auto& address : router_addresses_) curve::connect(socket, address);

  struct Pending {
    Callback callback;
  };
  std::unordered_map<std::uint64_t, Pending> pending;
  DeadlineQueue deadlines;
  std::vector<Submission> batch;

  auto finish = [&](std::size_t count) {
    std::lock_guard lock(mutex_);
    in_flight_ -= count;
  };

  zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0},
                             {nullptr, wake_fd_, ZMQ_POLLIN, 0}};
  while (!stopping_.load()) {
    transport::poll(items, 2, deadlines.wait_time(Clock::now(), std::chrono::milliseconds(100)));

    if (items[1].revents & ZMQ_POLLIN) {
      std::uint64_t count;
      (void)::read(wake_fd_, &count, sizeof count);
      std::optional<std::vector<std::string>> wanted;
      {
        std::lock_guard lock(mutex_);
        batch.swap(inbox_);
        wanted.swap(routers_wanted_);
      }
      if (wanted) {
        const EndpointDiff diff = diff_endpoints(router_addresses_, *wanted);
        for (const auto& address : diff.disconnect) socket.disconnect(address);
        for (const auto& address : diff.connect) {
          try {
            curve::connect(socket, address);
          } catch (const std::exception& error) {
            log_.warn("router_connect_failed", {{"router", address}, {"error", error.what()}});
          }
        }
        if (!diff.empty())
          log_.info("routers_changed", {{"connected", diff.connect.size()},
                                        {"disconnected", diff.disconnect.size()},
                                        {"routers", wanted->size()}});
        router_addresses_ = std::move(*wanted);
      }
      const auto deadline = Clock::now() + timeout_;
      for (auto& submission : batch) {
        if (!transport::send_multipart(socket, {submission.frame})) {
          unavailable.add();
          finish(1);
          submission.callback(wire::Status::kUnavailable, std::nullopt);
          continue;
        }
        pending.emplace(submission.request_id, Pending{std::move(submission.callback)});
        deadlines.push(deadline, submission.request_id);
      }
      batch.clear();
    }

    if (items[0].revents & ZMQ_POLLIN) {
      for (int drained = 0; drained < 4096; ++drained) {
        auto frames = transport::receive_multipart(socket);
        if (frames.empty()) break;
        std::string why;
        std::optional<codec::Frame> frame;
        if (frames.size() == 1) frame = codec::decode(transport::view(frames[0]), &why);
        if (!frame) {
          rejected_frames.add();
          log_.debug("frame_rejected", {{"reason", frames.size() == 1 ? why : "expected 1 frame"}});
          continue;
        }
        auto it = pending.find(frame->header().request_id);
        if (it == pending.end()) continue;  // answered already (timed out)
        Callback callback = std::move(it->second.callback);
        pending.erase(it);
        finish(1);
        callback(wire::Status::kOk, std::move(frame));
      }
    }

    deadlines.expire(Clock::now(), [&](std::uint64_t request_id) {
      auto it = pending.find(request_id);
      if (it == pending.end()) return;  // answered already
      Callback callback = std::move(it->second.callback);
      pending.erase(it);
      finish(1);
      timeouts.add();
      callback(wire::Status::kTimeout, std::nullopt);
    });
    deadlines.compact(pending.size(),
                      [&](std::uint64_t request_id) { return pending.count(request_id) > 0; });
  }
}

}  // namespace chat4all
