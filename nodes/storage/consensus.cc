#include "nodes/storage/consensus.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

// A broken invariant aborts with file and line in every build: assert() is
// compiled out of the optimised build the nodes run (-DNDEBUG).
#define CONSENSUS_CHECK(condition) \
  ((condition) ? void(0)           \
               : ::chat4all::storage::consensus::check_failed(#condition, __FILE__, __LINE__))

namespace chat4all::storage::consensus {

namespace {

[[noreturn]] void check_failed(const char* condition, const char* file, int line) {
  std::fprintf(stderr, "%s:%d: consensus invariant broken: %s\n", file, line, condition);
  std::abort();
}

// splitmix64: a tiny seeded generator, so the same seed gives the same run.
std::uint64_t next_random(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

const char* role_name(Role role) {
  switch (role) {
    case Role::kFollower:
      return "follower";
    case Role::kPreCandidate:
      return "pre_candidate";
    case Role::kCandidate:
      return "candidate";
    case Role::kLeader:
      return "leader";
  }
  return "unknown";
}

bool Ready::needs_write() const {
  return hard_state || first_new_index != 0 || install || !to_apply.empty() || trim_to != 0;
}

Replica::Replica(Config config, Restored restored)
    : config_(std::move(config)), rng_state_(config_.seed) {
  auto self = std::find(config_.replicas.begin(), config_.replicas.end(), config_.self);
  if (self == config_.replicas.end())
    throw std::invalid_argument("consensus: " + config_.self + " is not in its replica set");
  if (config_.heartbeat_ticks < 1 || config_.election_ticks <= config_.heartbeat_ticks)
    throw std::invalid_argument("consensus: election_ticks must exceed heartbeat_ticks >= 1");
  // The read lease must end before any follower that answered the round it
  // rests on can vote for someone else (see has_read_lease): at most
  // election_ticks - 1. The derived value leaves one more tick for drift.
  read_lease_ticks_ = config_.read_lease_ticks != 0 ? config_.read_lease_ticks
                                                    : std::max(1, config_.election_ticks - 2);
  if (read_lease_ticks_ < 1 || read_lease_ticks_ > config_.election_ticks - 1)
    throw std::invalid_argument(
        "consensus: read_lease_ticks must be within 1 .. election_ticks - 1, or 0 (derived)");
  if (config_.clock_skew_max_ms < 0)
    throw std::invalid_argument("consensus: clock_skew_max_ms must be >= 0 (0: no check)");
  clock_skew_.bound_ms = config_.clock_skew_max_ms;
  rank_ = static_cast<int>(self - config_.replicas.begin());
  for (const auto& name : config_.replicas)
    if (name != config_.self) peers_.push_back(Progress(name));
  clock_samples_.resize(peers_.size());

  term_ = restored.hard_state.term;
  voted_for_ = restored.hard_state.voted_for;
  snapshot_index_ = restored.snapshot_index;
  snapshot_term_ = restored.snapshot_term;
  log_.assign(std::make_move_iterator(restored.entries.begin()),
              std::make_move_iterator(restored.entries.end()));
  // Whatever was applied was committed; nothing beyond is known to be.
  applied_ = apply_handed_ = commit_ = std::max(restored.applied_index, snapshot_index_);
  if (commit_ > last_index()) throw std::invalid_argument("consensus: applied beyond the log");
  stable_index_ = last_index();
  unstable_from_ = last_index() + 1;
  reset_election_timer();
}

// --- Log ---------------------------------------------------------------------

std::optional<std::uint64_t> Replica::term_at(std::uint64_t index) const {
  if (index == snapshot_index_) return snapshot_term_;
  if (index < snapshot_index_ || index > last_index()) return std::nullopt;
  return log_[index - snapshot_index_ - 1].term;
}

const LogEntry* Replica::entry_at(std::uint64_t index) const {
  if (index <= snapshot_index_ || index > last_index()) return nullptr;
  return &log_[index - snapshot_index_ - 1];
}

void Replica::append_to_log(LogEntry entry) {
  log_.push_back(std::move(entry));
  unstable_from_ = std::min(unstable_from_, last_index());
  log_changed_ = true;
}

void Replica::truncate_from(std::uint64_t index) {
  // Only uncommitted entries are ever replaced (Log Matching + Leader Completeness).
  CONSENSUS_CHECK(index > commit_);
  log_.resize(index - snapshot_index_ - 1);
  unstable_from_ = std::min(unstable_from_, index);
  stable_index_ = std::min(stable_index_, index - 1);
  log_changed_ = true;
}

void Replica::trim(std::uint64_t to) {
  if (to <= snapshot_index_) return;
  const std::uint64_t to_term = *term_at(to);
  log_.erase(log_.begin(), log_.begin() + static_cast<std::ptrdiff_t>(to - snapshot_index_));
  snapshot_index_ = to;
  snapshot_term_ = to_term;
  trim_pending_ = to;
  trim_pending_term_ = to_term;
}

// --- Timers and roles --------------------------------------------------------

void Replica::reset_election_timer() {
  elapsed_ = 0;
  // Ranks get disjoint windows (jitter smaller than the step between ranks),
  // so the surviving replica first in ring order campaigns alone instead of
  // splitting the vote with the next one; jitter separates retries.
  const int base = config_.election_ticks;
  const int step = base / 4 + 1;
  const int jitter = static_cast<int>(next_random(rng_state_) % std::uint64_t(step));
  election_timeout_ = base + rank_ * step + jitter;
}

// While this is true the replica neither votes (pre-vote or vote) for anyone
// nor lets another message of a newer term move it, except a leader's message
// or a transfer vote; a follower only leaves it by ticking election_ticks
// times without hearing its leader. The read lease rests on that promise.
bool Replica::in_lease() const {
  if (role_ == Role::kLeader) return true;  // check-quorum steps a cut-off leader down
  return (!leader_.empty() || restarted_) && elapsed_ < config_.election_ticks;
}

bool Replica::is_peer(const std::string& name) const {
  return std::any_of(peers_.begin(), peers_.end(),
                     [&](const Progress& p) { return p.name == name; });
}

Replica::Progress* Replica::progress_of(const std::string& name) {
  for (auto& peer : peers_)
    if (peer.name == name) return &peer;
  return nullptr;
}

void Replica::become_follower(std::uint64_t term, const std::string& leader) {
  if (term != term_) {
    term_ = term;
    voted_for_.clear();
    hard_state_dirty_ = true;
  }
  role_ = Role::kFollower;
  leader_ = leader;
  transferee_.clear();
  votes_granted_.clear();
  votes_rejected_.clear();
  appends_pending_ = false;
  reset_election_timer();
}

void Replica::campaign(bool pre_vote, bool transfer) {
  restarted_ = false;
  votes_granted_ = {config_.self};
  votes_rejected_.clear();
  leader_.clear();
  reset_election_timer();
  std::uint64_t vote_term = term_ + 1;
  if (pre_vote) {
    role_ = Role::kPreCandidate;
  } else {
    role_ = Role::kCandidate;
    term_ = vote_term;
    voted_for_ = config_.self;
    hard_state_dirty_ = true;
  }
  if (votes_granted_.size() >= quorum()) {
    if (pre_vote)
      campaign(false, transfer);
    else
      become_leader();
    return;
  }
  for (const auto& peer : peers_) {
    ReplicationMessage m = make(ReplicationKind::kVote);
    m.term = vote_term;
    m.index = last_index();
    m.log_term = last_term();
    m.transfer = transfer;
    m.reject = false;
    // A pre-vote is a vote request whose `commit` is 1: it asks whether the
    // peer would vote, without the candidate raising its term.
    m.commit = pre_vote ? 1 : 0;
    m.round = tick_count_;
    send(peer.name, std::move(m), /*after_persist=*/true);
  }
}

void Replica::become_leader() {
  role_ = Role::kLeader;
  leader_ = config_.self;
  transferee_.clear();
  transfer_started_ = false;
  elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  leader_ticks_ = 0;
  for (auto& peer : peers_) {
    peer = Progress(peer.name);
    peer.next = last_index() + 1;
    peer.ticks_since_heard = 0;  // granted a vote just now, or gets the lease's benefit
  }
  // Entries of earlier terms commit only with one of the leader's own term.
  append_to_log(LogEntry{term_, ""});
  appends_pending_ = true;
}

// --- Output -----------------------------------------------------------------

ReplicationMessage Replica::make(ReplicationKind kind) const {
  ReplicationMessage m;
  m.kind = kind;
  m.partition = config_.partition;
  m.term = term_;
  m.sender_wall_ms = wall_ms_;
  return m;
}

void Replica::send(const std::string& to, ReplicationMessage message, bool after_persist) {
  (after_persist ? send_after_persist_ : send_now_).push_back({to, std::move(message)});
}

bool Replica::send_append(Progress& peer) {
  if (peer.state == PeerState::kSnapshot) return false;
  if (peer.state == PeerState::kProbe && peer.probe_sent) return false;
  if (peer.state == PeerState::kReplicate) {
    if (peer.inflight.size() >= config_.inflight_messages_max) return false;
    if (peer.next > last_index()) return false;
  }
  const std::uint64_t prev = peer.next - 1;
  const auto prev_term = term_at(prev);
  if (!prev_term) {
    // Trimmed away: only a snapshot brings this peer forward.
    peer.state = PeerState::kSnapshot;
    peer.snapshot_ticks = 0;
    peer.inflight.clear();
    if (!contains(snapshot_wanted_, peer.name)) snapshot_wanted_.push_back(peer.name);
    return false;
  }
  ReplicationMessage m = make(ReplicationKind::kAppend);
  m.index = prev;
  m.log_term = *prev_term;
  const std::uint64_t last =
      std::min(last_index(), prev + static_cast<std::uint64_t>(config_.entries_per_message_max));
  for (std::uint64_t i = prev + 1; i <= last; ++i) m.entries.push_back(*entry_at(i));
  m.commit = commit_;
  m.hint = snapshot_index_;
  m.round = tick_count_;
  send(peer.name, std::move(m), /*after_persist=*/false);
  if (peer.state == PeerState::kReplicate) {
    peer.next = last + 1;
    peer.inflight.push_back(last);
  } else {
    peer.probe_sent = true;
  }
  return last > prev;
}

void Replica::send_appends(Progress& peer) {
  while (send_append(peer) && peer.state == PeerState::kReplicate) {
  }
}

void Replica::broadcast_heartbeats() {
  for (auto& peer : peers_) {
    ReplicationMessage m = make(ReplicationKind::kHeartbeat);
    // Never tell a follower to commit beyond what it is known to hold.
    m.commit = std::min(peer.match, commit_);
    m.hint = std::min(peer.match, snapshot_index_);
    m.round = tick_count_;
    send(peer.name, std::move(m), /*after_persist=*/false);
  }
}

// --- Inputs ------------------------------------------------------------------

void Replica::tick(std::int64_t wall_ms) {
  ++tick_count_;
  wall_ms_ = wall_ms;
  if (wall_ms != 0) {
    wall_history_.emplace_back(tick_count_, wall_ms);
    while (wall_history_.size() > static_cast<std::size_t>(config_.election_ticks) + 1)
      wall_history_.pop_front();
  }
  ++elapsed_;
  if (elapsed_ >= config_.election_ticks) restarted_ = false;
  if (role_ != Role::kLeader) {
    if (elapsed_ >= election_timeout_) campaign(/*pre_vote=*/true, /*transfer=*/false);
    return;
  }
  ++leader_ticks_;
  for (auto& peer : peers_) {
    ++peer.ticks_since_heard;
    if (peer.state == PeerState::kSnapshot && ++peer.snapshot_ticks > 2 * config_.election_ticks) {
      // The snapshot (or its answer) was lost: probe again, which asks anew.
      peer.state = PeerState::kProbe;
      peer.probe_sent = false;
    }
  }
  if (++heartbeat_elapsed_ >= config_.heartbeat_ticks) {
    heartbeat_elapsed_ = 0;
    broadcast_heartbeats();
  }
  if (!transferee_.empty() && ++transfer_elapsed_ >= config_.election_ticks) {
    // The transferee did not take over. It may still campaign on the
    // TimeoutNow it holds, and votes for a transfer ignore leases, so this
    // term can no longer have a read lease: step down and let an election
    // (the preferred replica's timer fires first) settle it.
    become_follower(term_, "");
    return;
  }
  if (elapsed_ >= config_.election_ticks) {
    // Check quorum: a leader that heard from no majority for a whole election
    // timeout steps down, so its clients go elsewhere instead of waiting.
    elapsed_ = 0;
    std::size_t active = 1;
    for (auto& peer : peers_) {
      if (peer.active_this_period) ++active;
      peer.active_this_period = false;
    }
    if (active < quorum()) {
      become_follower(term_, "");
      return;
    }
  }
  consider_transfer();
}

void Replica::consider_transfer() {
  // The preferred leader is the first live replica in ring order. Hand over to
  // it once it is live and fully caught up; proposals pause meanwhile.
  if (!transferee_.empty() || leader_ticks_ < config_.election_ticks) return;
  for (const auto& name : config_.replicas) {
    if (name == config_.self) return;  // we are the first live one
    Progress* peer = progress_of(name);
    if (peer->ticks_since_heard > config_.election_ticks) continue;  // not live
    const ClockSample& clock = clock_samples_[slot_of(*peer)];
    if (clock.off && clock_sample_recent(clock)) continue;  // would stamp wrong times
    if (peer->match != last_index()) return;                // wait until it caught up
    transferee_ = name;
    transfer_elapsed_ = 0;
    transfer_started_ = true;
    send(name, make(ReplicationKind::kTimeoutNow), /*after_persist=*/false);
    return;
  }
}

Replica::Proposal Replica::propose(std::string data) {
  if (role_ != Role::kLeader || !transferee_.empty()) return {};
  // A leader elected by a transfer while its clock was last known off waits
  // for its first answers to clear it: the shell stamps commands with it.
  if (clock_skew_.off) return {};
  if (last_index() - commit_ >= config_.uncommitted_entries_max) return {};
  append_to_log(LogEntry{term_, std::move(data)});
  appends_pending_ = true;
  return {true, last_index(), term_};
}

void Replica::offer_snapshot(const std::string& peer_name, std::uint64_t index, std::uint64_t term,
                             std::string data) {
  Progress* peer = progress_of(peer_name);
  if (role_ != Role::kLeader || !peer || peer->state != PeerState::kSnapshot) return;
  // The log must continue where the snapshot ends.
  if (index < snapshot_index_ || index > last_index() || term_at(index) != term) return;
  ReplicationMessage m = make(ReplicationKind::kSnapshot);
  m.index = index;
  m.log_term = term;
  m.commit = commit_;
  m.snapshot = std::move(data);
  m.round = tick_count_;
  peer->pending_snapshot = index;
  peer->snapshot_ticks = 0;
  send(peer_name, std::move(m), /*after_persist=*/false);
}

void Replica::step(const std::string& from, const ReplicationMessage& m) {
  if (!is_peer(from)) return;
  const bool is_vote = m.kind == ReplicationKind::kVote;
  const bool is_pre_vote = is_vote && m.commit == 1;
  const bool from_leader = m.kind == ReplicationKind::kAppend ||
                           m.kind == ReplicationKind::kHeartbeat ||
                           m.kind == ReplicationKind::kSnapshot;

  if (m.term > term_) {
    if (is_vote && !m.transfer && in_lease()) return;  // a live leader exists: ignore disruptors
    // Nor does a follower in lease let any other message of a newer term
    // (a late answer to its own old requests, a TimeoutNow) end its lease
    // early: only ticks do, or a leader of that term.
    if (role_ != Role::kLeader && !from_leader && !is_vote && in_lease()) return;
    if (is_pre_vote) {
      // Answered below without changing our term.
    } else if (m.kind == ReplicationKind::kVoteResponse && !m.reject &&
               role_ == Role::kPreCandidate && m.term == term_ + 1) {
      // A granted pre-vote carries the term it was asked for.
    } else {
      become_follower(m.term, from_leader ? from : "");
    }
  } else if (m.term < term_) {
    if (from_leader) {
      // Tell a deposed leader about the newer epoch so that it steps down.
      send(from, make(ReplicationKind::kHeartbeatResponse), /*after_persist=*/true);
    } else if (is_pre_vote) {
      ReplicationMessage answer = make(ReplicationKind::kVoteResponse);
      answer.reject = true;
      answer.commit = 1;
      send(from, std::move(answer), /*after_persist=*/true);
    }
    return;
  }

  switch (m.kind) {
    case ReplicationKind::kAppend:
    case ReplicationKind::kHeartbeat:
    case ReplicationKind::kSnapshot:
      if (role_ == Role::kLeader) return;  // same term, two leaders: impossible; ignore
      if (role_ != Role::kFollower || leader_ != from) become_follower(term_, from);
      elapsed_ = 0;
      if (m.kind == ReplicationKind::kAppend) {
        handle_append(from, m);
      } else if (m.kind == ReplicationKind::kSnapshot) {
        handle_snapshot(from, m);
      } else {
        commit_ = std::max(commit_, std::min(m.commit, last_index()));
        if (m.hint > snapshot_index_) trim(std::min(m.hint, applied_));
        ReplicationMessage answer = make(ReplicationKind::kHeartbeatResponse);
        answer.round = m.round;
        send(from, std::move(answer), /*after_persist=*/true);
      }
      return;
    case ReplicationKind::kVote:
      handle_vote(from, m);
      return;
    case ReplicationKind::kVoteResponse:
      handle_vote_response(from, m);
      return;
    case ReplicationKind::kTimeoutNow:
      if (role_ == Role::kFollower && leader_ == from) campaign(false, /*transfer=*/true);
      return;
    case ReplicationKind::kAppendResponse:
    case ReplicationKind::kHeartbeatResponse:
      if (role_ != Role::kLeader) return;
      if (Progress* peer = progress_of(from)) {
        peer->ticks_since_heard = 0;
        peer->active_this_period = true;
        // The peer followed us when it answered this round, so it will not
        // vote for another before election_ticks of its own ticks from then.
        if (m.round != 0 && m.round <= tick_count_)
          peer->acked_round = std::max(peer->acked_round, m.round);
        observe_clock(slot_of(*peer), m);
        if (role_ != Role::kLeader) return;  // stepped down: our clock is off
        if (m.kind == ReplicationKind::kAppendResponse)
          handle_append_response(*peer, m);
        else
          handle_heartbeat_response(*peer);
      }
      return;
  }
}

void Replica::handle_append(const std::string& from, const ReplicationMessage& m) {
  ReplicationMessage answer = make(ReplicationKind::kAppendResponse);
  answer.round = m.round;
  if (m.index < commit_) {
    // Everything up to our commit index is settled; say so.
    answer.index = commit_;
    send(from, std::move(answer), /*after_persist=*/true);
    return;
  }
  if (term_at(m.index) != m.log_term) {
    answer.reject = true;
    answer.index = m.index;
    answer.hint = std::min(m.index, last_index());
    send(from, std::move(answer), /*after_persist=*/true);
    return;
  }
  std::uint64_t index = m.index;
  for (const auto& entry : m.entries) {
    ++index;
    const auto existing = term_at(index);
    if (existing == entry.term) continue;
    if (existing) truncate_from(index);
    append_to_log(entry);
  }
  const std::uint64_t last_new = m.index + m.entries.size();
  commit_ = std::max(commit_, std::min(m.commit, last_new));
  if (m.hint > snapshot_index_) trim(std::min(m.hint, applied_));
  answer.index = last_new;
  send(from, std::move(answer), /*after_persist=*/true);
}

void Replica::handle_snapshot(const std::string& from, const ReplicationMessage& m) {
  ReplicationMessage answer = make(ReplicationKind::kAppendResponse);
  answer.round = m.round;
  if (m.index <= commit_) {
    answer.index = commit_;
  } else if (term_at(m.index) == m.log_term) {
    // We hold that entry already; the log is enough.
    commit_ = m.index;
    answer.index = m.index;
  } else {
    log_.clear();
    snapshot_index_ = m.index;
    snapshot_term_ = m.log_term;
    commit_ = applied_ = apply_handed_ = m.index;
    stable_index_ = m.index;
    unstable_from_ = m.index + 1;
    log_changed_ = true;  // stored entries after the snapshot are dropped
    install_ = SnapshotInstall{m.index, m.log_term, m.snapshot};
    trim_pending_ = 0;
    answer.index = m.index;
  }
  send(from, std::move(answer), /*after_persist=*/true);
}

void Replica::handle_vote(const std::string& from, const ReplicationMessage& m) {
  const bool pre_vote = m.commit == 1;
  const bool log_ok =
      m.log_term > last_term() || (m.log_term == last_term() && m.index >= last_index());
  bool grant;
  if (pre_vote) {
    grant = m.term > term_ && log_ok && (m.transfer || !in_lease());
  } else {
    grant = m.term == term_ && log_ok && (voted_for_.empty() || voted_for_ == from);
    if (grant) {
      voted_for_ = from;
      hard_state_dirty_ = true;
      reset_election_timer();
    }
  }
  ReplicationMessage answer = make(ReplicationKind::kVoteResponse);
  answer.reject = !grant;
  answer.commit = pre_vote ? 1 : 0;
  answer.round = m.round;
  if (pre_vote && grant) answer.term = m.term;
  send(from, std::move(answer), /*after_persist=*/true);
}

void Replica::handle_vote_response(const std::string& from, const ReplicationMessage& m) {
  const bool pre_vote = m.commit == 1;
  if (pre_vote ? role_ != Role::kPreCandidate : role_ != Role::kCandidate) return;
  if (pre_vote && !m.reject && m.term != term_ + 1) return;  // answer to an older pre-vote
  if (Progress* peer = progress_of(from)) observe_clock(slot_of(*peer), m);
  auto& tally = m.reject ? votes_rejected_ : votes_granted_;
  if (!contains(tally, from)) tally.push_back(from);
  if (votes_granted_.size() >= quorum()) {
    if (pre_vote) {
      // Raise the term only with a clock a majority of the voters does not
      // contradict; otherwise wait for more answers, or the next timeout.
      if (clock_confirmed_by(votes_granted_)) campaign(false, /*transfer=*/false);
    } else {
      become_leader();
    }
  } else if (votes_rejected_.size() >= quorum()) {
    become_follower(term_, "");
  }
}

void Replica::handle_append_response(Progress& peer, const ReplicationMessage& m) {
  if (m.reject) {
    if (peer.state == PeerState::kReplicate) {
      if (m.index <= peer.match) return;  // stale
      peer.next = peer.match + 1;
    } else {
      if (m.index != peer.next - 1) return;  // answers an older probe
      peer.next = std::max(peer.match + 1, std::min(m.index, m.hint + 1));
    }
    peer.state = PeerState::kProbe;
    peer.probe_sent = false;
    peer.inflight.clear();
    send_append(peer);
    return;
  }
  if (m.index > peer.match) {
    peer.match = m.index;
    peer.next = std::max(peer.next, m.index + 1);
  }
  while (!peer.inflight.empty() && peer.inflight.front() <= m.index) peer.inflight.pop_front();
  if (peer.state == PeerState::kProbe ||
      (peer.state == PeerState::kSnapshot && peer.match >= peer.pending_snapshot &&
       peer.pending_snapshot > 0)) {
    peer.state = PeerState::kReplicate;
    peer.next = peer.match + 1;
    peer.inflight.clear();
    peer.pending_snapshot = 0;
  }
  peer.probe_sent = false;
  maybe_commit();
  send_appends(peer);
  if (peer.name == transferee_ && peer.match == last_index())
    send(peer.name, make(ReplicationKind::kTimeoutNow), /*after_persist=*/false);
}

void Replica::handle_heartbeat_response(Progress& peer) {
  peer.probe_sent = false;
  // A lost append in a full pipeline would stall it for good; free a slot.
  if (peer.state == PeerState::kReplicate && peer.inflight.size() >= config_.inflight_messages_max)
    peer.inflight.pop_front();
  if (peer.match < last_index()) send_appends(peer);
}

void Replica::maybe_commit() {
  std::vector<std::uint64_t> matches{stable_index_};
  for (const auto& peer : peers_) matches.push_back(peer.match);
  std::sort(matches.begin(), matches.end(), std::greater<>());
  const std::uint64_t candidate = matches[quorum() - 1];
  // Only an entry of the leader's own term is committed by counting replicas.
  if (candidate > commit_ && term_at(candidate) == term_) commit_ = candidate;
}

void Replica::maybe_trim() {
  if (role_ != Role::kLeader) return;
  std::uint64_t keep = applied_;
  for (const auto& peer : peers_) keep = std::min(keep, peer.match);
  if (applied_ > config_.log_retained_max)
    keep = std::max(keep, applied_ - config_.log_retained_max);
  if (keep >= snapshot_index_ + config_.trim_step) trim(keep);
}

// --- Ready -------------------------------------------------------------------

bool Replica::has_ready() const {
  return hard_state_dirty_ || log_changed_ || install_ || commit_ > apply_handed_ ||
         trim_pending_ || !send_now_.empty() || !send_after_persist_.empty() ||
         !snapshot_wanted_.empty() || appends_pending_;
}

Ready Replica::take_ready() {
  if (appends_pending_ && role_ == Role::kLeader) {
    for (auto& peer : peers_) send_appends(peer);
  }
  appends_pending_ = false;
  maybe_trim();

  Ready ready;
  if (hard_state_dirty_) ready.hard_state = HardState{term_, voted_for_};
  if (log_changed_) {
    ready.first_new_index = unstable_from_;
    for (std::uint64_t i = std::max(unstable_from_, snapshot_index_ + 1); i <= last_index(); ++i)
      ready.new_entries.push_back(*entry_at(i));
    if (ready.first_new_index <= snapshot_index_) ready.first_new_index = snapshot_index_ + 1;
  }
  ready.install = std::move(install_);
  if (commit_ > apply_handed_) {
    ready.first_apply_index = apply_handed_ + 1;
    const std::uint64_t last = std::min(
        commit_, apply_handed_ + static_cast<std::uint64_t>(config_.entries_per_apply_max));
    for (std::uint64_t i = apply_handed_ + 1; i <= last; ++i)
      ready.to_apply.push_back(*entry_at(i));
    apply_handed_ = last;
  }
  ready.trim_to = trim_pending_;
  ready.trim_term = trim_pending_term_;
  ready.send_now = std::move(send_now_);
  ready.send_after_persist = std::move(send_after_persist_);
  ready.snapshot_wanted = std::move(snapshot_wanted_);

  hard_state_dirty_ = false;
  log_changed_ = false;
  install_.reset();
  trim_pending_ = trim_pending_term_ = 0;
  send_now_.clear();
  send_after_persist_.clear();
  snapshot_wanted_.clear();
  unstable_from_ = last_index() + 1;
  handed_last_ = last_index();
  return ready;
}

void Replica::advance() {
  stable_index_ = handed_last_;
  applied_ = apply_handed_;
  if (role_ == Role::kLeader) maybe_commit();
}

bool Replica::can_serve_reads() const {
  return role_ == Role::kLeader && term_at(commit_) == term_ && applied_ >= commit_ &&
         has_read_lease();
}

// The read lease. Let a majority Q (ourselves included) have answered rounds
// we sent at tick counts >= R, and let us read at tick count c with
// c - R < read_lease_ticks. A newer leader needs votes from a majority, which
// meets Q; each member f of Q other than us answered a round >= R, and at
// that moment (after we sent it, so after our tick R) followed us: its
// elapsed_ was 0 and it was in lease. In lease it neither votes nor starts an
// election nor lets another newer-term message move it (in_lease, step), and
// it leaves the lease only by ticking election_ticks times; after a restart
// it keeps the promise for election_ticks ticks too (restarted_). So f's vote
// for anyone else comes after its election_ticks-th tick after our tick R.
// With equal tick rates (period P) that tick lies more than
// (election_ticks - 1) * P after our tick R, since the first of them may come
// at once. Our read happens before our tick R + read_lease_ticks, i.e. less
// than read_lease_ticks * P after tick R. Hence read_lease_ticks <=
// election_ticks - 1 is exactly enough; the derived default keeps one tick
// more so that tick rates may differ by about 1 / election_ticks. We, the
// other member of Q, vote for no one while we lead (in_lease), and a
// transfer vote ignores leases, so after a TimeoutNow reads stop for good in
// this term (transfer_started_). The sim checks this with the exact bound.
bool Replica::has_read_lease() const {
  if (role_ != Role::kLeader || transfer_started_) return false;
  std::vector<std::uint64_t> rounds{tick_count_};
  for (const auto& peer : peers_) rounds.push_back(peer.acked_round);
  std::sort(rounds.begin(), rounds.end(), std::greater<>());
  const std::uint64_t oldest_needed = rounds[quorum() - 1];
  return oldest_needed != 0 &&
         tick_count_ - oldest_needed < static_cast<std::uint64_t>(read_lease_ticks_);
}

// --- Wall clock --------------------------------------------------------------

std::optional<std::int64_t> Replica::wall_at(std::uint64_t round) const {
  for (auto it = wall_history_.rbegin(); it != wall_history_.rend() && it->first >= round; ++it)
    if (it->first == round) return it->second;
  return std::nullopt;  // older than the ring (not recent), or no reading then
}

bool Replica::clock_sample_recent(const ClockSample& sample) const {
  return sample.measured_tick != 0 &&
         tick_count_ - sample.measured_tick <= static_cast<std::uint64_t>(config_.election_ticks);
}

void Replica::observe_clock(std::size_t slot, const ReplicationMessage& m) {
  const std::int64_t bound = config_.clock_skew_max_ms;
  if (bound <= 0 || wall_ms_ == 0 || m.round == 0) return;
  // Only answers to our recent rounds: older ones say little about now.
  const auto sent_wall = wall_at(m.round);
  if (!sent_wall || wall_ms_ < *sent_wall) return;  // too old, or our clock stepped back since
  ClockSample& sample = clock_samples_[slot];
  sample.measured_tick = tick_count_;
  sample.known = m.sender_wall_ms != 0;
  if (!sample.known) {
    sample.off = false;  // an older peer: no evidence either way
  } else {
    // The peer read its clock after our tick `round` (we sent then; its
    // reading may be up to a tick older still) and before our next tick (we
    // received the answer before it). One-way delays are unknown but each is
    // at most the round trip, so its clock minus ours lies in [low, high] to
    // within a tick on either side; the bound tolerates that much.
    const std::int64_t low = m.sender_wall_ms - wall_ms_;
    const std::int64_t high = m.sender_wall_ms - *sent_wall;
    sample.off = low > bound || high < -bound;
    sample.offset_ms = low + (high - low) / 2;
  }
  update_clock_verdict();
  if (role_ == Role::kLeader && clock_skew_.off) {
    // A majority's clocks disagree with ours: we would stamp wrong times.
    become_follower(term_, "");
  }
}

void Replica::update_clock_verdict() {
  std::size_t off = 0, not_off = 1;  // ourselves
  std::vector<std::int64_t> ours_minus_theirs{0};
  for (const auto& sample : clock_samples_) {
    if (!clock_sample_recent(sample)) continue;
    ++(sample.off ? off : not_off);
    if (sample.known) ours_minus_theirs.push_back(-sample.offset_ms);
  }
  std::sort(ours_minus_theirs.begin(), ours_minus_theirs.end());
  clock_skew_.offset_ms = ours_minus_theirs[ours_minus_theirs.size() / 2];
  // Off and confirmed need a majority each, so they never hold together;
  // between them the verdict stands until more answers come.
  if (off >= quorum())
    clock_skew_.off = true;
  else if (not_off >= quorum())
    clock_skew_.off = false;
}

bool Replica::clock_confirmed_by(const std::vector<std::string>& voters) const {
  if (config_.clock_skew_max_ms <= 0) return true;
  std::size_t agreeing = 0;
  for (const auto& name : voters) {
    if (name == config_.self) {
      ++agreeing;
      continue;
    }
    const Progress* peer = nullptr;
    for (const auto& p : peers_)
      if (p.name == name) peer = &p;
    if (!peer) continue;
    const ClockSample& sample = clock_samples_[slot_of(*peer)];
    if (!(sample.off && clock_sample_recent(sample))) ++agreeing;
  }
  return agreeing >= quorum();
}

std::optional<ClockSkew> Replica::take_clock_skew_change() {
  if (clock_skew_.off == clock_off_reported_) return std::nullopt;
  clock_off_reported_ = clock_skew_.off;
  return clock_skew_;
}

}  // namespace chat4all::storage::consensus
