#include "nodes/storage/domain.h"

#include <algorithm>
#include <cstdio>
#include <set>

#include "common/codec.h"
#include "nodes/storage/domain_support.h"
#include "nodes/storage/erasure.h"
#include "nodes/storage/files.h"
#include "nodes/storage/presence.h"
#include "nodes/storage/record_keys.h"
#include "nodes/storage/retention.h"
#include "nodes/storage/topology_record.h"
#include "schema/topology_version.h"

namespace chat4all::storage {

namespace {

using wire::Status;

// ---- record keys (relative to the partition; see schema/README.md)
// Names never contain '/' or '\0' (ids::is_valid_name / is_valid_id), so the
// separators keep one record family, one tenant, one user together.

std::string be64(std::uint64_t value) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(value >> (56 - 8 * i));
  return out;
}

std::string client_key(std::string_view tenant, std::string_view client) {
  return "C/" + std::string(tenant) + "/" + std::string(client);
}
std::string webhook_key(std::string_view tenant, std::string_view webhook) {
  return "W/" + std::string(tenant) + "/" + std::string(webhook);
}
std::string delivery_prefix(std::string_view tenant, std::string_view webhook) {
  return "D/" + std::string(tenant) + "/" + std::string(webhook) + "/";
}
// A webhook's delivery records in the order they were first recorded: "d/<tenant>/<webhook>"
// holds DeliveryOrder, "d/<tenant>/<webhook>/" seq (u64 BE) the event id recorded as seq.
std::string delivery_order_key(std::string_view tenant, std::string_view webhook) {
  return "d/" + std::string(tenant) + "/" + std::string(webhook);
}
std::string state_key(std::string_view conversation, std::uint64_t seq, std::string_view user) {
  std::string key = "S/" + std::string(conversation);
  key.push_back('\0');
  key += be64(seq);
  key += user;
  return key;
}
std::string horizons_key(std::string_view conversation, std::string_view user) {
  std::string key = "H/" + std::string(conversation);
  key.push_back('\0');
  key += user;
  return key;
}
// The conversation's state log: "t/<conversation>" holds StateLogMeta, "T/<conversation>" 0x00
// index (u64 BE) one StateLogEntry.
std::string state_log_meta_key(std::string_view conversation) {
  return "t/" + std::string(conversation);
}
std::string state_log_prefix(std::string_view conversation) {
  std::string key = "T/" + std::string(conversation);
  key.push_back('\0');
  return key;
}
std::string locator_record_key(std::string_view tenant, std::string_view message_id) {
  return "L/" + std::string(tenant) + "/" + std::string(message_id);
}
// Stream 0 keeps the keys it had before there were streams.
std::string outbox_prefix(std::uint32_t stream) {
  return stream == wire::kOutboxWebhooks ? "O/" : "O" + std::to_string(stream) + "/";
}
std::string outbox_meta_key(std::uint32_t stream) {
  return stream == wire::kOutboxWebhooks ? "o/meta" : "o" + std::to_string(stream) + "/meta";
}
std::string channel_delivery_prefix(std::string_view conversation, std::string_view message_id) {
  std::string key = "D/" + std::string(conversation);
  key.push_back('\0');
  key += message_id;
  key.push_back('\0');
  return key;
}
std::string channel_address_prefix(std::string_view channel, std::string_view address) {
  std::string key = "A/" + std::string(channel);
  key.push_back('\0');
  key += address;
  key.push_back('\0');
  return key;
}

struct DeliveryOrder {
  std::uint64_t next_seq = 1;
  std::uint64_t count = 0;     // records in the order (older ones, from before it, are not)
  std::uint32_t kept_max = 0;  // the last bound a RecordDelivery named
  MSGPACK_DEFINE(next_seq, count, kept_max);
};

struct StateLogMeta {
  std::uint64_t head = 0;         // highest index written
  std::uint64_t first_index = 1;  // lowest index kept
  MSGPACK_DEFINE(head, first_index);
};

struct OutboxMeta {
  std::uint64_t next_index = 1;
  std::uint64_t acked_up_to = 0;
  std::uint64_t dropped = 0;
  MSGPACK_DEFINE(next_index, acked_up_to, dropped);
};

using domain_support::fail;
using domain_support::load;
using domain_support::ok;
using domain_support::store;

DomainResult ok_empty() {
  DomainResult result;
  result.body = codec::pack_body(std::vector<int>{});
  return result;
}

template <typename T>
std::optional<T> decode(const std::string& body) {
  return codec::unpack_body<T>(body);
}

bool contains(const std::vector<std::string>& list, std::string_view item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

int state_rank(std::string_view state) {
  if (state == wire::kStateSent) return 0;
  if (state == wire::kStateDelivered) return 1;
  if (state == wire::kStateRead) return 2;
  return -1;
}

const char* event_type_of(std::string_view state) {
  return state == wire::kStateRead        ? "message.read"
         : state == wire::kStateDelivered ? "message.delivered"
                                          : "message.sent";
}

// ---- delivery records

// Stores `record` (webhook, event) and keeps the webhook's newest `kept_max` records (0: the last
// bound given, else wire::kDeliveriesKeptDefault): a record new to the webhook beyond that
// removes the one first recorded longest ago. Replacing a record keeps its place.
void put_delivery(PartitionState& state, const wire::DeliveryRecord& record,
                  std::uint32_t kept_max) {
  const std::string key = delivery_prefix(record.tenant_id, record.webhook_id) + record.event_id;
  const bool known = state.get(key).has_value();
  store(state, key, record);
  if (known) return;
  const std::string order_key = delivery_order_key(record.tenant_id, record.webhook_id);
  DeliveryOrder order = load<DeliveryOrder>(state, order_key).value_or(DeliveryOrder{});
  if (kept_max > 0) order.kept_max = kept_max;
  const std::uint64_t bound = order.kept_max > 0 ? order.kept_max : wire::kDeliveriesKeptDefault;
  const std::string order_prefix = order_key + "/";
  state.put(order_prefix + be64(order.next_seq++), record.event_id);
  ++order.count;
  while (order.count > bound) {
    std::string oldest_key, oldest_event;
    state.scan(order_prefix, "", [&](std::string_view k, std::string_view v) {
      oldest_key = k;
      oldest_event = v;
      return false;
    });
    if (oldest_key.empty()) break;
    state.erase(oldest_key);
    state.erase(delivery_prefix(record.tenant_id, record.webhook_id) + oldest_event);
    --order.count;
  }
  store(state, order_key, order);
}

// ---- outbox

// The webhooks of `event`'s tenant that would have been sent it, when the tenant's records live
// in this partition (they live in the partition its id hashes to): each gets a delivery record
// `failed` saying that the event was dropped, unless it has one already (a delivery that began).
void record_dropped(PartitionState& state, std::uint32_t partition, const wire::OutboxEvent& event,
                    std::int64_t at_ms) {
  std::vector<wire::WebhookRecord> webhooks;
  const std::string prefix = webhook_key(event.tenant_id, "");
  state.scan(prefix, "", [&](std::string_view, std::string_view value) {
    if (auto webhook = codec::unpack_body<wire::WebhookRecord>(value))
      webhooks.push_back(std::move(*webhook));
    return true;
  });
  for (const auto& webhook : webhooks) {
    if (!contains(webhook.events, event.type) || event.at_ms < webhook.created_at_ms) continue;
    const std::string key = delivery_prefix(event.tenant_id, webhook.webhook_id) + event.event_id;
    if (state.get(key)) continue;
    wire::DeliveryRecord record{
        event.tenant_id, webhook.webhook_id, event.event_id, event.type, "failed", {}, at_ms, 0};
    record.attempts.push_back({at_ms, 0,
                               "not attempted: dropped from the outbox of partition " +
                                   std::to_string(partition) + ", which held " +
                                   std::to_string(kOutboxEventsMax) + " events not yet delivered",
                               0});
    put_delivery(state, record, 0);
  }
}

// Appends `event`; when that makes more than kOutboxEventsMax unacknowledged, drops the oldest
// and adds its id to `dropped`.
void append_outbox(PartitionState& state, std::uint32_t partition, wire::OutboxEvent event,
                   std::vector<std::string>& dropped,
                   std::uint32_t stream = wire::kOutboxWebhooks) {
  const std::string prefix = outbox_prefix(stream);
  OutboxMeta meta = load<OutboxMeta>(state, outbox_meta_key(stream)).value_or(OutboxMeta{});
  event.index = meta.next_index++;
  char id[48];
  const char* id_prefix = stream == wire::kOutboxWebhooks   ? "evt"
                          : stream == wire::kOutboxChannels ? "route"
                                                            : "locate";
  std::snprintf(id, sizeof id, "%s_%08x_%016llx", id_prefix, partition,
                static_cast<unsigned long long>(event.index));
  event.event_id = id;
  store(state, prefix + be64(event.index), event);
  // Bounded: without a dispatcher acknowledging, the oldest events go (counted and logged by
  // the storage node, and recorded for the webhooks that missed them where they live here).
  const std::uint64_t retained = event.index - meta.acked_up_to;
  if (retained > kOutboxEventsMax) {
    const std::uint64_t oldest = meta.acked_up_to + 1;
    if (auto lost = load<wire::OutboxEvent>(state, prefix + be64(oldest))) {
      dropped.push_back(lost->event_id);
      if (stream == wire::kOutboxWebhooks) record_dropped(state, partition, *lost, event.at_ms);
    }
    state.erase(prefix + be64(oldest));
    meta.acked_up_to = oldest;
    ++meta.dropped;
  }
  store(state, outbox_meta_key(stream), meta);
}

// ---- conversations

// The conversation if it exists in `tenant` and `requester` may see it (a
// member; empty requester: an admin of the tenant).
std::optional<wire::ConversationRecord> visible_conversation(const PartitionState& state,
                                                             std::string_view tenant,
                                                             std::string_view conversation_id,
                                                             std::string_view requester) {
  auto record = load<wire::ConversationRecord>(state, conversation_key(conversation_id));
  if (!record || record->tenant_id != tenant) return std::nullopt;
  if (!requester.empty() && !contains(record->members, requester)) return std::nullopt;
  return record;
}

DomainResult conversation_not_found() {
  return fail(Status::kNotFound, "conversation not found", "conversation_id");
}

wire::RecipientState current_state(const PartitionState& state, const wire::StoredMessage& message,
                                   std::string_view user) {
  if (auto stored =
          load<wire::RecipientState>(state, state_key(message.conversation_id, message.seq, user)))
    return *stored;
  wire::RecipientState fresh;
  fresh.recipient_id = std::string(user);
  fresh.history.push_back({wire::kStateSent, message.stored_at_ms});
  return fresh;
}

StateLogMeta state_log_meta(const PartitionState& state, std::string_view conversation) {
  return load<StateLogMeta>(state, state_log_meta_key(conversation)).value_or(StateLogMeta{});
}

// Appends one step to the conversation's state log and drops what passed kStateLogEntriesMax.
void append_state_log(PartitionState& state, const wire::StoredMessage& message,
                      const std::string& user, const char* step, std::int64_t at_ms) {
  StateLogMeta meta = state_log_meta(state, message.conversation_id);
  wire::StateLogEntry entry;
  entry.index = ++meta.head;
  entry.seq = message.seq;
  entry.message_id = message.message_id;
  entry.sender_id = message.sender_id;
  entry.recipient_id = user;
  entry.state = step;
  entry.at_ms = at_ms;
  const std::string prefix = state_log_prefix(message.conversation_id);
  store(state, prefix + be64(entry.index), entry);
  while (meta.head - meta.first_index + 1 > wire::kStateLogEntriesMax)
    state.erase(prefix + be64(meta.first_index++));
  store(state, state_log_meta_key(message.conversation_id), meta);
}

wire::StatePage read_states(const PartitionState& state, const wire::ReadStates& request) {
  const StateLogMeta meta = state_log_meta(state, request.conversation_id);
  wire::StatePage page;
  page.head = meta.head;
  page.first_index = meta.first_index;
  const std::uint32_t limit = std::clamp<std::uint32_t>(request.limit, 1, wire::kStatePageMax);
  // Entries below first_index are gone: the reader goes on from the oldest kept.
  std::uint64_t after = std::max(request.after_index, meta.first_index - 1);
  page.scanned_to = std::min(after, meta.head);
  std::uint32_t scanned = 0;
  const std::string prefix = state_log_prefix(request.conversation_id);
  state.scan(prefix, prefix + be64(after), [&](std::string_view, std::string_view value) {
    auto entry = codec::unpack_body<wire::StateLogEntry>(value);
    if (!entry) return false;
    page.scanned_to = entry->index;
    if (request.sender_id.empty() || entry->sender_id == request.sender_id)
      page.entries.push_back(std::move(*entry));
    return page.entries.size() < limit && ++scanned < wire::kStateScanMax;
  });
  return page;
}

// Moves `user`'s state of `message` forward to `target` (never back: a READ
// implies DELIVERED; a DELIVERED after READ changes nothing).
wire::RecipientState advance_state(PartitionState& state, std::uint32_t partition,
                                   const wire::StoredMessage& message, const std::string& tenant,
                                   const std::string& user, const char* target, std::int64_t at_ms,
                                   std::vector<wire::Event>& events,
                                   std::vector<std::string>& dropped) {
  wire::RecipientState recipient = current_state(state, message, user);
  const int current = state_rank(recipient.history.back().state);
  const int wanted = state_rank(target);
  if (wanted <= current) return recipient;
  // Times in a history never decrease, whichever leader's clock stamped the earlier step.
  at_ms = std::max(at_ms, recipient.history.back().at_ms);
  for (int rank = current + 1; rank <= wanted; ++rank) {
    const char* step = rank == 1 ? wire::kStateDelivered : wire::kStateRead;
    recipient.history.push_back({step, at_ms});
    wire::OutboxEvent outbox;
    outbox.type = event_type_of(step);
    outbox.tenant_id = tenant;
    outbox.conversation_id = message.conversation_id;
    outbox.seq = message.seq;
    outbox.message_id = message.message_id;
    outbox.sender_id = message.sender_id;
    outbox.recipient_id = user;
    outbox.state = step;
    outbox.at_ms = at_ms;
    append_outbox(state, partition, outbox, dropped);
    append_state_log(state, message, user, step, at_ms);
    wire::Event event;
    event.kind = "state";
    event.tenant_id = tenant;
    event.conversation_id = message.conversation_id;
    event.seq = message.seq;
    event.message_id = message.message_id;
    event.sender_id = message.sender_id;
    event.recipient_id = user;
    event.state = step;
    event.at_ms = at_ms;
    events.push_back(std::move(event));
  }
  store(state, state_key(message.conversation_id, message.seq, user), recipient);
  return recipient;
}

void membership_events(const std::string& tenant, const std::string& conversation_id,
                       const std::vector<std::string>& users, bool joined,
                       std::vector<wire::Event>& events) {
  for (const auto& user : users) {
    wire::Event event;
    event.kind = "membership";
    event.tenant_id = tenant;
    event.conversation_id = conversation_id;
    event.user_id = user;
    event.joined = joined;
    events.push_back(std::move(event));
  }
}

DomainResult create_conversation(PartitionState& state, wire::CreateConversation body,
                                 std::int64_t at_ms) {
  auto& record = body.conversation;
  if (record.tenant_id.empty() || record.conversation_id.empty())
    return fail(Status::kInvalid, "conversation needs a tenant and an id");
  if (record.type != "private" && record.type != "group")
    return fail(Status::kInvalid, "type must be private or group", "type");
  if (record.members.empty() || (record.type == "private" && record.members.size() != 2))
    return fail(Status::kInvalid, "a private conversation has exactly two members", "members");
  if (auto existing =
          load<wire::ConversationRecord>(state, conversation_key(record.conversation_id))) {
    DomainResult result = fail(Status::kExists, "conversation exists", "conversation_id");
    if (existing->tenant_id == record.tenant_id) result.body = codec::pack_body(*existing);
    return result;
  }
  record.created_at_ms = record.updated_at_ms = at_ms;
  store(state, conversation_key(record.conversation_id), record);
  DomainResult result = ok(record);
  membership_events(record.tenant_id, record.conversation_id, record.members, true, result.events);
  return result;
}

DomainResult add_members(PartitionState& state, const wire::ChangeMembers& body,
                         std::int64_t at_ms) {
  auto record = visible_conversation(state, body.tenant_id, body.conversation_id, body.by);
  if (!record) return conversation_not_found();
  if (record->type != "group")
    return fail(Status::kInvalid, "a private conversation has fixed members", "members");
  std::vector<std::string> joined;
  for (const auto& user : body.users)
    if (!contains(record->members, user) && !contains(joined, user)) joined.push_back(user);
  if (body.members_max != 0 && record->members.size() + joined.size() > body.members_max)
    return fail(Status::kInvalid,
                "a conversation has at most " + std::to_string(body.members_max) + " members",
                "members");
  // A new member starts at the join: what came before is neither unread nor
  // pushed to their devices (history still shows it).
  const std::uint64_t head = state.head(body.conversation_id);
  for (const auto& user : joined) {
    record->members.push_back(user);
    store(state, horizons_key(body.conversation_id, user), wire::Horizons{head, head});
  }
  record->updated_at_ms = at_ms;
  store(state, conversation_key(record->conversation_id), *record);
  DomainResult result = ok(*record);
  membership_events(record->tenant_id, record->conversation_id, joined, true, result.events);
  return result;
}

DomainResult remove_member(PartitionState& state, const wire::ChangeMembers& body,
                           std::int64_t at_ms) {
  auto record = visible_conversation(state, body.tenant_id, body.conversation_id, body.by);
  if (!record) return conversation_not_found();
  if (body.users.size() != 1) return fail(Status::kInvalid, "name one member to remove");
  const std::string& user = body.users.front();
  auto it = std::find(record->members.begin(), record->members.end(), user);
  if (it == record->members.end()) return fail(Status::kNotFound, "not a member", "user_id");
  if (!body.by.empty() && body.by != user && body.by != record->created_by)
    return fail(Status::kInvalid, "only the creator of a conversation may remove other members",
                "user_id");
  record->members.erase(it);
  record->updated_at_ms = at_ms;
  store(state, conversation_key(record->conversation_id), *record);
  DomainResult result = ok(*record);
  membership_events(record->tenant_id, record->conversation_id, {user}, false, result.events);
  return result;
}

DomainResult mark_state(PartitionState& state, std::uint32_t partition, const wire::MarkState& body,
                        std::int64_t at_ms) {
  auto record = visible_conversation(state, body.tenant_id, body.conversation_id, body.user_id);
  if (!record || body.user_id.empty()) return conversation_not_found();
  if (body.state != wire::kStateDelivered && body.state != wire::kStateRead)
    return fail(Status::kInvalid, "state must be DELIVERED or READ", "state");
  const char* target = body.state == wire::kStateRead ? wire::kStateRead : wire::kStateDelivered;
  DomainResult result;
  wire::MarkStateResult out;
  const std::string key = horizons_key(body.conversation_id, body.user_id);
  wire::Horizons horizons = load<wire::Horizons>(state, key).value_or(wire::Horizons{});
  if (!body.message_id.empty()) {
    auto seq = state.seq_of(body.conversation_id, body.message_id);
    auto message = seq ? state.message(body.conversation_id, *seq) : std::nullopt;
    if (!message) return fail(Status::kNotFound, "message not found", "message_id");
    if (!contains(message->recipients, body.user_id))
      return fail(Status::kInvalid, "the caller is not a recipient of this message", "message_id");
    out.message_state = advance_state(state, partition, *message, record->tenant_id, body.user_id,
                                      target, at_ms, result.events, result.outbox_dropped);
  } else {
    std::uint64_t& horizon =
        target == wire::kStateRead ? horizons.read_up_to : horizons.delivered_up_to;
    const std::uint64_t wanted =
        std::min({body.up_to_seq, state.head(body.conversation_id), horizon + kHorizonStepMax});
    for (std::uint64_t seq = horizon + 1; seq <= wanted; ++seq) {
      auto message = state.message(body.conversation_id, seq);
      if (message && contains(message->recipients, body.user_id))
        advance_state(state, partition, *message, record->tenant_id, body.user_id, target, at_ms,
                      result.events, result.outbox_dropped);
    }
    horizon = std::max(horizon, wanted);
    // A read horizon implies the delivered one; the states are already READ.
    horizons.delivered_up_to = std::max(horizons.delivered_up_to, horizons.read_up_to);
    store(state, key, horizons);
  }
  out.horizons = horizons;
  result.body = codec::pack_body(out);
  return result;
}

// ---- tenant directory

DomainResult create_user(PartitionState& state, wire::CreateUser body, std::int64_t at_ms) {
  auto& user = body.user;
  if (user.tenant_id.empty() || user.user_id.empty())
    return fail(Status::kInvalid, "user needs a tenant and an id", "user_id");
  const std::string key = user_key(user.tenant_id, user.user_id);
  if (state.get(key)) return fail(Status::kExists, "user exists", "user_id");
  // Tokens of an erased user stay refused because its record never comes back
  // (nodes/frontend/http_api.cc, admit_user), so its id is not given out again.
  if (erase_job(state, user.tenant_id, user.user_id))
    return fail(Status::kExists, "user_id belonged to an erased user and is not reused", "user_id");
  for (const auto& identity : user.identities)
    if (state.get(identity_key(user.tenant_id, identity)))
      return fail(
          Status::kExists,
          "identity " + identity.channel + ":" + identity.address + " is linked to another user",
          "identities");
  user.created_at_ms = user.updated_at_ms = at_ms;
  for (const auto& identity : user.identities)
    state.put(identity_key(user.tenant_id, identity), user.user_id);
  store(state, key, user);
  return ok(user);
}

DomainResult update_user(PartitionState& state, const wire::UpdateUser& body, std::int64_t at_ms) {
  const std::string key = user_key(body.tenant_id, body.user_id);
  auto user = load<wire::UserRecord>(state, key);
  if (!user) return fail(Status::kNotFound, "user not found", "user_id");
  if (body.set_display_name) user->display_name = body.display_name;
  if (body.set_password_hash) user->password_hash = body.password_hash;
  const bool was_hidden = user->presence_hidden;
  if (body.set_presence_hidden) user->presence_hidden = body.presence_hidden;
  user->updated_at_ms = at_ms;
  store(state, key, *user);
  DomainResult result = ok(*user);
  note_presence_visibility(state, *user, was_hidden, result.events);
  return result;
}

DomainResult change_identity(PartitionState& state, const wire::IdentityChange& body, bool link,
                             std::int64_t at_ms) {
  const std::string key = user_key(body.tenant_id, body.user_id);
  auto user = load<wire::UserRecord>(state, key);
  if (!user) return fail(Status::kNotFound, "user not found", "user_id");
  auto same_channel = [&](const wire::Identity& identity) {
    return identity.channel == body.identity.channel;
  };
  if (link) {
    auto owner = state.get(identity_key(body.tenant_id, body.identity));
    if (owner && *owner != body.user_id)
      return fail(Status::kExists, "address is linked to another user", "address");
  }
  auto old = std::find_if(user->identities.begin(), user->identities.end(), same_channel);
  if (old != user->identities.end()) {
    state.erase(identity_key(body.tenant_id, *old));
    user->identities.erase(old);
  } else if (!link) {
    return fail(Status::kNotFound, "no identity on that channel", "channel");
  }
  if (link) {
    state.put(identity_key(body.tenant_id, body.identity), body.user_id);
    user->identities.push_back(body.identity);
  }
  user->updated_at_ms = at_ms;
  store(state, key, *user);
  return ok(*user);
}

DomainResult create_client(PartitionState& state, wire::CreateClient body, std::int64_t at_ms) {
  auto& client = body.client;
  const std::string key = client_key(client.tenant_id, client.client_id);
  if (state.get(key)) return fail(Status::kExists, "client exists", "client_id");
  client.created_at_ms = at_ms;
  store(state, key, client);
  return ok(client);
}

DomainResult delete_record(PartitionState& state, const std::string& key, const char* what) {
  if (!state.get(key)) return fail(Status::kNotFound, std::string(what) + " not found");
  state.erase(key);
  return ok_empty();
}

std::vector<std::string> keys_with_prefix(const PartitionState& state, const std::string& prefix) {
  std::vector<std::string> keys;
  state.scan(prefix, {}, [&](std::string_view key, std::string_view) {
    keys.emplace_back(key);
    return true;
  });
  return keys;
}

DomainResult index_membership(PartitionState& state, const wire::IndexMembership& body) {
  for (const auto& user : body.users) {
    const std::string key = membership_prefix(body.tenant_id, user) + body.conversation_id;
    if (body.joined)
      state.put(key, "");
    else
      state.erase(key);
  }
  DomainResult result = ok_empty();
  membership_events(body.tenant_id, body.conversation_id, body.users, body.joined, result.events);
  return result;
}

DomainResult create_webhook(PartitionState& state, wire::CreateWebhook body, std::int64_t at_ms) {
  auto& webhook = body.webhook;
  const std::string key = webhook_key(webhook.tenant_id, webhook.webhook_id);
  if (state.get(key)) return fail(Status::kExists, "webhook exists", "webhook_id");
  webhook.created_at_ms = at_ms;
  store(state, key, webhook);
  return ok(webhook);
}

DomainResult delete_webhook(PartitionState& state, const wire::TenantLookup& body) {
  DomainResult result = delete_record(state, webhook_key(body.tenant_id, body.id), "webhook");
  if (result.status == Status::kOk) {
    for (const auto& key : keys_with_prefix(state, delivery_prefix(body.tenant_id, body.id)))
      state.erase(key);
    const std::string order_key = delivery_order_key(body.tenant_id, body.id);
    for (const auto& key : keys_with_prefix(state, order_key + "/")) state.erase(key);
    state.erase(order_key);
  }
  return result;
}

DomainResult record_delivery(PartitionState& state, const wire::RecordDelivery& body) {
  const auto& delivery = body.delivery;
  if (!state.get(webhook_key(delivery.tenant_id, delivery.webhook_id)))
    return fail(Status::kNotFound, "webhook not found", "webhook_id");
  put_delivery(state, delivery, body.kept_max);
  return ok_empty();
}

DomainResult locate_message(PartitionState& state, const wire::LocateMessage& body) {
  const std::string key = locator_record_key(body.tenant_id, body.message_id);
  if (auto existing = state.get(key)) {
    if (*existing != body.conversation_id)
      return fail(Status::kConflict, "message_id is already used in another conversation",
                  "message_id");
    return ok_empty();
  }
  state.put(key, body.conversation_id);
  return ok_empty();
}

// The frontend releases a claim when the append it was made for was refused and names no stored
// message (a mistyped conversation, a sender who is not a member), so the id stays usable.
DomainResult release_message(PartitionState& state, const wire::LocateMessage& body) {
  const std::string key = locator_record_key(body.tenant_id, body.message_id);
  if (auto existing = state.get(key); existing && *existing == body.conversation_id)
    state.erase(key);
  return ok_empty();
}

// Written behind the committed log by the routers' locator indexers, from the locator outbox
// of the partitions that stored the messages. Replays change nothing; the first conversation
// indexed under an id keeps it.
DomainResult index_messages(PartitionState& state, const wire::IndexMessages& body) {
  if (body.entries.size() > wire::kIndexMessagesEntriesMax)
    return fail(Status::kInvalid, "more than " + std::to_string(wire::kIndexMessagesEntriesMax) +
                                      " locator entries in one command");
  for (const auto& entry : body.entries)
    if (entry.tenant_id.empty() || entry.message_id.empty() || entry.conversation_id.empty())
      return fail(Status::kInvalid,
                  "a locator entry needs tenant_id, message_id and conversation_id");
  wire::IndexMessagesResult result;
  for (const auto& entry : body.entries) {
    const std::string key = locator_record_key(entry.tenant_id, entry.message_id);
    auto existing = state.get(key);
    if (!existing) {
      state.put(key, entry.conversation_id);
      ++result.added;
    } else if (*existing == entry.conversation_id) {
      ++result.replayed;
    } else {
      result.conflicts.push_back({entry, *existing});
    }
  }
  return ok(result);
}

DomainResult ack_outbox(PartitionState& state, const wire::AckOutbox& body) {
  if (body.stream >= wire::kOutboxStreams) return fail(Status::kInvalid, "no such outbox stream");
  OutboxMeta meta = load<OutboxMeta>(state, outbox_meta_key(body.stream)).value_or(OutboxMeta{});
  const std::uint64_t up_to = std::min(body.up_to, meta.next_index - 1);
  for (std::uint64_t index = meta.acked_up_to + 1; index <= up_to; ++index)
    state.erase(outbox_prefix(body.stream) + be64(index));
  meta.acked_up_to = std::max(meta.acked_up_to, up_to);
  store(state, outbox_meta_key(body.stream), meta);
  return ok_empty();
}

int delivery_rank(std::string_view state) {
  if (state == wire::kDeliveryPending) return 0;
  if (state == wire::kDeliveryRetrying) return 1;
  if (state == wire::kDeliveryFailed || state == wire::kDeliveryNoIdentity) return 2;
  if (state == wire::kDeliverySent) return 3;
  if (state == wire::kDeliveryDelivered) return 4;
  if (state == wire::kDeliveryRead) return 5;
  return -1;
}

DomainResult update_channel_delivery(PartitionState& state, wire::ChannelDeliveryUpdate body,
                                     std::int64_t at_ms) {
  auto& update = body.delivery;
  if (update.message_id.empty() || update.recipient_id.empty() || update.channel.empty())
    return fail(Status::kInvalid, "a channel delivery needs message_id, recipient_id and channel");
  if (delivery_rank(update.state) < 0)
    return fail(Status::kInvalid, "unknown delivery state '" + update.state + "'", "state");
  if (!visible_conversation(state, update.tenant_id, update.conversation_id, ""))
    return conversation_not_found();
  const std::string key = channel_delivery_prefix(update.conversation_id, update.message_id) +
                          update.recipient_id + '\0' + update.channel;
  wire::ChannelDeliveryRecord record =
      load<wire::ChannelDeliveryRecord>(state, key).value_or(wire::ChannelDeliveryRecord{});
  if (record.message_id.empty()) {
    record = update;
    record.attempts.clear();
    record.created_at_ms = at_ms;
  } else {
    const int from = delivery_rank(record.state), to = delivery_rank(update.state);
    // The platform may refuse what it accepted before (a "failed" report).
    const bool refused_after_accept =
        update.state == wire::kDeliveryFailed && record.state == wire::kDeliverySent;
    if (to > from || refused_after_accept) {
      record.state = update.state;
      record.next_attempt_at_ms = update.next_attempt_at_ms;
    } else if (to == from) {
      record.next_attempt_at_ms = update.next_attempt_at_ms;
    }
    if (!update.address.empty()) record.address = update.address;
    if (!update.provider_message_id.empty())
      record.provider_message_id = update.provider_message_id;
    if (!update.error.empty()) record.error = update.error;
  }
  for (auto& attempt : body.attempt) record.attempts.push_back(std::move(attempt));
  if (record.attempts.size() > wire::kChannelAttemptsKept)
    record.attempts.erase(record.attempts.begin(),
                          record.attempts.end() - wire::kChannelAttemptsKept);
  record.updated_at_ms = at_ms;
  store(state, key, record);
  return ok(record);
}

// Refs of one address: "A/<channel>\0<address>\0" holds the last one
// (which conversation a reply without context goes to), "...\0<provider id>"
// each one, and "...\0\x01order" their ids oldest first, to forget the
// oldest beyond kChannelRefsPerAddress.
DomainResult index_channel_ref(PartitionState& state, wire::ChannelRef ref, std::int64_t at_ms) {
  if (ref.channel.empty() || ref.address.empty() || ref.provider_message_id.empty() ||
      ref.conversation_id.empty())
    return fail(Status::kInvalid,
                "a channel ref needs channel, address, provider_message_id and conversation_id");
  const std::string prefix = channel_address_prefix(ref.channel, ref.address);
  ref.at_ms = at_ms;
  const std::string ref_key = prefix + ref.provider_message_id;
  const bool known = state.get(ref_key).has_value();
  store(state, ref_key, ref);
  store(state, prefix, ref);
  if (known) return ok_empty();
  const std::string order_key = prefix + "\x01order";
  auto order =
      load<std::vector<std::string>>(state, order_key).value_or(std::vector<std::string>{});
  order.push_back(ref.provider_message_id);
  if (order.size() > wire::kChannelRefsPerAddress) {
    state.erase(prefix + order.front());
    order.erase(order.begin());
  }
  store(state, order_key, order);
  return ok_empty();
}

// ---- queries

template <typename Record>
std::vector<Record> list_records(const PartitionState& state, const std::string& prefix,
                                 std::string_view after, std::uint32_t limit) {
  std::vector<Record> records;
  const std::uint32_t wanted = std::clamp<std::uint32_t>(limit, 1, 1000);
  state.scan(prefix, after.empty() ? std::string() : prefix + std::string(after),
             [&](std::string_view, std::string_view value) {
               if (auto record = codec::unpack_body<Record>(value))
                 records.push_back(std::move(*record));
               return records.size() < wanted;
             });
  return records;
}

DomainResult conversation_summary(const PartitionState& state,
                                  const wire::ConversationLookup& body) {
  auto record =
      visible_conversation(state, body.tenant_id, body.conversation_id, body.requester_id);
  if (!record) return conversation_not_found();
  wire::ConversationSummary summary;
  summary.conversation = *record;
  summary.last_seq = state.head(body.conversation_id);
  summary.state_head = state_log_meta(state, body.conversation_id).head;
  if (summary.last_seq > 0)
    if (auto last = state.message(body.conversation_id, summary.last_seq))
      summary.last_message.push_back(std::move(*last));
  if (!body.requester_id.empty()) {
    summary.horizons =
        load<wire::Horizons>(state, horizons_key(body.conversation_id, body.requester_id))
            .value_or(wire::Horizons{});
    // Newest first, so that a long unread run costs at most kUnreadCountMax reads.
    for (std::uint64_t seq = summary.last_seq;
         seq > summary.horizons.read_up_to && summary.unread_count < wire::kUnreadCountMax; --seq) {
      auto message = state.message(body.conversation_id, seq);
      if (message && contains(message->recipients, body.requester_id)) ++summary.unread_count;
      if (summary.last_seq - seq + 1 >= wire::kUnreadCountMax) break;
    }
  }
  return ok(summary);
}

DomainResult get_message(const PartitionState& state, const wire::ConversationLookup& body) {
  auto record =
      visible_conversation(state, body.tenant_id, body.conversation_id, body.requester_id);
  if (!record) return fail(Status::kNotFound, "message not found", "message_id");
  auto seq = state.seq_of(body.conversation_id, body.message_id);
  auto message = seq ? state.message(body.conversation_id, *seq) : std::nullopt;
  if (!message) return fail(Status::kNotFound, "message not found", "message_id");
  wire::MessageWithStates out;
  // The sender and admins see every recipient's state; anyone else only their own.
  const bool sees_all = body.requester_id.empty() || body.requester_id == message->sender_id;
  for (const auto& recipient : message->recipients)
    if (sees_all || recipient == body.requester_id)
      out.states.push_back(current_state(state, *message, recipient));
  out.message = std::move(*message);
  return ok(out);
}

// An event about a message that expired before it was sent: its readers acknowledge it like
// any other, but nothing of the message is left to send.
bool expired(const PartitionState& state, const wire::OutboxEvent& event) {
  if (event.conversation_id.empty() || event.seq == 0) return false;
  auto record = load<wire::ConversationRecord>(state, conversation_key(event.conversation_id));
  return record && event.seq < history_start(*record);
}

void blank_expired(wire::OutboxEvent& event) {
  event.type = "message.expired";
  event.recipients.clear();
  event.channels.clear();
  event.payload = {};
  event.metadata.clear();
}

}  // namespace

std::optional<wire::ConversationRecord> load_conversation(const PartitionState& state,
                                                          std::string_view conversation_id) {
  return load<wire::ConversationRecord>(state, conversation_key(conversation_id));
}

void store_conversation(PartitionState& state, const wire::ConversationRecord& record) {
  store(state, conversation_key(record.conversation_id), record);
}

void forget_message_records(PartitionState& state, const wire::StoredMessage& message) {
  for (const auto& key :
       keys_with_prefix(state, state_key(message.conversation_id, message.seq, "")))
    state.erase(key);
  for (const auto& key : keys_with_prefix(
           state, channel_delivery_prefix(message.conversation_id, message.message_id)))
    state.erase(key);
}

std::size_t scrub_channel_outbox(PartitionState& state, std::string_view conversation,
                                 std::string_view sender, std::size_t scan_max) {
  const std::string prefix = outbox_prefix(wire::kOutboxChannels);
  std::vector<std::pair<std::string, wire::OutboxEvent>> changed;
  std::size_t scanned = 0;
  state.scan(prefix, {}, [&](std::string_view key, std::string_view value) {
    auto event = codec::unpack_body<wire::OutboxEvent>(value);
    if (event && event->conversation_id == conversation && event->sender_id == sender &&
        (!event->payload.type.empty() || !event->metadata.empty())) {
      event->payload = {};
      event->metadata.clear();
      changed.emplace_back(std::string(key), std::move(*event));
    }
    return ++scanned < scan_max;
  });
  for (const auto& [key, event] : changed) store(state, key, event);
  return changed.size();
}

DomainResult apply_command(PartitionState& state, std::uint32_t partition,
                           const wire::CommandRequest& command, std::int64_t at_ms) {
  using Kind = wire::CommandKind;
  auto malformed = [] { return fail(Status::kInvalid, "command body does not match its kind"); };
#define CHAT4ALL_BODY(Type, name)         \
  auto name = decode<Type>(command.body); \
  if (!name) return malformed();
  switch (command.kind) {
    case Kind::kCreateUser: {
      CHAT4ALL_BODY(wire::CreateUser, body);
      return create_user(state, std::move(*body), at_ms);
    }
    case Kind::kUpdateUser: {
      CHAT4ALL_BODY(wire::UpdateUser, body);
      return update_user(state, *body, at_ms);
    }
    case Kind::kLinkIdentity:
    case Kind::kUnlinkIdentity: {
      CHAT4ALL_BODY(wire::IdentityChange, body);
      return change_identity(state, *body, command.kind == Kind::kLinkIdentity, at_ms);
    }
    case Kind::kCreateClient: {
      CHAT4ALL_BODY(wire::CreateClient, body);
      return create_client(state, std::move(*body), at_ms);
    }
    case Kind::kDeleteClient: {
      CHAT4ALL_BODY(wire::TenantLookup, body);
      return delete_record(state, client_key(body->tenant_id, body->id), "client");
    }
    case Kind::kIndexMembership: {
      CHAT4ALL_BODY(wire::IndexMembership, body);
      return index_membership(state, *body);
    }
    case Kind::kCreateWebhook: {
      CHAT4ALL_BODY(wire::CreateWebhook, body);
      return create_webhook(state, std::move(*body), at_ms);
    }
    case Kind::kDeleteWebhook: {
      CHAT4ALL_BODY(wire::TenantLookup, body);
      return delete_webhook(state, *body);
    }
    case Kind::kRecordDelivery: {
      CHAT4ALL_BODY(wire::RecordDelivery, body);
      return record_delivery(state, *body);
    }
    case Kind::kCreateConversation: {
      CHAT4ALL_BODY(wire::CreateConversation, body);
      return create_conversation(state, std::move(*body), at_ms);
    }
    case Kind::kAddMembers: {
      CHAT4ALL_BODY(wire::ChangeMembers, body);
      return add_members(state, *body, at_ms);
    }
    case Kind::kRemoveMember: {
      CHAT4ALL_BODY(wire::ChangeMembers, body);
      return remove_member(state, *body, at_ms);
    }
    case Kind::kMarkState: {
      CHAT4ALL_BODY(wire::MarkState, body);
      return mark_state(state, partition, *body, at_ms);
    }
    case Kind::kLocateMessage: {
      CHAT4ALL_BODY(wire::LocateMessage, body);
      return locate_message(state, *body);
    }
    case Kind::kReleaseMessage: {
      CHAT4ALL_BODY(wire::LocateMessage, body);
      return release_message(state, *body);
    }
    case Kind::kIndexMessages: {
      CHAT4ALL_BODY(wire::IndexMessages, body);
      return index_messages(state, *body);
    }
    case Kind::kAckOutbox: {
      CHAT4ALL_BODY(wire::AckOutbox, body);
      return ack_outbox(state, *body);
    }
    case Kind::kUpdateChannelDelivery: {
      CHAT4ALL_BODY(wire::ChannelDeliveryUpdate, body);
      return update_channel_delivery(state, std::move(*body), at_ms);
    }
    case Kind::kIndexChannelRef: {
      CHAT4ALL_BODY(wire::ChannelRef, body);
      return index_channel_ref(state, std::move(*body), at_ms);
    }
    case Kind::kReportPresence: {
      CHAT4ALL_BODY(wire::PresenceReport, body);
      return report_presence(state, *body, at_ms);
    }
    case Kind::kExpirePresence: {
      CHAT4ALL_BODY(wire::PresenceExpiry, body);
      return expire_presence(state, *body, at_ms);
    }
    case Kind::kExpireMessages: {
      CHAT4ALL_BODY(wire::MessageExpiry, body);
      return expire_messages(state, *body, at_ms);
    }
    case Kind::kSetRetention: {
      CHAT4ALL_BODY(wire::SetRetention, body);
      return set_retention(state, *body, at_ms);
    }
    case Kind::kEraseUser: {
      CHAT4ALL_BODY(wire::EraseUser, body);
      return erase_user(state, *body, at_ms);
    }
    case Kind::kEraseMessages: {
      CHAT4ALL_BODY(wire::EraseMessages, body);
      return erase_messages(state, *body);
    }
    case Kind::kEraseProgress: {
      CHAT4ALL_BODY(wire::EraseProgress, body);
      return record_erase_progress(state, *body, at_ms);
    }
    case Kind::kCreateUpload:
    case Kind::kAdvanceUpload:
    case Kind::kDeleteFile:
    case Kind::kExpireUploads:
    case Kind::kShareFile:
      return apply_file_command(state, command, at_ms);
    case Kind::kStoreTopology: {
      CHAT4ALL_BODY(wire::StoreTopology, body);
      return store_topology(state, *body, at_ms);
    }
    case Kind::kChangeReplicas:  // a replica set change, which this state machine does not make
    case Kind::kNone:
      break;
  }
#undef CHAT4ALL_BODY
  return fail(Status::kInvalid, "unknown command kind");
}

DomainResult run_query(const PartitionState& state, const wire::QueryRequest& query) {
  using Kind = wire::QueryKind;
  auto malformed = [] { return fail(Status::kInvalid, "query body does not match its kind"); };
#define CHAT4ALL_BODY(Type, name)       \
  auto name = decode<Type>(query.body); \
  if (!name) return malformed();
  switch (query.kind) {
    case Kind::kGetUser: {
      CHAT4ALL_BODY(wire::TenantLookup, body);
      auto user = load<wire::UserRecord>(state, user_key(body->tenant_id, body->id));
      return user ? ok(*user) : fail(Status::kNotFound, "user not found", "user_id");
    }
    case Kind::kListUsers: {
      CHAT4ALL_BODY(wire::TenantList, body);
      return ok(list_records<wire::UserRecord>(state, user_key(body->tenant_id, ""), body->after,
                                               body->limit));
    }
    case Kind::kGetClient: {
      CHAT4ALL_BODY(wire::TenantLookup, body);
      auto client = load<wire::ClientRecord>(state, client_key(body->tenant_id, body->id));
      return client ? ok(*client) : fail(Status::kNotFound, "client not found", "client_id");
    }
    case Kind::kListClients: {
      CHAT4ALL_BODY(wire::TenantList, body);
      return ok(list_records<wire::ClientRecord>(state, client_key(body->tenant_id, ""),
                                                 body->after, body->limit));
    }
    case Kind::kMissingUsers: {
      CHAT4ALL_BODY(wire::UserSet, body);
      std::vector<std::string> missing;
      for (const auto& user : body->users)
        if (!state.get(user_key(body->tenant_id, user))) missing.push_back(user);
      return ok(missing);
    }
    case Kind::kListUserConversations: {
      CHAT4ALL_BODY(wire::TenantList, body);
      const std::string prefix = membership_prefix(body->tenant_id, body->owner);
      std::vector<std::string> conversations;
      const std::uint32_t wanted = std::clamp<std::uint32_t>(body->limit, 1, 1000);
      state.scan(prefix, body->after.empty() ? std::string() : prefix + body->after,
                 [&](std::string_view key, std::string_view) {
                   conversations.emplace_back(key.substr(prefix.size()));
                   return conversations.size() < wanted;
                 });
      return ok(conversations);
    }
    case Kind::kListWebhooks: {
      CHAT4ALL_BODY(wire::TenantList, body);
      return ok(list_records<wire::WebhookRecord>(state, webhook_key(body->tenant_id, ""),
                                                  body->after, body->limit));
    }
    case Kind::kGetWebhook: {
      CHAT4ALL_BODY(wire::TenantLookup, body);
      auto webhook = load<wire::WebhookRecord>(state, webhook_key(body->tenant_id, body->id));
      return webhook ? ok(*webhook) : fail(Status::kNotFound, "webhook not found", "webhook_id");
    }
    case Kind::kListDeliveries: {
      CHAT4ALL_BODY(wire::TenantList, body);
      if (!state.get(webhook_key(body->tenant_id, body->owner)))
        return fail(Status::kNotFound, "webhook not found", "webhook_id");
      return ok(list_records<wire::DeliveryRecord>(
          state, delivery_prefix(body->tenant_id, body->owner), body->after, body->limit));
    }
    case Kind::kGetDelivery: {
      CHAT4ALL_BODY(wire::DeliveryLookup, body);
      auto delivery = load<wire::DeliveryRecord>(
          state, delivery_prefix(body->tenant_id, body->webhook_id) + body->event_id);
      return delivery ? ok(*delivery) : fail(Status::kNotFound, "delivery not found", "event_id");
    }
    case Kind::kResolveIdentity: {
      CHAT4ALL_BODY(wire::IdentityChange, body);
      auto owner = state.get(identity_key(body->tenant_id, body->identity));
      auto user =
          owner ? load<wire::UserRecord>(state, user_key(body->tenant_id, *owner)) : std::nullopt;
      return user ? ok(*user) : fail(Status::kNotFound, "no user has that identity", "address");
    }
    case Kind::kGetConversation: {
      CHAT4ALL_BODY(wire::ConversationLookup, body);
      auto record =
          visible_conversation(state, body->tenant_id, body->conversation_id, body->requester_id);
      return record ? ok(*record) : conversation_not_found();
    }
    case Kind::kGetMessage: {
      CHAT4ALL_BODY(wire::ConversationLookup, body);
      return get_message(state, *body);
    }
    case Kind::kGetPresence: {
      CHAT4ALL_BODY(wire::PresenceLookup, body);
      return get_presence(state, *body);
    }
    case Kind::kExpiredPresenceLeases: {
      CHAT4ALL_BODY(wire::PresenceSweep, body);
      return ok(expired_presence_leases(state, *body));
    }
    case Kind::kRetentionSweep: {
      CHAT4ALL_BODY(wire::RetentionSweep, body);
      return ok(retention_sweep(state, *body));
    }
    case Kind::kGetEraseJob: {
      CHAT4ALL_BODY(wire::TenantLookup, body);
      auto job = erase_job(state, body->tenant_id, body->id);
      return job ? ok(*job) : fail(Status::kNotFound, "no erasure of that user", "user_id");
    }
    case Kind::kTyping: {
      // The membership check; the node rate-limits and publishes (storage_node.cc).
      CHAT4ALL_BODY(wire::TypingNotice, body);
      if (body->user_id.empty() ||
          !visible_conversation(state, body->tenant_id, body->conversation_id, body->user_id))
        return conversation_not_found();
      return ok(wire::TypingResult{true});
    }
    case Kind::kConversationSummary: {
      CHAT4ALL_BODY(wire::ConversationLookup, body);
      return conversation_summary(state, *body);
    }
    case Kind::kReadStates: {
      CHAT4ALL_BODY(wire::ReadStates, body);
      if (!visible_conversation(state, body->tenant_id, body->conversation_id, body->requester_id))
        return conversation_not_found();
      return ok(read_states(state, *body));
    }
    case Kind::kFindMessage: {
      CHAT4ALL_BODY(wire::LocateMessage, body);
      auto conversation = state.get(locator_record_key(body->tenant_id, body->message_id));
      return conversation ? ok(*conversation)
                          : fail(Status::kNotFound, "message not found", "message_id");
    }
    case Kind::kReadOutbox: {
      CHAT4ALL_BODY(wire::ReadOutbox, body);
      if (body->stream >= wire::kOutboxStreams)
        return fail(Status::kInvalid, "no such outbox stream");
      std::vector<wire::OutboxEvent> events;
      const std::uint32_t wanted = std::clamp<std::uint32_t>(body->limit, 1, 1024);
      const std::string prefix = outbox_prefix(body->stream);
      state.scan(prefix, prefix + be64(body->after), [&](std::string_view, std::string_view value) {
        if (auto event = codec::unpack_body<wire::OutboxEvent>(value)) {
          if (expired(state, *event)) blank_expired(*event);
          events.push_back(std::move(*event));
        }
        return events.size() < wanted;
      });
      return ok(events);
    }
    case Kind::kListChannelDeliveries: {
      CHAT4ALL_BODY(wire::ConversationLookup, body);
      if (!visible_conversation(state, body->tenant_id, body->conversation_id, body->requester_id))
        return fail(Status::kNotFound, "message not found", "message_id");
      auto seq = state.seq_of(body->conversation_id, body->message_id);
      auto message = seq ? state.message(body->conversation_id, *seq) : std::nullopt;
      if (!message) return fail(Status::kNotFound, "message not found", "message_id");
      // As with states: the sender and admins see every recipient's, anyone else their own.
      const bool sees_all = body->requester_id.empty() || body->requester_id == message->sender_id;
      std::vector<wire::ChannelDeliveryRecord> records;
      state.scan(channel_delivery_prefix(body->conversation_id, body->message_id), "",
                 [&](std::string_view, std::string_view value) {
                   auto record = codec::unpack_body<wire::ChannelDeliveryRecord>(value);
                   if (record && (sees_all || record->recipient_id == body->requester_id))
                     records.push_back(std::move(*record));
                   return records.size() < 4096;
                 });
      return ok(records);
    }
    case Kind::kFindChannelRef: {
      CHAT4ALL_BODY(wire::ChannelRef, body);
      auto ref = load<wire::ChannelRef>(
          state, channel_address_prefix(body->channel, body->address) + body->provider_message_id);
      return ref ? ok(*ref) : fail(Status::kNotFound, "no such platform message", "id");
    }
    case Kind::kGetFile:
    case Kind::kExpiredUploads:
      return run_file_query(state, query);
    case Kind::kGetTopology:
      return get_topology(state);
    case Kind::kNone:
      break;
  }
#undef CHAT4ALL_BODY
  return fail(Status::kInvalid, "unknown query kind");
}

DomainResult check_append(const PartitionState& state, wire::AppendRequest& append) {
  if (append.tenant_id.empty()) return {};
  auto record = visible_conversation(state, append.tenant_id, append.conversation_id,
                                     append.sender_named_by_admin ? "" : append.sender_id);
  if (!record || append.sender_id.empty()) return conversation_not_found();
  if (!contains(record->members, append.sender_id))
    return fail(Status::kInvalid, "sender " + append.sender_id + " is not a member", "sender_id");
  if (append.recipients.empty()) {
    for (const auto& member : record->members)
      if (member != append.sender_id) append.recipients.push_back(member);
    return {};
  }
  for (const auto& recipient : append.recipients)
    if (recipient == append.sender_id || !contains(record->members, recipient))
      return fail(Status::kInvalid, "recipient " + recipient + " is not another member", "to");
  return {};
}

std::vector<std::string> note_appended(PartitionState& state, std::uint32_t partition,
                                       const wire::StoredMessage& message,
                                       const std::string& tenant_id, bool route_to_channels,
                                       std::vector<wire::Event>& events) {
  std::vector<std::string> dropped;
  if (tenant_id.empty()) return dropped;
  wire::OutboxEvent outbox;
  outbox.type = "message.sent";
  outbox.tenant_id = tenant_id;
  outbox.conversation_id = message.conversation_id;
  outbox.seq = message.seq;
  outbox.message_id = message.message_id;
  outbox.sender_id = message.sender_id;
  outbox.state = wire::kStateSent;
  outbox.at_ms = message.stored_at_ms;
  append_outbox(state, partition, outbox, dropped);
  // Its locator entry, indexed behind the log (kIndexMessages) so that the send needs one
  // replicated round only.
  wire::OutboxEvent locate = outbox;
  locate.type = "message.locate";
  locate.state.clear();
  append_outbox(state, partition, std::move(locate), dropped, wire::kOutboxLocator);
  // No choice means every channel.
  const bool only_internal =
      !message.channels.empty() &&
      std::all_of(message.channels.begin(), message.channels.end(),
                  [](const std::string& channel) { return channel == "internal"; });
  if (route_to_channels && !only_internal) {
    // The same message once more, on the stream the channel dispatchers read.
    outbox.type = "message.route";
    outbox.recipients = message.recipients;
    outbox.channels = message.channels;
    outbox.payload = message.payload;
    outbox.metadata = message.metadata;
    append_outbox(state, partition, outbox, dropped, wire::kOutboxChannels);
  }
  wire::Event event;
  event.kind = "message";
  event.tenant_id = tenant_id;
  event.conversation_id = message.conversation_id;
  event.seq = message.seq;
  event.message_id = message.message_id;
  event.sender_id = message.sender_id;
  event.at_ms = message.stored_at_ms;
  events.push_back(std::move(event));
  return dropped;
}

wire::ReadReply read_history(const PartitionState& state, const wire::ReadRequest& request,
                             std::uint32_t page_max) {
  wire::ReadReply reply;
  const auto record = load_conversation(state, request.conversation_id);
  // Below it the messages expired: nothing to read there, and no reader waits for them.
  reply.first_seq = record ? history_start(*record) : 1;
  if (!request.tenant_id.empty() &&
      !visible_conversation(state, request.tenant_id, request.conversation_id,
                            request.requester_id)) {
    reply.status = Status::kNotFound;
    reply.detail = "conversation not found";
    return reply;
  }
  reply.status = Status::kOk;
  reply.last_seq = state.head(request.conversation_id);
  reply.state_head = state_log_meta(state, request.conversation_id).head;
  const std::uint64_t limit = std::clamp<std::uint32_t>(request.limit, 1, page_max);
  std::uint64_t first = std::max<std::uint64_t>(request.from_seq, reply.first_seq);
  std::uint64_t last = reply.last_seq;
  if (request.before_seq > 0) {
    last = std::min(last, request.before_seq - 1);
    first = std::max(last >= limit ? last - limit + 1 : 1, reply.first_seq);
  } else if (request.since_ms > 0) {
    // stored_at_ms never decreases along a conversation: binary search.
    std::uint64_t low = reply.first_seq, high = std::max(reply.last_seq + 1, low);
    while (low < high) {
      const std::uint64_t middle = low + (high - low) / 2;
      auto message = state.message(request.conversation_id, middle);
      if (message && message->stored_at_ms < request.since_ms)
        low = middle + 1;
      else
        high = middle;
    }
    first = low;
  }
  for (std::uint64_t seq = first; seq <= last && reply.messages.size() < limit; ++seq)
    if (auto message = state.message(request.conversation_id, seq))
      reply.messages.push_back(std::move(*message));
  return reply;
}

}  // namespace chat4all::storage
