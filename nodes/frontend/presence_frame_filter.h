// A presence change is published on every conversation its user is in
// (schema/wire.h Event), so a stream sharing several of them hears it several
// times; this filter lets the first through. One change has the same state
// and last_seen_at on every topic, and the topics of one change arrive
// together (one publisher, one SUB socket, in order), so remembering the last
// (state, at) per user is enough.
//
// Bounded: at most `users_max` users remembered; at the bound it forgets them
// all, and the next change of each may be framed once more (a repeated frame
// says what the client knows already).
//
// Not thread-safe: a session's strand.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>

namespace chat4all::frontend {

class PresenceFrameFilter {
 public:
  explicit PresenceFrameFilter(std::size_t users_max) : users_max_(users_max) {}

  // True when this (state, at_ms) is not what was last let through for `user`.
  bool first(const std::string& user, const std::string& state, std::int64_t at_ms) {
    auto it = last_.find(user);
    if (it != last_.end()) {
      if (it->second.first == state && it->second.second == at_ms) return false;
      it->second = {state, at_ms};
      return true;
    }
    if (last_.size() >= users_max_) last_.clear();
    last_.emplace(user, std::make_pair(state, at_ms));
    return true;
  }

 private:
  std::size_t users_max_;
  std::unordered_map<std::string, std::pair<std::string, std::int64_t>> last_;
};

}  // namespace chat4all::frontend
