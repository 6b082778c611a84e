// Frames of GET /v1/stream and the shared message JSON:
// nodes/frontend/stream_frames.h, nodes/frontend/message_json.h.
#include "nodes/frontend/stream_frames.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "nodes/frontend/message_json.h"
#include "nodes/frontend/stream_hub.h"

namespace chat4all::frontend {
namespace {

using nlohmann::json;
using Kind = ClientFrame::Kind;

void expect_invalid(const std::string& text, const std::string& code) {
  const ClientFrame frame = parse_client_frame(text, 3);
  EXPECT_EQ(frame.kind, Kind::kInvalid) << text;
  EXPECT_EQ(frame.error_code, code) << text;
  EXPECT_FALSE(frame.error_message.empty()) << text;
}

TEST(StreamFrames, ParsesResumeWithCursors) {
  const ClientFrame frame =
      parse_client_frame(R"({"type":"resume","cursors":{"conv-1":4,"conv-2":0}})", 3);
  ASSERT_EQ(frame.kind, Kind::kResume);
  EXPECT_EQ(frame.cursors, (StreamCursorTracker::Cursors{{"conv-1", 4}, {"conv-2", 0}}));
  EXPECT_TRUE(parse_client_frame(R"({"type":"resume"})", 3).cursors.empty());
  EXPECT_EQ(parse_client_frame(R"({"type":"resume","cursors":null})", 3).kind, Kind::kResume);
  EXPECT_EQ(parse_client_frame(R"({"type":"resume","cursors":{}})", 3).kind, Kind::kResume);
}

TEST(StreamFrames, ParsesPing) {
  EXPECT_EQ(parse_client_frame(R"({"type":"ping"})", 3).kind, Kind::kPing);
  EXPECT_EQ(parse_client_frame(R"({"type":"ping","extra":1})", 3).kind, Kind::kPing);
  EXPECT_FALSE(parse_client_frame(R"({"type":"ping"})", 3).ping_id);
  EXPECT_EQ(parse_client_frame(R"({"type":"ping","id":"p-1"})", 3).ping_id, "p-1");
  expect_invalid(R"({"type":"ping","id":7})", "invalid_frame");
  expect_invalid(R"({"type":"ping","id":")" + std::string(129, 'x') + R"("})", "invalid_frame");
}

TEST(StreamFrames, ParsesTypingWithAConversationId) {
  const ClientFrame frame = parse_client_frame(R"({"type":"typing","conversation_id":"c-1"})", 4);
  EXPECT_EQ(frame.kind, ClientFrame::Kind::kTyping);
  EXPECT_EQ(frame.conversation_id, "c-1");
  expect_invalid(R"({"type":"typing"})", "invalid_frame");
  expect_invalid(R"({"type":"typing","conversation_id":7})", "invalid_frame");
  expect_invalid(R"({"type":"typing","conversation_id":"bad id"})", "invalid_frame");
}

TEST(StreamFrames, PresenceAndTypingFramesFromTheirEvents) {
  wire::Event event;
  event.kind = "presence";
  event.conversation_id = "c-1";
  event.user_id = "ann";
  event.state = "offline";
  event.at_ms = 1700;
  EXPECT_EQ(
      json::parse(presence_frame(event)),
      (json{
          {"type", "presence"}, {"user_id", "ann"}, {"state", "offline"}, {"last_seen_at", 1700}}));
  event.at_ms = 0;  // hidden: nothing to tell of when
  EXPECT_TRUE(json::parse(presence_frame(event))["last_seen_at"].is_null());
  event.state = "online";
  EXPECT_EQ(json::parse(presence_frame(event)), (json{{"type", "presence"},
                                                      {"user_id", "ann"},
                                                      {"state", "online"},
                                                      {"last_seen_at", nullptr}}));
  event.kind = "typing";
  EXPECT_EQ(json::parse(typing_frame(event)),
            (json{{"type", "typing"}, {"conversation_id", "c-1"}, {"user_id", "ann"}}));
}

TEST(StreamFrames, RefusesMalformedFramesWithACode) {
  expect_invalid("{not json", "invalid_json");
  expect_invalid("", "invalid_json");
  expect_invalid("[1,2]", "invalid_frame");
  expect_invalid(R"({"cursors":{}})", "invalid_frame");
  expect_invalid(R"({"type":7})", "invalid_frame");
  expect_invalid(R"({"type":"subscribe"})", "unknown_type");
  expect_invalid(R"({"type":"resume","cursors":[1]})", "invalid_frame");
  expect_invalid(R"({"type":"resume","cursors":{"c":-1}})", "invalid_frame");
  expect_invalid(R"({"type":"resume","cursors":{"c":1.5}})", "invalid_frame");
  expect_invalid(R"({"type":"resume","cursors":{"c":"3"}})", "invalid_frame");
  expect_invalid(R"({"type":"resume","cursors":{"bad id":3}})", "invalid_frame");
  expect_invalid(R"({"type":"resume","cursors":{"a":1,"b":2,"c":3,"d":4}})", "invalid_frame");
}

wire::StoredMessage sample_message() {
  wire::StoredMessage message;
  message.conversation_id = "conv-1";
  message.seq = 7;
  message.message_id = "m-7";
  message.sender_id = "alice";
  message.recipients = {"bob"};
  message.payload = {"text", "hello", ""};
  message.received_at_ms = 1000;
  message.stored_at_ms = 1002;
  message.channels = {"whatsapp"};
  message.metadata = R"({"k":"v"})";
  return message;
}

TEST(StreamFrames, MessageFrameCarriesTheHistoryShape) {
  const json frame = json::parse(message_frame(sample_message()));
  EXPECT_EQ(frame["type"], "message");
  EXPECT_EQ(frame["message"], public_message_json(sample_message()));
  const json& message = frame["message"];
  EXPECT_EQ(message["message_id"], "m-7");
  EXPECT_EQ(message["conversation_id"], "conv-1");
  EXPECT_EQ(message["seq"], 7);
  EXPECT_EQ(message["sender_id"], "alice");
  EXPECT_EQ(message["to"], json::array({"bob"}));
  EXPECT_EQ(message["channels"], json::array({"whatsapp"}));
  EXPECT_EQ(message["payload"], (json{{"type", "text"}, {"text", "hello"}}));
  EXPECT_EQ(message["metadata"], (json{{"k", "v"}}));
  EXPECT_EQ(message["received_at"], 1000);
  EXPECT_EQ(message["stored_at"], 1002);
}

TEST(StreamFrames, MessageJsonOfAFileAndOfMissingMetadata) {
  wire::StoredMessage message = sample_message();
  message.payload = {"file", "", "file-1", "a.pdf", 12, "application/pdf", "ab12"};
  message.metadata.clear();
  const json shown = public_message_json(message);
  EXPECT_EQ(shown["payload"], (json{{"type", "file"},
                                    {"file_id", "file-1"},
                                    {"name", "a.pdf"},
                                    {"size", 12},
                                    {"media_type", "application/pdf"},
                                    {"sha256", "ab12"},
                                    {"download_path", "/v1/files/file-1/content"}}));
  EXPECT_EQ(shown["metadata"], json::object());
  message.metadata = "[1]";  // never stored by the frontend; shown as no metadata
  EXPECT_EQ(public_message_json(message)["metadata"], json::object());
  message.channels.clear();  // none chosen: the default, every channel
  EXPECT_EQ(public_message_json(message)["channels"], json::array({"all"}));
}

TEST(StreamFrames, ServerFrames) {
  const json ready = json::parse(ready_frame("alice", {{"conv-1", 9, 4}}, 2000));
  EXPECT_EQ(ready,
            (json{{"type", "ready"},
                  {"user_id", "alice"},
                  {"conversations",
                   json::array({{{"conversation_id", "conv-1"}, {"last_seq", 9}, {"cursor", 4}}})},
                  {"conversations_max", 2000}}));
  const json capped = json::parse(conversations_capped_frame(2000));
  EXPECT_EQ(capped["type"], "error");
  EXPECT_EQ(capped["error"]["code"], "conversations_capped");
  EXPECT_NE(capped["error"]["message"].get<std::string>().find("2000"), std::string::npos);
  wire::StateLogEntry step;
  step.index = 12;
  step.seq = 3;
  step.message_id = "m-3";
  step.sender_id = "alice";
  step.recipient_id = "bob";
  step.state = "READ";
  step.at_ms = 55;
  EXPECT_EQ(json::parse(state_frame("conv-1", step)), (json{{"type", "state"},
                                                            {"message_id", "m-3"},
                                                            {"conversation_id", "conv-1"},
                                                            {"seq", 3},
                                                            {"recipient_id", "bob"},
                                                            {"state", "READ"},
                                                            {"at", 55}}));
  EXPECT_EQ(json::parse(pong_frame(std::nullopt)), (json{{"type", "pong"}}));
  EXPECT_EQ(json::parse(pong_frame("p-1")), (json{{"type", "pong"}, {"id", "p-1"}}));
  EXPECT_EQ(json::parse(error_frame("unknown_type", "no")),
            (json{{"type", "error"}, {"error", {{"code", "unknown_type"}, {"message", "no"}}}}));
}

TEST(StreamFrames, StreamTargetAndAccessTokenParameter) {
  EXPECT_TRUE(is_stream_target("/v1/stream"));
  EXPECT_TRUE(is_stream_target("/v1/stream?access_token=x"));
  EXPECT_FALSE(is_stream_target("/v1/streams"));
  EXPECT_FALSE(is_stream_target("/v1/stream/x"));
  EXPECT_EQ(access_token_parameter("/v1/stream?access_token=abc.def-_"), "abc.def-_");
  EXPECT_EQ(access_token_parameter("/v1/stream?x=1&access_token=a%2Eb&y=2"), "a.b");
  EXPECT_EQ(access_token_parameter("/v1/stream?x=1"), "");
  EXPECT_EQ(access_token_parameter("/v1/stream"), "");
  EXPECT_EQ(access_token_parameter("/v1/stream?access_token=%zz"), "%zz");
}

}  // namespace
}  // namespace chat4all::frontend
