// The messages this frontend accepted lately: (tenant, message_id) ->
// conversation_id, so that GET /v1/messages/{id} (and the marks) find a
// message right after its 202, before the routers have written its locator
// entry behind the committed log (nodes/router/locator_indexer.h). Consulted
// only when the locator does not know the id: the locator stays the authority
// (the first conversation indexed under an id keeps it).
//
// Bounded in entries and in age: an entry is kept `age_max_ms` (far longer
// than indexing takes while the routers run), and at `entries_max` the oldest
// entry is forgotten to make room. An id forgotten so is found through the
// locator as before; before it is indexed, only the lookup's short retries
// (HttpApi::find_message) stand between the client and a 404.
//
// Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace chat4all::frontend {

class AcceptedMessages {
 public:
  AcceptedMessages(std::size_t entries_max, std::int64_t age_max_ms);

  // The first conversation remembered for an id stays until its entry ages out or is evicted.
  void remember(std::string_view tenant_id, std::string_view message_id,
                std::string_view conversation_id, std::int64_t now_ms);
  std::optional<std::string> find(std::string_view tenant_id, std::string_view message_id,
                                  std::int64_t now_ms) const;
  std::size_t size() const;

 private:
  struct Entry {
    std::string conversation_id;
    std::int64_t accepted_at_ms = 0;
  };
  static std::string key_of(std::string_view tenant_id, std::string_view message_id);
  void forget_aged(std::int64_t now_ms);  // with mutex_ held

  const std::size_t entries_max_;
  const std::int64_t age_max_ms_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Entry> entries_;  // guarded by mutex_
  std::deque<std::string> order_;  // guarded by mutex_: the keys of entries_, oldest first
};

}  // namespace chat4all::frontend
