#include "nodes/router/channel_dispatcher.h"

#include <algorithm>

#include "common/backoff.h"

namespace chat4all::router {

std::string delivery_id(const std::string& message_id, const std::string& recipient_id,
                        const std::string& channel) {
  return message_id + "/" + recipient_id + "/" + channel;
}

std::vector<Target> resolve_targets(const std::vector<std::string>& choice,
                                    const std::vector<ChannelSpec>& channels,
                                    const std::string& tenant_id, const std::string& recipient_id,
                                    const std::vector<wire::Identity>& identities) {
  auto address_on = [&](const std::string& channel) -> std::string {
    for (const auto& identity : identities)
      if (identity.channel == channel) return identity.address;
    return {};
  };
  auto serves_tenant = [&](const std::string& channel) {
    return std::any_of(channels.begin(), channels.end(), [&](const ChannelSpec& spec) {
      return spec.name == channel && spec.tenant_id == tenant_id;
    });
  };
  std::vector<Target> targets;
  const bool all = choice.empty() || (choice.size() == 1 && choice.front() == kChannelAll);
  if (all) {
    for (const auto& spec : channels) {
      if (spec.tenant_id != tenant_id) continue;
      std::string address = address_on(spec.name);
      if (!address.empty()) targets.push_back(Target{recipient_id, spec.name, std::move(address)});
    }
    return targets;
  }
  for (const auto& channel : choice) {
    if (channel == kChannelInternal) continue;  // the real-time stream delivers it
    // A channel of another tenant, or one removed from the topology since,
    // reaches nobody here: reported like a missing identity.
    targets.push_back(
        Target{recipient_id, channel, serves_tenant(channel) ? address_on(channel) : ""});
  }
  return targets;
}

ChannelDispatcher::ChannelDispatcher(std::vector<ChannelSpec> channels, DispatchLimits limits,
                                     std::uint64_t seed)
    : channels_(std::move(channels)), limits_(limits), random_(seed) {}

bool ChannelDispatcher::accepting() const {
  return targets_held_ < limits_.targets_max;
}

std::uint64_t ChannelDispatcher::cursor(std::uint32_t partition) const {
  auto it = cursors_.find(partition);
  return it == cursors_.end() ? 0 : it->second;
}

const ChannelSpec* ChannelDispatcher::spec(const std::string& channel) const {
  for (const auto& spec : channels_)
    if (spec.name == channel) return &spec;
  return nullptr;
}

Target& ChannelDispatcher::target_of(const TargetRef& ref) {
  return work_.at(ref.work_id).work.targets[ref.index];
}

wire::ChannelDeliveryUpdate ChannelDispatcher::record_for(const TargetRef& ref,
                                                          const std::string& state) const {
  const auto& work = work_.at(ref.work_id).work;
  const auto& target = work.targets[ref.index];
  wire::ChannelDeliveryUpdate update;
  auto& record = update.delivery;
  record.tenant_id = work.event.tenant_id;
  record.conversation_id = work.event.conversation_id;
  record.message_id = work.event.message_id;
  record.seq = work.event.seq;
  record.recipient_id = target.recipient_id;
  record.channel = target.channel;
  record.address = target.address;
  record.state = state;
  return update;
}

void ChannelDispatcher::emit_record(const TargetRef& ref, wire::ChannelDeliveryUpdate update,
                                    bool final) {
  RecordWrite write{next_token_++, std::move(update)};
  if (final) {
    target_of(ref).done = true;
    final_records_[write.token] = ref.work_id;
  }
  output_.records.push_back(std::move(write));
}

void ChannelDispatcher::add(RouteWork work, std::int64_t now_ms) {
  const std::uint32_t partition = work.partition;
  const std::uint64_t index = work.event.index;
  cursors_[partition] = std::max(cursors_[partition], index);
  const std::uint64_t work_id = next_work_id_++;
  WorkItem& item = work_[work_id];
  item.work = std::move(work);
  open_indexes_[partition].insert(index);
  for (std::size_t i = 0; i < item.work.targets.size(); ++i) {
    auto& target = item.work.targets[i];
    if (target.done) continue;
    ++item.unfinished;
    ++targets_held_;
    const TargetRef ref{work_id, i};
    if (target.address.empty()) {
      ++counters_.no_identity;
      auto update = record_for(ref, wire::kDeliveryNoIdentity);
      update.delivery.error = spec(target.channel)
                                  ? "the recipient has no identity on " + target.channel
                                  : "no channel '" + target.channel + "' serves this tenant";
      emit_record(ref, std::move(update), true);
      continue;
    }
    const LaneKey key{item.work.event.conversation_id, target.recipient_id, target.channel};
    Lane& lane = lanes_[key];
    lane.queue.push_back(ref);
    if (lane.queue.size() == 1) {
      lane.ready_at_ms = now_ms;
      ready_lanes_.insert(key);
    }
  }
  if (item.unfinished == 0)
    finish_target(work_id);  // nothing to do: only the ack
  else
    dispatch(now_ms);
}

void ChannelDispatcher::connector_status(const wire::ConnectorStatus& status, std::int64_t now_ms) {
  ConnectorState& state = connectors_[status.connector];
  state.last_seen_ms = now_ms;
  state.channels.clear();
  for (const auto& channel : status.channels) state.channels[channel.channel] = channel;
  dispatch(now_ms);
}

std::string ChannelDispatcher::pick_connector(const std::string& channel,
                                              std::int64_t now_ms) const {
  std::string best;
  std::int64_t best_free = 0;
  for (const auto& [name, state] : connectors_) {
    if (now_ms - state.last_seen_ms > limits_.connector_silence_ms) continue;
    auto it = state.channels.find(channel);
    if (it == state.channels.end() || !it->second.connected || it->second.breaker == "open")
      continue;
    auto out = state.outstanding.find(channel);
    const std::int64_t outstanding = out == state.outstanding.end() ? 0 : out->second;
    const std::int64_t slots = it->second.breaker == "half_open" ? 1 : it->second.slots;
    const std::int64_t free = slots - outstanding;
    if (free > best_free) {
      best_free = free;
      best = name;
    }
  }
  return best;
}

void ChannelDispatcher::dispatch(std::int64_t now_ms) {
  for (auto it = ready_lanes_.begin(); it != ready_lanes_.end();) {
    Lane& lane = lanes_.at(*it);
    if (lane.ready_at_ms > now_ms) {
      ++it;
      continue;
    }
    const TargetRef ref = lane.queue.front();
    const auto& work = work_.at(ref.work_id).work;
    const Target& target = work.targets[ref.index];
    const std::string connector = pick_connector(target.channel, now_ms);
    if (connector.empty()) {
      ++it;  // waits for a connector; tick() tries again
      continue;
    }
    const ChannelSpec* channel = spec(target.channel);
    wire::DeliveryJob job;
    job.job_id = "job-" + std::to_string(next_job_++);
    job.delivery_id = delivery_id(work.event.message_id, target.recipient_id, target.channel);
    job.attempt = target.attempts_made + 1;
    job.tenant_id = work.event.tenant_id;
    job.conversation_id = work.event.conversation_id;
    job.seq = work.event.seq;
    job.message_id = work.event.message_id;
    job.sender_id = work.event.sender_id;
    job.recipient_id = target.recipient_id;
    job.channel = target.channel;
    job.address = target.address;
    job.payload = work.event.payload;
    job.metadata = work.event.metadata;
    const std::uint32_t timeout_ms = channel ? channel->timeout_ms : 10000;
    in_flight_[job.job_id] = InFlight{*it, connector, target.channel, now_ms,
                                      now_ms + timeout_ms + limits_.lease_margin_ms};
    ++connectors_[connector].outstanding[target.channel];
    lane.job_in_flight = job.job_id;
    ++counters_.jobs_sent;
    output_.jobs.emplace_back(connector, std::move(job));
    it = ready_lanes_.erase(it);
  }
}

void ChannelDispatcher::pop_head(const LaneKey& key, std::int64_t now_ms) {
  Lane& lane = lanes_.at(key);
  lane.queue.pop_front();
  lane.job_in_flight.clear();
  if (lane.queue.empty()) {
    ready_lanes_.erase(key);
    lanes_.erase(key);
    return;
  }
  lane.ready_at_ms = now_ms;
  ready_lanes_.insert(key);
}

void ChannelDispatcher::result(const wire::DeliveryResult& result, std::int64_t now_ms) {
  if (!in_flight_.count(result.job_id)) {
    ++counters_.stale_results;
    return;
  }
  end_attempt(result.job_id, result, now_ms);
  dispatch(now_ms);
}

void ChannelDispatcher::end_attempt(const std::string& job_id, const wire::DeliveryResult& result,
                                    std::int64_t now_ms) {
  const InFlight flight = in_flight_.at(job_id);
  in_flight_.erase(job_id);
  auto connector = connectors_.find(flight.connector);
  if (connector != connectors_.end()) {
    auto& outstanding = connector->second.outstanding[flight.channel];
    if (outstanding > 0) --outstanding;
  }
  Lane& lane = lanes_.at(flight.lane);
  lane.job_in_flight.clear();
  const TargetRef ref = lane.queue.front();
  Target& target = target_of(ref);
  const ChannelSpec* channel = spec(target.channel);

  if (result.outcome == "busy") {
    ++counters_.busy;
    lane.ready_at_ms = now_ms + limits_.busy_wait_ms;
    ready_lanes_.insert(flight.lane);
    return;
  }
  wire::ChannelAttempt attempt;
  attempt.at_ms = flight.sent_at_ms;
  attempt.connector = flight.connector;
  attempt.outcome = result.outcome;
  attempt.status_code = result.status_code;
  attempt.error = result.error;
  attempt.duration_ms = result.duration_ms ? result.duration_ms
                                           : static_cast<std::uint32_t>(now_ms - flight.sent_at_ms);
  ++target.attempts_made;

  if (result.outcome == "accepted") {
    ++counters_.accepted;
    auto update =
        record_for(ref, result.delivered ? wire::kDeliveryDelivered : wire::kDeliverySent);
    update.delivery.provider_message_id = result.provider_message_id;
    update.attempt.push_back(std::move(attempt));
    emit_record(ref, std::move(update), true);
    pop_head(flight.lane, now_ms);
    return;
  }
  const std::uint32_t attempts_max = channel ? channel->attempts_max : 1;
  if (result.outcome == "rejected" || target.attempts_made >= attempts_max) {
    ++counters_.dead_lettered;
    auto update = record_for(ref, wire::kDeliveryFailed);
    update.delivery.error = result.outcome == "rejected"
                                ? "rejected by the platform: " + result.error
                                : "gave up after " + std::to_string(target.attempts_made) +
                                      " attempts; last: " + result.error;
    update.attempt.push_back(std::move(attempt));
    emit_record(ref, std::move(update), true);
    pop_head(flight.lane, now_ms);
    return;
  }
  // retry, or lost
  ++counters_.retries;
  const std::uint32_t wait_ms = full_jitter_backoff_ms(
      target.attempts_made, channel ? channel->backoff_initial_ms : 500,
      channel ? channel->backoff_max_ms : 30000, random_(), result.retry_after_ms);
  lane.ready_at_ms = now_ms + wait_ms;
  ready_lanes_.insert(flight.lane);
  auto update = record_for(ref, wire::kDeliveryRetrying);
  update.delivery.next_attempt_at_ms = lane.ready_at_ms;
  update.delivery.error = result.error;
  update.attempt.push_back(std::move(attempt));
  emit_record(ref, std::move(update), false);
}

void ChannelDispatcher::tick(std::int64_t now_ms) {
  std::vector<std::string> expired;
  for (const auto& [job_id, flight] : in_flight_) {
    const auto& connector = connectors_[flight.connector];
    const bool silent = now_ms - connector.last_seen_ms > limits_.connector_silence_ms;
    if (silent || now_ms >= flight.deadline_ms) expired.push_back(job_id);
  }
  std::sort(expired.begin(), expired.end());  // the same order on every run of a simulation
  for (const auto& job_id : expired) {
    const InFlight& flight = in_flight_.at(job_id);
    const bool silent =
        now_ms - connectors_[flight.connector].last_seen_ms > limits_.connector_silence_ms;
    wire::DeliveryResult lost;
    lost.job_id = job_id;
    lost.connector = flight.connector;
    lost.outcome = "lost";
    lost.error = silent ? "connector " + flight.connector + " went silent"
                        : "no answer from connector " + flight.connector + " within the lease";
    ++counters_.lost;
    end_attempt(job_id, lost, now_ms);
  }
  dispatch(now_ms);
}

void ChannelDispatcher::record_written(std::uint64_t token) {
  auto it = final_records_.find(token);
  if (it == final_records_.end()) return;
  const std::uint64_t work_id = it->second;
  final_records_.erase(it);
  auto& item = work_.at(work_id);
  if (item.unfinished > 0) --item.unfinished;
  if (targets_held_ > 0) --targets_held_;
  if (item.unfinished == 0) finish_target(work_id);
}

void ChannelDispatcher::retry_record(RecordWrite write) {
  output_.records.push_back(std::move(write));
}

void ChannelDispatcher::finish_target(std::uint64_t work_id) {
  auto it = work_.find(work_id);
  if (it == work_.end()) return;
  const std::uint32_t partition = it->second.work.partition;
  open_indexes_[partition].erase(it->second.work.event.index);
  work_.erase(it);
  update_acks();
}

void ChannelDispatcher::update_acks() {
  for (const auto& [partition, cursor] : cursors_) {
    const auto& open = open_indexes_[partition];
    const std::uint64_t up_to = open.empty() ? cursor : *open.begin() - 1;
    auto& acked = acked_[partition];
    if (up_to > acked) {
      acked = up_to;
      output_.acks.emplace_back(partition, up_to);
    }
  }
}

DispatchOutput ChannelDispatcher::take_output() {
  DispatchOutput out = std::move(output_);
  output_ = {};
  return out;
}

}  // namespace chat4all::router
