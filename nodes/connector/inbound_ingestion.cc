#include "nodes/connector/inbound_ingestion.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

#include "common/check.h"
#include "common/codec.h"
#include "common/ids.h"

namespace chat4all::connector {

namespace {

constexpr std::size_t kIdLengthMax = 64;

bool id_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

WebhookResponse json_error(int status, const std::string& code) {
  return {status, "application/json", nlohmann::json{{"error", code}}.dump()};
}

}  // namespace

// ---- The storage steps through the routers ---------------------------------------------------

void RoutedInboundStorage::find_channel_ref(const wire::ChannelRef& lookup,
                                            Done<wire::ChannelRef> done) {
  storage_.query<wire::ChannelRef>(wire::channel_address_key(lookup.channel, lookup.address),
                                   wire::QueryKind::kFindChannelRef, lookup, std::move(done));
}

void RoutedInboundStorage::mark_state(const wire::MarkState& mark,
                                      Done<wire::MarkStateResult> done) {
  storage_.command<wire::MarkStateResult>(mark.conversation_id, wire::CommandKind::kMarkState, mark,
                                          std::move(done));
}

void RoutedInboundStorage::update_channel_delivery(const wire::ChannelDeliveryUpdate& update,
                                                   Done<wire::ChannelDeliveryRecord> done) {
  storage_.command<wire::ChannelDeliveryRecord>(update.delivery.conversation_id,
                                                wire::CommandKind::kUpdateChannelDelivery, update,
                                                std::move(done));
}

void RoutedInboundStorage::resolve_identity(const wire::IdentityChange& identity,
                                            Done<wire::UserRecord> done) {
  storage_.query<wire::UserRecord>(wire::tenant_key(identity.tenant_id),
                                   wire::QueryKind::kResolveIdentity, identity, std::move(done));
}

void RoutedInboundStorage::list_user_conversations(const wire::TenantList& list,
                                                   Done<std::vector<std::string>> done) {
  storage_.query<std::vector<std::string>>(wire::tenant_key(list.tenant_id),
                                           wire::QueryKind::kListUserConversations, list,
                                           std::move(done));
}

void RoutedInboundStorage::append(const wire::AppendRequest& request,
                                  Done<wire::AppendReply> done) {
  storage_.append(request, std::move(done));
}

bool RoutedInboundStorage::after(std::uint32_t ms, std::function<void()> task) {
  return timers_.schedule(std::chrono::milliseconds(ms), std::move(task));
}

std::int64_t RoutedInboundStorage::now_ms() {
  return ids::now_ms();
}

// ---- Pure parts ------------------------------------------------------------------------------

std::string inbound_message_id(const std::string& channel, const std::string& provider_id) {
  const std::string raw = channel + "-" + provider_id;
  std::string id;
  id.reserve(raw.size());
  for (char c : raw) id.push_back(id_char(c) ? c : '_');
  if (id == raw && id.size() <= kIdLengthMax) return id;
  // FNV-1a 64 of the raw id: stable across builds, unlike std::hash.
  std::uint64_t hash = 14695981039346656037ull;
  for (unsigned char c : raw) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  static const char* kHex = "0123456789abcdef";
  std::string suffix(17, '-');
  for (int i = 0; i < 16; ++i) suffix[1 + i] = kHex[(hash >> (60 - 4 * i)) & 0xf];
  id.resize(std::min(id.size(), kIdLengthMax - suffix.size()));
  return id + suffix;
}

std::optional<std::string> webhook_channel(const std::string& target) {
  std::string path = target.substr(0, target.find('?'));
  const std::string prefix = "/channels/";
  const std::string suffix = "/webhook";
  if (path.size() <= prefix.size() + suffix.size() || path.rfind(prefix, 0) != 0 ||
      path.compare(path.size() - suffix.size(), suffix.size(), suffix) != 0)
    return std::nullopt;
  std::string name = path.substr(prefix.size(), path.size() - prefix.size() - suffix.size());
  if (name.find('/') != std::string::npos) return std::nullopt;
  return name;
}

std::optional<std::string> channel_delivery_state(const std::string& platform_state) {
  if (platform_state == wire::kStateDelivered) return wire::kDeliveryDelivered;
  if (platform_state == wire::kStateRead) return wire::kDeliveryRead;
  if (platform_state == "FAILED") return "failed";
  return std::nullopt;
}

bool transient(wire::Status status) {
  switch (status) {
    case wire::Status::kNotOwner:
    case wire::Status::kUnavailable:
    case wire::Status::kTimeout:
    case wire::Status::kStorageFull:
    case wire::Status::kInternal:
      return true;
    default:
      return false;
  }
}

wire::AppendRequest inbound_append(const ChannelSpec& channel, const InboundEvent& event,
                                   const std::string& user_id, const std::string& conversation_id,
                                   std::int64_t now_ms) {
  wire::AppendRequest request;
  request.conversation_id = conversation_id;
  request.message_id = inbound_message_id(channel.name, event.provider_message_id);
  request.sender_id = user_id;
  if (!event.file_id.empty())
    request.payload = {"file", "", event.file_id};
  else
    request.payload = {"text", event.text, ""};
  request.received_at_ms = now_ms;
  request.tenant_id = channel.tenant_id;
  if (!(channel.inbound_channels.size() == 1 && channel.inbound_channels.front() == kChannelAll))
    request.channels = channel.inbound_channels;
  request.metadata = nlohmann::json{{"origin",
                                     {{"channel", channel.name},
                                      {"address", event.address},
                                      {"provider_message_id", event.provider_message_id}}}}
                         .dump();
  return request;
}

// ---- Ingestion -------------------------------------------------------------------------------

// Every step runs under the gate: one at a time (their shared state is the shards and the
// metrics), and none after close(). Recursive, because a step may start the next one before it
// returns (an answer that comes at once, such as "no router connected").
struct InboundIngestion::Gate {
  std::recursive_mutex mutex;
  bool open = true;  // guarded by mutex
};

struct InboundIngestion::Run {
  HostedChannel* channel = nullptr;
  std::vector<InboundEvent> events;
  std::size_t next = 0;
  bool ok = true;
  std::function<void(bool)> done;
  bool storing = false;  // store_event's loop is running (steps hold the gate, so one at a time)
  bool again = false;    // an event ended while it ran: it goes on to the next
};

template <typename Step>
auto InboundIngestion::guarded(Step step) {
  return [gate = gate_, step = std::move(step)](auto&&... args) mutable {
    std::lock_guard lock(gate->mutex);
    if (!gate->open) return;
    step(std::forward<decltype(args)>(args)...);
  };
}

InboundIngestion::InboundIngestion(InboundStorage& storage, InboundIngestionOptions options)
    : storage_(storage),
      options_(options),
      gate_(std::make_shared<Gate>()),
      shards_(kInboundShards) {}

void InboundIngestion::close() {
  std::lock_guard lock(gate_->mutex);
  gate_->open = false;
}

void InboundIngestion::ingest(HostedChannel& channel, std::vector<InboundEvent> events,
                              std::function<void(bool)> done) {
  std::lock_guard lock(gate_->mutex);
  if (!gate_->open) return;
  auto run = std::make_shared<Run>();
  run->channel = &channel;
  run->events = std::move(events);
  run->done = std::move(done);
  store_event(std::move(run));
}

// Answers that come before the step returns (RouterClient refuses at once at its pending bound)
// would otherwise recurse once per event: such events are stored by this loop instead.
void InboundIngestion::store_event(std::shared_ptr<Run> run) {
  if (run->storing) {
    run->again = true;  // called from within the loop below: it carries on
    return;
  }
  run->storing = true;
  do {
    run->again = false;
    if (run->next == run->events.size()) {
      run->storing = false;
      return run->done(run->ok);
    }
    const InboundEvent& event = run->events[run->next];
    auto stored = [this, run](bool ok) {
      if (!ok) {
        run->channel->storage_failures.add();
        run->ok = false;
      }
      ++run->next;
      store_event(run);
    };
    if (event.kind == InboundEvent::Kind::kStatus)
      store_status(*run->channel, event, std::move(stored));
    else
      store_message(*run->channel, event, std::move(stored));
  } while (run->again);
  run->storing = false;
}

void InboundIngestion::on_webhook(const std::unordered_map<std::string, HostedChannel*>& channels,
                                  WebhookRequest request, InboundHttpServer::Respond respond) {
  auto name = webhook_channel(request.target);
  auto found = name ? channels.find(*name) : channels.end();
  if (found == channels.end()) return respond(json_error(404, "unknown_channel"));
  if (request.method != "POST" && request.method != "GET")
    return respond(json_error(405, "method_not_allowed"));
  HostedChannel& channel = *found->second;
  std::vector<InboundEvent> events;
  WebhookResponse response;
  try {
    response = channel.adapter->on_webhook(request, events);
  } catch (const std::exception& e) {
    log_.warn("webhook_failed", {{"channel", channel.spec.name}, {"error", e.what()}});
    return respond(json_error(400, "bad_webhook"));
  }
  if (response.status == 401 || response.status == 403) {
    channel.webhooks_unverified.add();
    log_.debug("webhook_unverified", {{"channel", channel.spec.name}, {"status", response.status}});
  } else if (response.status >= 400 && response.status < 500) {
    channel.webhooks_malformed.add();
  }
  if (response.status < 200 || response.status > 299 || events.empty())
    return respond(std::move(response));

  std::lock_guard gate_lock(gate_->mutex);
  if (!gate_->open) return;  // stopping: the server answers nobody any more
  const std::size_t shard = std::hash<std::string>{}(events.front().address) % shards_.size();
  bool start = false;
  {
    std::lock_guard lock(queue_mutex_);
    if (batches_waiting_ >= options_.inbound_batches_max) {
      // At the bound: the platform sends it again later.
      respond(json_error(503, "busy"));
      return;
    }
    shards_[shard].waiting.push_back(
        {&channel, std::move(events), std::move(response), std::move(respond)});
    ++batches_waiting_;
    start = !std::exchange(shards_[shard].storing, true);
  }
  if (start) store_next(shard);
}

void InboundIngestion::store_next(std::size_t shard) {
  auto batch = std::make_shared<Batch>();
  {
    std::lock_guard lock(queue_mutex_);
    Shard& queue = shards_[shard];
    if (queue.waiting.empty()) {
      queue.storing = false;
      return;
    }
    *batch = std::move(queue.waiting.front());
    queue.waiting.pop_front();
    CHAT4ALL_CHECK(batches_waiting_ > 0, "the count of waiting batches covers every queue");
    --batches_waiting_;
  }
  HostedChannel& channel = *batch->channel;
  ingest(channel, std::move(batch->events), [this, batch, shard](bool stored) {
    if (stored)
      batch->respond(std::move(batch->response));
    else
      batch->respond(json_error(503, "storage_unavailable"));
    store_next(shard);
  });
}

// ---- A status: find the message, mark its state, update its delivery record ------------------

void InboundIngestion::store_status(HostedChannel& channel, const InboundEvent& event,
                                    std::function<void(bool)> done) {
  find_ref(channel, event, 1, std::move(done));
}

void InboundIngestion::find_ref(HostedChannel& channel, const InboundEvent& event,
                                std::uint32_t attempt, std::function<void(bool)> done) {
  const wire::ChannelRef lookup{channel.spec.name, event.address, event.provider_message_id};
  storage_.find_channel_ref(
      lookup,
      guarded([this, &channel, &event, attempt, done](StorageOutcome<wire::ChannelRef> found) {
        const std::string& name = channel.spec.name;
        if (!found.ok()) {
          if (transient(found.status)) return done(false);
          if (attempt >= options_.ref_lookup_attempts) {
            channel.statuses_dropped.add();
            log_.info("status_without_ref", {{"channel", name},
                                             {"provider_message_id", event.provider_message_id},
                                             {"state", event.state}});
            return done(true);
          }
          // The send's ref may still be being written when the platform's first report arrives.
          if (!storage_.after(options_.ref_lookup_interval_ms,
                              guarded([this, &channel, &event, attempt, done] {
                                find_ref(channel, event, attempt + 1, done);
                              })))
            done(false);
          return;
        }
        const wire::ChannelRef ref = std::move(*found.value);
        const auto state = channel_delivery_state(event.state);
        if (!state) {
          channel.statuses_dropped.add();
          log_.debug("status_unknown", {{"channel", name}, {"state", event.state}});
          return done(true);
        }
        if (*state == "failed") return update_delivery(channel, event, ref, *state, true, done);
        const wire::MarkState mark{ref.tenant_id, ref.conversation_id, ref.recipient_id,
                                   event.state,   ref.message_id,      0};
        storage_.mark_state(mark, guarded([this, &channel, &event, ref, state = *state,
                                           done](StorageOutcome<wire::MarkStateResult> marked) {
                              bool ok = true;
                              if (!marked.ok()) {
                                log_.warn("status_mark_failed",
                                          {{"channel", channel.spec.name},
                                           {"message_id", ref.message_id},
                                           {"status", codec::status_name(marked.status)},
                                           {"detail", marked.detail}});
                                if (transient(marked.status)) ok = false;
                              }
                              update_delivery(channel, event, ref, state, ok, done);
                            }));
      }));
}

void InboundIngestion::update_delivery(HostedChannel& channel, const InboundEvent& event,
                                       const wire::ChannelRef& ref, const std::string& state,
                                       bool ok, std::function<void(bool)> done) {
  wire::ChannelDeliveryUpdate update;
  update.delivery.tenant_id = ref.tenant_id;
  update.delivery.conversation_id = ref.conversation_id;
  update.delivery.message_id = ref.message_id;
  update.delivery.recipient_id = ref.recipient_id;
  update.delivery.channel = channel.spec.name;
  update.delivery.address = event.address;
  update.delivery.state = state;
  update.delivery.provider_message_id = event.provider_message_id;
  update.delivery.error = event.error;
  storage_.update_channel_delivery(
      update, guarded([this, &channel, message_id = ref.message_id, ok,
                       done](StorageOutcome<wire::ChannelDeliveryRecord> updated) mutable {
        if (!updated.ok()) {
          log_.warn("status_delivery_update_failed",
                    {{"channel", channel.spec.name},
                     {"message_id", message_id},
                     {"status", codec::status_name(updated.status)},
                     {"detail", updated.detail}});
          if (transient(updated.status)) ok = false;
        }
        if (ok) channel.statuses_stored.add();
        done(ok);
      }));
}

// ---- A message: its sender, its conversation, then one append --------------------------------

namespace {

// Counts and logs a message deliberately not stored; true: nothing to retry.
bool drop(HostedChannel& channel, const InboundEvent& event, const char* why, Log& log) {
  channel.messages_dropped.add();
  log.info("inbound_message_dropped", {{"channel", channel.spec.name},
                                       {"provider_message_id", event.provider_message_id},
                                       {"reason", why}});
  return true;
}

}  // namespace

void InboundIngestion::store_message(HostedChannel& channel, const InboundEvent& event,
                                     std::function<void(bool)> done) {
  const wire::IdentityChange identity{
      channel.spec.tenant_id, "", {channel.spec.name, event.address}};
  storage_.resolve_identity(
      identity, guarded([this, &channel, &event, done](StorageOutcome<wire::UserRecord> user) {
        if (!user.ok())
          return done(transient(user.status) ? false
                                             : drop(channel, event, "unknown_sender", log_));
        find_conversation(channel, event, user.value->user_id, 0, done);
      }));
}

// The conversation: the one replied to, else the one last delivered to this address, else the
// sender's only one.
void InboundIngestion::find_conversation(HostedChannel& channel, const InboundEvent& event,
                                         const std::string& user_id, std::size_t ref_index,
                                         std::function<void(bool)> done) {
  const std::string& tenant = channel.spec.tenant_id;
  std::vector<std::string> provider_ids;
  if (!event.reply_to_provider_message_id.empty())
    provider_ids.push_back(event.reply_to_provider_message_id);
  provider_ids.push_back("");
  if (ref_index < provider_ids.size()) {
    const wire::ChannelRef lookup{channel.spec.name, event.address, provider_ids[ref_index]};
    storage_.find_channel_ref(lookup, guarded([this, &channel, &event, user_id, ref_index,
                                               done](StorageOutcome<wire::ChannelRef> ref) {
                                if (ref.ok() && ref.value->tenant_id == channel.spec.tenant_id)
                                  return append_message(channel, event, user_id,
                                                        ref.value->conversation_id, done);
                                if (!ref.ok() && transient(ref.status)) return done(false);
                                find_conversation(channel, event, user_id, ref_index + 1, done);
                              }));
    return;
  }
  storage_.list_user_conversations(
      wire::TenantList{tenant, user_id, "", 2},
      guarded(
          [this, &channel, &event, user_id, done](StorageOutcome<std::vector<std::string>> mine) {
            if (!mine.ok() && transient(mine.status)) return done(false);
            if (mine.ok() && mine.value->size() == 1)
              return append_message(channel, event, user_id, mine.value->front(), done);
            done(drop(channel, event, "no_conversation", log_));
          }));
}

// One replicated round, as for the frontend: the append is idempotent (a platform's retry gets
// the stored message back), and the id's locator entry is written behind the log.
void InboundIngestion::append_message(HostedChannel& channel, const InboundEvent& event,
                                      const std::string& user_id,
                                      const std::string& conversation_id,
                                      std::function<void(bool)> done) {
  const wire::AppendRequest request =
      inbound_append(channel.spec, event, user_id, conversation_id, storage_.now_ms());
  storage_.append(request, guarded([this, &channel, &event, message_id = request.message_id,
                                    done](StorageOutcome<wire::AppendReply> appended) {
                    if (!appended.ok()) {
                      if (transient(appended.status)) return done(false);
                      log_.info("inbound_append_refused",
                                {{"channel", channel.spec.name},
                                 {"message_id", message_id},
                                 {"status", codec::status_name(appended.status)},
                                 {"detail", appended.detail}});
                      return done(drop(channel, event, "append_refused", log_));
                    }
                    channel.messages_stored.add();
                    done(true);
                  }));
}

}  // namespace chat4all::connector
