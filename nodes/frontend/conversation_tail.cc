#include "nodes/frontend/conversation_tail.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "common/codec.h"
#include "common/ids.h"
#include "nodes/frontend/stream_frames.h"
#include "nodes/frontend/stream_hub.h"

namespace chat4all::frontend {

namespace asio = boost::asio;

std::optional<wire::ReadReply> read_reply(wire::Status& status,
                                          const std::optional<codec::Frame>& reply) {
  std::optional<wire::ReadReply> answer;
  if (status != wire::Status::kOk) return answer;
  if (reply->header().type == wire::MessageType::kReadReply) {
    answer = reply->body<wire::ReadReply>();
    status = answer ? answer->status : wire::Status::kInternal;
  } else {
    const auto error = reply->body<wire::ErrorReply>();
    status = error ? error->status : wire::Status::kInternal;
  }
  return answer;
}

ConversationTail::ConversationTail(TailRegistry& registry, std::string key, std::string tenant_id,
                                   std::string conversation_id, std::uint64_t last_seq,
                                   asio::any_io_executor executor, RouterClient& routers)
    : registry_(registry),
      key_(std::move(key)),
      tenant_id_(std::move(tenant_id)),
      conversation_id_(std::move(conversation_id)),
      strand_(asio::make_strand(executor)),
      resync_timer_(strand_),
      routers_(routers),
      core_(last_seq, kWindowMessagesMax, kWindowBytesMax) {
  std::lock_guard lock(mutex_);
  publish_locked();
  registry_.metrics().tails.add(1);
}

ConversationTail::~ConversationTail() {
  registry_.events().unsubscribe(conversation_id_, this);
  registry_.account_window_bytes(-static_cast<std::int64_t>(counted_window_bytes_));
  registry_.metrics().tails.add(-1);
  registry_.forget(key_);
}

void ConversationTail::start() {
  registry_.events().subscribe(conversation_id_, shared_from_this());
  schedule_resync();
}

void ConversationTail::follow(const std::shared_ptr<TailFollower>& follower) {
  std::lock_guard lock(mutex_);
  followers_[follower.get()] = follower;
}

void ConversationTail::unfollow(const TailFollower* follower) {
  std::lock_guard lock(mutex_);
  followers_.erase(follower);
}

std::shared_ptr<const TailSnapshot> ConversationTail::snapshot() const {
  std::lock_guard lock(mutex_);
  return snapshot_;
}

void ConversationTail::on_hint(std::uint64_t seq) {
  std::unique_lock lock(mutex_);
  core_.on_hint(seq);
  pump_locked(lock);
}

void ConversationTail::on_event(const wire::Event& event) {
  if (event.kind != "message" || event.tenant_id != tenant_id_) return;
  on_hint(event.seq);
}

void ConversationTail::pump_locked(std::unique_lock<std::mutex>& lock) {
  const auto from_seq = core_.take_read();
  lock.unlock();
  if (from_seq) issue_read(*from_seq);
}

void ConversationTail::issue_read(std::uint64_t from_seq) {
  registry_.metrics().storage_reads.add();
  const wire::Header header{wire::kWireVersion, wire::MessageType::kReadRequest,
                            ids::next_request_id(), ids::new_trace_id()};
  wire::ReadRequest request;
  request.conversation_id = conversation_id_;
  request.from_seq = from_seq;
  request.limit = kPageMessagesMax;
  request.tenant_id = tenant_id_;  // no requester: the tenant's view (see the header)
  routers_.submit(header.request_id, codec::encode(header, request),
                  [weak = weak_from_this(), strand = strand_](wire::Status status,
                                                              std::optional<codec::Frame> reply) {
                    asio::post(strand, [weak, status, reply = std::move(reply)]() mutable {
                      if (auto self = weak.lock()) self->on_reply(status, std::move(reply));
                    });
                  });
}

void ConversationTail::on_reply(wire::Status status, std::optional<codec::Frame> reply) {
  std::optional<wire::ReadReply> answer = read_reply(status, reply);
  if (status != wire::Status::kOk) {
    std::unique_lock lock(mutex_);
    core_.on_read_failed();  // the next hint or resync reads again
    if (status == wire::Status::kNotFound && !gone_) {
      log_.info("conversation_gone", {{"conversation_id", conversation_id_}});
      gone_ = true;
      publish_locked();
      lock.unlock();
      tell_followers();
    }
    return;
  }
  // Rendered here, once for every follower, outside the lock.
  std::vector<ConversationTailCore::Entry> entries;
  entries.reserve(answer->messages.size());
  for (const auto& message : answer->messages)
    entries.push_back({message.seq, std::make_shared<const std::string>(message_frame(message))});
  std::unique_lock lock(mutex_);
  const bool moved = core_.on_page(std::move(entries), answer->last_seq, answer->first_seq);
  const bool states_moved = answer->state_head > state_head_;
  state_head_ = std::max(state_head_, answer->state_head);
  count_window_bytes_locked();
  if (moved || states_moved || gone_) {
    gone_ = false;
    publish_locked();
  }
  pump_locked(lock);  // unlocks
  if (moved || states_moved) tell_followers();
}

void ConversationTail::count_window_bytes_locked() {
  const auto counted = static_cast<std::int64_t>(counted_window_bytes_);
  if (!registry_.account_window_bytes(static_cast<std::int64_t>(core_.window_bytes()) - counted)) {
    // Beyond the frontend's budget: followers behind the newest message read
    // from storage.
    const auto before = static_cast<std::int64_t>(core_.window_bytes());
    core_.keep_newest_only();
    registry_.account_window_bytes(static_cast<std::int64_t>(core_.window_bytes()) - before);
  }
  counted_window_bytes_ = core_.window_bytes();
}

void ConversationTail::publish_locked() {
  auto snapshot = std::make_shared<TailSnapshot>();
  snapshot->first = core_.window_first();
  snapshot->last = core_.cursor();
  snapshot->gone = gone_;
  snapshot->state_head = state_head_;
  snapshot->window = core_.window();
  snapshot_ = std::move(snapshot);
}

void ConversationTail::tell_followers() {
  std::vector<std::shared_ptr<TailFollower>> followers;
  std::uint64_t last = 0;
  {
    std::lock_guard lock(mutex_);
    last = core_.cursor();
    followers.reserve(followers_.size());
    for (const auto& [identity, follower] : followers_)
      if (auto alive = follower.lock()) followers.push_back(std::move(alive));
  }
  for (const auto& follower : followers) follower->on_tail_advanced(conversation_id_, last);
}

void ConversationTail::schedule_resync() {
  resync_timer_.expires_after(std::chrono::milliseconds(registry_.resync_ms()));
  resync_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    auto self = weak.lock();
    if (ec || !self) return;
    {
      std::unique_lock lock(self->mutex_);
      self->core_.want();
      self->pump_locked(lock);
    }
    self->schedule_resync();
  });
}

// ---- registry

std::shared_ptr<ConversationTail> TailRegistry::tail(const std::string& tenant_id,
                                                     const std::string& conversation_id,
                                                     std::uint64_t last_seq,
                                                     const asio::any_io_executor& executor,
                                                     RouterClient& routers) {
  std::string key = tenant_id + '\n' + conversation_id;
  std::shared_ptr<ConversationTail> made;
  {
    std::lock_guard lock(mutex_);
    auto& entry = tails_[key];
    if (auto existing = entry.lock()) return existing;
    if (tails_.size() > kTailsMax) {
      tails_.erase(key);
      return nullptr;
    }
    made = std::make_shared<ConversationTail>(*this, key, tenant_id, conversation_id, last_seq,
                                              executor, routers);
    entry = made;
  }
  made->start();
  return made;
}

std::size_t TailRegistry::size() const {
  std::lock_guard lock(mutex_);
  return tails_.size();
}

bool TailRegistry::account_window_bytes(std::int64_t delta) {
  return (window_bytes_ += delta) <= static_cast<std::int64_t>(kAllWindowsBytesMax);
}

void TailRegistry::forget(const std::string& key) {
  std::lock_guard lock(mutex_);
  // A tail made for the key after this one lost its last follower stays.
  const auto it = tails_.find(key);
  if (it != tails_.end() && it->second.expired()) tails_.erase(it);
}

}  // namespace chat4all::frontend
