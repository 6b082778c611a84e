// What one frontend tells storage about the presence of its stream users
// (nodes/storage/presence.h): the pure core of PresenceReporter.
//
// Per user it counts the streams open here. Storage only needs to know
// whether that count is above zero, so only those transitions are reported,
// and an offline one only after `grace_ms` without a stream (a reconnect
// within it, to this frontend or another, is never seen by anyone). Per
// tenant there is at most one report in flight, so reports cannot overtake
// one another; a failed one is retried after `retry_ms` with whatever is
// wanted then. While some of its users are reported online the tenant's lease
// is renewed every `renew_ms`; a reply saying the lease was not live (it
// expired, say after a long pause) means storage dropped what this instance
// had reported, so every user of the tenant is reported again.
//
// Inputs in, reports out; time is passed in. Not thread-safe (the reporter
// holds a mutex around it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace chat4all::frontend {

class PresenceLedger {
 public:
  struct Settings {
    std::int64_t grace_ms = 3000;
    std::int64_t renew_ms = 5000;
    std::int64_t retry_ms = 1000;
    std::size_t users_per_report_max = 1000;
  };
  explicit PresenceLedger(Settings settings) : settings_(settings) {}

  void opened(const std::string& tenant, const std::string& user, std::int64_t now_ms);
  void closed(const std::string& tenant, const std::string& user, std::int64_t now_ms);
  // Every user is offline from now, without grace (the frontend is stopping).
  void close_all();

  struct Report {
    std::string tenant_id;
    std::vector<std::string> online;
    std::vector<std::string> offline;
  };
  // The reports due at `now_ms`: changes to tell, or a lease to renew.
  std::vector<Report> take_reports(std::int64_t now_ms);
  // The answer to a report `take_reports` gave: `ok` false when it failed (or
  // got no answer); `lease_was_live` from storage's result.
  void on_reported(const Report& report, bool ok, bool lease_was_live, std::int64_t now_ms);

  // Users this frontend holds streams of, or reports on (tests, diagnostics).
  std::size_t users() const;
  bool idle() const;  // nothing in flight and nothing left to tell

 private:
  struct User {
    std::uint32_t streams = 0;
    std::int64_t last_closed_ms = 0;
    bool told_online = false;  // what storage holds, as far as its answers say
  };
  struct Tenant {
    std::map<std::string, User> users;
    bool in_flight = false;
    bool leased = false;  // storage acknowledged a report of this instance
    std::int64_t renewed_at_ms = 0;
    std::int64_t retry_at_ms = 0;
  };
  // Whether `user` should be reported online now (what it is told otherwise).
  bool wants_online(const User& user, std::int64_t now_ms) const;
  void forget_settled(Tenant& tenant);

  Settings settings_;
  std::map<std::string, Tenant> tenants_;
};

}  // namespace chat4all::frontend
