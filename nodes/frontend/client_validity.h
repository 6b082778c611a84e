// Which service clients made through the API (POST /v1/clients) still exist,
// as this frontend last read them, so that deleting a client revokes the
// tokens it was issued. An entry is trusted for `ttl_ms`: a deletion made on
// another frontend takes effect here within that, one made here at once
// (forget()). A token issued before its client was created (a deleted client
// made again under the same id) is refused too.
//
// Thread-safe. At `entries_max` the cache starts over: every client is read
// again, one storage query each, rather than memory growing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace chat4all::frontend {

class ClientValidityCache {
 public:
  enum class Verdict {
    kValid,    // the client exists and the token is newer than it
    kRevoked,  // the client is gone, or the token is older than it
    kUnknown,  // not read, or read too long ago: ask storage, then store()
  };

  ClientValidityCache(std::size_t entries_max, std::int64_t ttl_ms);

  Verdict check(const std::string& client_key, std::int64_t token_issued_at_s,
                std::int64_t now_ms) const;
  // `created_at_ms`: the client as storage has it now, nullopt when it does not exist.
  void store(const std::string& client_key, std::optional<std::int64_t> created_at_ms,
             std::int64_t now_ms);
  void forget(const std::string& client_key);

 private:
  struct Entry {
    std::optional<std::int64_t> created_at_ms;
    std::int64_t read_at_ms = 0;
  };

  const std::size_t entries_max_;
  const std::int64_t ttl_ms_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Entry> entries_;  // guarded by mutex_
};

}  // namespace chat4all::frontend
