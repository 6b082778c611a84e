// One channel as the connector's channel host runs it (channel_host.h): its adapter, whether it
// is connected, its circuit breaker and delivery slots, and its metrics. The four parts of the
// host share it: the router link reports it, the delivery workers fill and free its slots, the
// adapter loop connects it, and inbound ingestion counts what its platform reported.
//
// Also the host's stop signal, which every one of its threads waits on.
//
// Thread-safety: `spec`, `adapter` and the metric references are immutable; `connected` is
// atomic; the breaker, the slots and the work queue are guarded by `mutex`.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include "common/metrics.h"
#include "common/topology.h"
#include "nodes/connector/channel_adapter.h"
#include "nodes/connector/circuit_breaker.h"
#include "schema/records.h"

namespace chat4all::connector {

// A job a worker of the channel is to send, and where its result goes back.
struct DeliveryWork {
  std::size_t router = 0;  // index of the router link's DEALER the job came from
  wire::Header header;
  wire::DeliveryJob job;
};

struct HostedChannel {
  HostedChannel(ChannelSpec spec_in, std::unique_ptr<ChannelAdapter> adapter_in)
      : spec(std::move(spec_in)),
        adapter(std::move(adapter_in)),
        breaker(spec.breaker_failures, spec.breaker_open_ms),
        labels("channel=\"" + spec.name + "\"") {}

  // Jobs that may wait or run at once: at least one.
  std::uint32_t slots() const { return spec.concurrency > 0 ? spec.concurrency : 1; }

  Counter& sends(const char* outcome) {
    return metrics().counter("chat4all_connector_channel_sends_total",
                             "Delivery jobs answered, by channel and outcome",
                             labels + ",outcome=\"" + outcome + "\"");
  }
  Counter& inbound(const char* kind, const char* result) {
    return metrics().counter("chat4all_connector_channel_inbound_events_total",
                             "Events the platforms reported, by channel, kind and result",
                             labels + ",kind=\"" + kind + "\",result=\"" + result + "\"");
  }
  Counter& webhooks_refused(const char* reason) {
    return metrics().counter("chat4all_connector_channel_webhooks_refused_total",
                             "Webhook requests refused by the channel's adapter, by reason",
                             labels + ",reason=\"" + reason + "\"");
  }

  const ChannelSpec spec;
  const std::unique_ptr<ChannelAdapter> adapter;
  std::atomic<bool> connected{false};

  std::mutex mutex;
  std::condition_variable work_ready;
  CircuitBreaker breaker;         // guarded by mutex
  std::uint32_t busy = 0;         // slots taken (queued or sending); guarded by mutex
  std::deque<DeliveryWork> work;  // at most slots(); guarded by mutex

  const std::string labels;
  Gauge& busy_slots = metrics().gauge("chat4all_connector_channel_busy_slots",
                                      "Delivery slots taken, by channel", labels);
  Counter& accepted = sends("accepted");
  Counter& retry = sends("retry");
  Counter& rejected = sends("rejected");
  Counter& busy_answers = sends("busy");
  Counter& deduplicated = sends("deduplicated");
  Counter& messages_stored = inbound("message", "stored");
  Counter& messages_dropped = inbound("message", "dropped");
  Counter& statuses_stored = inbound("status", "stored");
  Counter& statuses_dropped = inbound("status", "dropped");
  Counter& storage_failures = inbound("any", "storage_failed");
  // Webhook requests the adapter refused: no valid signature or secret (401/403), or a verified
  // body it could not read (other 4xx).
  Counter& webhooks_unverified = webhooks_refused("unverified");
  Counter& webhooks_malformed = webhooks_refused("malformed");
};

// Set once, when the host stops; threads that wait for time or for an answer wait on it so that
// stop() never waits out their timers.
class StopSignal {
 public:
  bool stopping() const { return stopping_.load(); }
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_.store(true);
    }
    changed_.notify_all();
  }
  // Waits up to `ms`; true when stopping.
  bool wait_for(std::uint32_t ms) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return stopping_.load(); });
  }
  // Waits until `done()` (checked under the signal's lock) or stopping; true when stopping.
  // `done` turns true only through notify().
  template <typename Done>
  bool wait_until(Done done) {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return stopping_.load() || done(); });
    return stopping_.load();
  }
  // Runs `change` under the signal's lock and wakes the waiters of wait_until().
  template <typename Change>
  void notify(Change change) {
    {
      std::lock_guard lock(mutex_);
      change();
    }
    changed_.notify_all();
  }

 private:
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::condition_variable changed_;
};

}  // namespace chat4all::connector
