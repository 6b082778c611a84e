#include "nodes/storage/presence.h"

#include <string>
#include <string_view>

#include "common/codec.h"
#include "common/ids.h"
#include "nodes/storage/domain_support.h"
#include "nodes/storage/record_keys.h"

namespace chat4all::storage {

namespace {

using wire::Status;

// "G/<tenant>/<frontend>" -> PresenceLease
std::string lease_prefix(std::string_view tenant) {
  return "G/" + std::string(tenant) + "/";
}
// "F/<tenant>/<frontend>/<user>" -> "": the user has at least one stream on that instance.
std::string streams_prefix(std::string_view tenant, std::string_view frontend) {
  return "F/" + std::string(tenant) + "/" + std::string(frontend) + "/";
}

using domain_support::fail;
using domain_support::ok;

// Online: some instance holds a record of the user. Instances per tenant are
// few (the frontends, plus restarted ones until their lease is swept).
bool is_online(const PartitionState& state, std::string_view tenant, std::string_view user) {
  const std::string prefix = lease_prefix(tenant);
  bool online = false;
  state.scan(prefix, {}, [&](std::string_view key, std::string_view) {
    online = state.get(streams_prefix(tenant, key.substr(prefix.size())) + std::string(user))
                 .has_value();
    return !online;
  });
  return online;
}

std::optional<wire::UserRecord> load_user(const PartitionState& state, std::string_view tenant,
                                          std::string_view user) {
  auto bytes = state.get(user_key(tenant, user));
  return bytes ? codec::unpack_body<wire::UserRecord>(*bytes) : std::nullopt;
}

// One event per conversation of the user (schema/wire.h Event, "presence").
void publish_presence(const PartitionState& state, const std::string& tenant,
                      const std::string& user, const char* presence, std::int64_t last_seen_ms,
                      std::vector<wire::Event>& events) {
  const std::string prefix = membership_prefix(tenant, user);
  std::size_t published = 0;
  state.scan(prefix, {}, [&](std::string_view key, std::string_view) {
    wire::Event event;
    event.kind = "presence";
    event.tenant_id = tenant;
    event.conversation_id = std::string(key.substr(prefix.size()));
    event.user_id = user;
    event.state = presence;
    event.at_ms = last_seen_ms;
    events.push_back(std::move(event));
    return ++published < wire::kPresenceEventConversationsMax;
  });
}

// A transition others may see: hidden users stay offline to them.
void announce(const PartitionState& state, const std::string& tenant, const std::string& user,
              const char* presence, std::int64_t last_seen_ms, std::vector<wire::Event>& events) {
  auto record = load_user(state, tenant, user);
  if (!record || record->presence_hidden) return;
  publish_presence(state, tenant, user, presence, last_seen_ms, events);
}

// The user's last record went: offline since `last_seen_ms`.
void went_offline(PartitionState& state, const std::string& tenant, const std::string& user,
                  std::int64_t last_seen_ms, std::vector<wire::Event>& events) {
  state.put(seen_key(tenant, user),
            codec::pack_body(wire::PresenceRecord{user, wire::kPresenceOffline, last_seen_ms}));
  announce(state, tenant, user, wire::kPresenceOffline, last_seen_ms, events);
}

bool shares_conversation(const PartitionState& state, std::string_view tenant,
                         std::string_view user, std::string_view other) {
  const std::string prefix = membership_prefix(tenant, user);
  const std::string other_prefix = membership_prefix(tenant, other);
  bool shared = false;
  state.scan(prefix, {}, [&](std::string_view key, std::string_view) {
    shared = state.get(other_prefix + std::string(key.substr(prefix.size()))).has_value();
    return !shared;
  });
  return shared;
}

}  // namespace

DomainResult report_presence(PartitionState& state, const wire::PresenceReport& report,
                             std::int64_t at_ms) {
  if (report.tenant_id.empty()) return fail(Status::kInvalid, "no tenant", "tenant_id");
  if (!ids::is_valid_name(report.frontend))
    return fail(Status::kInvalid, "the frontend instance is not a valid name", "frontend");
  if (report.lease_ms < wire::kPresenceLeaseMsMin || report.lease_ms > wire::kPresenceLeaseMsMax)
    return fail(Status::kInvalid, "lease_ms is out of range", "lease_ms");
  if (report.online.size() + report.offline.size() > wire::kPresenceReportUsersMax)
    return fail(Status::kInvalid, "too many users in one report", "online");
  for (const auto* users : {&report.online, &report.offline})
    for (const auto& user : *users)
      if (!ids::is_valid_name(user))
        return fail(Status::kInvalid, "\"" + user + "\" is not a user id", "online");

  const std::string lease_key = lease_prefix(report.tenant_id) + report.frontend;
  auto old = state.get(lease_key);
  auto lease = old ? codec::unpack_body<wire::PresenceLease>(*old) : std::nullopt;
  const bool was_live = lease && !lease_expired(*lease, at_ms);
  // Renewed before the users are applied, so that is_online counts this instance.
  state.put(lease_key, codec::pack_body(wire::PresenceLease{report.tenant_id, report.frontend,
                                                            at_ms, at_ms + report.lease_ms}));

  DomainResult result = ok(wire::PresenceReportResult{was_live});
  const std::string prefix = streams_prefix(report.tenant_id, report.frontend);
  for (const auto& user : report.online) {
    if (state.get(prefix + user)) continue;
    const bool was_online = is_online(state, report.tenant_id, user);
    state.put(prefix + user, "");
    if (!was_online)
      announce(state, report.tenant_id, user, wire::kPresenceOnline, 0, result.events);
  }
  for (const auto& user : report.offline) {
    if (!state.get(prefix + user)) continue;
    state.erase(prefix + user);
    if (!is_online(state, report.tenant_id, user))
      went_offline(state, report.tenant_id, user, at_ms, result.events);
  }
  return result;
}

DomainResult expire_presence(PartitionState& state, const wire::PresenceExpiry& expiry,
                             std::int64_t at_ms) {
  DomainResult result = ok(std::vector<int>{});
  const std::string lease_key = lease_prefix(expiry.tenant_id) + expiry.frontend;
  auto bytes = state.get(lease_key);
  auto lease = bytes ? codec::unpack_body<wire::PresenceLease>(*bytes) : std::nullopt;
  // Renewed since the sweep saw it (or expired already): nothing to do.
  if (!lease || !lease_expired(*lease, at_ms)) return result;
  state.erase(lease_key);
  const std::string prefix = streams_prefix(expiry.tenant_id, expiry.frontend);
  std::vector<std::string> users;
  state.scan(prefix, {}, [&](std::string_view key, std::string_view) {
    users.emplace_back(key.substr(prefix.size()));
    return true;
  });
  for (const auto& user : users) {
    state.erase(prefix + user);
    if (!is_online(state, expiry.tenant_id, user))
      went_offline(state, expiry.tenant_id, user, lease->renewed_at_ms, result.events);
  }
  return result;
}

DomainResult get_presence(const PartitionState& state, const wire::PresenceLookup& lookup) {
  auto user = load_user(state, lookup.tenant_id, lookup.user_id);
  // Someone who shares no conversation with the user learns nothing, not even that it exists.
  const bool visible =
      user && (lookup.requester_id.empty() || lookup.requester_id == lookup.user_id ||
               shares_conversation(state, lookup.tenant_id, lookup.user_id, lookup.requester_id));
  if (!visible) return fail(Status::kNotFound, "user not found", "user_id");
  wire::PresenceRecord presence{lookup.user_id, wire::kPresenceOffline, 0};
  if (user->presence_hidden && lookup.requester_id != lookup.user_id) return ok(presence);
  if (is_online(state, lookup.tenant_id, lookup.user_id)) {
    presence.state = wire::kPresenceOnline;
    return ok(presence);
  }
  if (auto seen = state.get(seen_key(lookup.tenant_id, lookup.user_id)))
    if (auto record = codec::unpack_body<wire::PresenceRecord>(*seen))
      presence.last_seen_at_ms = record->last_seen_at_ms;
  return ok(presence);
}

std::vector<wire::PresenceLease> expired_presence_leases(const PartitionState& state,
                                                         const wire::PresenceSweep& sweep) {
  std::vector<wire::PresenceLease> expired;
  if (sweep.limit == 0) return expired;
  state.scan("G/", {}, [&](std::string_view, std::string_view value) {
    auto lease = codec::unpack_body<wire::PresenceLease>(value);
    if (lease && lease_expired(*lease, sweep.at_ms)) expired.push_back(std::move(*lease));
    return expired.size() < sweep.limit;
  });
  return expired;
}

void note_presence_visibility(const PartitionState& state, const wire::UserRecord& user,
                              bool was_hidden, std::vector<wire::Event>& events) {
  if (user.presence_hidden == was_hidden || !is_online(state, user.tenant_id, user.user_id)) return;
  publish_presence(state, user.tenant_id, user.user_id,
                   user.presence_hidden ? wire::kPresenceOffline : wire::kPresenceOnline, 0,
                   events);
}

}  // namespace chat4all::storage
