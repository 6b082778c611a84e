#include "nodes/router/request_failover.h"

#include <algorithm>

#include "common/check.h"

namespace chat4all::router {

RequestFailover::RequestFailover(const Ring& ring, std::vector<std::string> storage_nodes,
                                 std::chrono::milliseconds timeout, std::uint32_t jitter_seed)
    : leaders_(ring),
      storage_nodes_(storage_nodes.begin(), storage_nodes.end()),
      timeout_(timeout),
      attempt_timeout_(std::max(kAttemptTimeoutMin, timeout / 4)),
      jitter_(jitter_seed) {}

void RequestFailover::start(std::uint64_t token, PartitionId partition, Time now, Actions& out) {
  Request request;
  request.partition = partition;
  auto it = requests_.emplace(token, std::move(request)).first;
  deadlines_.push(now + timeout_, token);
  attempt(it, leaders_.leader(partition).node, out);
}

// `node` by value: it may name the cache entry that a later step moves.
void RequestFailover::attempt(Requests::iterator it, std::string node, Actions& out) {
  Request& request = it->second;
  if (request.attempts >= kAttemptsMax) return give_up(it, out);
  FailoverAction send;
  send.kind = FailoverAction::Kind::kSend;
  send.token = it->first;
  send.node = std::move(node);
  send.retry = request.attempts++ > 0;
  CHAT4ALL_CHECK(request.attempts <= kAttemptsMax, "a request is sent at most kAttemptsMax times");
  out.push_back(std::move(send));
}

void RequestFailover::sent(std::uint64_t token, const std::string& node, bool taken, Time now,
                           Actions& out) {
  auto it = requests_.find(token);
  if (it == requests_.end()) return;
  Request& request = it->second;
  if (taken) {
    request.awaiting = node;
    request.attempt_started = now;
    attempt_deadlines_.push(now + attempt_timeout_, token);
    if (!request.forwarded) {
      FailoverAction forwarded;
      forwarded.kind = FailoverAction::Kind::kForwarded;
      forwarded.token = token;
      out.push_back(std::move(forwarded));
    }
    request.forwarded = true;
    return;
  }
  // Later requests of the partition should not all try the dead node first.
  avoid(request.partition, node, "unreachable", out);
  retry_later(it, leaders_.replica_after(request.partition, node),
              "storage node " + node + " is unreachable", now, out);
}

bool RequestFailover::awaits(std::uint64_t token, const std::string& from) const {
  auto it = requests_.find(token);
  return it != requests_.end() && !from.empty() && it->second.awaiting == from;
}

bool RequestFailover::on_reply(std::uint64_t token, const std::string& from,
                               const wire::ErrorReply* error, Time now, Actions& out) {
  auto it = requests_.find(token);
  CHAT4ALL_CHECK(it != requests_.end() && it->second.awaiting == from,
                 "only the node holding a request's current attempt may answer it (awaits())");
  const PartitionId partition = it->second.partition;
  const bool pass_on = [&] {
    if (!error) return true;
    if (error->status == wire::Status::kUnavailable) {
      retry_later(it, leaders_.replica_after(partition, from), from + " answered unavailable", now,
                  out);
      return false;
    }
    if (error->status != wire::Status::kNotOwner) return true;
    // A hint naming the sender itself or a node outside the topology teaches nothing usable;
    // treat it as no hint.
    const std::string& hint = error->owner_hint;
    if (hint.empty() || hint == from || hint == it->second.silent_node ||
        !storage_nodes_.count(hint)) {
      retry_later(it, leaders_.replica_after(partition, from),
                  from + " is not the leader and named none", now, out);
      return false;
    }
    const std::uint64_t previous_epoch = leaders_.leader(partition).epoch;
    switch (leaders_.learn(partition, hint, error->epoch)) {
      case LeaderCache::Learned::kChanged:
        leader_changed(partition, previous_epoch, "hint", out);
        [[fallthrough]];
      case LeaderCache::Learned::kUnchanged:
        it->second.awaiting.clear();
        it->second.last_failure = from + " named " + hint + " as the leader";
        attempt(it, hint, out);
        return false;
      case LeaderCache::Learned::kStale:
        break;
    }
    // The sender is behind: what the cache knows is newer than its hint.
    const std::string& cached = leaders_.leader(partition).node;
    retry_later(it, cached != from ? cached : leaders_.replica_after(partition, from),
                from + " named " + hint + " for the older epoch " + std::to_string(error->epoch),
                now, out);
    return false;
  }();
  if (pass_on) requests_.erase(it);
  return pass_on;
}

void RequestFailover::retry_later(Requests::iterator it, std::string node, std::string why,
                                  Time now, Actions& out) {
  Request& request = it->second;
  request.awaiting.clear();
  request.last_failure = std::move(why);
  if (request.attempts >= kAttemptsMax) return give_up(it, out);
  request.retry_node = std::move(node);
  // Jitter over the upper half keeps the bound while requests that failed together (a node went
  // away) do not all come back in the same instant.
  const auto half = request.backoff / 2;
  const auto delay = half + std::chrono::milliseconds(static_cast<std::int64_t>(
                                jitter_() % static_cast<std::uint64_t>(half.count() + 1)));
  request.backoff = std::min(request.backoff * 2, kRetryBackoffMax);
  retries_.emplace(now + delay, it->first);
}

void RequestFailover::give_up(Requests::iterator it, Actions& out) {
  const Request& request = it->second;
  FailoverAction give_up;
  give_up.kind = FailoverAction::Kind::kGiveUp;
  give_up.token = it->first;
  give_up.partition = request.partition;
  give_up.detail = "partition " + std::to_string(request.partition) +
                   " has no reachable leader after " + std::to_string(request.attempts) +
                   " attempts (last: " + request.last_failure + ")";
  out.push_back(std::move(give_up));
  requests_.erase(it);
}

void RequestFailover::avoid(PartitionId partition, const std::string& node, const char* reason,
                            Actions& out) {
  const std::uint64_t epoch = leaders_.leader(partition).epoch;
  if (leaders_.avoid(partition, node)) leader_changed(partition, epoch, reason, out);
}

// A changed epoch means an election happened; a change within one epoch is this router
// correcting its own guess (after an unreachable node).
void RequestFailover::leader_changed(PartitionId partition, std::uint64_t previous_epoch,
                                     const char* reason, Actions& out) {
  const auto& entry = leaders_.leader(partition);
  FailoverAction changed;
  changed.kind = FailoverAction::Kind::kLeaderChanged;
  changed.partition = partition;
  changed.node = entry.node;
  changed.epoch = entry.epoch;
  changed.previous_epoch = previous_epoch;
  changed.reason = reason;
  out.push_back(std::move(changed));
}

void RequestFailover::expire(Time now, Actions& out) {
  // Deadlines before retries: a request whose deadline and retry fall due together has run out
  // of time, and is answered kTimeout.
  deadlines_.expire(now, [&](std::uint64_t token) {
    auto it = requests_.find(token);
    if (it == requests_.end()) return;  // answered already
    FailoverAction timeout;
    timeout.kind = FailoverAction::Kind::kTimeout;
    timeout.token = token;
    timeout.partition = it->second.partition;
    out.push_back(std::move(timeout));
    requests_.erase(it);
  });
  attempt_deadlines_.expire(now, [&](std::uint64_t token) {
    auto it = requests_.find(token);
    // Skip entries of requests answered meanwhile, of attempts already over and of later
    // attempts (they have their own entry).
    if (it == requests_.end() || it->second.awaiting.empty() ||
        now - it->second.attempt_started < attempt_timeout_)
      return;
    Request& request = it->second;
    const std::string silent = request.awaiting;
    request.silent_node = silent;
    avoid(request.partition, silent, "silent", out);
    retry_later(it, leaders_.replica_after(request.partition, silent),
                "storage node " + silent + " did not answer within " +
                    std::to_string(attempt_timeout_.count()) + " ms",
                now, out);
  });
  while (!retries_.empty() && retries_.top().first <= now) {
    const std::uint64_t token = retries_.top().second;
    retries_.pop();
    auto it = requests_.find(token);
    if (it == requests_.end() || !it->second.awaiting.empty()) continue;
    attempt(it, it->second.retry_node, out);
  }
  const auto live = [&](std::uint64_t token) { return requests_.count(token) > 0; };
  deadlines_.compact(requests_.size(), live);
  attempt_deadlines_.compact(requests_.size(), live);
}

std::chrono::milliseconds RequestFailover::wait_time(Time now,
                                                     std::chrono::milliseconds cap) const {
  auto wait = std::min(deadlines_.wait_time(now, cap), attempt_deadlines_.wait_time(now, cap));
  if (!retries_.empty())
    wait = std::min(wait, std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         retries_.top().first - now) +
                                         std::chrono::milliseconds(1),
                                     std::chrono::milliseconds(0), wait));
  return wait;
}

}  // namespace chat4all::router
