// Behaviour of the consensus core on a perfect network, step by step: who
// leads, when leadership moves, what a cut-off leader can and cannot do.
// (Safety under faults is consensus_sim_test.cc's job.)
#include "nodes/storage/consensus.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>

namespace chat4all::storage::consensus {
namespace {

// Replicas that persist instantly and deliver every message in the next
// round, except across a cut. Every round is 50 ms of wall clock; a replica's
// clock may be set off by an offset.
class Group {
 public:
  explicit Group(int size, std::uint64_t seed = 7) {
    for (int i = 0; i < size; ++i) names_.push_back("s" + std::to_string(i + 1));
    for (std::size_t i = 0; i < names_.size(); ++i) start(i, seed);
  }

  void start(std::size_t i, std::uint64_t seed = 11) {
    Config config;
    config.self = names_[i];
    config.replicas = names_;
    config.seed = seed + i;
    config.trim_step = 4;
    Restored restored;
    auto& disk = disks_[names_[i]];
    restored.hard_state = disk.hard_state;
    restored.snapshot_index = disk.snapshot_index;
    restored.snapshot_term = disk.snapshot_term;
    restored.entries = disk.entries;
    restored.applied_index = disk.applied;
    replicas_[names_[i]] = std::make_unique<Replica>(config, restored);
  }
  void crash(const std::string& name) { replicas_.erase(name); }
  void set_clock_offset(const std::string& name, std::int64_t offset_ms) {
    clock_offset_ms_[name] = offset_ms;
  }
  void cut(const std::set<std::string>& side) { side_ = side; }
  void heal() { side_.clear(); }

  Replica* operator[](const std::string& name) {
    auto it = replicas_.find(name);
    return it == replicas_.end() ? nullptr : it->second.get();
  }

  // One round: every replica ticks, then readies are processed and messages
  // delivered until quiet.
  void round() {
    wall_ms_ += 50;
    for (auto& [name, replica] : replicas_) replica->tick(wall_ms_ + clock_offset_ms_[name]);
    settle();
  }
  void rounds(int n) {
    for (int i = 0; i < n; ++i) round();
  }
  void settle() {
    for (int guard = 0; guard < 100; ++guard) {
      std::vector<std::pair<std::string, Outgoing>> mail;
      for (auto& [name, replica] : replicas_) {
        if (!replica->has_ready()) continue;
        Ready ready = replica->take_ready();
        persist(name, ready);
        for (auto& out : ready.send_now) mail.emplace_back(name, std::move(out));
        for (auto& out : ready.send_after_persist) mail.emplace_back(name, std::move(out));
        replica->advance();
      }
      const bool more = std::any_of(replicas_.begin(), replicas_.end(),
                                    [](const auto& r) { return r.second->has_ready(); });
      if (mail.empty() && !more) return;
      for (auto& [from, out] : mail) {
        auto to = replicas_.find(out.to);
        if (to == replicas_.end() || side_.count(from) != side_.count(out.to)) continue;
        to->second->step(from, out.message);
      }
    }
  }

  std::vector<std::string> leaders() {
    std::vector<std::string> result;
    for (auto& [name, replica] : replicas_)
      if (replica->is_leader()) result.push_back(name);
    return result;
  }
  const std::vector<std::string>& applied(const std::string& name) {
    return disks_[name].applied_data;
  }

 private:
  struct Disk {
    HardState hard_state;
    std::uint64_t snapshot_index = 0, snapshot_term = 0, applied = 0;
    std::vector<LogEntry> entries;
    std::vector<std::string> applied_data;
  };

  void persist(const std::string& name, const Ready& ready) {
    Disk& disk = disks_[name];
    if (ready.hard_state) disk.hard_state = *ready.hard_state;
    ASSERT_FALSE(ready.install) << "no snapshots expected on a perfect network";
    if (ready.first_new_index) {
      disk.entries.resize(ready.first_new_index - disk.snapshot_index - 1);
      for (const auto& entry : ready.new_entries) disk.entries.push_back(entry);
    }
    for (std::size_t k = 0; k < ready.to_apply.size(); ++k) {
      if (!ready.to_apply[k].data.empty()) disk.applied_data.push_back(ready.to_apply[k].data);
      disk.applied = ready.first_apply_index + k;
    }
    if (ready.trim_to) {
      disk.entries.erase(disk.entries.begin(),
                         disk.entries.begin() + (ready.trim_to - disk.snapshot_index));
      disk.snapshot_index = ready.trim_to;
      disk.snapshot_term = ready.trim_term;
    }
  }

  std::vector<std::string> names_;
  std::map<std::string, std::unique_ptr<Replica>> replicas_;
  std::map<std::string, Disk> disks_;
  std::set<std::string> side_;
  std::int64_t wall_ms_ = 1'700'000'000'000;
  std::map<std::string, std::int64_t> clock_offset_ms_;
};

TEST(ConsensusTest, ThePreferredReplicaLeadsOnceTheGroupSettles) {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    Group group(3, seed);
    group.rounds(60);
    EXPECT_EQ(group.leaders(), std::vector<std::string>{"s1"}) << "seed " << seed;
  }
}

TEST(ConsensusTest, OnlyTheLeaderAcceptsProposalsAndEveryReplicaAppliesThem) {
  Group group(3);
  group.rounds(60);
  ASSERT_EQ(group.leaders(), std::vector<std::string>{"s1"});
  EXPECT_FALSE(group["s2"]->propose("x").accepted);
  auto proposal = group["s1"]->propose("hello");
  ASSERT_TRUE(proposal.accepted);
  group.settle();
  group.rounds(2);  // followers learn the commit index from the next heartbeat
  for (const char* name : {"s1", "s2", "s3"})
    EXPECT_EQ(group.applied(name), std::vector<std::string>{"hello"}) << name;
}

TEST(ConsensusTest, LeadershipMovesOnWhenTheLeaderDiesAndReturnsWhenItIsBack) {
  Group group(3);
  group.rounds(60);
  ASSERT_TRUE(group["s1"]->propose("before").accepted);
  group.settle();
  const std::uint64_t first_term = group["s1"]->term();
  group.crash("s1");
  group.rounds(40);
  ASSERT_EQ(group.leaders().size(), 1u);
  const std::string interim = group.leaders()[0];
  EXPECT_NE(interim, "s1");
  EXPECT_GT(group[interim]->term(), first_term);
  ASSERT_TRUE(group[interim]->propose("during").accepted);
  group.settle();

  group.start(0);  // s1 restarts from its disk, catches up, and is handed the lead
  group.rounds(80);
  EXPECT_EQ(group.leaders(), std::vector<std::string>{"s1"});
  ASSERT_TRUE(group["s1"]->propose("after").accepted);
  group.settle();
  group.rounds(2);
  const std::vector<std::string> expected{"before", "during", "after"};
  for (const char* name : {"s1", "s2", "s3"}) EXPECT_EQ(group.applied(name), expected) << name;
}

TEST(ConsensusTest, ACutOffLeaderCommitsNothingAndStepsDown) {
  Group group(3);
  group.rounds(60);
  ASSERT_EQ(group.leaders(), std::vector<std::string>{"s1"});
  group.cut({"s1"});
  auto stale = group["s1"]->propose("never");
  ASSERT_TRUE(stale.accepted);  // it does not know yet
  group.rounds(40);
  EXPECT_FALSE(group["s1"]->is_leader()) << "check-quorum steps a leader without a majority down";
  EXPECT_EQ(group["s1"]->commit_index(), stale.index - 1);
  const auto leaders = group.leaders();
  ASSERT_EQ(leaders.size(), 1u);
  ASSERT_TRUE(group[leaders[0]]->propose("majority side").accepted);
  group.settle();

  group.heal();
  group.rounds(80);
  group.rounds(2);
  // The stale entry was replaced by the newer epoch's log on every replica.
  for (const char* name : {"s1", "s2", "s3"})
    EXPECT_EQ(group.applied(name), std::vector<std::string>{"majority side"}) << name;
}

TEST(ConsensusTest, AnIsolatedReplicaDoesNotDisturbTheLeaderWhenItReturns) {
  Group group(3);
  group.rounds(60);
  ASSERT_EQ(group.leaders(), std::vector<std::string>{"s1"});
  const std::uint64_t term = group["s1"]->term();
  group.cut({"s3"});
  group.rounds(100);  // s3 campaigns in vain: pre-votes never raise its term
  EXPECT_EQ(group["s3"]->term(), term);
  group.heal();
  group.rounds(10);
  EXPECT_EQ(group.leaders(), std::vector<std::string>{"s1"});
  EXPECT_EQ(group["s1"]->term(), term);
}

TEST(ConsensusTest, ASingleReplicaLeadsAlone) {
  Group group(1);
  group.rounds(30);
  ASSERT_EQ(group.leaders(), std::vector<std::string>{"s1"});
  ASSERT_TRUE(group["s1"]->propose("solo").accepted);
  group.settle();
  EXPECT_EQ(group.applied("s1"), std::vector<std::string>{"solo"});
}

TEST(ConsensusTest, ProposalsBeyondTheUncommittedBoundAreRefused) {
  Group group(3);
  group.rounds(60);
  group.cut({"s1"});  // nothing commits while s1 is alone
  int accepted = 0;
  while (group["s1"]->propose("x").accepted && accepted < 100000) ++accepted;
  EXPECT_EQ(static_cast<std::uint64_t>(accepted), group["s1"]->config().uncommitted_entries_max);
}

TEST(ConsensusTest, ARestartedReplicaKeepsItsVoteAndLog) {
  Group group(3);
  group.rounds(60);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(group["s1"]->propose("m" + std::to_string(i)).accepted);
  group.settle();
  group.rounds(2);
  const std::uint64_t term = group["s2"]->term();
  const std::uint64_t last = group["s2"]->last_index();
  group.crash("s2");
  group.start(1);
  EXPECT_EQ(group["s2"]->term(), term);
  EXPECT_EQ(group["s2"]->last_index(), last);
  EXPECT_EQ(group["s2"]->applied_index(), last);
}

TEST(ConsensusTest, ACutOffLeaderStopsServingReadsBeforeANewLeaderIsElected) {
  Group group(3);
  group.rounds(60);
  ASSERT_EQ(group.leaders(), std::vector<std::string>{"s1"});
  ASSERT_TRUE(group["s1"]->can_serve_reads());
  const std::uint64_t old_term = group["s1"]->term();
  group.cut({"s1"});
  int reads_stopped = -1, new_leader = -1;
  for (int round = 1; round <= 80 && new_leader < 0; ++round) {
    group.round();
    if (reads_stopped < 0 && !group["s1"]->can_serve_reads()) reads_stopped = round;
    for (const char* name : {"s2", "s3"})
      if (group[name]->is_leader() && group[name]->term() > old_term) new_leader = round;
  }
  ASSERT_GE(reads_stopped, 1) << "the old leader never stopped serving reads";
  ASSERT_GE(new_leader, 1) << "the majority side elected no leader";
  EXPECT_LT(reads_stopped, new_leader);
  // Its lease is the read_lease_ticks after the last round a majority answered.
  EXPECT_LE(reads_stopped, group["s1"]->read_lease_ticks() + 1);
}

TEST(ConsensusTest, TheReadLeaseMustEndBeforeAFollowerMayVote) {
  Config config;
  config.self = "s1";
  config.replicas = {"s1", "s2", "s3"};
  config.election_ticks = 10;
  EXPECT_EQ(Replica(config, {}).read_lease_ticks(), 8);  // derived: one tick of margin
  config.read_lease_ticks = 9;
  EXPECT_EQ(Replica(config, {}).read_lease_ticks(), 9);  // the exact bound
  config.read_lease_ticks = 10;
  EXPECT_THROW(Replica(config, {}), std::invalid_argument);
  config.read_lease_ticks = -1;
  EXPECT_THROW(Replica(config, {}), std::invalid_argument);
  config.read_lease_ticks = 0;
  config.clock_skew_max_ms = -1;
  EXPECT_THROW(Replica(config, {}), std::invalid_argument);
}

// The lease counts on followers keeping their promise across a restart.
TEST(ConsensusTest, ARestartedReplicaVotesForNoOneWithinAnElectionTimeout) {
  Config config;
  config.self = "s2";
  config.replicas = {"s1", "s2", "s3"};
  Replica replica(config, {});
  auto pre_vote_answer = [&]() -> std::optional<bool> {
    ReplicationMessage vote;
    vote.kind = ReplicationKind::kVote;
    vote.term = replica.term() + 1;
    vote.commit = 1;  // a pre-vote
    replica.step("s3", vote);
    if (!replica.has_ready()) return std::nullopt;
    Ready ready = replica.take_ready();
    replica.advance();
    for (const auto& out : ready.send_after_persist)
      if (out.message.kind == ReplicationKind::kVoteResponse) return !out.message.reject;
    return std::nullopt;
  };
  for (int i = 0; i < config.election_ticks - 1; ++i) {
    replica.tick();
    EXPECT_EQ(pre_vote_answer(), std::nullopt) << "answered after " << i + 1 << " ticks";
  }
  replica.tick();
  EXPECT_EQ(pre_vote_answer(), std::optional<bool>(true));
}

TEST(ConsensusTest, AReplicaWithAFastClockDoesNotLeadAndLeadsAgainOnceCorrected) {
  Group group(3);
  group.set_clock_offset("s1", 60'000);  // the preferred replica, 60 s fast
  for (int round = 0; round < 80; ++round) {
    group.round();
    ASSERT_FALSE(group["s1"]->is_leader()) << "round " << round;
  }
  const auto leaders = group.leaders();
  ASSERT_EQ(leaders.size(), 1u);
  EXPECT_TRUE(group["s1"]->clock_skew().off);
  EXPECT_GE(group["s1"]->clock_skew().offset_ms, 59'000);
  EXPECT_EQ(group["s1"]->clock_skew().bound_ms, 1000);
  auto change = group["s1"]->take_clock_skew_change();
  ASSERT_TRUE(change);
  EXPECT_TRUE(change->off);
  EXPECT_FALSE(group["s1"]->take_clock_skew_change()) << "reported once per change";
  EXPECT_FALSE(group[leaders[0]]->clock_skew().off);
  ASSERT_TRUE(group[leaders[0]]->propose("while s1 is off").accepted);
  group.settle();

  group.set_clock_offset("s1", 0);  // NTP steps it back
  group.rounds(80);
  EXPECT_EQ(group.leaders(), std::vector<std::string>{"s1"}) << "handed back to the preferred";
  EXPECT_FALSE(group["s1"]->clock_skew().off);
  change = group["s1"]->take_clock_skew_change();
  ASSERT_TRUE(change);
  EXPECT_FALSE(change->off);
  ASSERT_TRUE(group["s1"]->propose("after").accepted);
  group.settle();
  group.rounds(2);
  for (const char* name : {"s1", "s2", "s3"})
    EXPECT_EQ(group.applied(name), (std::vector<std::string>{"while s1 is off", "after"})) << name;
}

TEST(ConsensusTest, ALeaderWhoseClockJumpsAheadStepsDownPromptly) {
  Group group(3);
  group.rounds(60);
  ASSERT_EQ(group.leaders(), std::vector<std::string>{"s1"});
  group.set_clock_offset("s1", 60'000);
  group.rounds(2);  // a heartbeat round trip
  EXPECT_FALSE(group["s1"]->is_leader());
  EXPECT_TRUE(group["s1"]->clock_skew().off);
  EXPECT_FALSE(group["s1"]->propose("x").accepted);
  group.rounds(40);
  const auto leaders = group.leaders();
  ASSERT_EQ(leaders.size(), 1u);
  EXPECT_NE(leaders[0], "s1");
}

TEST(ConsensusTest, OneFollowerWithAnOffClockIsAMinority) {
  // The leader keeps leading and does not hand leadership to it.
  Group group(3);
  group.set_clock_offset("s2", -60'000);
  group.rounds(60);
  EXPECT_EQ(group.leaders(), std::vector<std::string>{"s1"});
  EXPECT_FALSE(group["s1"]->clock_skew().off);
  EXPECT_FALSE(group["s2"]->clock_skew().off) << "a follower measures nothing";
  // With s1 gone the two left disagree and neither can tell whose clock is
  // wrong: an election needs a majority that agrees with the candidate's
  // clock, so nobody leads (writes would be stamped by a clock nobody
  // vouches for) until the clocks agree again.
  group.crash("s1");
  group.rounds(60);
  EXPECT_TRUE(group.leaders().empty());
  group.set_clock_offset("s2", 0);
  group.rounds(60);
  EXPECT_EQ(group.leaders().size(), 1u);
}

TEST(ConsensusTest, NoClockCheckWhenTheBoundIsZero) {
  Config config;
  config.self = "s1";
  config.replicas = {"s1"};
  config.clock_skew_max_ms = 0;
  Replica replica(config, {});
  for (int i = 0; i < 30; ++i) replica.tick(1'700'000'000'000 + i * 50);
  EXPECT_TRUE(replica.is_leader());
  EXPECT_FALSE(replica.clock_skew().off);
}

}  // namespace
}  // namespace chat4all::storage::consensus
