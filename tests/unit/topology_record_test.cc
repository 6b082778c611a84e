// The stored topology version (nodes/storage/topology_record.h) through the
// partition state machine's entry points, as the leader applies and serves it.
#include "nodes/storage/topology_record.h"

#include <gtest/gtest.h>

#include "common/codec.h"
#include "schema/topology_version.h"
#include "tests/unit/memory_partition_state.h"

namespace chat4all::storage {
namespace {

using wire::Status;

DomainResult store(unit::MemoryRecords& state, std::uint64_t replaces, std::uint64_t version,
                   const std::string& text, std::int64_t at_ms = 1000) {
  return apply_command(
      state, 0,
      wire::CommandRequest{wire::topology_key(), wire::CommandKind::kStoreTopology,
                           codec::pack_body(wire::StoreTopology{replaces, version, text})},
      at_ms);
}

DomainResult fetch(const unit::MemoryRecords& state) {
  return run_query(state, wire::QueryRequest{wire::topology_key(), wire::QueryKind::kGetTopology,
                                             codec::pack_body(wire::TopologyLookup{})});
}

TEST(TopologyRecord, NothingStoredIsNotFound) {
  unit::MemoryRecords state;
  EXPECT_EQ(fetch(state).status, Status::kNotFound);
}

TEST(TopologyRecord, VersionsFollowEachOtherByCompareAndSet) {
  unit::MemoryRecords state;
  ASSERT_EQ(store(state, 0, 1, "first", 10).status, Status::kOk);
  ASSERT_EQ(store(state, 1, 2, "second", 20).status, Status::kOk);
  auto stored = codec::unpack_body<wire::TopologyVersion>(fetch(state).body);
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->version, 2u);
  EXPECT_EQ(stored->text, "second");
  EXPECT_EQ(stored->stored_at_ms, 20);
}

TEST(TopologyRecord, TwoOperatorsOnTheSameVersionOnlyOneWins) {
  unit::MemoryRecords state;
  ASSERT_EQ(store(state, 0, 1, "base").status, Status::kOk);
  EXPECT_EQ(store(state, 1, 2, "operator a").status, Status::kOk);
  const DomainResult late = store(state, 1, 2, "operator b");
  EXPECT_EQ(late.status, Status::kConflict);
  EXPECT_NE(late.detail.find("version 2 is stored"), std::string::npos) << late.detail;
  EXPECT_EQ(codec::unpack_body<wire::TopologyVersion>(fetch(state).body)->text, "operator a");
}

TEST(TopologyRecord, RefusesVersionsThatDoNotFollowOrEmptyText) {
  unit::MemoryRecords state;
  EXPECT_EQ(store(state, 0, 2, "skips one").status, Status::kInvalid);
  EXPECT_EQ(store(state, 0, 1, "").status, Status::kInvalid);
  EXPECT_EQ(store(state, 3, 4, "nothing at 3").status, Status::kConflict);
  EXPECT_EQ(fetch(state).status, Status::kNotFound);
}

TEST(TopologyRecord, ReplicaChangesAreNotAppliedByThisStateMachine) {
  // The consensus layer answers them; the state machine refuses, leaving state as it was.
  unit::MemoryRecords state;
  const DomainResult result = apply_command(
      state, 3,
      wire::CommandRequest{wire::partition_key(3), wire::CommandKind::kChangeReplicas, ""}, 1);
  EXPECT_EQ(result.status, Status::kInvalid);
  EXPECT_TRUE(state.records.empty());
}

}  // namespace
}  // namespace chat4all::storage
