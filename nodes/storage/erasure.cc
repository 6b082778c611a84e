#include "nodes/storage/erasure.h"

#include <algorithm>
#include <msgpack.hpp>
#include <string>
#include <vector>

#include "common/codec.h"
#include "nodes/storage/domain_support.h"
#include "nodes/storage/record_keys.h"
#include "nodes/storage/retention.h"

namespace chat4all::storage {

namespace {

using domain_support::fail;
using domain_support::load;
using domain_support::ok;
using domain_support::store;
using wire::Status;

std::string job_key(std::string_view tenant, std::string_view user) {
  return "E/" + std::string(tenant) + "/" + std::string(user);
}

// Unacknowledged channel-outbox events looked at when a conversation's erasure ends; the
// dispatchers keep that outbox short (it is read within a second), so this is all of it unless
// they are down.
constexpr std::size_t kOutboxScanMax = 4096;

}  // namespace

std::optional<wire::EraseJob> erase_job(const PartitionState& state, std::string_view tenant,
                                        std::string_view user) {
  return load<wire::EraseJob>(state, job_key(tenant, user));
}

DomainResult erase_user(PartitionState& state, const wire::EraseUser& erase, std::int64_t at_ms) {
  if (erase.tenant_id.empty() || erase.user_id.empty())
    return fail(Status::kInvalid, "erasure needs a tenant and a user", "user_id");
  if (auto job = erase_job(state, erase.tenant_id, erase.user_id)) return ok(*job);
  const std::string user_key_bytes = user_key(erase.tenant_id, erase.user_id);
  auto user = load<wire::UserRecord>(state, user_key_bytes);
  if (!user) return fail(Status::kNotFound, "user not found", "user_id");

  wire::EraseJob job;
  job.tenant_id = erase.tenant_id;
  job.user_id = erase.user_id;
  job.state = wire::kErasePending;
  job.created_at_ms = at_ms;
  const std::string prefix = membership_prefix(erase.tenant_id, erase.user_id);
  std::vector<std::string> index_keys;
  state.scan(prefix, {}, [&](std::string_view key, std::string_view) {
    index_keys.emplace_back(key);
    job.conversations.emplace_back(key.substr(prefix.size()));
    return true;
  });
  if (job.conversations.size() > wire::kEraseConversationsMax)
    return fail(Status::kInvalid, "the user is in more conversations than one erasure covers",
                "user_id");
  for (const auto& identity : user->identities) {
    // Only the link that is still this user's.
    const std::string key = identity_key(erase.tenant_id, identity);
    if (state.get(key) == erase.user_id) {
      state.erase(key);
      ++job.identities_removed;
    }
  }
  for (const auto& key : index_keys) state.erase(key);
  state.erase(seen_key(erase.tenant_id, erase.user_id));
  state.erase(user_key_bytes);
  if (job.conversations.empty()) {
    job.state = wire::kEraseDone;
    job.finished_at_ms = at_ms;
  }
  store(state, job_key(erase.tenant_id, erase.user_id), job);
  return ok(job);
}

wire::StoredMessage tombstone_of(wire::StoredMessage message) {
  message.payload = {};
  message.metadata.clear();
  message.erased = true;
  return message;
}

DomainResult erase_messages(PartitionState& state, const wire::EraseMessages& erase) {
  auto record = load_conversation(state, erase.conversation_id);
  if (!record || record->tenant_id != erase.tenant_id)
    return fail(Status::kNotFound, "conversation not found", "conversation_id");
  if (erase.user_id.empty()) return fail(Status::kInvalid, "no user to erase", "user_id");
  const std::uint64_t head = state.head(erase.conversation_id);
  const std::uint64_t first = std::max(erase.from_seq, history_start(*record));
  const std::uint64_t last = std::min(head, first + wire::kEraseScanMax - 1);
  wire::EraseMessagesResult result;
  for (std::uint64_t seq = first; seq <= last; ++seq) {
    auto message = state.message(erase.conversation_id, seq);
    if (!message || message->sender_id != erase.user_id) continue;
    // Written even over a tombstone: a replica that applied a scrubbed log entry for this
    // message ends where the others are.
    state.replace_message(tombstone_of(std::move(*message)));
    ++result.erased;
  }
  result.next_seq = std::max(first, last + 1);
  result.done = last >= head;
  if (result.done)
    scrub_channel_outbox(state, erase.conversation_id, erase.user_id, kOutboxScanMax);
  return ok(result);
}

DomainResult record_erase_progress(PartitionState& state, const wire::EraseProgress& progress,
                                   std::int64_t at_ms) {
  auto job = erase_job(state, progress.tenant_id, progress.user_id);
  if (!job) return fail(Status::kNotFound, "no erasure of that user", "user_id");
  if (progress.index == job->conversations_done &&
      job->conversations_done < job->conversations.size()) {
    ++job->conversations_done;
    job->messages_erased += progress.erased;
    if (job->conversations_done == job->conversations.size()) {
      job->state = wire::kEraseDone;
      job->finished_at_ms = at_ms;
    }
    store(state, job_key(progress.tenant_id, progress.user_id), *job);
  }
  return ok(*job);
}

std::optional<std::string> scrubbed_entry(std::string_view entry, std::string_view conversation,
                                          std::string_view user) {
  if (entry.empty()) return std::nullopt;
  wire::ReplicatedCommand command;
  try {
    msgpack::object_handle handle = msgpack::unpack(entry.data(), entry.size());
    handle.get().convert(command);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  auto& append = command.append;
  if (command.command.kind != wire::CommandKind::kNone || append.conversation_id != conversation ||
      append.sender_id != user)
    return std::nullopt;
  if (append.payload.type.empty() && append.payload.text.empty() &&
      append.payload.file_id.empty() && append.metadata.empty())
    return std::nullopt;
  append.payload = {};
  append.metadata.clear();
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, command);
  return std::string(buffer.data(), buffer.size());
}

}  // namespace chat4all::storage
