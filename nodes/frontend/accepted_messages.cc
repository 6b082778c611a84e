#include "nodes/frontend/accepted_messages.h"

#include <algorithm>

namespace chat4all::frontend {

AcceptedMessages::AcceptedMessages(std::size_t entries_max, std::int64_t age_max_ms)
    : entries_max_(std::max<std::size_t>(entries_max, 1)), age_max_ms_(age_max_ms) {}

// Tenant ids and message ids never contain '\0' (ids::is_valid_name / is_valid_id).
std::string AcceptedMessages::key_of(std::string_view tenant_id, std::string_view message_id) {
  std::string key(tenant_id);
  key.push_back('\0');
  key += message_id;
  return key;
}

void AcceptedMessages::forget_aged(std::int64_t now_ms) {
  while (!order_.empty()) {
    auto found = entries_.find(order_.front());
    if (found != entries_.end()) {
      if (now_ms - found->second.accepted_at_ms < age_max_ms_) return;
      entries_.erase(found);
    }
    order_.pop_front();
  }
}

void AcceptedMessages::remember(std::string_view tenant_id, std::string_view message_id,
                                std::string_view conversation_id, std::int64_t now_ms) {
  std::lock_guard lock(mutex_);
  forget_aged(now_ms);
  std::string key = key_of(tenant_id, message_id);
  if (entries_.count(key)) return;
  if (entries_.size() >= entries_max_) {
    entries_.erase(order_.front());
    order_.pop_front();
  }
  entries_.emplace(key, Entry{std::string(conversation_id), now_ms});
  order_.push_back(std::move(key));
}

std::optional<std::string> AcceptedMessages::find(std::string_view tenant_id,
                                                  std::string_view message_id,
                                                  std::int64_t now_ms) const {
  std::lock_guard lock(mutex_);
  auto found = entries_.find(key_of(tenant_id, message_id));
  if (found == entries_.end() || now_ms - found->second.accepted_at_ms >= age_max_ms_)
    return std::nullopt;
  return found->second.conversation_id;
}

std::size_t AcceptedMessages::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace chat4all::frontend
