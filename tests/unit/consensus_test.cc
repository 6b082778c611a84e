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
// round, except across a cut.
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
  void cut(const std::set<std::string>& side) { side_ = side; }
  void heal() { side_.clear(); }

  Replica* operator[](const std::string& name) {
    auto it = replicas_.find(name);
    return it == replicas_.end() ? nullptr : it->second.get();
  }

  // One round: every replica ticks, then readies are processed and messages
  // delivered until quiet.
  void round() {
    for (auto& [name, replica] : replicas_) replica->tick();
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

}  // namespace
}  // namespace chat4all::storage::consensus
