#include "nodes/frontend/stream_hub.h"

#include <nlohmann/json.hpp>

namespace chat4all::frontend {

namespace {

std::vector<std::string> event_addresses(const Topology& topology) {
  std::vector<std::string> addresses;
  for (const NodeSpec* storage : topology.with_role(NodeRole::kStorage))
    if (storage->port("events")) addresses.push_back(storage->zmq_address("events"));
  return addresses;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

SessionSlot& SessionSlot::operator=(SessionSlot&& other) noexcept {
  if (this != &other) {
    release();
    hub_ = std::exchange(other.hub_, nullptr);
    user_key_ = std::move(other.user_key_);
  }
  return *this;
}

void SessionSlot::release() {
  if (hub_) std::exchange(hub_, nullptr)->release_slot(user_key_);
}

std::string StreamRefusal::body() const {
  return nlohmann::json{{"error", {{"code", code}, {"message", message}}}}.dump();
}

StreamHub::StreamHub(const Topology& topology, const std::string& node_name)
    : topology_(topology),
      signer_(auth::load_or_create_token_key(topology.auth.token_secret_file)),
      events_(event_addresses(topology), metrics_.hints),
      tails_(events_, metrics_, topology.stream.resync_ms),
      presence_(topology.stream, node_name) {}

std::variant<StreamAdmission, StreamRefusal> StreamHub::admit(std::string_view authorization,
                                                              std::string_view target,
                                                              std::int64_t now_s) {
  std::string token;
  if (authorization.size() > 7 &&
      (authorization.substr(0, 7) == "Bearer " || authorization.substr(0, 7) == "bearer "))
    token = authorization.substr(7);
  else if (authorization.empty())
    token = access_token_parameter(target);
  const auth::VerifiedToken verified = signer_.verify(token, now_s);
  if (!verified.ok())
    return StreamRefusal{401, "unauthorized", auth::token_error_message(verified.error)};
  if (verified.claims.tenant.empty())
    return StreamRefusal{401, "unauthorized", "the token names no tenant"};
  if (verified.claims.role == "admin")
    return StreamRefusal{403, "user_token_required", "the stream is a user's: use a user token"};

  std::string user_key = verified.claims.tenant + '\n' + verified.claims.subject;
  {
    std::lock_guard lock(users_mutex_);
    std::uint32_t& streams = streams_per_user_[user_key];
    if (streams >= kStreamsPerUserMax)
      return StreamRefusal{429, "too_many_streams",
                           "this user holds its maximum of " + std::to_string(kStreamsPerUserMax) +
                               " streams on this frontend; close one first"};
    ++streams;
  }
  const std::uint32_t max = topology_.stream.connections_max;
  std::uint32_t open = sessions_.load();
  do {
    if (open >= max) {
      forget_user_stream(user_key);
      return StreamRefusal{503, "unavailable",
                           "this frontend holds its maximum of " + std::to_string(max) +
                               " stream connections; retry later or elsewhere"};
    }
  } while (!sessions_.compare_exchange_weak(open, open + 1));
  metrics_.sessions.add(1);
  return StreamAdmission{verified.claims.tenant, verified.claims.subject,
                         verified.claims.expires_at_s, SessionSlot(this, std::move(user_key))};
}

void StreamHub::track(const std::shared_ptr<StreamConnection>& connection) {
  std::lock_guard lock(connections_mutex_);
  connections_[connection.get()] = connection;
}

void StreamHub::untrack(const StreamConnection* connection) {
  std::lock_guard lock(connections_mutex_);
  connections_.erase(connection);
}

void StreamHub::close_all() {
  std::vector<std::shared_ptr<StreamConnection>> open;
  {
    std::lock_guard lock(connections_mutex_);
    for (const auto& [identity, connection] : connections_)
      if (auto alive = connection.lock()) open.push_back(std::move(alive));
  }
  for (const auto& connection : open) connection->go_away();
}

void StreamHub::release_slot(const std::string& user_key) {
  forget_user_stream(user_key);
  sessions_.fetch_sub(1);
  metrics_.sessions.add(-1);
}

void StreamHub::forget_user_stream(const std::string& user_key) {
  std::lock_guard lock(users_mutex_);
  const auto it = streams_per_user_.find(user_key);
  if (it != streams_per_user_.end() && --it->second == 0) streams_per_user_.erase(it);
}

bool is_stream_target(std::string_view target) {
  return target.substr(0, target.find('?')) == "/v1/stream";
}

std::string access_token_parameter(std::string_view target) {
  const auto question = target.find('?');
  if (question == std::string_view::npos) return "";
  std::string_view query = target.substr(question + 1);
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    constexpr std::string_view kName = "access_token=";
    if (pair.substr(0, kName.size()) != kName) continue;
    std::string value;
    const std::string_view encoded = pair.substr(kName.size());
    for (std::size_t i = 0; i < encoded.size(); ++i) {
      if (encoded[i] == '%' && i + 2 < encoded.size() && hex_digit(encoded[i + 1]) >= 0 &&
          hex_digit(encoded[i + 2]) >= 0) {
        value.push_back(
            static_cast<char>(hex_digit(encoded[i + 1]) * 16 + hex_digit(encoded[i + 2])));
        i += 2;
      } else {
        value.push_back(encoded[i] == '+' ? ' ' : encoded[i]);
      }
    }
    return value;
  }
  return "";
}

}  // namespace chat4all::frontend
