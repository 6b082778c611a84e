// Presence in the replicated state: who is online, cluster-wide, and since
// when someone is not (schema/records.h "presence", schema/README.md
// "Presence").
//
// Why it is shaped this way
//   - Frontends report per user whether they hold at least one of the user's
//     streams (the count itself stays in the frontend: a second device on the
//     same frontend costs no write). Only transitions and lease renewals are
//     logged, never anything per message, so the write path of messages is
//     untouched.
//   - A record belongs to a frontend instance and lives under its lease; the
//     leader's sweep proposes kExpirePresence for leases it finds expired and
//     the apply decides again with the entry's stamp, so every replica drops
//     the same records and a crashed frontend's users go offline after the
//     lease. last_seen_at of those users is the lease's last renewal: the last
//     moment anyone vouched for their connection.
//   - Everything lives in the tenant's directory partition, beside the user
//     record (the presence_hidden flag) and the user's conversation index
//     (who may see the presence, and where a change is announced), so a
//     lookup and a change are each one partition and one hop.
//   - Bounded: one lease per (tenant, frontend instance), swept once expired;
//     one record per (online user, frontend instance); one last-seen record
//     per user who was ever online.
//
// Pure functions over a PartitionState; `at_ms` is the leader's stamp of the
// entry (commands) and time never enters a query except through its body.
#pragma once

#include <cstdint>
#include <vector>

#include "nodes/storage/domain.h"

namespace chat4all::storage {

// The lease decision: a lease has expired once its end is reached.
inline bool lease_expired(const wire::PresenceLease& lease, std::int64_t at_ms) {
  return at_ms >= lease.expires_at_ms;
}

DomainResult report_presence(PartitionState& state, const wire::PresenceReport& report,
                             std::int64_t at_ms);
DomainResult expire_presence(PartitionState& state, const wire::PresenceExpiry& expiry,
                             std::int64_t at_ms);
DomainResult get_presence(const PartitionState& state, const wire::PresenceLookup& lookup);
std::vector<wire::PresenceLease> expired_presence_leases(const PartitionState& state,
                                                         const wire::PresenceSweep& sweep);

// After `user`'s presence_hidden changed from `was_hidden`: an online user is
// announced offline (hidden, no last_seen_at) or online (shown again).
void note_presence_visibility(const PartitionState& state, const wire::UserRecord& user,
                              bool was_hidden, std::vector<wire::Event>& events);

}  // namespace chat4all::storage
