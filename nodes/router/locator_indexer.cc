#include "nodes/router/locator_indexer.h"

#include <algorithm>
#include <cassert>
#include <utility>

namespace chat4all::router {

LocatorIndexer::LocatorIndexer(const std::vector<PartitionId>& sources, PartitionOf partition_of,
                               IndexerLimits limits)
    : partition_of_(std::move(partition_of)), limits_(limits) {
  // A round's entries travel in commands of at most kIndexMessagesEntriesMax each.
  limits_.round_entries_max =
      std::clamp<std::size_t>(limits_.round_entries_max, 1, wire::kIndexMessagesEntriesMax);
  limits_.page_events = std::max<std::uint32_t>(limits_.page_events, 1);
  for (PartitionId p : sources) sources_[p];
}

std::size_t LocatorIndexer::entries_held() const {
  std::size_t held = 0;
  for (const auto& [partition, source] : sources_) held += source.waiting.size() + source.in_round;
  return held;
}

void LocatorIndexer::tick(std::int64_t now_ms) {
  for (auto& [partition, source] : sources_) {
    if (source.ack_failed && now_ms >= source.next_ack_ms) {
      source.ack_failed = false;
      output_.acks.push_back({partition, source.acked_to});
    }
    if (source.reading || now_ms < source.next_read_ms ||
        source.waiting.size() + source.in_round >= limits_.held_per_partition_max)
      continue;
    source.reading = true;
    output_.reads.push_back({partition, source.read_to, limits_.page_events});
  }
  if (round_under_way())
    resend_failed(now_ms);
  else
    start_round();
}

void LocatorIndexer::outbox_read(PartitionId partition,
                                 std::optional<std::vector<wire::OutboxEvent>> events,
                                 std::int64_t now_ms) {
  auto found = sources_.find(partition);
  if (found == sources_.end()) return;
  Source& source = found->second;
  source.reading = false;
  if (!events) {
    ++counters_.reads_failed;
    source.next_read_ms = now_ms + limits_.failure_wait_ms;
    return;
  }
  // A full page means more are waiting: read on at once. Otherwise the outbox is drained.
  source.next_read_ms =
      events->size() >= limits_.page_events ? now_ms : now_ms + limits_.idle_poll_ms;
  for (auto& event : *events) {
    // Pages come in index order; anything at or below the cursor was read already.
    if (event.index <= source.read_to) continue;
    source.read_to = event.index;
    // Storage writes only complete entries; anything else could never be indexed, and is
    // passed over (acknowledged with the entries after it).
    if (event.tenant_id.empty() || event.message_id.empty() || event.conversation_id.empty())
      continue;
    ++counters_.entries_read;
    source.waiting.push_back(std::move(event));
  }
}

// Takes the oldest waiting entries of every partition (starting one partition further each
// round, so that a busy one cannot crowd the others out at the bound) and sends them, grouped by
// locator partition, one command per group.
void LocatorIndexer::start_round() {
  std::map<PartitionId, wire::IndexMessages> groups;
  std::size_t taken = 0;
  auto first = sources_.lower_bound(next_first_source_);
  std::vector<std::map<PartitionId, Source>::iterator> order;
  for (auto it = first; it != sources_.end(); ++it) order.push_back(it);
  for (auto it = sources_.begin(); it != first; ++it) order.push_back(it);
  for (auto it : order) {
    Source& source = it->second;
    while (!source.waiting.empty() && taken < limits_.round_entries_max) {
      wire::OutboxEvent event = std::move(source.waiting.front());
      source.waiting.pop_front();
      round_.up_to[it->first] = event.index;
      ++source.in_round;
      ++taken;
      const PartitionId locator =
          partition_of_(wire::locator_key(event.tenant_id, event.message_id));
      groups[locator].entries.push_back({std::move(event.tenant_id), std::move(event.message_id),
                                         std::move(event.conversation_id)});
    }
  }
  if (taken == 0) return;
  if (!order.empty()) {
    auto next = std::next(order.front());
    next_first_source_ = next == sources_.end() ? sources_.begin()->first : next->first;
  }
  for (auto& [locator, body] : groups) send(locator, std::move(body));
}

std::uint64_t LocatorIndexer::send(PartitionId locator_partition, wire::IndexMessages body) {
  const std::uint64_t token = next_token_++;
  IndexCommand command{token, locator_partition, std::move(body)};
  output_.commands.push_back(command);
  round_.commands.emplace(token, Command{std::move(command), false, false});
  ++counters_.commands_sent;
  return token;
}

void LocatorIndexer::command_done(std::uint64_t token,
                                  std::optional<wire::IndexMessagesResult> result,
                                  std::int64_t now_ms) {
  auto found = round_.commands.find(token);
  if (found == round_.commands.end() || found->second.answered) return;
  Command& command = found->second;
  command.answered = true;
  if (!result) {
    ++counters_.commands_failed;
    command.failed = true;
  } else {
    counters_.added += result->added;
    counters_.replayed += result->replayed;
    counters_.conflicts += result->conflicts.size();
    for (auto& conflict : result->conflicts) output_.conflicts.push_back(std::move(conflict));
  }
  const bool all_answered = std::all_of(round_.commands.begin(), round_.commands.end(),
                                        [](const auto& entry) { return entry.second.answered; });
  if (!all_answered) return;
  const bool any_failed = std::any_of(round_.commands.begin(), round_.commands.end(),
                                      [](const auto& entry) { return entry.second.failed; });
  if (any_failed) {
    round_.resend_at_ms = now_ms + limits_.failure_wait_ms;
    return;
  }
  finish_round();
}

// Once every command of the round has an answer, the failed ones go again (same entries, a new
// token) after the failure wait; the round ends only when all have succeeded.
void LocatorIndexer::resend_failed(std::int64_t now_ms) {
  const bool all_answered = std::all_of(round_.commands.begin(), round_.commands.end(),
                                        [](const auto& entry) { return entry.second.answered; });
  if (!all_answered || now_ms < round_.resend_at_ms) return;
  std::vector<IndexCommand> again;
  for (auto it = round_.commands.begin(); it != round_.commands.end();) {
    if (it->second.failed) {
      again.push_back(std::move(it->second.command));
      it = round_.commands.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& command : again) send(command.locator_partition, std::move(command.body));
}

void LocatorIndexer::finish_round() {
  for (const auto& [partition, up_to] : round_.up_to) {
    Source& source = sources_[partition];
    assert(up_to > source.acked_to);
    source.acked_to = up_to;
    source.in_round = 0;
    source.ack_failed = false;
    output_.acks.push_back({partition, up_to});
  }
  ++counters_.rounds;
  round_ = {};
}

void LocatorIndexer::ack_done(PartitionId partition, std::uint64_t up_to, bool ok,
                              std::int64_t now_ms) {
  auto found = sources_.find(partition);
  if (found == sources_.end()) return;
  Source& source = found->second;
  // Only the latest acknowledgement matters: it covers every earlier one.
  if (ok || up_to != source.acked_to) return;
  ++counters_.acks_failed;
  source.ack_failed = true;
  source.next_ack_ms = now_ms + limits_.failure_wait_ms;
}

}  // namespace chat4all::router
