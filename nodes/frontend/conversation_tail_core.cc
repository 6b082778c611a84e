#include "nodes/frontend/conversation_tail_core.h"

#include <algorithm>
#include <utility>

namespace chat4all::frontend {

ConversationTailCore::ConversationTailCore(std::uint64_t last_seq, std::size_t window_messages_max,
                                           std::size_t window_bytes_max)
    : window_messages_max_(std::max<std::size_t>(window_messages_max, 1)),
      window_bytes_max_(window_bytes_max),
      cursor_(last_seq),
      head_(last_seq) {}

void ConversationTailCore::on_hint(std::uint64_t seq) {
  head_ = std::max(head_, seq);
  if (seq <= cursor_) return;
  // A read issued after `seq` was known returns it (page by page).
  if (read_in_flight_ && seq <= head_when_read_issued_) return;
  wanted_ = true;
}

void ConversationTailCore::want() {
  wanted_ = true;
}

std::optional<std::uint64_t> ConversationTailCore::take_read() {
  if (!wanted_ || read_in_flight_) return std::nullopt;
  wanted_ = false;
  read_in_flight_ = true;
  head_when_read_issued_ = head_;
  return cursor_ + 1;
}

bool ConversationTailCore::on_page(std::vector<Entry> messages, std::uint64_t last_seq,
                                   std::uint64_t first_seq) {
  read_in_flight_ = false;
  const std::uint64_t cursor_before = cursor_;
  if (first_seq > cursor_ + 1) {
    // Expired before it was read: history starts later, and so does the window.
    cursor_ = first_seq - 1;
    window_.clear();
    window_bytes_ = 0;
  }
  for (auto& message : messages) {
    if (message.seq <= cursor_) continue;   // read already
    if (message.seq != cursor_ + 1) break;  // a gap: never skip ahead
    cursor_ = message.seq;
    window_bytes_ += message.frame->size();
    window_.push_back(std::move(message));
  }
  trim();
  head_ = std::max({head_, last_seq, cursor_});
  if (cursor_ < head_ && cursor_ > cursor_before) wanted_ = true;  // more to page through
  return cursor_ > cursor_before;
}

void ConversationTailCore::on_read_failed() {
  read_in_flight_ = false;
}

void ConversationTailCore::keep_newest_only() {
  while (window_.size() > 1) {
    window_bytes_ -= window_.front().frame->size();
    window_.pop_front();
  }
}

void ConversationTailCore::trim() {
  while (window_.size() > 1 &&
         (window_.size() > window_messages_max_ || window_bytes_ > window_bytes_max_)) {
    window_bytes_ -= window_.front().frame->size();
    window_.pop_front();
  }
}

}  // namespace chat4all::frontend
