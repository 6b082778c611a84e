// Identifiers: common/ids.h.
#include "common/ids.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace chat4all::ids {
namespace {

bool is_lower_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

// 8-4-4-4-12 lowercase hex, version 7, RFC 4122 variant.
void expect_uuid_v7(const std::string& id) {
  ASSERT_EQ(id.size(), 36u) << id;
  for (std::size_t i = 0; i < id.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23)
      EXPECT_EQ(id[i], '-') << id;
    else
      EXPECT_TRUE(is_lower_hex(id[i])) << id << " at " << i;
  }
  EXPECT_EQ(id[14], '7') << "version nibble: " << id;
  EXPECT_NE(std::string("89ab").find(id[19]), std::string::npos) << "variant: " << id;
}

TEST(IdsTest, MessageIdIsUuidV7Shaped) {
  for (std::int64_t t : {std::int64_t{0}, std::int64_t{1}, std::int64_t{1700000000123}, now_ms(),
                         std::int64_t{0xffffffffffff}}) {
    const std::string id = new_message_id(t);
    expect_uuid_v7(id);
    EXPECT_TRUE(is_valid_id(id)) << id;
  }
}

TEST(IdsTest, MessageIdCarriesTheTimestamp) {
  const std::int64_t t = 1700000000123;  // 0x018bcfe5687b
  const std::string id = new_message_id(t);
  EXPECT_EQ(id.substr(0, 8) + id.substr(9, 4), "018bcfe5687b");
}

TEST(IdsTest, MessageIdsAreTimeOrdered) {
  std::vector<std::string> ids;
  for (std::int64_t t = 1700000000000; t < 1700000000000 + 2000; t += 7)
    ids.push_back(new_message_id(t));
  ids.push_back(new_message_id(1700000000000 + 86400000));
  ids.push_back(new_message_id(2000000000000));
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), ids.size());
}

TEST(IdsTest, MessageIdsOfTheSameMillisecondDiffer) {
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) ids.insert(new_message_id(1700000000000));
  EXPECT_EQ(ids.size(), 1000u);
}

TEST(IdsTest, TraceIdShape) {
  const std::string a = new_trace_id();
  const std::string b = new_trace_id();
  ASSERT_EQ(a.size(), 32u);
  EXPECT_TRUE(std::all_of(a.begin(), a.end(), is_lower_hex)) << a;
  EXPECT_NE(a, b);
}

TEST(IdsTest, NowIsAPlausibleEpochMillisecond) {
  const std::int64_t t = now_ms();
  EXPECT_GT(t, 1600000000000);  // after 2020
  EXPECT_LT(t, 4102444800000);  // before 2100
  EXPECT_LE(t, now_ms());
}

TEST(IdsTest, ValidIdsAreAccepted) {
  for (const std::string id :
       {"a", "Z", "0", "conv-1", "user@example.com", "a.b_c:d@e-f",
        "0190a0b2-0000-7000-8000-000000000001",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@-"})
    EXPECT_TRUE(is_valid_id(id)) << id;
  EXPECT_TRUE(is_valid_id(std::string(kIdLengthMax, 'x')));
}

TEST(IdsTest, InvalidIdsAreRefused) {
  EXPECT_FALSE(is_valid_id(""));
  EXPECT_FALSE(is_valid_id(std::string(kIdLengthMax + 1, 'x')));
  for (const std::string id :
       {" ", "a b", "a/b", "a\\b", "a#b", "a?b", "a%20b", "a+b", "a,b", "\"a\"", "a\n",
        "caf\xc3\xa9", "a*", "(a)", "a=b", "a&b", "~a", "a'b"})
    EXPECT_FALSE(is_valid_id(id)) << id;
  EXPECT_FALSE(is_valid_id(std::string("a\0b", 3)));
  EXPECT_EQ(kIdLengthMax, 128u);
}

TEST(IdsTest, RequestIdsAreUnique) {
  std::set<std::uint64_t> seen;
  std::uint64_t previous = next_request_id();
  seen.insert(previous);
  for (int i = 0; i < 10000; ++i) {
    const std::uint64_t id = next_request_id();
    EXPECT_EQ(id, previous + 1) << "single-threaded ids count up";
    previous = id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 10001u);
}

TEST(IdsTest, RequestIdsAreUniqueAcrossThreads) {
  constexpr int kThreads = 4, kEach = 5000;
  std::vector<std::vector<std::uint64_t>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) got[t].push_back(next_request_id());
    });
  for (auto& thread : threads) thread.join();
  std::set<std::uint64_t> all;
  for (const auto& ids : got) all.insert(ids.begin(), ids.end());
  EXPECT_EQ(all.size(), std::size_t(kThreads * kEach));
}

}  // namespace
}  // namespace chat4all::ids
