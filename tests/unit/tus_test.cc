// The tus protocol and download decisions (nodes/frontend/tus.h): metadata,
// checksums, creation bounds, PATCH checks against the stored upload, ranges,
// chunk slices, ETags and Content-Disposition.
#include "nodes/frontend/tus.h"

#include <gtest/gtest.h>

#include "common/sha256.h"

namespace chat4all::frontend::tus {
namespace {

wire::FileRecord uploading(std::uint64_t offset, std::uint64_t length) {
  wire::FileRecord file;
  file.offset = offset;
  file.length = length;
  file.state = wire::kFileUploading;
  return file;
}

TEST(TusTest, MetadataDecodesBase64ValuesAndKeysWithoutValues) {
  auto parsed = parse_metadata("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential");
  auto& pairs = std::get<std::map<std::string, std::string>>(parsed);
  EXPECT_EQ(pairs.at("filename"), "world_domination_plan.pdf");
  EXPECT_EQ(pairs.at("is_confidential"), "");
  EXPECT_TRUE(std::holds_alternative<Refusal>(parse_metadata("filename %%%")));
  EXPECT_TRUE(std::holds_alternative<Refusal>(parse_metadata("a YQ==,a YQ==")));
}

TEST(TusTest, CreationChecksLengthSizeAndMetadata) {
  auto ok = parse_creation("10", "filename YS5wZGY=,filetype YXBwbGljYXRpb24vcGRm", 100);
  ASSERT_TRUE(std::holds_alternative<Declared>(ok));
  EXPECT_EQ(std::get<Declared>(ok).name, "a.pdf");
  EXPECT_EQ(std::get<Declared>(ok).media_type, "application/pdf");
  auto big = parse_creation("101", "", 100);
  EXPECT_EQ(std::get<Refusal>(big).status, 413);
  EXPECT_EQ(std::get<Refusal>(big).field, "Upload-Length");
  EXPECT_EQ(std::get<Refusal>(parse_creation("", "", 100)).field, "Upload-Length");
  EXPECT_EQ(std::get<Refusal>(parse_creation("-1", "", 100)).status, 400);
  EXPECT_EQ(std::get<Refusal>(parse_creation("1", "sha256 eHl6", 100)).field,
            "Upload-Metadata.sha256");
  EXPECT_EQ(std::get<Declared>(parse_creation("0", "", 100)).media_type,
            "application/octet-stream");
}

TEST(TusTest, ChecksumIsSha256InBase64) {
  auto none = parse_checksum("");
  EXPECT_FALSE(std::get<std::optional<std::string>>(none).has_value());
  Sha256 hash;
  hash.update("abc");
  // base64 of sha256("abc")
  auto given = parse_checksum("sha256 ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
  EXPECT_EQ(*std::get<std::optional<std::string>>(given), hash.digest());
  EXPECT_EQ(std::get<Refusal>(parse_checksum("md5 AAAA")).code, "unsupported_checksum_algorithm");
  EXPECT_EQ(std::get<Refusal>(parse_checksum("sha256 AAAA")).code, "invalid_checksum");
}

TEST(TusTest, PatchIsCheckedAgainstTheStoredUpload) {
  const auto file = uploading(10, 100);
  PatchHeaders headers{kOffsetContentType, "10", 5, false};
  EXPECT_FALSE(check_patch(headers, file));
  headers.upload_offset = "9";
  EXPECT_EQ(check_patch(headers, file)->status, 409);
  headers.upload_offset = "10";
  headers.content_length = 91;
  EXPECT_EQ(check_patch(headers, file)->code, "past_upload_length");
  headers.content_length = 5;
  headers.content_type = "text/plain";
  EXPECT_EQ(check_patch(headers, file)->status, 415);
  headers.content_type = "application/offset+octet-stream; charset=x";
  headers.has_checksum = true;
  EXPECT_FALSE(check_patch(headers, file));
  headers.content_length = std::nullopt;  // chunked: the checksum cannot be checked first
  EXPECT_EQ(check_patch(headers, file)->field, "Upload-Checksum");
  auto complete = uploading(100, 100);
  complete.state = wire::kFileComplete;
  EXPECT_EQ(check_patch({kOffsetContentType, "100", 0, false}, complete)->status, 409);
  EXPECT_EQ(check_version("1.0.0"), std::nullopt);
  EXPECT_EQ(check_version("0.2.2")->status, 412);
}

TEST(TusTest, RangesFollowRfc9110) {
  auto range = [](std::string_view header) { return parse_range(header, 100); };
  EXPECT_TRUE(std::holds_alternative<std::nullopt_t>(range("")));
  auto first = std::get<ByteRange>(range("bytes=0-9"));
  EXPECT_EQ(first.first, 0u);
  EXPECT_EQ(first.last, 9u);
  EXPECT_EQ(std::get<ByteRange>(range("bytes=90-")).last, 99u);
  EXPECT_EQ(std::get<ByteRange>(range("bytes=90-1000")).last, 99u);
  EXPECT_EQ(std::get<ByteRange>(range("bytes=-10")).first, 90u);
  EXPECT_EQ(std::get<ByteRange>(range("bytes=-1000")).first, 0u);
  EXPECT_TRUE(std::holds_alternative<Unsatisfiable>(range("bytes=100-")));
  EXPECT_TRUE(std::holds_alternative<std::nullopt_t>(range("bytes=0-1,5-6")));
  EXPECT_TRUE(std::holds_alternative<std::nullopt_t>(range("bytes=9-1")));
  EXPECT_TRUE(std::holds_alternative<std::nullopt_t>(range("items=0-1")));
}

TEST(TusTest, SlicesCoverExactlyTheRangeAcrossChunks) {
  const std::vector<wire::FileChunk> chunks{{"a", 4}, {"b", 1}, {"c", 5}};
  auto all = slices(chunks, {0, 9});
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[2].length, 5u);
  auto middle = slices(chunks, {3, 5});
  ASSERT_EQ(middle.size(), 3u);
  EXPECT_EQ(middle[0].chunk, 0u);
  EXPECT_EQ(middle[0].from, 3u);
  EXPECT_EQ(middle[0].length, 1u);
  EXPECT_EQ(middle[1].length, 1u);
  EXPECT_EQ(middle[2].from, 0u);
  EXPECT_EQ(middle[2].length, 1u);
  auto inside = slices(chunks, {6, 7});
  ASSERT_EQ(inside.size(), 1u);
  EXPECT_EQ(inside[0].chunk, 2u);
  EXPECT_EQ(inside[0].from, 1u);
  EXPECT_EQ(inside[0].length, 2u);
}

TEST(TusTest, ETagsAndDispositions) {
  EXPECT_TRUE(etag_matches("\"abc\"", "abc"));
  EXPECT_TRUE(etag_matches("\"x\", W/\"abc\"", "abc"));
  EXPECT_TRUE(etag_matches("*", "abc"));
  EXPECT_FALSE(etag_matches("\"abd\"", "abc"));
  EXPECT_EQ(content_disposition("a \"b\".pdf"),
            "attachment; filename=\"a _b_.pdf\"; filename*=UTF-8''a%20%22b%22.pdf");
  EXPECT_EQ(content_disposition(""), "attachment");
  EXPECT_EQ(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
}

TEST(TusTest, Sha256ResumesFromItsSavedState) {
  Sha256 whole;
  whole.update("hello world");
  Sha256 first;
  first.update("hello ");
  auto resumed = Sha256::resume(first.state());
  ASSERT_TRUE(resumed);
  resumed->update("world");
  EXPECT_EQ(resumed->hex_digest(), whole.hex_digest());
  EXPECT_EQ(whole.hex_digest(), "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
  EXPECT_FALSE(Sha256::resume("short"));
}

}  // namespace
}  // namespace chat4all::frontend::tus
