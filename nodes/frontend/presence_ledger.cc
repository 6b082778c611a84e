#include "nodes/frontend/presence_ledger.h"

#include <algorithm>
#include <limits>

namespace chat4all::frontend {

void PresenceLedger::opened(const std::string& tenant, const std::string& user, std::int64_t) {
  ++tenants_[tenant].users[user].streams;
}

void PresenceLedger::closed(const std::string& tenant, const std::string& user,
                            std::int64_t now_ms) {
  auto t = tenants_.find(tenant);
  if (t == tenants_.end()) return;
  auto u = t->second.users.find(user);
  if (u == t->second.users.end() || u->second.streams == 0) return;
  User& entry = u->second;
  if (--entry.streams > 0) return;
  entry.last_closed_ms = now_ms;
  // Never reported online (gone before a report went out): nothing to take back.
  if (!entry.told_online && !t->second.in_flight) t->second.users.erase(u);
}

void PresenceLedger::close_all() {
  for (auto& [id, tenant] : tenants_)
    for (auto& [user, entry] : tenant.users) {
      entry.streams = 0;
      entry.last_closed_ms = std::numeric_limits<std::int64_t>::min() / 2;
    }
}

bool PresenceLedger::wants_online(const User& user, std::int64_t now_ms) const {
  if (user.streams > 0) return true;
  return user.told_online && now_ms - user.last_closed_ms < settings_.grace_ms;
}

std::vector<PresenceLedger::Report> PresenceLedger::take_reports(std::int64_t now_ms) {
  std::vector<Report> reports;
  for (auto& [id, tenant] : tenants_) {
    if (tenant.in_flight || now_ms < tenant.retry_at_ms) continue;
    Report report{id, {}, {}};
    bool any_online = false;
    for (const auto& [user, entry] : tenant.users) {
      const bool online = wants_online(entry, now_ms);
      any_online = any_online || online;
      if (online == entry.told_online) continue;
      if (report.online.size() + report.offline.size() >= settings_.users_per_report_max) continue;
      (online ? report.online : report.offline).push_back(user);
    }
    const bool renew =
        tenant.leased && any_online && now_ms - tenant.renewed_at_ms >= settings_.renew_ms;
    if (report.online.empty() && report.offline.empty() && !renew) continue;
    tenant.in_flight = true;
    reports.push_back(std::move(report));
  }
  return reports;
}

void PresenceLedger::on_reported(const Report& report, bool ok, bool lease_was_live,
                                 std::int64_t now_ms) {
  auto t = tenants_.find(report.tenant_id);
  if (t == tenants_.end()) return;
  Tenant& tenant = t->second;
  tenant.in_flight = false;
  if (!ok) {
    tenant.retry_at_ms = now_ms + settings_.retry_ms;
    return;
  }
  tenant.leased = true;
  tenant.renewed_at_ms = now_ms;
  // Storage holds nothing of this instance but what this report said.
  if (!lease_was_live)
    for (auto& [user, entry] : tenant.users) entry.told_online = false;
  for (const auto& user : report.online)
    if (auto u = tenant.users.find(user); u != tenant.users.end()) u->second.told_online = true;
  for (const auto& user : report.offline)
    if (auto u = tenant.users.find(user); u != tenant.users.end()) u->second.told_online = false;
  forget_settled(tenant);
  if (tenant.users.empty()) tenants_.erase(t);
}

void PresenceLedger::forget_settled(Tenant& tenant) {
  std::erase_if(tenant.users, [](const auto& entry) {
    return entry.second.streams == 0 && !entry.second.told_online;
  });
}

std::size_t PresenceLedger::users() const {
  std::size_t count = 0;
  for (const auto& [id, tenant] : tenants_) count += tenant.users.size();
  return count;
}

bool PresenceLedger::idle() const {
  return std::all_of(tenants_.begin(), tenants_.end(), [](const auto& entry) {
    if (entry.second.in_flight) return false;
    return std::all_of(entry.second.users.begin(), entry.second.users.end(), [](const auto& user) {
      return user.second.streams == 0 && !user.second.told_online;
    });
  });
}

}  // namespace chat4all::frontend
