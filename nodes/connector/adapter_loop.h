// The channel host's adapter side: per channel, one thread that connects the adapter (again
// every connect_retry_ms until it succeeds) and then, for platforms that hand out updates only
// when asked (Telegram's getUpdates), polls it in a loop and has each batch of updates stored
// before it asks for the next.
//
// A batch that could not be stored is stored again every poll_retry_ms, up to poll_retries_max
// times, then given up and logged (the platform has handed it over and will not send it again).
// A poll that throws is tried again after poll_retry_ms.
//
// Thread-safety: start() and join() from the owner's thread; the threads stop at the host's stop
// signal (a long poll is waited for, up to its timeout).
#pragma once

#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "common/json_log.h"
#include "nodes/connector/hosted_channel.h"

namespace chat4all::connector {

struct AdapterLoopOptions {
  std::uint32_t connect_retry_ms = 5000;
  std::uint32_t poll_retry_ms = 1000;
  std::uint32_t poll_retries_max = 60;
};

class AdapterLoops {
 public:
  // Stores `events` of `channel`, then calls `done` once (true: stored, or deliberately dropped;
  // false: worth storing again), from any thread; never after the stop signal.
  using Ingest = std::function<void(HostedChannel& channel, std::vector<InboundEvent> events,
                                    std::function<void(bool)> done)>;

  AdapterLoops(std::vector<HostedChannel*> channels, AdapterLoopOptions options, StopSignal& stop,
               Ingest ingest, std::function<void()> status_changed);
  AdapterLoops(const AdapterLoops&) = delete;
  AdapterLoops& operator=(const AdapterLoops&) = delete;

  void start();
  void join();  // after the stop signal

 private:
  void run(HostedChannel& channel);
  // Stores one polled batch, again as long as it fails (bounded); false when stopping.
  bool store(HostedChannel& channel, const std::vector<InboundEvent>& events);
  // One attempt, waited for (the thread has nothing else to do); nullopt when stopping.
  std::optional<bool> store_once(HostedChannel& channel, std::vector<InboundEvent> events);

  const std::vector<HostedChannel*> channels_;
  const AdapterLoopOptions options_;
  StopSignal& stop_;
  const Ingest ingest_;
  const std::function<void()> status_changed_;
  Log log_{"channel_host"};
  std::vector<std::thread> threads_;
};

}  // namespace chat4all::connector
