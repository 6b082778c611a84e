// Files in the replicated state (nodes/storage/files.h), driven through
// apply_command / run_query on an in-memory partition: creation within the
// size and quota bounds, offsets that only move from where they are, the
// whole-file checksum at completion, dedup by content, expiry, deletion and
// the blobs freed when no file refers to them.
#include "nodes/storage/files.h"

#include <gtest/gtest.h>

#include "common/codec.h"
#include "tests/unit/memory_partition_state.h"

namespace chat4all::storage {
namespace {

using wire::Status;

constexpr const char* kTenant = "acme";
constexpr std::int64_t kExpiryMs = 60000;

class FilesTest : public ::testing::Test {
 protected:
  template <typename Body>
  DomainResult command(wire::CommandKind kind, const Body& body, std::int64_t at_ms = 1000) {
    return apply_command(
        state_, 3, wire::CommandRequest{wire::tenant_key(kTenant), kind, codec::pack_body(body)},
        at_ms);
  }

  DomainResult create(const std::string& file_id, std::uint64_t length, std::string sha256 = {},
                      std::uint64_t quota = 0, std::int64_t at_ms = 1000) {
    wire::CreateUpload body;
    body.tenant_id = kTenant;
    body.file_id = file_id;
    body.owner_id = "ann";
    body.name = "report.pdf";
    body.media_type = "application/pdf";
    body.length = length;
    body.sha256 = std::move(sha256);
    body.expiry_ms = kExpiryMs;
    body.size_max = 1000;
    body.quota_bytes = quota;
    return command(wire::CommandKind::kCreateUpload, body, at_ms);
  }

  DomainResult advance(const std::string& file_id, std::uint64_t from, std::uint64_t size,
                       std::string chunk, std::string final_sha256 = {}) {
    wire::AdvanceUpload body{
        kTenant, file_id, from, {{std::move(chunk), size}}, "state", std::move(final_sha256)};
    return command(wire::CommandKind::kAdvanceUpload, body);
  }

  std::optional<wire::FileRecord> file(const std::string& file_id) {
    auto result = run_query(state_, {wire::tenant_key(kTenant), wire::QueryKind::kGetFile,
                                     codec::pack_body(wire::TenantLookup{kTenant, file_id})});
    if (result.status != Status::kOk) return std::nullopt;
    return codec::unpack_body<wire::FileRecord>(result.body);
  }

  std::vector<wire::FileRecord> expired(std::int64_t now_ms) {
    auto result = run_query(state_, {wire::partition_key(3), wire::QueryKind::kExpiredUploads,
                                     codec::pack_body(wire::UploadSweep{now_ms, 64})});
    return *codec::unpack_body<std::vector<wire::FileRecord>>(result.body);
  }

  unit::MemoryRecords state_;
};

TEST_F(FilesTest, AnUploadAdvancesOnlyFromItsOffsetAndCompletesAtItsLength) {
  ASSERT_EQ(create("f1", 10).status, Status::kOk);
  EXPECT_EQ(file("f1")->state, wire::kFileUploading);
  ASSERT_EQ(advance("f1", 0, 6, "c1").status, Status::kOk);
  // A second writer that started from 0 too loses.
  auto stale = advance("f1", 0, 6, "c9");
  EXPECT_EQ(stale.status, Status::kConflict);
  EXPECT_EQ(stale.field, "Upload-Offset");
  // Past the declared length: refused, nothing changes.
  EXPECT_EQ(advance("f1", 6, 5, "c2").status, Status::kInvalid);
  EXPECT_EQ(file("f1")->offset, 6u);
  auto done = advance("f1", 6, 4, "c2", "abc");
  ASSERT_EQ(done.status, Status::kOk);
  auto record = file("f1");
  EXPECT_EQ(record->state, wire::kFileComplete);
  EXPECT_EQ(record->sha256, "abc");
  ASSERT_EQ(record->chunks.size(), 2u);
  EXPECT_EQ(record->chunks[1].sha256, "c2");
  EXPECT_EQ(advance("f1", 10, 1, "c3").status, Status::kConflict);
}

TEST_F(FilesTest, SizeAboveTheMaximumIsRefusedNamingUploadLength) {
  auto refused = create("big", 1001);
  EXPECT_EQ(refused.status, Status::kInvalid);
  EXPECT_EQ(refused.field, "Upload-Length");
  EXPECT_FALSE(file("big"));
  EXPECT_EQ(create("big", 1000).status, Status::kOk);
  EXPECT_EQ(create("big", 10).status, Status::kExists);
}

TEST_F(FilesTest, AWrongWholeFileChecksumDropsTheUploadAndFreesItsBlob) {
  ASSERT_EQ(create("f1", 4, "expected").status, Status::kOk);
  auto refused = advance("f1", 0, 4, "c1", "actual");
  EXPECT_EQ(refused.status, Status::kInvalid);
  EXPECT_EQ(refused.field, "sha256");
  EXPECT_FALSE(file("f1"));
  ASSERT_EQ(refused.freed_blobs.size(), 1u);
  EXPECT_EQ(refused.freed_blobs[0], freed_blob_name(kTenant, "f1"));
  // Its bytes no longer count against the quota.
  EXPECT_EQ(create("f2", 10, {}, 10).status, Status::kOk);
}

TEST_F(FilesTest, TheQuotaCountsStoredAndPromisedBytes) {
  ASSERT_EQ(create("f1", 6, {}, 10).status, Status::kOk);
  auto over = create("f2", 5, {}, 10);
  EXPECT_EQ(over.status, Status::kStorageFull);
  EXPECT_EQ(over.field, "Upload-Length");
  EXPECT_EQ(create("f3", 4, {}, 10).status, Status::kOk);
  ASSERT_EQ(command(wire::CommandKind::kDeleteFile, wire::TenantLookup{kTenant, "f1"}).status,
            Status::kOk);
  EXPECT_EQ(create("f2", 5, {}, 10).status, Status::kOk);
}

TEST_F(FilesTest, TheSameContentIsStoredOnceAndFreedWithItsLastFile) {
  ASSERT_EQ(create("f1", 4, "same").status, Status::kOk);
  ASSERT_EQ(advance("f1", 0, 4, "c1", "same").status, Status::kOk);
  // Declared with the same sha256: complete at once, on f1's chunks, costing no quota.
  ASSERT_EQ(create("f2", 4, "same", 4).status, Status::kOk);
  auto copy = file("f2");
  EXPECT_EQ(copy->state, wire::kFileComplete);
  EXPECT_EQ(copy->blob_id, "f1");
  EXPECT_EQ(copy->chunks.size(), 1u);
  auto first = command(wire::CommandKind::kDeleteFile, wire::TenantLookup{kTenant, "f1"});
  EXPECT_TRUE(first.freed_blobs.empty());  // f2 still reads them
  auto last = command(wire::CommandKind::kDeleteFile, wire::TenantLookup{kTenant, "f2"});
  ASSERT_EQ(last.freed_blobs.size(), 1u);
  EXPECT_EQ(last.freed_blobs[0], freed_blob_name(kTenant, "f1"));
  // The content is gone: a new upload of it starts from nothing.
  ASSERT_EQ(create("f3", 4, "same").status, Status::kOk);
  EXPECT_EQ(file("f3")->state, wire::kFileUploading);
}

TEST_F(FilesTest, UnfinishedUploadsExpireByTheEntrysStampOnly) {
  ASSERT_EQ(create("old", 4, {}, 0, 1000).status, Status::kOk);
  ASSERT_EQ(create("new", 4, {}, 0, 5000).status, Status::kOk);
  ASSERT_EQ(create("done", 1, {}, 0, 1000).status, Status::kOk);
  ASSERT_EQ(advance("done", 0, 1, "c", "x").status, Status::kOk);
  EXPECT_TRUE(expired(1000 + kExpiryMs - 1).empty());
  auto listed = expired(1000 + kExpiryMs);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].file_id, "old");
  // Applied before its time (a leader whose clock ran ahead): nothing happens.
  auto early = command(wire::CommandKind::kExpireUploads, wire::UploadExpiry{kTenant, {"old"}},
                       1000 + kExpiryMs - 1);
  EXPECT_TRUE(early.freed_blobs.empty());
  EXPECT_TRUE(file("old"));
  auto due = command(wire::CommandKind::kExpireUploads, wire::UploadExpiry{kTenant, {"old", "new"}},
                     1000 + kExpiryMs);
  ASSERT_EQ(due.freed_blobs.size(), 1u);
  EXPECT_FALSE(file("old"));
  EXPECT_TRUE(file("new"));
  EXPECT_TRUE(file("done"));
}

TEST_F(FilesTest, OnlyACompleteFileIsShared) {
  ASSERT_EQ(create("f1", 2).status, Status::kOk);
  auto early = command(wire::CommandKind::kShareFile, wire::ShareFile{kTenant, "f1", "conv"});
  EXPECT_EQ(early.status, Status::kInvalid);
  EXPECT_EQ(early.field, "payload.file_id");
  ASSERT_EQ(advance("f1", 0, 2, "c", "x").status, Status::kOk);
  ASSERT_EQ(command(wire::CommandKind::kShareFile, wire::ShareFile{kTenant, "f1", "conv"}).status,
            Status::kOk);
  ASSERT_EQ(command(wire::CommandKind::kShareFile, wire::ShareFile{kTenant, "f1", "conv"}).status,
            Status::kOk);
  EXPECT_EQ(file("f1")->conversations, std::vector<std::string>{"conv"});
  EXPECT_EQ(command(wire::CommandKind::kShareFile, wire::ShareFile{kTenant, "nope", "conv"}).status,
            Status::kNotFound);
}

}  // namespace
}  // namespace chat4all::storage
