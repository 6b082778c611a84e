#include "nodes/connector/router_link.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <utility>
#include <zmq.hpp>

#include "common/codec.h"
#include "common/curve.h"
#include "common/ids.h"
#include "common/transport.h"

namespace chat4all::connector {

namespace {
using SteadyClock = std::chrono::steady_clock;
// Jobs read from one DEALER per turn, so that one busy router cannot starve the others' turn.
constexpr int kJobsPerTurnMax = 1024;
}  // namespace

RouterLink::RouterLink(std::string connector, std::vector<std::string> router_addresses,
                       RouterLinkOptions options, JobHandler on_job, StatusSource channels)
    : connector_(std::move(connector)),
      addresses_(std::move(router_addresses)),
      options_(options),
      on_job_(std::move(on_job)),
      channels_(std::move(channels)),
      outbox_dropped_(metrics().counter("chat4all_connector_channel_results_dropped_total",
                                        "Delivery results dropped: outbox full or socket full")),
      frames_rejected_(transport::rejected_frames_counter()) {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) throw std::runtime_error("eventfd failed");
}

RouterLink::~RouterLink() {
  stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void RouterLink::start() {
  if (thread_.joinable() || stopping_.load()) return;
  thread_ = std::thread([this] { run(); });
}

void RouterLink::stop() {
  stopping_.store(true);
  wake();
  if (thread_.joinable()) thread_.join();
}

void RouterLink::wake() {
  const std::uint64_t one = 1;
  (void)::write(wake_fd_, &one, sizeof one);
}

void RouterLink::status_changed() {
  {
    std::lock_guard lock(mutex_);
    status_dirty_ = true;
  }
  wake();
}

void RouterLink::post_result(std::size_t router, const wire::Header& job_header,
                             wire::DeliveryResult result) {
  result.connector = connector_;
  const wire::Header header{wire::kWireVersion, wire::MessageType::kDeliveryResult,
                            job_header.request_id, job_header.trace_id};
  std::string frame = codec::encode(header, result);
  {
    std::lock_guard lock(mutex_);
    if (outbox_.size() >= options_.outbox_frames_max) {
      // The router's lease on the job runs out and it tries again.
      outbox_dropped_.add();
      return;
    }
    outbox_.push_back({router, std::move(frame)});
  }
  wake();
}

std::string RouterLink::status_frame() {
  wire::ConnectorStatus status;
  status.connector = connector_;
  status.channels = channels_();
  const wire::Header header{wire::kWireVersion, wire::MessageType::kConnectorStatus,
                            ids::next_request_id(), ids::new_trace_id()};
  return codec::encode(header, status);
}

void RouterLink::run() {
  std::vector<zmq::socket_t> dealers;
  for (const auto& address : addresses_) {
    zmq::socket_t socket(transport::context(), zmq::socket_type::dealer);
    transport::configure(socket, static_cast<int>(options_.outbox_frames_max));
    socket.set(zmq::sockopt::routing_id, connector_);
    // Nothing queues for a router that is down: a status would be stale, and a result is
    // covered by the router's lease on the job.
    socket.set(zmq::sockopt::immediate, 1);
    curve::connect(socket, address);
    dealers.push_back(std::move(socket));
  }
  std::vector<zmq::pollitem_t> items;
  for (auto& socket : dealers) items.push_back({socket.handle(), 0, ZMQ_POLLIN, 0});
  items.push_back({nullptr, wake_fd_, ZMQ_POLLIN, 0});

  const auto interval = std::chrono::milliseconds(options_.status_interval_ms);
  auto next_status = SteadyClock::now();
  std::deque<Outgoing> batch;
  while (!stopping_.load()) {
    auto now = SteadyClock::now();
    bool send_status = now >= next_status;
    if (!send_status) {
      transport::poll(items.data(), items.size(),
                      std::chrono::duration_cast<std::chrono::milliseconds>(next_status - now));
    }
    if (stopping_.load()) break;

    if (items.back().revents & ZMQ_POLLIN) {
      std::uint64_t count;
      (void)::read(wake_fd_, &count, sizeof count);
    }
    {
      std::lock_guard lock(mutex_);
      batch.swap(outbox_);
      send_status = send_status || std::exchange(status_dirty_, false);
    }
    for (auto& out : batch)
      if (!transport::send_multipart(dealers[out.router], {out.frame})) outbox_dropped_.add();
    batch.clear();

    for (std::size_t i = 0; i < dealers.size(); ++i) {
      if (!(items[i].revents & ZMQ_POLLIN)) continue;
      for (int drained = 0; drained < kJobsPerTurnMax; ++drained) {
        auto frames = transport::receive_multipart(dealers[i]);
        if (frames.empty()) break;
        wire::Header header;
        std::optional<wire::DeliveryJob> job;
        if (frames.size() == 1)
          job = codec::decode_as<wire::DeliveryJob>(transport::view(frames[0]),
                                                    wire::MessageType::kDeliveryJob, &header);
        if (!job) {
          frames_rejected_.add();
          continue;
        }
        on_job_(i, header, std::move(*job));
      }
    }
    // Answers the handler posted (busy, dedup hits) go out on the next turn, at once: it woke us.

    if (send_status) {
      const std::string frame = status_frame();
      for (auto& socket : dealers) (void)transport::send_multipart(socket, {frame});
      next_status = SteadyClock::now() + interval;
    }
    for (auto& item : items) item.revents = 0;
  }
}

}  // namespace chat4all::connector
