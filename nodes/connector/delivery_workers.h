// The channel host's delivery side: takes each job the router link hands over into a free slot
// of its channel (or answers at once why not), sends it through the channel's adapter on a
// worker thread, and posts the result back.
//
// A job is answered "busy" at once (not an attempt: the router tries again) when its channel is
// not hosted here, not connected, its breaker refuses, or all of its slots are busy. A delivery
// id accepted before (AcceptedDeliveries) is answered "accepted" again without a send. After an
// accepted send the platform's id is indexed (kIndexChannelRef) and, for platforms without
// delivery reports, the message is marked DELIVERED, both before the result goes back.
//
// Threads: per channel, `slots()` workers (at most that many jobs wait or run; no queue beyond
// the slots). A worker blocks on its adapter's send, then (bounded by storage_timeout_ms) on the
// two storage steps of an accepted send: the slot stays taken until the result is posted, so the
// router never sends more than a channel can take.
//
// The decisions (admit, settle, result_of) are free functions of the channel's state and the
// time given, for tests.
//
// Thread-safety: offer() from the router link's thread; start() and join() from the owner's.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/json_log.h"
#include "common/storage_client.h"
#include "nodes/connector/accepted_deliveries.h"
#include "nodes/connector/hosted_channel.h"

namespace chat4all::connector {

// Takes a slot of `channel` for `work` and queues it for a worker, or says why not ("no free
// slot", "circuit breaker open"). `breaker_changed`: the breaker's state changed (a probe went
// out of half-open).
std::optional<std::string> admit(HostedChannel& channel, DeliveryWork& work, std::int64_t now_ms,
                                 bool& breaker_changed);

// Frees the slot of a send that ended and tells the breaker how it went; `verdict` false: the
// platform was not asked, the breaker learns nothing. True when the breaker's state changed.
bool settle(HostedChannel& channel, const SendResult& sent, bool verdict, std::int64_t now_ms);

// The result the router gets for a send that ended so.
wire::DeliveryResult result_of(const std::string& job_id, const SendResult& sent,
                               std::uint32_t duration_ms);

class DeliveryWorkers {
 public:
  using PostResult =
      std::function<void(std::size_t router, const wire::Header& job_header, wire::DeliveryResult)>;

  DeliveryWorkers(std::vector<HostedChannel*> channels, StorageClient& storage,
                  AcceptedDeliveries& accepted, StopSignal& stop, std::uint32_t storage_timeout_ms,
                  PostResult post_result, std::function<void()> status_changed);
  DeliveryWorkers(const DeliveryWorkers&) = delete;
  DeliveryWorkers& operator=(const DeliveryWorkers&) = delete;

  // A job for `channel` (nullptr: not hosted here) from router number `router`: queued for a
  // worker, or answered at once.
  void offer(HostedChannel* channel, std::size_t router, const wire::Header& header,
             wire::DeliveryJob job);

  void start();
  // After the stop signal: wakes the workers and joins them. Jobs still queued are abandoned
  // (no result: the router's lease covers them); a send in flight is waited for (bounded by its
  // transport timeout) and its result not sent.
  void join();

 private:
  void run(HostedChannel& channel);
  void deliver(HostedChannel& channel, DeliveryWork work);
  void record_accepted(const HostedChannel& channel, const wire::DeliveryJob& job,
                       const SendResult& sent);

  const std::vector<HostedChannel*> channels_;
  StorageClient& storage_;
  AcceptedDeliveries& accepted_;
  StopSignal& stop_;
  const std::uint32_t storage_timeout_ms_;
  const PostResult post_result_;
  const std::function<void()> status_changed_;
  Log log_{"channel_host"};
  std::vector<std::thread> threads_;
};

}  // namespace chat4all::connector
