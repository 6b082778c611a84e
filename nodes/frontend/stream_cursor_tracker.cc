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
  conversation.catch_up_to = last_seq;
  conversation.marked = std::min(delivered_up_to, last_seq);
  const auto resume = resume_cursors_.find(conversation_id);
  conversation.cursor =
      resume != resume_cursors_.end() ? std::min(resume->second, last_seq) : conversation.marked;
  if (const auto removed = removed_cursors_.find(conversation_id);
      removed != removed_cursors_.end()) {
    conversation.cursor = std::max(conversation.cursor, std::min(removed->second, last_seq));
    removed_cursors_.erase(removed);
  }
  conversation.written = std::max(conversation.cursor, conversation.marked);
  auto& added = conversations_.emplace(conversation_id, conversation).first->second;
  want_read(conversation_id);
  update_mark_due(conversation_id, added);
  return true;
}

bool StreamCursorTracker::remove(const std::string& conversation_id) {
  unwant_read(conversation_id);
  marks_due_.erase(conversation_id);
  const auto it = conversations_.find(conversation_id);
  if (it == conversations_.end()) return false;
  std::uint64_t& remembered = removed_cursors_[conversation_id];
  remembered = std::max(remembered, it->second.cursor);
  if (removed_cursors_.size() > conversations_max_)
    removed_cursors_.erase(removed_cursors_.begin());
  conversations_.erase(it);
  return true;
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
  if (seq > conversation.cursor) want_read(conversation_id);
}

void StreamCursorTracker::want_all() {
  // In id order, each inserted at the end: linear in the conversations.
  for (const auto& entry : conversations_) {
    wanting_.insert(wanting_.end(), entry.first);
    tail_candidates_.insert(tail_candidates_.end(), entry.first);
  }
}

void StreamCursorTracker::want(const std::string& conversation_id) {
  if (conversations_.contains(conversation_id)) want_read(conversation_id);
}

void StreamCursorTracker::want_read(const std::string& conversation_id) {
  wanting_.insert(conversation_id);
  tail_candidates_.insert(conversation_id);
}

void StreamCursorTracker::unwant_read(const std::string& conversation_id) {
  wanting_.erase(conversation_id);
  tail_candidates_.erase(conversation_id);
}

std::vector<StreamCursorTracker::Read> StreamCursorTracker::take_reads(std::size_t budget,
                                                                       bool catch_up_allowed) {
  std::vector<Read> reads;
  if (budget == 0 || wanting_.empty()) return reads;
  // Round-robin: start after the conversation read last time, wrap around
  // once, and stop as soon as the budget is taken: a resync that wants every
  // conversation costs a visit per read, not the whole set per read.
  std::size_t to_visit = wanting_.size();  // each at most once
  auto it = wanting_.upper_bound(last_read_);
  std::string last_taken;
  while (reads.size() < budget && to_visit > 0) {
    if (it == wanting_.end()) it = wanting_.begin();
    --to_visit;
    ++visits_;
    const std::string& id = *it;
    Conversation& conversation = conversations_.at(id);
    const bool catching_up = conversation.cursor < conversation.catch_up_to;
    // In flight: stays wanted, read again after this reply.
    if (conversation.read_in_flight || (catching_up && !catch_up_allowed)) {
      ++it;
      continue;
    }
    conversation.read_in_flight = true;
    reads.push_back({id, conversation.cursor + 1, catching_up});
    last_taken = id;
    tail_candidates_.erase(id);
    it = wanting_.erase(it);
  }
  if (!reads.empty()) last_read_ = std::move(last_taken);
  return reads;
}

std::vector<wire::StoredMessage> StreamCursorTracker::on_page(
    const std::string& conversation_id, std::vector<wire::StoredMessage> messages,
    std::uint64_t last_seq, std::uint64_t first_seq) {
  std::vector<wire::StoredMessage> to_send;
  const auto it = conversations_.find(conversation_id);
  if (it == conversations_.end()) return to_send;  // left while the read was in flight
  Conversation& conversation = it->second;
  conversation.read_in_flight = false;
  const std::uint64_t cursor_before = conversation.cursor;
  // Expired before this connection handed it out: nothing below first_seq will ever come.
  if (first_seq > conversation.cursor + 1) conversation.cursor = first_seq - 1;
  for (auto& message : messages) {
    if (message.seq <= conversation.cursor) continue;   // handed out already
    if (message.seq != conversation.cursor + 1) break;  // a gap: never skip ahead
    conversation.cursor = message.seq;
    to_send.push_back(std::move(message));
  }
  after_progress(conversation_id, conversation, cursor_before, last_seq);
  return to_send;
}

void StreamCursorTracker::after_progress(const std::string& conversation_id,
                                         Conversation& conversation, std::uint64_t cursor_before,
                                         std::uint64_t last_seq) {
  conversation.head = std::max({conversation.head, last_seq, conversation.cursor});
  if (conversation.cursor >= conversation.head) {
    unwant_read(conversation_id);  // a hint during the read asked for nothing new
  } else if (conversation.cursor > cursor_before) {
    want_read(conversation_id);  // more to page through
  }
  // No progress while behind: wait for the next hint or resync rather than spin.
}

StreamCursorTracker::TailPlan StreamCursorTracker::take_from_tails(const TailLookup& tail_of,
                                                                   bool catch_up_allowed,
                                                                   std::uint64_t catch_up_limit) {
  TailPlan plan;
  // Only the candidates: a conversation found to need storage is not looked
  // at again until it is wanted anew (after its read, a hint, a resync).
  // Collected first: serving a conversation changes the sets.
  std::vector<std::string> candidates(tail_candidates_.begin(), tail_candidates_.end());
  for (const std::string& id : candidates) {
    ++visits_;
    Conversation& conversation = conversations_.at(id);
    if (conversation.read_in_flight) continue;  // its reply comes first
    const auto view = tail_of(id);
    if (!view || conversation.cursor + 1 < view->first) {
      tail_candidates_.erase(id);  // no tail, or behind its window: take_reads()
      continue;
    }
    if (conversation.cursor >= view->last) {
      if (conversation.head > view->last) plan.wakes.push_back({id, conversation.head});
      unwant_read(id);  // the tail tells when it moves
      continue;
    }
    const bool catching_up = conversation.cursor < conversation.catch_up_to;
    if (catching_up && !catch_up_allowed) continue;
    std::uint64_t to_seq = view->last;
    if (catching_up)
      to_seq = std::min(to_seq, conversation.cursor + std::max<std::uint64_t>(catch_up_limit, 1));
    const std::uint64_t cursor_before = conversation.cursor;
    conversation.cursor = to_seq;
    plan.takes.push_back({id, cursor_before + 1, to_seq, catching_up});
    after_progress(id, conversation, cursor_before, view->last);
    if (conversation.cursor < view->last) continue;  // paced: the rest at the next call
    // At the tail's cursor: what lies beyond is the tail's to read, not ours.
    if (conversation.head > view->last) plan.wakes.push_back({id, conversation.head});
    unwant_read(id);
  }
  return plan;
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
