// The channel host's link to the routers (schema/wire.h kConnectorStatus, kDeliveryJob,
// kDeliveryResult): one DEALER per router, routing id = this node's name, connected to the
// router's "channels" endpoint; one frame per message.
//
// One thread of its own owns every socket. It hands each job it receives to the job handler
// (on that thread: the handler must be quick), sends the results other threads post, and sends a
// ConnectorStatus to every router every status interval and right after status_changed().
//
// Bounded: at most `outbox_frames_max` results wait for the thread; a result past the bound, or
// one the socket will not take, is dropped and counted (the router's lease on the job runs out
// and it tries again). Nothing queues for a router that is down (ZMQ_IMMEDIATE).
//
// Thread-safety: post_result() and status_changed() from any thread; start() and stop() from the
// owner's thread, once each, in that order.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/metrics.h"
#include "schema/records.h"

namespace chat4all::connector {

struct RouterLinkOptions {
  std::uint32_t status_interval_ms = 500;
  std::size_t outbox_frames_max = 10'000;
};

class RouterLink {
 public:
  // A job from router number `router` (its index in the addresses given).
  using JobHandler =
      std::function<void(std::size_t router, const wire::Header& header, wire::DeliveryJob job)>;
  // The channels to report, read on the link's thread at each status.
  using StatusSource = std::function<std::vector<wire::ChannelCapacity>()>;

  RouterLink(std::string connector, std::vector<std::string> router_addresses,
             RouterLinkOptions options, JobHandler on_job, StatusSource channels);
  ~RouterLink();  // stops
  RouterLink(const RouterLink&) = delete;
  RouterLink& operator=(const RouterLink&) = delete;

  void start();
  // Joins the thread; results still waiting are not sent. Idempotent.
  void stop();

  // Answers the job `job_header` came with, on the DEALER it came from.
  void post_result(std::size_t router, const wire::Header& job_header, wire::DeliveryResult result);
  // Sends a status at once (a breaker or connectedness changed).
  void status_changed();

  std::size_t routers() const { return addresses_.size(); }

 private:
  struct Outgoing {
    std::size_t router = 0;
    std::string frame;
  };
  void run();
  void wake();
  std::string status_frame();

  const std::string connector_;
  const std::vector<std::string> addresses_;
  const RouterLinkOptions options_;
  const JobHandler on_job_;
  const StatusSource channels_;
  int wake_fd_ = -1;
  std::atomic<bool> stopping_{false};

  std::mutex mutex_;
  std::deque<Outgoing> outbox_;  // guarded by mutex_
  bool status_dirty_ = false;    // guarded by mutex_

  Counter& outbox_dropped_;
  Counter& frames_rejected_;
  std::thread thread_;
};

}  // namespace chat4all::connector
