#include "nodes/frontend/stream_cursor_tracker.h"

#include <algorithm>
#include <utility>

namespace chat4all::frontend {

StreamCursorTracker::StreamCursorTracker(std::size_t conversations_max)
    : conversations_max_(conversations_max) {}

void StreamCursorTracker::set_resume_cursors(Cursors cursors) {
  resume_cursors_ = std::move(cursors);
}

bool StreamCursorTracker::add(const std::string& conversation_id, std::uint64_t delivered_up_to,
                              std::uint64_t last_seq) {
  if (conversations_.contains(conversation_id) || full()) return false;
  Conversation conversation;
  conversation.head = last_seq;
  conversation.marked = std::min(delivered_up_to, last_seq);
  const auto resume = resume_cursors_.find(conversation_id);
  conversation.cursor =
      resume != resume_cursors_.end() ? std::min(resume->second, last_seq) : conversation.marked;
  conversation.written = std::max(conversation.cursor, conversation.marked);
  auto& added = conversations_.emplace(conversation_id, conversation).first->second;
  wanting_.insert(conversation_id);
  update_mark_due(conversation_id, added);
  return true;
}

bool StreamCursorTracker::remove(const std::string& conversation_id) {
  wanting_.erase(conversation_id);
  marks_due_.erase(conversation_id);
  return conversations_.erase(conversation_id) > 0;
}

bool StreamCursorTracker::contains(const std::string& conversation_id) const {
  return conversations_.contains(conversation_id);
}

std::vector<StreamCursorTracker::ConversationPosition> StreamCursorTracker::positions() const {
  std::vector<ConversationPosition> positions;
  positions.reserve(conversations_.size());
  for (const auto& [id, conversation] : conversations_)
    positions.push_back(
        {id, std::max(conversation.head, conversation.cursor), conversation.cursor});
  return positions;
}

std::optional<std::uint64_t> StreamCursorTracker::cursor(const std::string& conversation_id) const {
  const auto it = conversations_.find(conversation_id);
  if (it == conversations_.end()) return std::nullopt;
  return it->second.cursor;
}

void StreamCursorTracker::on_hint(const std::string& conversation_id, std::uint64_t seq) {
  const auto it = conversations_.find(conversation_id);
  if (it == conversations_.end()) return;
  Conversation& conversation = it->second;
  conversation.head = std::max(conversation.head, seq);
  if (seq > conversation.cursor) wanting_.insert(conversation_id);
}

void StreamCursorTracker::want_all() {
  for (const auto& entry : conversations_) wanting_.insert(wanting_.end(), entry.first);
}

std::vector<StreamCursorTracker::Read> StreamCursorTracker::take_reads(std::size_t budget) {
  std::vector<Read> reads;
  if (budget == 0 || wanting_.empty()) return reads;
  // Round-robin: start after the conversation read last time, wrap around once.
  auto start = wanting_.upper_bound(last_read_);
  std::vector<std::string> visit;
  visit.reserve(wanting_.size());
  for (auto it = start; it != wanting_.end(); ++it) visit.push_back(*it);
  for (auto it = wanting_.begin(); it != start; ++it) visit.push_back(*it);
  for (const std::string& id : visit) {
    if (reads.size() == budget) break;
    Conversation& conversation = conversations_.at(id);
    if (conversation.read_in_flight) continue;  // stays wanted: read again after this reply
    conversation.read_in_flight = true;
    wanting_.erase(id);
    reads.push_back({id, conversation.cursor + 1});
    last_read_ = id;
  }
  return reads;
}

std::vector<wire::StoredMessage> StreamCursorTracker::on_page(
    const std::string& conversation_id, std::vector<wire::StoredMessage> messages,
    std::uint64_t last_seq) {
  std::vector<wire::StoredMessage> to_send;
  const auto it = conversations_.find(conversation_id);
  if (it == conversations_.end()) return to_send;  // left while the read was in flight
  Conversation& conversation = it->second;
  conversation.read_in_flight = false;
  const std::uint64_t cursor_before = conversation.cursor;
  for (auto& message : messages) {
    if (message.seq <= conversation.cursor) continue;   // handed out already
    if (message.seq != conversation.cursor + 1) break;  // a gap: never skip ahead
    conversation.cursor = message.seq;
    to_send.push_back(std::move(message));
  }
  conversation.head = std::max({conversation.head, last_seq, conversation.cursor});
  if (conversation.cursor >= conversation.head) {
    wanting_.erase(conversation_id);  // a hint during the read asked for nothing new
  } else if (conversation.cursor > cursor_before) {
    wanting_.insert(conversation_id);  // more to page through
  }
  // No progress while behind: wait for the next hint or resync rather than spin.
  return to_send;
}

void StreamCursorTracker::on_read_failed(const std::string& conversation_id) {
  const auto it = conversations_.find(conversation_id);
  if (it != conversations_.end()) it->second.read_in_flight = false;
}

void StreamCursorTracker::update_mark_due(const std::string& conversation_id,
                                          const Conversation& conversation) {
  if (conversation.written > conversation.marked && !conversation.mark_in_flight)
    marks_due_.insert(conversation_id);
  else
    marks_due_.erase(conversation_id);
}

void StreamCursorTracker::on_written(const std::string& conversation_id, std::uint64_t seq) {
  const auto it = conversations_.find(conversation_id);
  if (it == conversations_.end()) return;
  it->second.written = std::max(it->second.written, seq);
  update_mark_due(conversation_id, it->second);
}

std::vector<StreamCursorTracker::Mark> StreamCursorTracker::take_marks() {
  std::vector<Mark> marks;
  marks.reserve(marks_due_.size());
  for (const std::string& id : marks_due_) {
    Conversation& conversation = conversations_.at(id);
    conversation.mark_in_flight = true;
    marks.push_back({id, conversation.written});
  }
  marks_due_.clear();
  return marks;
}

void StreamCursorTracker::on_mark_done(const std::string& conversation_id, std::uint64_t up_to_seq,
                                       bool ok) {
  const auto it = conversations_.find(conversation_id);
  if (it == conversations_.end()) return;
  Conversation& conversation = it->second;
  conversation.mark_in_flight = false;
  if (ok) conversation.marked = std::max(conversation.marked, up_to_seq);
  update_mark_due(conversation_id, conversation);
}

}  // namespace chat4all::frontend
