// The consensus core of one partition on one storage node: leader election,
// log replication, commitment, catch-up and log trimming (Raft, with
// pre-vote, leader lease, check-quorum and leadership transfer to the
// preferred replica).
//
// It is a pure state machine. Inputs: tick() (with the node's wall-clock
// reading, which the core only compares, never reads), step() for a message
// from a peer, propose() for a client command, offer_snapshot(). Outputs:
// take_ready() returns what to write, what to apply and what to send. No
// sockets, threads, clocks or disks inside, so a seeded simulation can drive
// it through crashes, drops, duplicates, reorders and partitions
// (tests/unit/consensus_sim_test.cc).
//
// Time is ticks. Every replica of a group is assumed to tick at the same rate
// (the same tick_ms on every node and clocks that run at the same speed; an
// NTP-disciplined clock drifts by parts per million). Phases differ freely.
// The read lease below leaves a tick of margin for a rate difference.
//
// The shell's contract for each Ready, before calling anything else:
//   1. send `send_now` (leader appends: a leader counts its own entries only
//      once they are durable, so these may overtake its own fsync);
//   2. make durable, in one transaction: hard_state, the log change
//      (drop stored entries >= first_new_index, store new_entries from there),
//      install (replace the partition's state; entries <= its index dropped),
//      the application of to_apply, and the trim (entries <= trim_to dropped);
//   3. send `send_after_persist` (votes and acknowledgements promise what is
//      now on disk);
//   4. call advance().
// A crash anywhere before 4 is a crash of a node that did not fsync: the core
// is rebuilt from what step 2 left on disk.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "schema/wire.h"

namespace chat4all::storage::consensus {

using wire::LogEntry;
using wire::ReplicationKind;
using wire::ReplicationMessage;

struct Config {
  std::string self;
  std::vector<std::string> replicas;  // ring order, includes self; [0] is the preferred leader
  std::uint32_t partition = 0;
  int heartbeat_ticks = 2;
  // A follower that heard no leader for this long campaigns. Each replica adds
  // a delay by its rank in ring order and a random part smaller than the
  // step between ranks, so the first live replica campaigns first and alone.
  int election_ticks = 10;
  // A leader serves reads only while a majority (itself included) answered
  // one of its rounds sent within the last read_lease_ticks ticks. 0 derives
  // it: max(1, election_ticks - 2). Safe values: 1 .. election_ticks - 1
  // (the argument is at Replica::has_read_lease in consensus.cc); the
  // derived value keeps one tick of margin for clock-rate drift.
  int read_lease_ticks = 0;
  // A leader whose wall clock differs by more than this from a majority of
  // the replica set steps down, and a replica whose clock is known to be off
  // does not start an election (it stamps stored_at_ms when it leads). 0: no
  // check. Measured from the stamps of responses to its own recent rounds,
  // to within a tick and the round trip.
  std::int64_t clock_skew_max_ms = 1000;
  std::size_t entries_per_message_max = 512;
  std::size_t inflight_messages_max = 16;  // pipelined appends per follower
  std::size_t entries_per_apply_max = 4096;
  std::uint64_t uncommitted_entries_max = 65536;  // proposals beyond are refused
  // Committed entries kept for a replica that does not acknowledge them;
  // beyond this the log is trimmed anyway and that replica gets a snapshot.
  std::uint64_t log_retained_max = 65536;
  std::uint64_t trim_step = 256;  // trim in steps, not per entry
  std::uint64_t seed = 1;         // election timeout jitter
};

struct HardState {
  std::uint64_t term = 0;
  std::string voted_for;
  bool operator==(const HardState&) const = default;
};

// What the shell read back from disk at start.
struct Restored {
  HardState hard_state;
  std::uint64_t snapshot_index = 0;  // log entries start after this index ...
  std::uint64_t snapshot_term = 0;   // ... whose term was this
  std::vector<LogEntry> entries;     // indexes snapshot_index + 1, ...
  std::uint64_t applied_index = 0;   // >= snapshot_index; the state includes entries up to here
};

enum class Role { kFollower, kPreCandidate, kCandidate, kLeader };
const char* role_name(Role role);

// What this replica knows about its wall clock against its peers', for the
// shell to log (once per change) and count.
struct ClockSkew {
  // A majority of the replica set answered recently with clocks off from
  // ours by more than bound_ms: we do not lead and do not start elections.
  bool off = false;
  // Our clock minus the replica set's (the median of the recent estimates,
  // ourselves included); positive: ours is ahead. 0 while nothing is known.
  std::int64_t offset_ms = 0;
  std::int64_t bound_ms = 0;
  bool operator==(const ClockSkew&) const = default;
};

struct Outgoing {
  std::string to;
  ReplicationMessage message;
};

struct SnapshotInstall {
  std::uint64_t index = 0;
  std::uint64_t term = 0;
  std::string data;
};

struct Ready {
  std::optional<HardState> hard_state;
  std::uint64_t first_new_index = 0;  // 0: the log did not change
  std::vector<LogEntry> new_entries;
  std::optional<SnapshotInstall> install;
  std::uint64_t first_apply_index = 0;
  std::vector<LogEntry> to_apply;  // committed entries, in index order
  std::uint64_t trim_to = 0;       // 0: no trim; else entries <= trim_to may go,
  std::uint64_t trim_term = 0;     // and the log now starts after (trim_to, trim_term)
  std::vector<Outgoing> send_now;
  std::vector<Outgoing> send_after_persist;
  // Peers that need a snapshot; the shell builds one from its applied state
  // and calls offer_snapshot().
  std::vector<std::string> snapshot_wanted;
  // True when step 2 of the contract has anything to make durable.
  bool needs_write() const;
};

class Replica {
 public:
  Replica(Config config, Restored restored);

  // `wall_ms`: the node's wall clock (Unix ms) read just before this tick, or
  // 0 when the shell gives none (then no clock is compared).
  void tick(std::int64_t wall_ms = 0);
  void step(const std::string& from, const ReplicationMessage& message);

  struct Proposal {
    bool accepted = false;
    std::uint64_t index = 0;
    std::uint64_t term = 0;
  };
  // Appends a command if this replica leads and is not handing leadership
  // over. The command is committed once a majority stored it; the shell
  // learns that when it comes back in Ready::to_apply at `index` with `term`.
  Proposal propose(std::string data);

  // A snapshot of the applied state at (index, term) for a peer that asked.
  void offer_snapshot(const std::string& peer, std::uint64_t index, std::uint64_t term,
                      std::string data);

  bool has_ready() const;
  Ready take_ready();
  void advance();

  Role role() const { return role_; }
  bool is_leader() const { return role_ == Role::kLeader; }
  std::uint64_t term() const { return term_; }
  const std::string& leader() const { return leader_; }  // empty when unknown
  std::uint64_t commit_index() const { return commit_; }
  std::uint64_t applied_index() const { return applied_; }
  std::uint64_t last_index() const { return snapshot_index_ + log_.size(); }
  std::uint64_t snapshot_index() const { return snapshot_index_; }
  std::optional<std::uint64_t> term_at(std::uint64_t index) const;
  const LogEntry* entry_at(std::uint64_t index) const;
  // A leader whose commit index includes an entry of its own term (so its
  // applied state holds every acknowledged write) and that holds the read
  // lease (so no newer leader can have been elected yet): it may answer reads
  // from its applied state without asking anyone.
  bool can_serve_reads() const;
  bool has_read_lease() const;
  const Config& config() const { return config_; }
  int read_lease_ticks() const { return read_lease_ticks_; }

  ClockSkew clock_skew() const { return clock_skew_; }
  // The clock state when it changed since the last call, for the shell's log
  // line and counter; nullopt otherwise.
  std::optional<ClockSkew> take_clock_skew_change();

 private:
  enum class PeerState { kProbe, kReplicate, kSnapshot };
  struct Progress {
    explicit Progress(std::string peer_name) : name(std::move(peer_name)) {}
    std::string name;
    std::uint64_t match = 0;
    std::uint64_t next = 1;
    PeerState state = PeerState::kProbe;
    bool probe_sent = false;
    std::deque<std::uint64_t> inflight;  // last index of each append in flight
    std::uint64_t pending_snapshot = 0;
    int snapshot_ticks = 0;
    int ticks_since_heard = 1 << 20;
    bool active_this_period = false;
    std::uint64_t acked_round = 0;  // newest of our rounds it answered in this term
  };
  // The newest comparison of a peer's wall clock with ours.
  struct ClockSample {
    std::uint64_t measured_tick = 0;  // 0: none
    bool known = false;               // false: the peer sent no clock (an older node)
    bool off = false;
    std::int64_t offset_ms = 0;  // its clock minus ours, the middle of the interval
  };

  std::size_t quorum() const { return config_.replicas.size() / 2 + 1; }
  bool is_peer(const std::string& name) const;
  Progress* progress_of(const std::string& name);
  std::uint64_t last_term() const { return *term_at(last_index()); }
  bool in_lease() const;
  std::optional<std::int64_t> wall_at(std::uint64_t round) const;
  std::size_t slot_of(const Progress& peer) const {
    return static_cast<std::size_t>(&peer - peers_.data());
  }
  void observe_clock(std::size_t peer_slot, const ReplicationMessage& m);
  bool clock_sample_recent(const ClockSample& sample) const;
  bool clock_confirmed_by(const std::vector<std::string>& voters) const;
  void update_clock_verdict();
  void reset_election_timer();
  void become_follower(std::uint64_t term, const std::string& leader);
  void campaign(bool pre_vote, bool transfer);
  void become_leader();
  void send(const std::string& to, ReplicationMessage message, bool after_persist);
  ReplicationMessage make(ReplicationKind kind) const;
  bool send_append(Progress& peer);
  void send_appends(Progress& peer);
  void broadcast_heartbeats();
  void maybe_commit();
  void maybe_trim();
  void trim(std::uint64_t to);
  void append_to_log(LogEntry entry);
  void truncate_from(std::uint64_t index);
  void handle_append(const std::string& from, const ReplicationMessage& m);
  void handle_snapshot(const std::string& from, const ReplicationMessage& m);
  void handle_vote(const std::string& from, const ReplicationMessage& m);
  void handle_vote_response(const std::string& from, const ReplicationMessage& m);
  void handle_append_response(Progress& peer, const ReplicationMessage& m);
  void handle_heartbeat_response(Progress& peer);
  void consider_transfer();

  Config config_;
  int read_lease_ticks_ = 0;
  int rank_ = 0;
  std::uint64_t rng_state_;

  // Durable (hard state and log).
  std::uint64_t term_ = 0;
  std::string voted_for_;
  std::uint64_t snapshot_index_ = 0, snapshot_term_ = 0;
  std::deque<LogEntry> log_;

  // Volatile.
  Role role_ = Role::kFollower;
  std::string leader_;
  std::uint64_t commit_ = 0;
  std::uint64_t applied_ = 0;        // acknowledged by advance()
  std::uint64_t apply_handed_ = 0;   // handed out in a Ready
  std::uint64_t stable_index_ = 0;   // log entries known durable
  std::uint64_t unstable_from_ = 1;  // stored entries from here on are stale or missing
  bool log_changed_ = false;
  bool hard_state_dirty_ = false;
  int elapsed_ = 0;  // ticks since the leader was last heard (follower) or since the last
                     // quorum check (leader)
  // This incarnation's tick count; starts at 1 so that round 0 means none.
  std::uint64_t tick_count_ = 1;
  // Just started: a leader may have been heard before the restart, whose lease
  // counts on our promise not to vote; keep it for one election timeout.
  bool restarted_ = true;
  // TimeoutNow was sent in this term: the transferee may be elected at any
  // moment without waiting for leases, so reads stop for the rest of the term.
  bool transfer_started_ = false;
  int election_timeout_ = 0;
  int heartbeat_elapsed_ = 0;
  int leader_ticks_ = 0;
  std::vector<std::string> votes_granted_, votes_rejected_;
  std::vector<Progress> peers_;
  std::string transferee_;
  int transfer_elapsed_ = 0;
  bool appends_pending_ = false;

  // Wall clock: the reading at each recent tick (ring of election_ticks + 1),
  // the latest one, the newest sample per peer (peers_ order) and the verdict.
  std::deque<std::pair<std::uint64_t, std::int64_t>> wall_history_;
  std::int64_t wall_ms_ = 0;
  std::vector<ClockSample> clock_samples_;
  ClockSkew clock_skew_;
  bool clock_off_reported_ = false;

  // Output of the current turn.
  std::optional<SnapshotInstall> install_;
  std::uint64_t trim_pending_ = 0, trim_pending_term_ = 0;
  std::vector<Outgoing> send_now_, send_after_persist_;
  std::vector<std::string> snapshot_wanted_;
  std::uint64_t handed_last_ = 0;  // last_index() when the Ready was taken
};

}  // namespace chat4all::storage::consensus
