#include "nodes/frontend/stream_state_tracker.h"

#include <algorithm>
#include <utility>

namespace chat4all::frontend {

bool StreamStateTracker::add(const std::string& conversation_id, std::uint64_t state_head) {
  return conversations_.emplace(conversation_id, Conversation{state_head, state_head}).second;
}

bool StreamStateTracker::remove(const std::string& conversation_id) {
  wanting_.erase(conversation_id);
  return conversations_.erase(conversation_id) > 0;
}

void StreamStateTracker::want(const std::string& conversation_id, Conversation& conversation) {
  if (conversation.read_in_flight)
    conversation.hinted = true;  // read again once the one in flight is answered
  else
    wanting_.insert(conversation_id);
}

void StreamStateTracker::on_head(const std::string& conversation_id, std::uint64_t state_head) {
  const auto it = conversations_.find(conversation_id);
  if (it == conversations_.end()) return;
  it->second.head = std::max(it->second.head, state_head);
  if (it->second.head > it->second.cursor) want(conversation_id, it->second);
}

void StreamStateTracker::on_hint(const std::string& conversation_id) {
  const auto it = conversations_.find(conversation_id);
  if (it != conversations_.end()) want(conversation_id, it->second);
}

std::vector<StreamStateTracker::Read> StreamStateTracker::take_reads(std::size_t budget) {
  std::vector<Read> reads;
  while (reads.size() < budget && !wanting_.empty()) {
    auto next = wanting_.upper_bound(last_read_);
    if (next == wanting_.end()) next = wanting_.begin();
    last_read_ = *next;
    Conversation& conversation = conversations_.at(*next);
    conversation.read_in_flight = true;
    conversation.hinted = false;
    reads.push_back({*next, conversation.cursor});
    wanting_.erase(next);
  }
  return reads;
}

std::vector<wire::StateLogEntry> StreamStateTracker::on_page(const std::string& conversation_id,
                                                             wire::StatePage page) {
  const auto it = conversations_.find(conversation_id);
  if (it == conversations_.end()) return {};  // dropped while the read was in flight
  Conversation& conversation = it->second;
  conversation.read_in_flight = false;
  std::vector<wire::StateLogEntry> fresh;
  for (auto& entry : page.entries)
    if (entry.index > conversation.cursor) fresh.push_back(std::move(entry));
  const std::uint64_t before = conversation.cursor;
  conversation.cursor =
      std::max({conversation.cursor, page.scanned_to, fresh.empty() ? 0 : fresh.back().index});
  conversation.head = std::max(conversation.head, page.head);
  // More to read, or a hint came meanwhile; a page that made no progress
  // waits for the next head or hint, so that a log answering below what it
  // claims cannot spin reads.
  const bool progressed = conversation.cursor > before;
  if (conversation.hinted || (progressed && conversation.head > conversation.cursor))
    want(conversation_id, conversation);
  conversation.hinted = false;
  return fresh;
}

void StreamStateTracker::on_read_failed(const std::string& conversation_id) {
  const auto it = conversations_.find(conversation_id);
  if (it == conversations_.end()) return;
  it->second.read_in_flight = false;
  it->second.hinted = false;
}

}  // namespace chat4all::frontend
