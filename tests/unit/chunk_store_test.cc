// Chunk files on disk (nodes/storage/chunk_store.h): a chunk is kept only when
// its bytes hash to its name, read back checked, and freed with its blob.
#include "nodes/storage/chunk_store.h"

#include <gtest/gtest.h>

#include <fstream>

#include "common/sha256.h"
#include "tests/unit/test_util.h"

namespace chat4all::storage {
namespace {

TEST(ChunkStoreTest, KeepsOnlyChunksWhoseBytesHashToTheirName) {
  unit::TempDir dir;
  ChunkStore store(dir.path());
  const std::string bytes = "some chunk bytes";
  const std::string name = sha256_hex(bytes);
  EXPECT_EQ(store.put({"acme", "file_1", sha256_hex("other"), bytes}).status,
            wire::Status::kInvalid);
  EXPECT_FALSE(store.has("acme", "file_1", sha256_hex("other")));
  EXPECT_EQ(store.put({"acme", "file_1", name, bytes}).status, wire::Status::kOk);
  EXPECT_EQ(store.put({"acme", "file_1", name, bytes}).status, wire::Status::kOk);  // again: fine
  EXPECT_TRUE(store.has("acme", "file_1", name));
  auto read = store.get({"acme", "file_1", name});
  ASSERT_EQ(read.status, wire::Status::kOk);
  EXPECT_EQ(read.bytes, bytes);
  // Names that would leave the directory are refused.
  EXPECT_EQ(store.put({"..", "file_1", name, bytes}).status, wire::Status::kInvalid);
  EXPECT_EQ(store.put({"acme", "../x", name, bytes}).status, wire::Status::kInvalid);
  EXPECT_EQ(store.get({"acme", "file_2", name}).status, wire::Status::kNotFound);
}

TEST(ChunkStoreTest, ADamagedChunkIsNotServedAndAFreedBlobIsGone) {
  unit::TempDir dir;
  ChunkStore store(dir.path());
  const std::string bytes(1000, 'q');
  const std::string name = sha256_hex(bytes);
  ASSERT_EQ(store.put({"acme", "file_1", name, bytes}).status, wire::Status::kOk);
  {
    std::ofstream damage(dir.path() / "acme" / "file_1" / name, std::ios::binary | std::ios::in);
    damage.seekp(10);
    damage << 'X';
  }
  EXPECT_EQ(store.get({"acme", "file_1", name}).status, wire::Status::kNotFound);
  store.free_blob("acme/file_1");
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "acme" / "file_1"));
  store.free_blob("acme/file_1");  // twice: nothing to do
}

}  // namespace
}  // namespace chat4all::storage
