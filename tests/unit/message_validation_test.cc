// Validation of messages and history queries: nodes/frontend/message_validation.h, and the
// ApiError shape of nodes/frontend/validation_support.h.
#include "nodes/frontend/message_validation.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "common/auth.h"
#include "common/ids.h"

namespace chat4all::frontend {
namespace {

using nlohmann::json;

constexpr std::int64_t kNow = 1700000000123;

// The channels of a topology that declares these three for tenant dev, and one for acme.
MessageLimits with_channels(MessageLimits limits = {}) {
  limits.channels_by_tenant = {{"dev", {"whatsapp", "instagram", "telegram"}},
                               {"acme", {"acme-sms"}}};
  return limits;
}

std::variant<wire::AppendRequest, ApiError> send(const std::string& body,
                                                 MessageLimits limits = with_channels()) {
  return parse_send_message(body, "dev", "alice", limits, kNow);
}

wire::AppendRequest expect_request(const std::variant<wire::AppendRequest, ApiError>& result) {
  if (const auto* error = std::get_if<ApiError>(&result)) {
    ADD_FAILURE() << "unexpected error: " << error->to_json();
    return {};
  }
  return std::get<wire::AppendRequest>(result);
}

template <typename T>
ApiError expect_error(const std::variant<T, ApiError>& result) {
  if (!std::holds_alternative<ApiError>(result)) {
    ADD_FAILURE() << "expected an error";
    return {};
  }
  return std::get<ApiError>(result);
}

// Checks status, code and field of an error.
template <typename T>
void expect_error(const std::variant<T, ApiError>& result, int status, const std::string& code,
                  const std::string& field) {
  const ApiError error = expect_error(result);
  EXPECT_EQ(error.http_status, status) << error.to_json();
  EXPECT_EQ(error.code, code) << error.to_json();
  EXPECT_EQ(error.field, field) << error.to_json();
  EXPECT_FALSE(error.message.empty());
}

const std::string kText = R"("payload":{"type":"text","text":"hi"})";

TEST(SendMessageTest, ParsesAFullRequest) {
  const auto request =
      expect_request(send(R"({"conversation_id":"conv-1","message_id":"m-1","to":["bob","carol"],)"
                          R"("payload":{"type":"text","text":"hello"}})"));
  EXPECT_EQ(request.conversation_id, "conv-1");
  EXPECT_EQ(request.message_id, "m-1");
  EXPECT_EQ(request.sender_id, "alice");
  EXPECT_EQ(request.recipients, (std::vector<std::string>{"bob", "carol"}));
  EXPECT_EQ(request.payload.type, "text");
  EXPECT_EQ(request.payload.text, "hello");
  EXPECT_EQ(request.received_at_ms, kNow);
  EXPECT_EQ(request.tenant_id, "dev");
  EXPECT_TRUE(request.channels.empty());
  EXPECT_TRUE(request.metadata.empty());
}

TEST(SendMessageTest, SenderComesFromAUserToken) {
  EXPECT_EQ(
      expect_request(send(R"({"conversation_id":"c","from":"mallory",)" + kText + "}")).sender_id,
      "alice");
  EXPECT_EQ(expect_request(send(R"({"conversation_id":"c","sender_id":"alice",)" + kText + "}"))
                .sender_id,
            "alice");
  expect_error(send(R"({"conversation_id":"c","sender_id":"mallory",)" + kText + "}"), 403,
               "forbidden", "sender_id");
}

TEST(SendMessageTest, AnAdminNamesTheSender) {
  auto as_admin = [](const std::string& body) {
    return parse_send_message(body, "dev", "", MessageLimits{}, kNow);
  };
  EXPECT_EQ(expect_request(as_admin(R"({"conversation_id":"c","sender_id":"bob",)" + kText + "}"))
                .sender_id,
            "bob");
  expect_error(as_admin(R"({"conversation_id":"c",)" + kText + "}"), 400, "missing_field",
               "sender_id");
  expect_error(as_admin(R"({"conversation_id":"c","sender_id":"b b",)" + kText + "}"), 400,
               "invalid_field", "sender_id");
}

TEST(SendMessageTest, TheSenderIsNoRecipient) {
  expect_error(send(R"({"conversation_id":"c","to":["bob","alice"],)" + kText + "}"), 400,
               "invalid_field", "to[1]");
  // Repeated recipients count once.
  EXPECT_EQ(expect_request(send(R"({"conversation_id":"c","to":["bob","bob"],)" + kText + "}"))
                .recipients,
            (std::vector<std::string>{"bob"}));
}

TEST(SendMessageTest, Channels) {
  auto channels = [](const std::string& value) {
    return send(R"({"conversation_id":"c","channels":)" + value + "," + kText + "}");
  };
  EXPECT_EQ(expect_request(channels(R"(["whatsapp","instagram"])")).channels,
            (std::vector<std::string>{"whatsapp", "instagram"}));
  // ["all"] is the default, stored as no choice, so both spellings are one content.
  EXPECT_TRUE(expect_request(channels(R"(["all"])")).channels.empty());
  EXPECT_TRUE(expect_request(channels("null")).channels.empty());
  expect_error(channels(R"(["all","whatsapp"])"), 400, "invalid_field", "channels");
  expect_error(channels(R"(["whatsapp","all"])"), 400, "invalid_field", "channels");
  expect_error(channels("[]"), 400, "invalid_field", "channels");
  expect_error(channels(R"("whatsapp")"), 400, "invalid_field", "channels");
  expect_error(channels(R"(["sms"])"), 400, "invalid_field", "channels[0]");
  expect_error(channels(R"(["telegram",3])"), 400, "invalid_field", "channels[1]");
  expect_error(channels(R"(["telegram","telegram"])"), 400, "invalid_field", "channels[1]");
  // Another tenant's channel is unknown here, and its name is not offered as a choice.
  const auto other = channels(R"(["acme-sms"])");
  expect_error(other, 400, "invalid_field", "channels[0]");
  EXPECT_EQ(std::get<ApiError>(other).message.find("acme"), std::string::npos);
  const auto acme =
      parse_send_message(R"({"conversation_id":"c","channels":["whatsapp"],)" + kText + "}", "acme",
                         "alice", with_channels(), kNow);
  expect_error(acme, 400, "invalid_field", "channels[0]");
}

TEST(SendMessageTest, FilePayloadNeedsAFileId) {
  const auto request =
      expect_request(send(R"({"conversation_id":"c","payload":{"type":"file","file_id":"f-1"}})"));
  EXPECT_EQ(request.payload.type, "file");
  EXPECT_EQ(request.payload.file_id, "f-1");
  expect_error(send(R"({"conversation_id":"c","payload":{"type":"file","text":"x"}})"), 400,
               "missing_field", "payload.file_id");
  expect_error(send(R"({"conversation_id":"c","payload":{"type":"file","file_id":"a b"}})"), 400,
               "invalid_field", "payload.file_id");
}

TEST(SendMessageTest, MetadataIsAnObjectStoredAsText) {
  const auto request = expect_request(
      send(R"({"conversation_id":"c","metadata":{"b":[1,2],"a":"x"},)" + kText + "}"));
  EXPECT_EQ(json::parse(request.metadata), (json{{"a", "x"}, {"b", {1, 2}}}));
  expect_error(send(R"({"conversation_id":"c","metadata":"x",)" + kText + "}"), 400,
               "invalid_field", "metadata");
  expect_error(send(R"({"conversation_id":"c","metadata":[1],)" + kText + "}"), 400,
               "invalid_field", "metadata");
  const std::string big = json{{"k", std::string(4096, 'v')}}.dump();
  expect_error(send(R"({"conversation_id":"c","metadata":)" + big + "," + kText + "}"), 413,
               "payload_too_large", "metadata");
}

TEST(SendMessageTest, GeneratesAMessageIdWhenAbsent) {
  for (const std::string& body : {R"({"conversation_id":"c",)" + kText + "}",
                                  R"({"conversation_id":"c","message_id":null,)" + kText + "}"}) {
    const auto request = expect_request(send(body));
    EXPECT_TRUE(ids::is_valid_id(request.message_id)) << request.message_id;
    ASSERT_EQ(request.message_id.size(), 36u) << request.message_id;
    EXPECT_EQ(request.message_id[14], '7') << "UUIDv7: " << request.message_id;
    // The time part is now_ms.
    EXPECT_EQ(request.message_id.substr(0, 8) + request.message_id.substr(9, 4), "018bcfe5687b");
  }
  EXPECT_NE(expect_request(send(R"({"conversation_id":"c",)" + kText + "}")).message_id,
            expect_request(send(R"({"conversation_id":"c",)" + kText + "}")).message_id);
}

TEST(SendMessageTest, ToIsOptional) {
  EXPECT_TRUE(expect_request(send(R"({"conversation_id":"c",)" + kText + "}")).recipients.empty());
  EXPECT_TRUE(expect_request(send(R"({"conversation_id":"c","to":null,)" + kText + "}"))
                  .recipients.empty());
  EXPECT_TRUE(
      expect_request(send(R"({"conversation_id":"c","to":[],)" + kText + "}")).recipients.empty());
}

TEST(SendMessageTest, ToAsAStringIsOneRecipient) {
  const auto request = expect_request(send(R"({"conversation_id":"c","to":"bob",)" + kText + "}"));
  EXPECT_EQ(request.recipients, (std::vector<std::string>{"bob"}));
}

TEST(SendMessageTest, BadToIsRefusedWithItsPath) {
  expect_error(send(R"({"conversation_id":"c","to":["bob","bad id"],)" + kText + "}"), 400,
               "invalid_field", "to[1]");
  expect_error(send(R"({"conversation_id":"c","to":["bob",5],)" + kText + "}"), 400,
               "invalid_field", "to[1]");
  expect_error(send(R"({"conversation_id":"c","to":[""],)" + kText + "}"), 400, "invalid_field",
               "to[0]");
  expect_error(send(R"({"conversation_id":"c","to":"bad id",)" + kText + "}"), 400, "invalid_field",
               "to");
  expect_error(send(R"({"conversation_id":"c","to":5,)" + kText + "}"), 400, "invalid_field", "to");
  expect_error(send(R"({"conversation_id":"c","to":{"a":"b"},)" + kText + "}"), 400,
               "invalid_field", "to");
}

TEST(SendMessageTest, TooManyRecipients) {
  MessageLimits limits;
  limits.recipients_max = 2;
  EXPECT_EQ(expect_request(send(R"({"conversation_id":"c","to":["a","b"],)" + kText + "}", limits))
                .recipients.size(),
            2u);
  expect_error(send(R"({"conversation_id":"c","to":["a","b","c"],)" + kText + "}", limits), 400,
               "invalid_field", "to");
}

TEST(SendMessageTest, NotJson) {
  for (const std::string body : {"", "not json", "{", R"({"conversation_id":"c",})", "{'a':1}"})
    expect_error(send(body), 400, "invalid_json", "");
}

TEST(SendMessageTest, NotAnObject) {
  for (const std::string body : {"[]", "[1,2]", "\"text\"", "42", "null", "true"})
    expect_error(send(body), 400, "invalid_json", "");
}

TEST(SendMessageTest, MissingConversationId) {
  expect_error(send("{" + kText + "}"), 400, "missing_field", "conversation_id");
  expect_error(send(R"({"conversation_id":null,)" + kText + "}"), 400, "missing_field",
               "conversation_id");
}

TEST(SendMessageTest, ConversationIdOfTheWrongType) {
  for (const std::string value : {"5", "true", "[\"c\"]", "{\"id\":\"c\"}"})
    expect_error(send(R"({"conversation_id":)" + value + "," + kText + "}"), 400, "invalid_field",
                 "conversation_id");
}

TEST(SendMessageTest, InvalidIdCharacters) {
  for (const std::string value : {"", "a b", "a/b", "caf\xc3\xa9", "a\\u0000b", "x#y"})
    expect_error(send(R"({"conversation_id":")" + value + "\"," + kText + "}"), 400,
                 "invalid_field", "conversation_id");
  expect_error(send(R"({"conversation_id":")" + std::string(129, 'c') + "\"," + kText + "}"), 400,
               "invalid_field", "conversation_id");
  EXPECT_EQ(
      expect_request(send(R"({"conversation_id":")" + std::string(128, 'c') + "\"," + kText + "}"))
          .conversation_id.size(),
      128u);
  expect_error(send(R"({"conversation_id":"c","message_id":"bad id",)" + kText + "}"), 400,
               "invalid_field", "message_id");
  expect_error(send(R"({"conversation_id":"c","message_id":"",)" + kText + "}"), 400,
               "invalid_field", "message_id");
  expect_error(send(R"({"conversation_id":"c","message_id":7,)" + kText + "}"), 400,
               "invalid_field", "message_id");
}

TEST(SendMessageTest, MissingPayload) {
  expect_error(send(R"({"conversation_id":"c"})"), 400, "missing_field", "payload");
  expect_error(send(R"({"conversation_id":"c","payload":null})"), 400, "missing_field", "payload");
}

TEST(SendMessageTest, PayloadNotAnObject) {
  for (const std::string value : {"\"hi\"", "5", "[]", "true"})
    expect_error(send(R"({"conversation_id":"c","payload":)" + value + "}"), 400, "invalid_field",
                 "payload");
}

TEST(SendMessageTest, MissingPayloadType) {
  expect_error(send(R"({"conversation_id":"c","payload":{"text":"hi"}})"), 400, "missing_field",
               "payload.type");
  expect_error(send(R"({"conversation_id":"c","payload":{"type":null,"text":"hi"}})"), 400,
               "missing_field", "payload.type");
  expect_error(send(R"({"conversation_id":"c","payload":{"type":1,"text":"hi"}})"), 400,
               "invalid_field", "payload.type");
}

TEST(SendMessageTest, UnknownPayloadType) {
  for (const std::string type : {"image", "Text", "", "text ", "File"})
    expect_error(
        send(R"({"conversation_id":"c","payload":{"type":")" + type + R"(","text":"hi"}})"), 400,
        "unsupported_payload_type", "payload.type");
}

TEST(SendMessageTest, MissingText) {
  expect_error(send(R"({"conversation_id":"c","payload":{"type":"text"}})"), 400, "missing_field",
               "payload.text");
  expect_error(send(R"({"conversation_id":"c","payload":{"type":"text","text":null}})"), 400,
               "missing_field", "payload.text");
}

TEST(SendMessageTest, TextOfTheWrongType) {
  for (const std::string value : {"5", "true", "[\"hi\"]", "{\"t\":\"hi\"}"})
    expect_error(send(R"({"conversation_id":"c","payload":{"type":"text","text":)" + value + "}}"),
                 400, "invalid_field", "payload.text");
}

TEST(SendMessageTest, EmptyText) {
  expect_error(send(R"({"conversation_id":"c","payload":{"type":"text","text":""}})"), 400,
               "invalid_field", "payload.text");
}

TEST(SendMessageTest, TextLimitIsInBytes) {
  MessageLimits limits;
  limits.text_bytes_max = 10;
  auto body = [](const std::string& text) {
    return json{{"conversation_id", "c"}, {"payload", {{"type", "text"}, {"text", text}}}}.dump();
  };
  EXPECT_EQ(expect_request(send(body(std::string(10, 'x')), limits)).payload.text.size(), 10u);
  expect_error(send(body(std::string(11, 'x')), limits), 413, "payload_too_large", "payload.text");
  // Five two-byte characters fit exactly; six do not.
  const std::string e_acute = "\xc3\xa9";
  std::string five, six;
  for (int i = 0; i < 5; ++i) five += e_acute;
  six = five + e_acute;
  EXPECT_TRUE(std::holds_alternative<wire::AppendRequest>(send(body(five), limits)));
  expect_error(send(body(six), limits), 413, "payload_too_large", "payload.text");
  // Escapes count as the bytes they decode to.
  EXPECT_TRUE(std::holds_alternative<wire::AppendRequest>(send(
      R"({"conversation_id":"c","payload":{"type":"text","text":"\u00e9\u00e9\u00e9\u00e9\u00e9"}})",
      limits)));
}

TEST(SendMessageTest, DefaultTextLimit) {
  const MessageLimits defaults;
  EXPECT_EQ(defaults.text_bytes_max, 64u * 1024);
  auto body = [](std::size_t n) {
    return json{{"conversation_id", "c"},
                {"payload", {{"type", "text"}, {"text", std::string(n, 'y')}}}}
        .dump();
  };
  EXPECT_TRUE(std::holds_alternative<wire::AppendRequest>(send(body(64 * 1024))));
  const ApiError error = expect_error(send(body(64 * 1024 + 1)));
  EXPECT_EQ(error.http_status, 413);
  EXPECT_EQ(error.field, "payload.text");
  EXPECT_NE(error.message.find("65537"), std::string::npos) << error.message;
  EXPECT_NE(error.message.find("65536"), std::string::npos) << error.message;
}

TEST(SendMessageTest, UnknownFieldsAreIgnored) {
  const auto request = expect_request(send(
      R"({"conversation_id":"c","client":"x","payload":{"type":"text","text":"hi","format":"md"}})"));
  EXPECT_EQ(request.payload.text, "hi");
}

TEST(ApiErrorTest, ToJsonShape) {
  const ApiError with_field{413, "payload_too_large", "too big", "payload.text"};
  const json doc = json::parse(with_field.to_json());
  ASSERT_TRUE(doc.is_object());
  EXPECT_EQ(doc.size(), 1u);
  ASSERT_TRUE(doc.contains("error"));
  const json& error = doc["error"];
  EXPECT_EQ(error.size(), 3u);
  EXPECT_EQ(error["code"], "payload_too_large");
  EXPECT_EQ(error["message"], "too big");
  EXPECT_EQ(error["field"], "payload.text");

  const ApiError without_field{400, "invalid_json", "not json", ""};
  const json bare = json::parse(without_field.to_json())["error"];
  EXPECT_EQ(bare["code"], "invalid_json");
  EXPECT_EQ(bare["message"], "not json");
  EXPECT_FALSE(bare.contains("field"));
}

TEST(ApiErrorTest, ToJsonEscapes) {
  const ApiError error{400, "invalid_field", "quote \" and \\ and \n newline", "to[0]"};
  const json doc = json::parse(error.to_json());
  EXPECT_EQ(doc["error"]["message"], "quote \" and \\ and \n newline");
}

TEST(ApiErrorTest, ToJsonOfNonUtf8TextIsStillJson) {
  // Error messages echo client bytes (an unknown query parameter here; the
  // HTTP layer also echoes the request path in its 404/405 messages), and a
  // request target may carry any byte >= 0x80. to_json() must still produce
  // JSON instead of throwing nlohmann::json::type_error (316, invalid UTF-8).
  const ApiError error{404, "not_found", "no such endpoint: /\xff\xfe", ""};
  std::string text;
  ASSERT_NO_THROW(text = error.to_json());
  const json doc = json::parse(text, nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << text;
  EXPECT_EQ(doc["error"]["code"], "not_found");
}

TEST(ApiErrorTest, ErrorsFromTheParserAreValidJson) {
  const ApiError error =
      expect_error(send(R"({"conversation_id":"c","to":["a","b c"],)" + kText + "}"));
  const json doc = json::parse(error.to_json());
  EXPECT_EQ(doc["error"]["field"], "to[1]");
  EXPECT_EQ(doc["error"]["code"], "invalid_field");
}

// ---- history queries --------------------------------------------------------------

HistoryQuery expect_query(const std::variant<HistoryQuery, ApiError>& result) {
  if (const auto* error = std::get_if<ApiError>(&result)) {
    ADD_FAILURE() << "unexpected error: " << error->to_json();
    return {};
  }
  return std::get<HistoryQuery>(result);
}

TEST(HistoryQueryTest, Defaults) {
  const HistoryQuery q = expect_query(parse_history_query("", 500));
  EXPECT_EQ(q.from_seq, 1u);
  EXPECT_EQ(q.limit, 50u);
}

TEST(HistoryQueryTest, ParsesBoth) {
  HistoryQuery q = expect_query(parse_history_query("from_seq=17&limit=5", 500));
  EXPECT_EQ(q.from_seq, 17u);
  EXPECT_EQ(q.limit, 5u);
  q = expect_query(parse_history_query("limit=500&from_seq=9223372036854775807", 500));
  EXPECT_EQ(q.from_seq, 9223372036854775807ull);
  EXPECT_EQ(q.limit, 500u);
  q = expect_query(parse_history_query("&limit=1&&", 500));  // empty pairs are skipped
  EXPECT_EQ(q.limit, 1u);
  EXPECT_EQ(q.from_seq, 1u);
}

TEST(HistoryQueryTest, LimitBounds) {
  EXPECT_EQ(expect_query(parse_history_query("limit=1", 20)).limit, 1u);
  EXPECT_EQ(expect_query(parse_history_query("limit=20", 20)).limit, 20u);
  expect_error(parse_history_query("limit=21", 20), 400, "invalid_field", "limit");
  expect_error(parse_history_query("limit=0", 20), 400, "invalid_field", "limit");
  expect_error(parse_history_query("limit=4294967297", 20), 400, "invalid_field", "limit");
  expect_error(parse_history_query("limit=99999999999999999999999", 20), 400, "invalid_field",
               "limit");
}

TEST(HistoryQueryTest, FromSeqMustBePositive) {
  expect_error(parse_history_query("from_seq=0", 500), 400, "invalid_field", "from_seq");
  expect_error(parse_history_query("from_seq=-1", 500), 400, "invalid_field", "from_seq");
  expect_error(parse_history_query("from_seq=9223372036854775808", 500), 400, "invalid_field",
               "from_seq");
}

TEST(HistoryQueryTest, NonNumericValues) {
  for (const std::string query :
       {"from_seq=abc", "from_seq=", "from_seq", "from_seq=1x", "from_seq=1.5", "from_seq=+3",
        "from_seq= 3", "from_seq=0x10", "from_seq=%3"})
    expect_error(parse_history_query(query, 500), 400, "invalid_field", "from_seq");
  for (const std::string query : {"limit=ten", "limit=", "limit", "limit=5&limit=x"})
    expect_error(parse_history_query(query, 500), 400, "invalid_field", "limit");
}

TEST(HistoryQueryTest, UnknownNonUtf8ParameterGivesARenderableError) {
  const auto result = parse_history_query("\xff=1", 500);
  ASSERT_TRUE(std::holds_alternative<ApiError>(result));
  const ApiError& error = std::get<ApiError>(result);
  EXPECT_EQ(error.code, "unknown_parameter");
  std::string text;
  ASSERT_NO_THROW(text = error.to_json());
  EXPECT_FALSE(json::parse(text, nullptr, false).is_discarded()) << text;
}

TEST(HistoryQueryTest, UnknownParameter) {
  expect_error(parse_history_query("offset=5", 500), 400, "unknown_parameter", "offset");
  expect_error(parse_history_query("limit=5&sort=desc", 500), 400, "unknown_parameter", "sort");
  expect_error(parse_history_query("LIMIT=5", 500), 400, "unknown_parameter", "LIMIT");
}

TEST(HistoryQueryTest, ValuesArePercentDecoded) {
  EXPECT_EQ(expect_query(parse_history_query("from_seq=%31%32", 500)).from_seq, 12u);
}

TEST(HistoryQueryTest, BackwardAndSince) {
  HistoryQuery q = expect_query(parse_history_query("before_seq=40&limit=10", 500));
  EXPECT_TRUE(q.backward);
  EXPECT_EQ(q.before_seq, 40u);
  EXPECT_EQ(q.limit, 10u);
  q = expect_query(parse_history_query("since=1700000000000", 500));
  EXPECT_FALSE(q.backward);
  EXPECT_EQ(q.since_ms, 1700000000000);
  EXPECT_EQ(q.from_seq, 1u);
  expect_error(parse_history_query("before_seq=0", 500), 400, "invalid_field", "before_seq");
  expect_error(parse_history_query("since=-5", 500), 400, "invalid_field", "since");
}

TEST(HistoryQueryTest, OnePositionAtMost) {
  expect_error(parse_history_query("from_seq=3&before_seq=9", 500), 400, "conflicting_parameters",
               "before_seq");
  expect_error(parse_history_query("since=3&from_seq=9", 500), 400, "conflicting_parameters",
               "from_seq");
  expect_error(parse_history_query("from_seq=3&from_seq=4", 500), 400, "conflicting_parameters",
               "from_seq");
  expect_error(parse_history_query("cursor=" + encode_history_cursor(false, 5) + "&since=1", 500),
               400, "conflicting_parameters", "since");
}

TEST(HistoryQueryTest, CursorsRoundTripAndKeepTheLimit) {
  HistoryQuery q =
      expect_query(parse_history_query("limit=7&cursor=" + encode_history_cursor(true, 31), 500));
  EXPECT_TRUE(q.backward);
  EXPECT_EQ(q.before_seq, 31u);
  EXPECT_EQ(q.limit, 7u);
  q = expect_query(
      parse_history_query("cursor=" + encode_history_cursor(false, 12) + "&limit=3", 500));
  EXPECT_FALSE(q.backward);
  EXPECT_EQ(q.from_seq, 12u);
  EXPECT_EQ(q.limit, 3u);
}

TEST(HistoryQueryTest, MalformedCursors) {
  for (const std::string& cursor :
       {std::string(""), std::string("zz"), std::string("!!!"), auth::base64url_encode("f:"),
        auth::base64url_encode("f:0"), auth::base64url_encode("x:5"),
        auth::base64url_encode("f:5x"), auth::base64url_encode("b:-1"),
        auth::base64url_encode("f5"), std::string(100, 'A')})
    expect_error(parse_history_query("cursor=" + cursor, 500), 400, "invalid_field", "cursor");
}

wire::StoredMessage at_seq(std::uint64_t seq) {
  wire::StoredMessage message;
  message.seq = seq;
  return message;
}

TEST(HistoryPageEndTest, Forward) {
  HistoryQuery forward;
  forward.from_seq = 4;
  HistoryPageEnd end = history_page_end(forward, {at_seq(4), at_seq(5)}, 9);
  EXPECT_EQ(end.next_from_seq, 6u);
  EXPECT_FALSE(end.end_of_history);
  ASSERT_TRUE(end.next_cursor);
  EXPECT_EQ(decode_history_cursor(*end.next_cursor)->from_seq, 6u);
  EXPECT_FALSE(decode_history_cursor(*end.next_cursor)->backward);

  end = history_page_end(forward, {at_seq(8), at_seq(9)}, 9);
  EXPECT_EQ(end.next_from_seq, 10u);
  EXPECT_TRUE(end.end_of_history);
  EXPECT_FALSE(end.next_cursor);

  // An empty page ends the history and continues where it started.
  end = history_page_end(forward, {}, 3);
  EXPECT_EQ(end.next_from_seq, 4u);
  EXPECT_TRUE(end.end_of_history);
  HistoryQuery since;
  since.since_ms = 5;
  end = history_page_end(since, {}, 3);
  EXPECT_EQ(end.next_from_seq, 4u);
  EXPECT_TRUE(end.end_of_history);
}

TEST(HistoryPageEndTest, Backward) {
  HistoryQuery backward;
  backward.backward = true;
  backward.before_seq = 10;
  HistoryPageEnd end = history_page_end(backward, {at_seq(7), at_seq(8), at_seq(9)}, 12);
  EXPECT_FALSE(end.end_of_history);
  EXPECT_EQ(end.next_from_seq, 10u);
  ASSERT_TRUE(end.next_cursor);
  const auto next = decode_history_cursor(*end.next_cursor);
  EXPECT_TRUE(next->backward);
  EXPECT_EQ(next->before_seq, 7u);

  end = history_page_end(backward, {at_seq(1), at_seq(2)}, 12);
  EXPECT_TRUE(end.end_of_history);
  EXPECT_FALSE(end.next_cursor);
  end = history_page_end(backward, {}, 0);
  EXPECT_TRUE(end.end_of_history);
  EXPECT_EQ(end.next_from_seq, 1u);
}

}  // namespace
}  // namespace chat4all::frontend
