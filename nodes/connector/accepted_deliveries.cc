#include "nodes/connector/accepted_deliveries.h"

#include <algorithm>

#include "common/check.h"

namespace chat4all::connector {

AcceptedDeliveries::AcceptedDeliveries(std::size_t entries_max)
    : entries_max_(std::max<std::size_t>(1, entries_max)) {}

std::optional<AcceptedDelivery> AcceptedDeliveries::find(const std::string& delivery_id) {
  std::lock_guard lock(mutex_);
  auto found = entries_.find(delivery_id);
  if (found == entries_.end()) return std::nullopt;
  order_.splice(order_.begin(), order_, found->second.second);
  return found->second.first;
}

void AcceptedDeliveries::remember(const std::string& delivery_id, AcceptedDelivery accepted) {
  std::lock_guard lock(mutex_);
  auto found = entries_.find(delivery_id);
  if (found != entries_.end()) {
    found->second.first = std::move(accepted);
    order_.splice(order_.begin(), order_, found->second.second);
    return;
  }
  order_.push_front(delivery_id);
  entries_.emplace(delivery_id, std::make_pair(std::move(accepted), order_.begin()));
  while (entries_.size() > entries_max_) {
    entries_.erase(order_.back());
    order_.pop_back();
  }
  CHAT4ALL_CHECK(entries_.size() == order_.size() && entries_.size() <= entries_max_,
                 "every remembered delivery is in the recency order once, within the bound");
}

std::size_t AcceptedDeliveries::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace chat4all::connector
