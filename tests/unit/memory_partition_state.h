// An in-memory PartitionState (nodes/storage/domain.h) for unit tests: the
// records table in a std::map. The message log is empty here; a test that
// needs one overrides message(), head() and seq_of().
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "nodes/storage/domain.h"

namespace chat4all::unit {

class MemoryRecords : public storage::PartitionState {
 public:
  std::optional<std::string> get(std::string_view key) const override {
    auto it = records.find(std::string(key));
    if (it == records.end()) return std::nullopt;
    return it->second;
  }
  void put(std::string_view key, std::string_view value) override {
    records[std::string(key)] = std::string(value);
  }
  void erase(std::string_view key) override { records.erase(std::string(key)); }
  void scan(std::string_view prefix, std::string_view after, const Visit& visit) const override {
    for (auto it = records.lower_bound(std::string(after.empty() ? prefix : after));
         it != records.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
      if (!after.empty() && it->first == after) continue;
      if (!visit(it->first, it->second)) return;
    }
  }
  std::optional<wire::StoredMessage> message(std::string_view, std::uint64_t) const override {
    return std::nullopt;
  }
  std::uint64_t head(std::string_view) const override { return 0; }
  std::optional<std::uint64_t> seq_of(std::string_view, std::string_view) const override {
    return std::nullopt;
  }
  void erase_message(std::string_view, std::uint64_t, std::string_view) override {}
  void replace_message(const wire::StoredMessage&) override {}

  std::map<std::string, std::string> records;
};

}  // namespace chat4all::unit
