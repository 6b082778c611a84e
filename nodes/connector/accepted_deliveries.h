// The deliveries this connector's platforms accepted, remembered so that a job the router sends
// again (its lease ran out, the result was lost) is answered "accepted" at once instead of
// sending the message a second time.
//
// Bounded: at most `entries_max` delivery ids (at least one); past the bound the least recently
// used is forgotten, and a job for it would be sent again (the router's lease is far shorter than
// the time the bound covers at any real rate).
//
// Thread-safe.
#pragma once

#include <cstddef>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

namespace chat4all::connector {

struct AcceptedDelivery {
  std::string provider_message_id;
  bool delivered = false;
};

class AcceptedDeliveries {
 public:
  explicit AcceptedDeliveries(std::size_t entries_max);

  // What was accepted for `delivery_id`, if it is remembered; counts as a use.
  std::optional<AcceptedDelivery> find(const std::string& delivery_id);
  // Remembers (or refreshes) `delivery_id` as the most recently used.
  void remember(const std::string& delivery_id, AcceptedDelivery accepted);
  std::size_t size() const;

 private:
  const std::size_t entries_max_;
  mutable std::mutex mutex_;
  std::list<std::string> order_;  // most recent first; guarded by mutex_
  std::unordered_map<std::string, std::pair<AcceptedDelivery, std::list<std::string>::iterator>>
      entries_;  // guarded by mutex_
};

}  // namespace chat4all::connector
