// What every part of the partition state machine (domain.cc, presence.cc)
// uses to read and write records and to answer: one place, so that a record
// is decoded and a refusal is shaped the same way everywhere.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "common/codec.h"
#include "nodes/storage/domain.h"

namespace chat4all::storage::domain_support {

template <typename T>
std::optional<T> load(const PartitionState& state, std::string_view key) {
  auto bytes = state.get(key);
  if (!bytes) return std::nullopt;
  return codec::unpack_body<T>(*bytes);
}

template <typename T>
void store(PartitionState& state, std::string_view key, const T& value) {
  state.put(key, codec::pack_body(value));
}

// A refusal: what is wrong and, when one field is to blame, its name.
inline DomainResult fail(wire::Status status, std::string detail, std::string field = {}) {
  DomainResult result;
  result.status = status;
  result.detail = std::move(detail);
  result.field = std::move(field);
  return result;
}

template <typename T>
DomainResult ok(const T& value) {
  DomainResult result;
  result.body = codec::pack_body(value);
  return result;
}

}  // namespace chat4all::storage::domain_support
