#include "nodes/connector/adapter_loop.h"

#include <memory>
#include <optional>

namespace chat4all::connector {

AdapterLoops::AdapterLoops(std::vector<HostedChannel*> channels, AdapterLoopOptions options,
                           StopSignal& stop, Ingest ingest, std::function<void()> status_changed)
    : channels_(std::move(channels)),
      options_(options),
      stop_(stop),
      ingest_(std::move(ingest)),
      status_changed_(std::move(status_changed)) {}

void AdapterLoops::start() {
  for (HostedChannel* channel : channels_)
    threads_.emplace_back([this, channel] { run(*channel); });
}

void AdapterLoops::join() {
  for (auto& thread : threads_) thread.join();
  threads_.clear();
}

void AdapterLoops::run(HostedChannel& channel) {
  while (!stop_.stopping()) {
    try {
      channel.adapter->connect();
      channel.connected.store(true);
      log_.info("channel_connected", {{"channel", channel.spec.name}});
      status_changed_();
      break;
    } catch (const std::exception& e) {
      log_.error("channel_connect_failed", {{"channel", channel.spec.name},
                                            {"error", e.what()},
                                            {"retry_in_ms", options_.connect_retry_ms}});
    }
    if (stop_.wait_for(options_.connect_retry_ms)) return;
  }
  std::vector<InboundEvent> events;
  while (!stop_.stopping()) {
    events.clear();
    bool more = false;
    try {
      more = channel.adapter->poll_updates(events);
    } catch (const std::exception& e) {
      log_.warn("channel_poll_failed", {{"channel", channel.spec.name}, {"error", e.what()}});
      if (stop_.wait_for(options_.poll_retry_ms)) return;
      continue;
    }
    if (!events.empty() && !store(channel, events)) return;
    if (!more) return;  // the adapter does not poll (or stopped polling)
  }
}

bool AdapterLoops::store(HostedChannel& channel, const std::vector<InboundEvent>& events) {
  for (std::uint32_t tries = 1;; ++tries) {
    const auto stored = store_once(channel, events);
    if (!stored) return false;
    if (*stored) return true;
    if (tries >= options_.poll_retries_max) {
      log_.error("channel_poll_batch_dropped",
                 {{"channel", channel.spec.name}, {"events", events.size()}});
      return true;
    }
    if (stop_.wait_for(options_.poll_retry_ms)) return false;
  }
}

std::optional<bool> AdapterLoops::store_once(HostedChannel& channel,
                                             std::vector<InboundEvent> events) {
  // Shared with the callback, which may run after this thread stopped waiting (at stop).
  auto outcome = std::make_shared<std::optional<bool>>();
  ingest_(channel, std::move(events),
          [this, outcome](bool stored) { stop_.notify([&] { *outcome = stored; }); });
  if (stop_.wait_until([&] { return outcome->has_value(); })) return std::nullopt;
  return *outcome;
}

}  // namespace chat4all::connector
