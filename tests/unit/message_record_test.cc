// The value of one message in the `messages` table: nodes/storage/message_record.h.
#include "nodes/storage/message_record.h"

#include <gtest/gtest.h>

#include <msgpack.hpp>

namespace chat4all::storage {
namespace {

wire::StoredMessage sample() {
  wire::StoredMessage m;
  m.conversation_id = "c_0bwu8f4kjyermkj0634kueu7jy";
  m.seq = 45885;
  m.message_id = "f3a1c0de-2b7e-4c1a-9d3e-7a1b2c3d4e5f";
  m.sender_id = "alice";
  m.recipients = {"bob", "carol"};
  m.payload.type = "text";
  m.payload.text = std::string(100, 'x');
  m.received_at_ms = 1700000000000;
  m.stored_at_ms = 1700000000007;
  m.channels = {"whatsapp"};
  m.metadata = R"({"k":"v"})";
  return m;
}

void expect_same(const wire::StoredMessage& a, const wire::StoredMessage& b) {
  EXPECT_EQ(a.conversation_id, b.conversation_id);
  EXPECT_EQ(a.seq, b.seq);
  EXPECT_EQ(a.message_id, b.message_id);
  EXPECT_EQ(a.sender_id, b.sender_id);
  EXPECT_EQ(a.recipients, b.recipients);
  EXPECT_EQ(a.payload.type, b.payload.type);
  EXPECT_EQ(a.payload.text, b.payload.text);
  EXPECT_EQ(a.received_at_ms, b.received_at_ms);
  EXPECT_EQ(a.stored_at_ms, b.stored_at_ms);
  EXPECT_EQ(a.channels, b.channels);
  EXPECT_EQ(a.metadata, b.metadata);
}

TEST(MessageRecordTest, RoundTripsWithTheConversationAndSeqFromTheKey) {
  const wire::StoredMessage m = sample();
  const std::string bytes = encode_message_record(m);
  expect_same(decode_message_record(m.conversation_id, m.seq, bytes), m);
  // What the key holds is not repeated in the value.
  EXPECT_EQ(bytes.find(m.conversation_id), std::string::npos);
  msgpack::sbuffer whole;
  msgpack::pack(whole, m);
  EXPECT_LT(bytes.size() + m.conversation_id.size(), whole.size());
}

TEST(MessageRecordTest, AStoredTimeBeforeTheReceivedTimeSurvives) {
  wire::StoredMessage m = sample();
  m.stored_at_ms = m.received_at_ms - 250;  // the leader's clock behind the frontend's
  expect_same(decode_message_record(m.conversation_id, m.seq, encode_message_record(m)), m);
}

TEST(MessageRecordTest, ReadsTheWholeMessagesOfEarlierLayouts) {
  const wire::StoredMessage m = sample();
  msgpack::sbuffer whole;
  msgpack::pack(whole, m);
  expect_same(
      decode_message_record(m.conversation_id, m.seq, std::string_view(whole.data(), whole.size())),
      m);
}

TEST(MessageRecordTest, RefusesBytesOfNeitherForm) {
  msgpack::sbuffer other;
  msgpack::pack(other, std::make_tuple(1, 2, 3));
  EXPECT_ANY_THROW(decode_message_record("c", 1, std::string_view(other.data(), other.size())));
}

}  // namespace
}  // namespace chat4all::storage
