#include "nodes/connector/delivery_workers.h"

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>

#include "common/check.h"
#include "common/codec.h"
#include "common/ids.h"

namespace chat4all::connector {

namespace {

using SteadyClock = std::chrono::steady_clock;

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             SteadyClock::now().time_since_epoch())
      .count();
}

}  // namespace

std::optional<std::string> admit(HostedChannel& channel, DeliveryWork& work, std::int64_t now_ms,
                                 bool& breaker_changed) {
  breaker_changed = false;
  std::lock_guard lock(channel.mutex);
  if (channel.busy >= channel.slots()) return "no free slot";
  const auto before = channel.breaker.state(now_ms);
  const bool allowed = channel.breaker.allow(now_ms);
  breaker_changed = before != channel.breaker.state(now_ms);
  if (!allowed) return "circuit breaker open";
  ++channel.busy;
  channel.busy_slots.add(1);
  channel.work.push_back(std::move(work));
  channel.work_ready.notify_one();
  return std::nullopt;
}

bool settle(HostedChannel& channel, const SendResult& sent, bool verdict, std::int64_t now_ms) {
  std::lock_guard lock(channel.mutex);
  CHAT4ALL_CHECK(channel.busy > 0, "a send that ends holds a slot of its channel");
  const auto before = channel.breaker.state(now_ms);
  if (!verdict)
    channel.breaker.on_abandoned();
  else if (sent.outcome == SendResult::Outcome::kRetry)
    channel.breaker.on_failure(now_ms);
  else
    channel.breaker.on_success(now_ms);
  // The slot is free before the result leaves, so that the router's next job finds it free.
  --channel.busy;
  channel.busy_slots.add(-1);
  return before != channel.breaker.state(now_ms);
}

wire::DeliveryResult result_of(const std::string& job_id, const SendResult& sent,
                               std::uint32_t duration_ms) {
  wire::DeliveryResult result;
  result.job_id = job_id;
  result.status_code = sent.status_code;
  result.duration_ms = duration_ms;
  switch (sent.outcome) {
    case SendResult::Outcome::kAccepted:
      result.outcome = "accepted";
      result.provider_message_id = sent.provider_message_id;
      result.delivered = sent.delivered;
      break;
    case SendResult::Outcome::kRetry:
      result.outcome = "retry";
      result.error = sent.error;
      result.retry_after_ms = sent.retry_after_ms;
      break;
    case SendResult::Outcome::kRejected:
      result.outcome = "rejected";
      result.error = sent.error;
      break;
  }
  return result;
}

DeliveryWorkers::DeliveryWorkers(std::vector<HostedChannel*> channels, StorageClient& storage,
                                 AcceptedDeliveries& accepted, StopSignal& stop,
                                 std::uint32_t storage_timeout_ms, PostResult post_result,
                                 std::function<void()> status_changed)
    : channels_(std::move(channels)),
      storage_(storage),
      accepted_(accepted),
      stop_(stop),
      storage_timeout_ms_(storage_timeout_ms),
      post_result_(std::move(post_result)),
      status_changed_(std::move(status_changed)) {}

void DeliveryWorkers::offer(HostedChannel* channel, std::size_t router, const wire::Header& header,
                            wire::DeliveryJob job) {
  wire::DeliveryResult result;
  result.job_id = job.job_id;
  if (channel) {
    if (auto accepted = accepted_.find(job.delivery_id)) {
      channel->deduplicated.add();
      result.outcome = "accepted";
      result.provider_message_id = std::move(accepted->provider_message_id);
      result.delivered = accepted->delivered;
      return post_result_(router, header, std::move(result));
    }
  }
  result.outcome = "busy";
  if (!channel) {
    result.error = "channel not hosted here";
    return post_result_(router, header, std::move(result));
  }
  if (!channel->connected.load()) {
    result.error = "channel not connected";
    channel->busy_answers.add();
    return post_result_(router, header, std::move(result));
  }
  DeliveryWork work{router, header, std::move(job)};
  bool breaker_changed = false;
  auto refused = admit(*channel, work, steady_ms(), breaker_changed);
  if (breaker_changed) status_changed_();
  if (!refused) return;
  result.error = std::move(*refused);
  channel->busy_answers.add();
  post_result_(router, header, std::move(result));
}

void DeliveryWorkers::start() {
  for (HostedChannel* channel : channels_)
    for (std::uint32_t i = 0; i < channel->slots(); ++i)
      threads_.emplace_back([this, channel] { run(*channel); });
}

void DeliveryWorkers::join() {
  for (HostedChannel* channel : channels_) {
    std::lock_guard lock(channel->mutex);
    channel->work_ready.notify_all();
  }
  for (auto& thread : threads_) thread.join();
  threads_.clear();
}

void DeliveryWorkers::run(HostedChannel& channel) {
  while (true) {
    DeliveryWork work;
    {
      std::unique_lock lock(channel.mutex);
      channel.work_ready.wait(lock, [&] { return stop_.stopping() || !channel.work.empty(); });
      if (stop_.stopping()) {
        // Queued jobs are abandoned: no result, the router's lease handles them.
        for (std::size_t i = 0; i < channel.work.size(); ++i) {
          channel.breaker.on_abandoned();
          --channel.busy;
          channel.busy_slots.add(-1);
        }
        channel.work.clear();
        return;
      }
      work = std::move(channel.work.front());
      channel.work.pop_front();
    }
    deliver(channel, std::move(work));
  }
}

void DeliveryWorkers::deliver(HostedChannel& channel, DeliveryWork work) {
  const wire::DeliveryJob& job = work.job;
  OutboundMessage message{job.delivery_id,  job.tenant_id,       job.conversation_id, job.seq,
                          job.message_id,   job.sender_id,       job.recipient_id,    job.address,
                          job.payload.text, job.payload.file_id, job.metadata};
  const auto started = SteadyClock::now();
  SendResult sent;
  bool verdict = true;  // false: the platform was not asked, the breaker learns nothing
  try {
    if (job.payload.type == "text") {
      sent = channel.adapter->send_message(message);
    } else if (job.payload.type == "file") {
      sent = channel.adapter->send_file(message);
    } else {
      verdict = false;
      sent.outcome = SendResult::Outcome::kRejected;
      sent.error = "unknown payload type '" + job.payload.type + "'";
    }
  } catch (const std::exception& e) {
    sent = {};
    sent.outcome = SendResult::Outcome::kRetry;
    sent.error = std::string("adapter failed: ") + e.what();
  }
  const auto duration_ms = static_cast<std::uint32_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - started).count());

  if (sent.outcome == SendResult::Outcome::kAccepted) record_accepted(channel, job, sent);

  wire::DeliveryResult result = result_of(job.job_id, sent, duration_ms);
  switch (sent.outcome) {
    case SendResult::Outcome::kAccepted:
      channel.accepted.add();
      break;
    case SendResult::Outcome::kRetry:
      channel.retry.add();
      break;
    case SendResult::Outcome::kRejected:
      channel.rejected.add();
      break;
  }
  if (settle(channel, sent, verdict, steady_ms())) {
    log_.info("breaker_changed", {{"channel", channel.spec.name},
                                  {"state", [&] {
                                     std::lock_guard lock(channel.mutex);
                                     return std::string(channel.breaker.state_name(steady_ms()));
                                   }()}});
    status_changed_();
  }
  if (stop_.stopping()) return;  // nobody would send it
  post_result_(work.router, work.header, std::move(result));
}

// Before "accepted" goes back: the platform's id is indexed (so that its status reports and
// replies find the message) and, where the platform reports no deliveries, the message is marked
// DELIVERED. Both are waited for, bounded; a failure is logged and the result goes anyway (the
// send happened; sending it again would not mend the index).
void DeliveryWorkers::record_accepted(const HostedChannel& channel, const wire::DeliveryJob& job,
                                      const SendResult& sent) {
  accepted_.remember(job.delivery_id, {sent.provider_message_id, sent.delivered});
  struct Wait {
    std::mutex mutex;
    std::condition_variable done;
    int open = 0;
  };
  auto wait = std::make_shared<Wait>();
  auto finish = [this, wait, delivery_id = job.delivery_id](const char* step, wire::Status status) {
    if (status != wire::Status::kOk)
      log_.warn(
          "accepted_record_failed",
          {{"delivery_id", delivery_id}, {"step", step}, {"status", codec::status_name(status)}});
    std::lock_guard lock(wait->mutex);
    --wait->open;
    wait->done.notify_all();
  };
  const bool index = !sent.provider_message_id.empty();
  {
    std::lock_guard lock(wait->mutex);
    wait->open = (index ? 1 : 0) + (sent.delivered ? 1 : 0);
  }
  if (index) {
    wire::ChannelRef ref{channel.spec.name, job.address,         sent.provider_message_id,
                         job.tenant_id,     job.conversation_id, job.message_id,
                         job.recipient_id,  ids::now_ms()};
    storage_.command<StorageClient::Empty>(
        wire::channel_address_key(channel.spec.name, job.address),
        wire::CommandKind::kIndexChannelRef, ref,
        [finish](StorageOutcome<StorageClient::Empty> outcome) {
          finish("index_channel_ref", outcome.status);
        });
  }
  if (sent.delivered) {
    wire::MarkState mark{job.tenant_id,         job.conversation_id, job.recipient_id,
                         wire::kStateDelivered, job.message_id,      0};
    storage_.command<wire::MarkStateResult>(
        job.conversation_id, wire::CommandKind::kMarkState, mark,
        [finish](StorageOutcome<wire::MarkStateResult> outcome) {
          finish("mark_delivered", outcome.status);
        });
  }
  std::unique_lock lock(wait->mutex);
  if (!wait->done.wait_for(lock, std::chrono::milliseconds(storage_timeout_ms_),
                           [&] { return wait->open <= 0; }))
    log_.warn("accepted_record_timeout", {{"delivery_id", job.delivery_id}});
}

}  // namespace chat4all::connector
