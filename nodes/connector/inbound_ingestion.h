// The channel host's inbound side: turns what the platforms report (webhook requests, polled
// updates) into stored messages and delivery states.
//
// A message becomes an append (one replicated round; idempotent, so a platform's retry gets the
// stored message back) from the user its address resolves to, into the conversation it replies
// to, else the one last delivered to that address, else the sender's only one; otherwise it is
// dropped and counted. A status finds the message by the platform's id (kFindChannelRef, asked
// again ref_lookup_attempts times, ref_lookup_interval_ms apart: the send's ref may still be
// being written), marks its state and updates the channel delivery record.
//
// Driven by continuations: each storage step asks InboundStorage and carries on in its answer,
// so no thread waits for storage. Events of one batch are stored one after another; webhook
// batches go to one of kInboundShards queues by their first event's address, and each queue
// stores one batch at a time, so what one sender (or one recipient's receipts) sends is stored in
// the order it arrived while different senders are stored side by side.
//
// Bounded: at most `inbound_batches_max` webhook batches wait in the queues (beyond: the platform
// gets 503 and sends again); retries wait in InboundStorage::after, which may refuse (the event
// then counts as failed, worth the platform's retry).
//
// Thread-safety: every method from any thread. After close() no callback it was given runs and
// nothing more is stored; storage answers that come later are dropped.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/delayed_tasks.h"
#include "common/json_log.h"
#include "common/storage_client.h"
#include "nodes/connector/hosted_channel.h"
#include "nodes/connector/inbound_http.h"

namespace chat4all::connector {

// What ingestion asks of the replicated state, and of time. Each call answers `done` exactly
// once, from any thread (possibly before it returns), unless the host stops first.
class InboundStorage {
 public:
  template <typename Result>
  using Done = std::function<void(StorageOutcome<Result>)>;

  virtual ~InboundStorage() = default;
  virtual void find_channel_ref(const wire::ChannelRef& lookup, Done<wire::ChannelRef> done) = 0;
  virtual void mark_state(const wire::MarkState& mark, Done<wire::MarkStateResult> done) = 0;
  virtual void update_channel_delivery(const wire::ChannelDeliveryUpdate& update,
                                       Done<wire::ChannelDeliveryRecord> done) = 0;
  virtual void resolve_identity(const wire::IdentityChange& identity,
                                Done<wire::UserRecord> done) = 0;
  virtual void list_user_conversations(const wire::TenantList& list,
                                       Done<std::vector<std::string>> done) = 0;
  virtual void append(const wire::AppendRequest& request, Done<wire::AppendReply> done) = 0;
  // Runs `task` after `ms`, from any thread; false when it cannot wait (at its bound).
  virtual bool after(std::uint32_t ms, std::function<void()> task) = 0;
  virtual std::int64_t now_ms() = 0;  // wall clock: a stored message's received_at_ms
};

// InboundStorage through the routers (StorageClient) with its own timer thread.
class RoutedInboundStorage final : public InboundStorage {
 public:
  explicit RoutedInboundStorage(StorageClient& storage, std::size_t waiting_max = 1024)
      : storage_(storage), timers_(waiting_max) {}
  void find_channel_ref(const wire::ChannelRef& lookup, Done<wire::ChannelRef> done) override;
  void mark_state(const wire::MarkState& mark, Done<wire::MarkStateResult> done) override;
  void update_channel_delivery(const wire::ChannelDeliveryUpdate& update,
                               Done<wire::ChannelDeliveryRecord> done) override;
  void resolve_identity(const wire::IdentityChange& identity, Done<wire::UserRecord> done) override;
  void list_user_conversations(const wire::TenantList& list,
                               Done<std::vector<std::string>> done) override;
  void append(const wire::AppendRequest& request, Done<wire::AppendReply> done) override;
  bool after(std::uint32_t ms, std::function<void()> task) override;
  std::int64_t now_ms() override;

 private:
  StorageClient& storage_;
  DelayedTasks timers_;
};

// The "<channel>-<provider id>" message id of an inbound message, within the id charset
// [A-Za-z0-9._-] and 64 characters: as is when it fits, otherwise a readable prefix and a hash
// of the whole (so that distinct platform ids never share one). Deterministic: a platform's
// retry of the same webhook maps to the same id.
std::string inbound_message_id(const std::string& channel, const std::string& provider_id);

// "/channels/<name>/webhook[?query]" -> name; nullopt for any other target.
std::optional<std::string> webhook_channel(const std::string& target);

// A platform's status ("DELIVERED", "READ", "FAILED") as a channel delivery state ("delivered",
// "read", "failed"); nullopt for one we do not carry.
std::optional<std::string> channel_delivery_state(const std::string& platform_state);

// Failures worth asking the platform to send again: nothing was decided. Every other status is
// a verdict (not found, invalid, conflict) that a retry would only repeat.
bool transient(wire::Status status);

// The append that stores inbound message `event` of `channel` from `user_id` in
// `conversation_id`, received at `now_ms`.
wire::AppendRequest inbound_append(const ChannelSpec& channel, const InboundEvent& event,
                                   const std::string& user_id, const std::string& conversation_id,
                                   std::int64_t now_ms);

struct InboundIngestionOptions {
  std::size_t inbound_batches_max = 64;
  std::uint32_t ref_lookup_attempts = 10;
  std::uint32_t ref_lookup_interval_ms = 200;
};

class InboundIngestion {
 public:
  static constexpr std::size_t kInboundShards = 4;

  InboundIngestion(InboundStorage& storage, InboundIngestionOptions options);
  InboundIngestion(const InboundIngestion&) = delete;
  InboundIngestion& operator=(const InboundIngestion&) = delete;

  // Stores `events` of `channel` one after another, then calls `done` once: true when every
  // event is stored or deliberately dropped, false when a storage step failed in a way worth the
  // platform's retry.
  void ingest(HostedChannel& channel, std::vector<InboundEvent> events,
              std::function<void(bool)> done);

  // A webhook request for one of `channels` (by name): its adapter answers it; a 2xx answer
  // with events is sent once they are stored (503 if that failed, or at the queues' bound).
  void on_webhook(const std::unordered_map<std::string, HostedChannel*>& channels,
                  WebhookRequest request, InboundHttpServer::Respond respond);

  // Stops: nothing more is stored, no callback runs after this returns.
  void close();

 private:
  struct Gate;
  struct Batch {
    HostedChannel* channel = nullptr;
    std::vector<InboundEvent> events;
    WebhookResponse response;
    InboundHttpServer::Respond respond;
  };
  struct Shard {
    std::deque<Batch> waiting;
    bool storing = false;
  };
  struct Run;  // one batch being stored

  // Wraps `step` so that it runs only while open, one at a time with every other step.
  template <typename Step>
  auto guarded(Step step);
  void store_next(std::size_t shard);  // under the gate
  void store_event(std::shared_ptr<Run> run);
  void store_status(HostedChannel& channel, const InboundEvent& event,
                    std::function<void(bool)> done);
  void find_ref(HostedChannel& channel, const InboundEvent& event, std::uint32_t attempt,
                std::function<void(bool)> done);
  void update_delivery(HostedChannel& channel, const InboundEvent& event,
                       const wire::ChannelRef& ref, const std::string& state, bool ok,
                       std::function<void(bool)> done);
  void store_message(HostedChannel& channel, const InboundEvent& event,
                     std::function<void(bool)> done);
  void find_conversation(HostedChannel& channel, const InboundEvent& event,
                         const std::string& user_id, std::size_t ref_index,
                         std::function<void(bool)> done);
  void append_message(HostedChannel& channel, const InboundEvent& event, const std::string& user_id,
                      const std::string& conversation_id, std::function<void(bool)> done);

  InboundStorage& storage_;
  const InboundIngestionOptions options_;
  Log log_{"channel_host"};
  const std::shared_ptr<Gate> gate_;

  std::mutex queue_mutex_;
  std::vector<Shard> shards_;        // guarded by queue_mutex_
  std::size_t batches_waiting_ = 0;  // in all shards; guarded by queue_mutex_
};

}  // namespace chat4all::connector
