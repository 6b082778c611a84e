// Files through a real topology (docs/api.md, "Files"): a tus upload in
// several requests, resumed from the offset HEAD gives; its download whole, by
// range, revalidated by ETag, and on from the other replicas when a storage
// node dies; who may see it; and every refusal: size, offset, checksum, length,
// quota, two writers at once, expiry, dedup by content.
#include <gtest/gtest.h>

#include <future>
#include <random>
#include <thread>

#include "common/sha256.h"
#include "tests/integration/cluster.h"

namespace chat4all::testing {
namespace {

using nlohmann::json;

constexpr std::uint64_t kMiB = 1 << 20;
// The quota is below the size maximum so that one creation can pass it; the suite stores ~30 MiB.
constexpr std::uint64_t kSizeMax = 200 * kMiB;
constexpr std::uint64_t kQuota = 100 * kMiB;

std::string random_bytes(std::size_t size, unsigned seed) {
  std::mt19937 generator(seed);
  std::string bytes(size, '\0');
  for (auto& c : bytes) c = static_cast<char>(generator());
  return bytes;
}

std::string base64(std::string_view text) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < text.size(); i += 3) {
    const unsigned v = static_cast<unsigned char>(text[i]) << 16 |
                       static_cast<unsigned char>(text[i + 1]) << 8 |
                       static_cast<unsigned char>(text[i + 2]);
    for (int shift : {18, 12, 6, 0}) out += kAlphabet[(v >> shift) & 63];
  }
  if (i + 1 == text.size()) {
    const unsigned v = static_cast<unsigned char>(text[i]) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == text.size()) {
    const unsigned v =
        static_cast<unsigned char>(text[i]) << 16 | static_cast<unsigned char>(text[i + 1]) << 8;
    for (int shift : {18, 12, 6}) out += kAlphabet[(v >> shift) & 63];
    out += "=";
  }
  return out;
}

class FilesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ClusterOptions options;
    options.files_size_max = kSizeMax;
    options.files_tenant_quota_bytes = kQuota;
    options.files_upload_expiry_s = 3;
    options.token_requests_per_s = 1000;
    options.token_burst = 1000;
    cluster_ = new TestCluster(options);
    // One process per node, so that a test can kill and restart one.
    for (const char* node : {"storage-1", "storage-2", "storage-3", "router-1", "frontend-1"})
      cluster_->start_node(node);
    ASSERT_TRUE(cluster_->wait_ready()) << cluster_->read_log("frontend-1");
    alice_ = cluster_->token("alice");
    bob_ = cluster_->token("bob");
    ASSERT_FALSE(alice_.empty());
    ASSERT_FALSE(bob_.empty());
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }

  static std::map<std::string, std::string> tus(const std::string& token) {
    return {{"Authorization", "Bearer " + token}, {"Tus-Resumable", "1.0.0"}};
  }
  static HttpResult create(const std::string& token, std::uint64_t length,
                           const std::string& sha256 = {}, const std::string& name = "data.bin") {
    auto headers = tus(token);
    headers["Upload-Length"] = std::to_string(length);
    std::string metadata = "filename " + base64(name) + ",filetype " + base64("application/x-test");
    if (!sha256.empty()) metadata += ",sha256 " + base64(sha256);
    headers["Upload-Metadata"] = metadata;
    return http_request(cluster_->http_port(), "POST", "/v1/files", "", headers);
  }
  static HttpResult patch(const std::string& token, const std::string& location,
                          std::uint64_t offset, const std::string& bytes,
                          std::map<std::string, std::string> extra = {}) {
    auto headers = tus(token);
    headers["Content-Type"] = "application/offset+octet-stream";
    headers["Upload-Offset"] = std::to_string(offset);
    for (auto& [name, value] : extra) headers[name] = value;
    return http_request(cluster_->http_port(), "PATCH", location, bytes, headers,
                        std::chrono::seconds(30));
  }
  static HttpResult get(const std::string& token, const std::string& target,
                        std::map<std::string, std::string> extra = {}) {
    auto headers = tus(token);
    for (auto& [name, value] : extra) headers[name] = value;
    return http_request(cluster_->http_port(), "GET", target, "", headers,
                        std::chrono::seconds(30));
  }
  // Uploads `bytes` in one PATCH; the file's id.
  static std::string upload(const std::string& token, const std::string& bytes) {
    auto created = create(token, bytes.size(), sha256_hex(bytes));
    EXPECT_EQ(created.status, 201) << created.body;
    const std::string location = created.headers["location"];
    if (created.headers["upload-offset"] != std::to_string(bytes.size())) {
      auto stored = patch(token, location, 0, bytes);
      EXPECT_EQ(stored.status, 204) << stored.body;
    }
    return created.json().value("file_id", "");
  }

  static inline TestCluster* cluster_ = nullptr;
  static inline std::string alice_, bob_;
};

TEST_F(FilesTest, UploadInPiecesResumesAndDownloadsWholeByRangeAndByETag) {
  const std::string bytes = random_bytes(9 * kMiB + 123, 1);
  const std::string digest = sha256_hex(bytes);
  auto created = create(alice_, bytes.size(), digest, "report \"final\".bin");
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string location = created.headers["location"];
  const std::string file_id = created.json().value("file_id", "");
  EXPECT_EQ(location, "/v1/files/" + file_id);
  EXPECT_EQ(created.json().value("upload_url", ""), location);
  EXPECT_EQ(created.headers["upload-offset"], "0");
  EXPECT_FALSE(created.headers["upload-expires"].empty());

  // The first 5 MiB, then a resume from where HEAD says it is.
  auto first = patch(alice_, location, 0, bytes.substr(0, 5 * kMiB));
  ASSERT_EQ(first.status, 204) << first.body;
  EXPECT_EQ(first.headers["upload-offset"], std::to_string(5 * kMiB));
  auto head = http_request(cluster_->http_port(), "HEAD", location, "", tus(alice_));
  ASSERT_EQ(head.status, 200);
  EXPECT_EQ(head.headers["upload-offset"], std::to_string(5 * kMiB));
  EXPECT_EQ(head.headers["upload-length"], std::to_string(bytes.size()));
  EXPECT_EQ(head.headers["cache-control"], "no-store");
  // Downloading before it is complete: refused.
  expect_api_error(get(alice_, location + "/content"), 409, "upload_incomplete");
  // A stale offset: 409, nothing changes.
  expect_api_error(patch(alice_, location, 0, bytes.substr(0, 10)), 409, "offset_mismatch",
                   "Upload-Offset");
  auto rest = patch(alice_, location, 5 * kMiB, bytes.substr(5 * kMiB));
  ASSERT_EQ(rest.status, 204) << rest.body;
  EXPECT_EQ(rest.headers["upload-offset"], std::to_string(bytes.size()));

  auto metadata = get(alice_, location);
  ASSERT_EQ(metadata.status, 200) << metadata.body;
  EXPECT_EQ(metadata.json().value("state", ""), "complete");
  EXPECT_EQ(metadata.json().value("sha256", ""), digest);
  EXPECT_EQ(metadata.json().value("size", 0u), bytes.size());
  // 4 MiB and 1 MiB (the end of the first PATCH), then 4 MiB and 123 bytes.
  EXPECT_EQ(metadata.json().value("chunks", 0u), 4u);
  EXPECT_EQ(metadata.json().value("download_path", ""), location + "/content");

  auto whole = get(alice_, location + "/content");
  ASSERT_EQ(whole.status, 200);
  EXPECT_TRUE(whole.body == bytes);
  EXPECT_EQ(whole.headers["etag"], "\"" + digest + "\"");
  EXPECT_EQ(whole.headers["content-type"], "application/x-test");
  EXPECT_NE(
      whole.headers["content-disposition"].find("attachment; filename=\"report _final_.bin\""),
      std::string::npos);

  // A range across a chunk boundary.
  const std::uint64_t from = 4 * kMiB - 10, to = 4 * kMiB + 9;
  auto part = get(alice_, location + "/content",
                  {{"Range", "bytes=" + std::to_string(from) + "-" + std::to_string(to)}});
  ASSERT_EQ(part.status, 206);
  EXPECT_TRUE(part.body == bytes.substr(from, to - from + 1));
  EXPECT_EQ(part.headers["content-range"], "bytes " + std::to_string(from) + "-" +
                                               std::to_string(to) + "/" +
                                               std::to_string(bytes.size()));
  auto beyond = get(alice_, location + "/content", {{"Range", "bytes=99999999-"}});
  EXPECT_EQ(beyond.status, 416);
  auto unchanged = get(alice_, location + "/content", {{"If-None-Match", "\"" + digest + "\""}});
  EXPECT_EQ(unchanged.status, 304);
  EXPECT_TRUE(unchanged.body.empty());

  // Anyone else: as if it did not exist.
  expect_api_error(get(bob_, location), 404, "not_found");
  expect_api_error(get(bob_, location + "/content"), 404, "not_found");
  expect_api_error(patch(bob_, location, bytes.size(), "x"), 404, "not_found");
}

TEST_F(FilesTest, ADownloadGoesOnWhenAStorageNodeDies) {
  const std::string bytes = random_bytes(6 * kMiB, 2);
  const std::string file_id = upload(alice_, bytes);
  ASSERT_FALSE(file_id.empty());
  cluster_->kill_node("storage-1");
  // Until the tenant's partition has a leader again (when storage-1 led it), reads are 503.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (get(alice_, "/v1/files/" + file_id).status != 200 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  // Each read starts at another replica; several downloads meet the dead one.
  for (int i = 0; i < 3; ++i) {
    auto whole = get(alice_, "/v1/files/" + file_id + "/content");
    ASSERT_EQ(whole.status, 200);
    EXPECT_TRUE(whole.body == bytes) << "download " << i;
  }
  // An upload goes on with a majority too.
  const std::string more = random_bytes(kMiB, 3);
  const std::string second = upload(alice_, more);
  EXPECT_TRUE(get(alice_, "/v1/files/" + second + "/content").body == more);
  cluster_->start_node("storage-1");
  ASSERT_TRUE(cluster_->wait_ready());
}

TEST_F(FilesTest, AnUploadResumesAfterAFrontendRestart) {
  const std::string bytes = random_bytes(6 * kMiB, 8);
  auto created = create(alice_, bytes.size(), sha256_hex(bytes));
  ASSERT_EQ(created.status, 201);
  const std::string location = created.headers["location"];
  ASSERT_EQ(patch(alice_, location, 0, bytes.substr(0, 4 * kMiB)).status, 204);
  // The offset and the digest so far are replicated state: a new frontend process goes on.
  cluster_->kill_node("frontend-1");
  cluster_->start_node("frontend-1");
  ASSERT_TRUE(cluster_->wait_ready());
  auto head = http_request(cluster_->http_port(), "HEAD", location, "", tus(alice_));
  ASSERT_EQ(head.status, 200);
  EXPECT_EQ(head.headers["upload-offset"], std::to_string(4 * kMiB));
  ASSERT_EQ(patch(alice_, location, 4 * kMiB, bytes.substr(4 * kMiB)).status, 204);
  auto file = get(alice_, location);
  EXPECT_EQ(file.json().value("state", ""), "complete");
  EXPECT_EQ(file.json().value("sha256", ""), sha256_hex(bytes));
}

TEST_F(FilesTest, AFileSentIntoAConversationIsReadByItsMembersOnly) {
  const std::string bytes = random_bytes(kMiB + 3, 9);
  const std::string file_id = upload(alice_, bytes);
  const std::string conversation = cluster_->create_conversation(alice_, {"alice", "bob"});
  ASSERT_FALSE(conversation.empty());
  // Before it is sent, bob cannot see it.
  EXPECT_EQ(get(bob_, "/v1/files/" + file_id).status, 404);
  auto send = [&](const std::string& token, const std::string& id) {
    return http_request(
        cluster_->http_port(), "POST", "/v1/messages",
        json{{"conversation_id", conversation}, {"payload", {{"type", "file"}, {"file_id", id}}}}
            .dump(),
        bearer(token));
  };
  expect_api_error(send(alice_, "file_nope"), 400, "invalid_field", "payload.file_id");
  // Bob may not send alice's file into a conversation it was never sent into.
  expect_api_error(send(bob_, file_id), 400, "invalid_field", "payload.file_id");
  auto incomplete = create(alice_, 10);
  expect_api_error(send(alice_, incomplete.json().value("file_id", "")), 400, "invalid_field",
                   "payload.file_id");
  ASSERT_EQ(send(alice_, file_id).status, 202);
  // Bob is a member now: he reads it, and the history shows the file.
  auto read = get(bob_, "/v1/files/" + file_id + "/content");
  ASSERT_EQ(read.status, 200);
  EXPECT_TRUE(read.body == bytes);
  auto history = http_request(cluster_->http_port(), "GET",
                              "/v1/conversations/" + conversation + "/messages", "", bearer(bob_));
  ASSERT_EQ(history.status, 200) << history.body;
  const json payload = history.json()["messages"].back()["payload"];
  EXPECT_EQ(payload.value("type", ""), "file");
  EXPECT_EQ(payload.value("file_id", ""), file_id);
  EXPECT_EQ(payload.value("size", 0u), bytes.size());
  EXPECT_EQ(payload.value("sha256", ""), sha256_hex(bytes));
  EXPECT_EQ(payload.value("name", ""), "data.bin");
  EXPECT_EQ(payload.value("download_path", ""), "/v1/files/" + file_id + "/content");
  // Bob may send it on in that conversation.
  EXPECT_EQ(send(bob_, file_id).status, 202);
}

TEST_F(FilesTest, RefusalsNameTheirCause) {
  expect_api_error(create(alice_, kSizeMax + 1), 413, "file_too_large", "Upload-Length");
  auto no_version = http_request(cluster_->http_port(), "POST", "/v1/files", "",
                                 {{"Authorization", "Bearer " + alice_}, {"Upload-Length", "1"}});
  expect_api_error(no_version, 412, "unsupported_tus_version", "Tus-Resumable");
  auto anonymous = http_request(cluster_->http_port(), "POST", "/v1/files", "",
                                {{"Tus-Resumable", "1.0.0"}, {"Upload-Length", "1"}});
  EXPECT_EQ(anonymous.status, 401);

  auto created = create(alice_, 100);
  ASSERT_EQ(created.status, 201);
  const std::string location = created.headers["location"];
  // Past the declared length.
  expect_api_error(patch(alice_, location, 0, std::string(101, 'x')), 400, "past_upload_length",
                   "Content-Length");
  // A body whose checksum does not match: 460, nothing kept.
  const std::string piece(50, 'a');
  const std::string wrong = std::string(32, '\0');
  expect_api_error(
      patch(alice_, location, 0, piece, {{"Upload-Checksum", "sha256 " + base64(wrong)}}), 460,
      "checksum_mismatch", "Upload-Checksum");
  auto head = http_request(cluster_->http_port(), "HEAD", location, "", tus(alice_));
  EXPECT_EQ(head.headers["upload-offset"], "0");
  Sha256 right;
  right.update(piece);
  auto checked =
      patch(alice_, location, 0, piece, {{"Upload-Checksum", "sha256 " + base64(right.digest())}});
  EXPECT_EQ(checked.status, 204) << checked.body;
  expect_api_error(patch(alice_, location, 50, piece, {{"Upload-Checksum", "md5 AAAA"}}), 400,
                   "unsupported_checksum_algorithm", "Upload-Checksum");
  expect_api_error(patch(alice_, location, 50, piece, {{"Content-Type", "text/plain"}}), 415,
                   "unsupported_media_type", "Content-Type");

  // A whole-file sha256 that does not match: refused at the last byte, nothing kept.
  auto declared = create(alice_, 10, std::string(64, '0'));
  ASSERT_EQ(declared.status, 201);
  expect_api_error(patch(alice_, declared.headers["location"], 0, std::string(10, 'z')), 460,
                   "checksum_mismatch", "Upload-Metadata.sha256");
  EXPECT_EQ(get(alice_, declared.headers["location"]).status, 404);

  // The tenant's quota.
  expect_api_error(create(alice_, kQuota), 507, "quota_exceeded", "Upload-Length");

  // Termination.
  auto removed = http_request(cluster_->http_port(), "DELETE", location, "", tus(alice_));
  EXPECT_EQ(removed.status, 204);
  EXPECT_EQ(get(alice_, location).status, 404);

  auto options = http_request(cluster_->http_port(), "OPTIONS", "/v1/files", "", {});
  EXPECT_EQ(options.status, 204);
  EXPECT_EQ(options.headers["tus-version"], "1.0.0");
  EXPECT_EQ(options.headers["tus-max-size"], std::to_string(kSizeMax));
  EXPECT_NE(options.headers["tus-extension"].find("creation-with-upload"), std::string::npos);
}

TEST_F(FilesTest, OfTwoWritersAtOneOffsetOneWinsAndTheFileIsTheWinners) {
  const std::string a = random_bytes(5 * kMiB, 4), b = random_bytes(5 * kMiB, 5);
  auto created = create(alice_, a.size());
  ASSERT_EQ(created.status, 201);
  const std::string location = created.headers["location"];
  auto first = std::async(std::launch::async, [&] { return patch(alice_, location, 0, a); });
  auto second = std::async(std::launch::async, [&] { return patch(alice_, location, 0, b); });
  const HttpResult one = first.get(), two = second.get();
  ASSERT_TRUE((one.status == 204 && two.status == 409) || (one.status == 409 && two.status == 204))
      << one.status << " " << one.body << " / " << two.status << " " << two.body;
  auto whole = get(alice_, location + "/content");
  ASSERT_EQ(whole.status, 200);
  EXPECT_TRUE(whole.body == (one.status == 204 ? a : b));
  EXPECT_EQ(get(alice_, location).json().value("sha256", ""),
            sha256_hex(one.status == 204 ? a : b));
}

TEST_F(FilesTest, TheSameContentIsStoredOnceAndCompletesAtOnce) {
  const std::string bytes = random_bytes(kMiB + 7, 6);
  const std::string original = upload(alice_, bytes);
  auto again = create(alice_, bytes.size(), sha256_hex(bytes), "copy.bin");
  ASSERT_EQ(again.status, 201) << again.body;
  EXPECT_EQ(again.headers["upload-offset"], std::to_string(bytes.size()));
  EXPECT_EQ(again.json().value("state", ""), "complete");
  const std::string copy = again.json().value("file_id", "");
  EXPECT_NE(copy, original);
  EXPECT_TRUE(get(alice_, "/v1/files/" + copy + "/content").body == bytes);
}

TEST_F(FilesTest, AnUnfinishedUploadExpiresAndItsBytesGo) {
  auto created = create(alice_, 2 * kMiB);
  ASSERT_EQ(created.status, 201);
  const std::string location = created.headers["location"];
  ASSERT_EQ(patch(alice_, location, 0, random_bytes(kMiB, 7)).status, 204);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  int status = 200;
  while (status == 200 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    status = http_request(cluster_->http_port(), "HEAD", location, "", tus(alice_)).status;
  }
  EXPECT_EQ(status, 404);
  // Every replica deleted the chunk directory.
  const std::string file_id = created.json().value("file_id", "");
  for (const char* node : {"storage-1", "storage-2", "storage-3"}) {
    const auto dir = cluster_->directory() / "data" / node / "chunks" / kTenant / file_id;
    bool gone = false;
    for (int i = 0; i < 40 && !gone; ++i) {
      gone = !std::filesystem::exists(dir);
      if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_TRUE(gone) << dir;
  }
}

}  // namespace
}  // namespace chat4all::testing
