#include "nodes/storage/retention.h"

#include <algorithm>
#include <string>

#include "common/codec.h"
#include "nodes/storage/domain_support.h"
#include "nodes/storage/record_keys.h"

namespace chat4all::storage {

namespace {

using domain_support::fail;
using domain_support::ok;
using wire::Status;

}  // namespace

std::optional<std::int64_t> retention_ms(std::int64_t tenant_retention_ms,
                                         std::int64_t conversation_retention_s) {
  std::optional<std::int64_t> out;
  if (tenant_retention_ms > 0) out = tenant_retention_ms;
  if (conversation_retention_s > 0) {
    const std::int64_t own = conversation_retention_s * 1000;
    out = out ? std::min(*out, own) : own;
  }
  return out;
}

DomainResult expire_messages(PartitionState& state, const wire::MessageExpiry& expiry,
                             std::int64_t at_ms) {
  auto record = load_conversation(state, expiry.conversation_id);
  if (!record || record->tenant_id != expiry.tenant_id)
    return fail(Status::kNotFound, "conversation not found", "conversation_id");
  // A cutoff in the future of its own entry would be a leader's mistake: nothing past the
  // entry's stamp goes.
  const std::int64_t cutoff = std::min(expiry.cutoff_ms, at_ms);
  const std::uint64_t last =
      std::min({expiry.up_to_seq, state.head(expiry.conversation_id),
                history_start(*record) + wire::kExpiryMessagesPerCommandMax - 1});
  wire::MessageExpiryResult result;
  std::uint64_t seq = history_start(*record);
  for (; seq <= last; ++seq) {
    auto message = state.message(expiry.conversation_id, seq);
    if (message) {
      if (message->stored_at_ms > cutoff) break;
      forget_message_records(state, *message);
      state.erase_message(expiry.conversation_id, seq, message->message_id);
      ++result.expired;
    }
  }
  if (seq != history_start(*record)) {
    record->first_seq = seq;
    store_conversation(state, *record);
  }
  result.first_seq = history_start(*record);
  return ok(result);
}

DomainResult set_retention(PartitionState& state, const wire::SetRetention& change,
                           std::int64_t at_ms) {
  auto record = load_conversation(state, change.conversation_id);
  const bool visible =
      record && record->tenant_id == change.tenant_id &&
      (change.by.empty() || std::find(record->members.begin(), record->members.end(), change.by) !=
                                record->members.end());
  if (!visible) return fail(Status::kNotFound, "conversation not found", "conversation_id");
  if (!change.by.empty() && record->type == "group" && change.by != record->created_by)
    return fail(Status::kInvalid, "only the creator of a group may change its retention",
                "retention_s");
  if (change.retention_s <= 0)
    return fail(Status::kInvalid, "retention_s must be a positive number of seconds",
                "retention_s");
  if (change.tenant_retention_s > 0 && change.retention_s > change.tenant_retention_s)
    return fail(Status::kInvalid,
                "retention_s may only shorten the tenant's retention of " +
                    std::to_string(change.tenant_retention_s) + " s",
                "retention_s");
  record->retention_s = change.retention_s;
  record->updated_at_ms = at_ms;
  store_conversation(state, *record);
  return ok(*record);
}

wire::RetentionSweepResult retention_sweep(const PartitionState& state,
                                           const wire::RetentionSweep& sweep) {
  wire::RetentionSweepResult result;
  std::uint32_t scanned = 0;
  const std::uint32_t scan_max = std::max<std::uint32_t>(sweep.conversations_max, 1);
  bool stopped = false;
  state.scan(conversation_key(""), sweep.after, [&](std::string_view key, std::string_view value) {
    if (++scanned > scan_max) {
      stopped = true;
      return false;
    }
    result.next_after = std::string(key);
    auto record = codec::unpack_body<wire::ConversationRecord>(value);
    if (!record) return true;
    std::int64_t tenant_ms = 0;
    for (const auto& [tenant, ms] : sweep.tenant_retention_ms)
      if (tenant == record->tenant_id) tenant_ms = ms;
    const auto keep_ms = retention_ms(tenant_ms, record->retention_s);
    if (!keep_ms) return true;
    const std::uint64_t first = history_start(*record);
    const std::uint64_t head = state.head(record->conversation_id);
    if (first > head) return true;
    const std::int64_t cutoff = sweep.at_ms - *keep_ms;
    auto oldest = state.message(record->conversation_id, first);
    if (!oldest || oldest->stored_at_ms <= cutoff)
      result.expiries.push_back({record->tenant_id, record->conversation_id, cutoff, head});
    return true;
  });
  if (!stopped) result.next_after.clear();
  return result;
}

}  // namespace chat4all::storage
