#include "nodes/frontend/client_validity.h"

namespace chat4all::frontend {

ClientValidityCache::ClientValidityCache(std::size_t entries_max, std::int64_t ttl_ms)
    : entries_max_(entries_max), ttl_ms_(ttl_ms) {}

ClientValidityCache::Verdict ClientValidityCache::check(const std::string& client_key,
                                                        std::int64_t token_issued_at_s,
                                                        std::int64_t now_ms) const {
  std::lock_guard lock(mutex_);
  const auto found = entries_.find(client_key);
  if (found == entries_.end() || now_ms - found->second.read_at_ms >= ttl_ms_)
    return Verdict::kUnknown;
  const auto& created_at_ms = found->second.created_at_ms;
  // Tokens carry whole seconds: one issued in the second of the creation counts as newer.
  if (!created_at_ms || token_issued_at_s < *created_at_ms / 1000) return Verdict::kRevoked;
  return Verdict::kValid;
}

void ClientValidityCache::store(const std::string& client_key,
                                std::optional<std::int64_t> created_at_ms, std::int64_t now_ms) {
  std::lock_guard lock(mutex_);
  if (entries_.size() >= entries_max_ && !entries_.count(client_key)) entries_.clear();
  entries_[client_key] = Entry{created_at_ms, now_ms};
}

void ClientValidityCache::forget(const std::string& client_key) {
  std::lock_guard lock(mutex_);
  entries_.erase(client_key);
}

}  // namespace chat4all::frontend
