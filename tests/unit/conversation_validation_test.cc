// Conversation bodies and private conversation ids: nodes/frontend/conversation_validation.h.
#include "nodes/frontend/conversation_validation.h"

#include <gtest/gtest.h>

#include "tests/unit/validation_test_util.h"

namespace chat4all::frontend {
namespace {

using nlohmann::json;
using testing::expect_api_error;
using testing::expect_ok;

constexpr std::uint32_t kMembersMax = 4;

std::variant<ConversationCreate, ApiError> create(const std::string& body,
                                                  const std::string& creator = "alice") {
  return parse_conversation_create(body, creator, kMembersMax);
}

TEST(ConversationCreateTest, TheCreatorIsAlwaysAMember) {
  ConversationCreate group = expect_ok(create(R"({"type":"group","members":["bob","carol"]})"));
  EXPECT_FALSE(group.is_private);
  EXPECT_EQ(group.members, (std::vector<std::string>{"bob", "carol", "alice"}));
  group = expect_ok(create(R"({"type":"group","members":["alice","bob","alice"]})"));
  EXPECT_EQ(group.members, (std::vector<std::string>{"alice", "bob"}));
  // An admin (no creator) lists every member itself.
  group = expect_ok(create(R"({"type":"group","members":["bob"]})", ""));
  EXPECT_EQ(group.members, (std::vector<std::string>{"bob"}));
}

TEST(ConversationCreateTest, PrivateHasExactlyTwo) {
  const ConversationCreate pair = expect_ok(create(R"({"type":"private","members":["bob"]})"));
  EXPECT_TRUE(pair.is_private);
  EXPECT_EQ(pair.members, (std::vector<std::string>{"bob", "alice"}));
  EXPECT_TRUE(expect_ok(create(R"({"type":"private","members":["alice","bob"]})")).is_private);
  expect_api_error(create(R"({"type":"private","members":["alice"]})"), 400, "invalid_field",
                   "members");
  expect_api_error(create(R"({"type":"private","members":["bob","carol"]})"), 400, "invalid_field",
                   "members");
  expect_api_error(create(R"({"type":"private","members":["bob"]})", ""), 400, "invalid_field",
                   "members");
}

TEST(ConversationCreateTest, NameAndMetadata) {
  const ConversationCreate group = expect_ok(
      create(R"({"type":"group","members":["bob"],"name":"Team","metadata":{"topic":"x"}})"));
  EXPECT_EQ(group.name, "Team");
  EXPECT_EQ(json::parse(group.metadata), (json{{"topic", "x"}}));
  expect_api_error(create(R"({"type":"group","members":["bob"],"metadata":[1]})"), 400,
                   "invalid_field", "metadata");
  expect_api_error(create(R"({"type":"group","members":["bob"],"name":"a\u0000"})"), 400,
                   "invalid_field", "name");
  expect_api_error(
      create(json{{"type", "group"}, {"members", {"bob"}}, {"name", std::string(257, 'n')}}.dump()),
      400, "invalid_field", "name");
  expect_api_error(
      create(json{
          {"type", "group"}, {"members", {"bob"}}, {"metadata", {{"k", std::string(5000, 'v')}}}}
                 .dump()),
      413, "payload_too_large", "metadata");
}

TEST(ConversationCreateTest, Errors) {
  expect_api_error(create(R"({"members":["bob"]})"), 400, "missing_field", "type");
  expect_api_error(create(R"({"type":"channel","members":["bob"]})"), 400, "invalid_field", "type");
  expect_api_error(create(R"({"type":"group"})"), 400, "missing_field", "members");
  expect_api_error(create(R"({"type":"group","members":[]})"), 400, "invalid_field", "members");
  expect_api_error(create(R"({"type":"group","members":"bob"})"), 400, "invalid_field", "members");
  expect_api_error(create(R"({"type":"group","members":["bob","b b"]})"), 400, "invalid_field",
                   "members[1]");
  // The limit counts the creator too.
  EXPECT_EQ(expect_ok(create(R"({"type":"group","members":["b","c","d"]})")).members.size(), 4u);
  expect_api_error(create(R"({"type":"group","members":["b","c","d","e"]})"), 400, "invalid_field",
                   "members");
  expect_api_error(create(R"({"type":"group","members":["b","c","d","e","f"]})"), 400,
                   "invalid_field", "members");
}

TEST(MembersAddTest, Parses) {
  EXPECT_EQ(expect_ok(parse_members_add(R"({"members":["x","y","x"]})", kMembersMax)),
            (std::vector<std::string>{"x", "y"}));
  expect_api_error(parse_members_add(R"({})", kMembersMax), 400, "missing_field", "members");
  expect_api_error(parse_members_add(R"({"members":["a","b","c","d","e"]})", kMembersMax), 400,
                   "invalid_field", "members");
}

TEST(HorizonUpdateTest, NonNegativeInteger) {
  EXPECT_EQ(expect_ok(parse_horizon_update(R"({"up_to_seq":0})")), 0u);
  EXPECT_EQ(expect_ok(parse_horizon_update(R"({"up_to_seq":42})")), 42u);
  expect_api_error(parse_horizon_update("{}"), 400, "missing_field", "up_to_seq");
  for (const std::string value : {"-1", "1.5", "\"3\"", "true", "[1]"})
    expect_api_error(parse_horizon_update(R"({"up_to_seq":)" + value + "}"), 400, "invalid_field",
                     "up_to_seq");
}

TEST(ConversationValidationTest, RetentionIsWholeSecondsUpToTheTenants) {
  EXPECT_EQ(expect_ok(parse_conversation_update(R"({"retention_s":60})", 3600, 1000000)), 60);
  EXPECT_EQ(expect_ok(parse_conversation_update(R"({"retention_s":3600})", 3600, 1000000)), 3600);
  EXPECT_EQ(expect_ok(parse_conversation_update(R"({"retention_s":999999})", 0, 1000000)), 999999);
  expect_api_error(parse_conversation_update("{}", 0, 100), 400, "missing_field", "retention_s");
  for (const std::string value : {"0", "-1", "1.5", "\"3\"", "true", "3601"})
    expect_api_error(parse_conversation_update(R"({"retention_s":)" + value + "}", 3600, 1000000),
                     400, "invalid_field", "retention_s");
  expect_api_error(parse_conversation_update(R"({"retention_s":101})", 0, 100), 400,
                   "invalid_field", "retention_s");
}

TEST(PrivateConversationIdTest, OneIdPerPairAndTenant) {
  const std::string id = private_conversation_id("dev", "alice", "bob");
  EXPECT_EQ(id, private_conversation_id("dev", "bob", "alice"));
  EXPECT_EQ(id.rfind("dm_", 0), 0u);
  EXPECT_EQ(id.size(), 3u + 32u);
  // Stored conversations are named by it: BLAKE2b-128 of "dev\0alice\0bob" must never change.
  EXPECT_EQ(id, "dm_9980eec55db302be66f2087da1d430bc");
  EXPECT_NE(id, private_conversation_id("other", "alice", "bob"));
  EXPECT_NE(id, private_conversation_id("dev", "alice", "carol"));
  // The separator keeps joined names apart.
  EXPECT_NE(private_conversation_id("dev", "ab", "c"), private_conversation_id("dev", "a", "bc"));
}

TEST(KeyedGroupIdTest, OnePerTenantCallerAndKey) {
  const std::string id = keyed_group_id("dev", "user", "alice", "k-1");
  EXPECT_EQ(id, keyed_group_id("dev", "user", "alice", "k-1"));
  EXPECT_EQ(id.rfind("c_", 0), 0u);
  EXPECT_EQ(id.size(), 2u + 32u);
  EXPECT_NE(id, keyed_group_id("dev", "user", "alice", "k-2"));
  EXPECT_NE(id, keyed_group_id("dev", "user", "bob", "k-1"));
  EXPECT_NE(id, keyed_group_id("dev", "admin", "alice", "k-1"));
  EXPECT_NE(id, keyed_group_id("other", "user", "alice", "k-1"));
}

}  // namespace
}  // namespace chat4all::frontend
