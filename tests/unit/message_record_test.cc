// The value of one message in the `messages` table: nodes/storage/message_record.h.
#include "nodes/storage/message_record.h"

#include <gtest/gtest.h>

#include <msgpack.hpp>

#include "tests/unit/test_util.h"

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

TEST(MessageRecordTest, RoundTripsWithTheConversationAndSeqFromTheKey) {
  const wire::StoredMessage m = sample();
  const std::string bytes = encode_message_record(m);
  unit::expect_same_message(decode_message_record(m.conversation_id, m.seq, bytes), m);
  // What the key holds is not repeated in the value.
  EXPECT_EQ(bytes.find(m.conversation_id), std::string::npos);
  msgpack::sbuffer whole;
  msgpack::pack(whole, m);
  EXPECT_LT(bytes.size() + m.conversation_id.size(), whole.size());
}

TEST(MessageRecordTest, AStoredTimeBeforeTheReceivedTimeSurvives) {
  wire::StoredMessage m = sample();
  m.stored_at_ms = m.received_at_ms - 250;  // the leader's clock behind the frontend's
  unit::expect_same_message(
      decode_message_record(m.conversation_id, m.seq, encode_message_record(m)), m);
}

TEST(MessageRecordTest, ReadsTheWholeMessagesOfEarlierLayouts) {
  const wire::StoredMessage m = sample();
  msgpack::sbuffer whole;
  msgpack::pack(whole, m);
  unit::expect_same_message(
      decode_message_record(m.conversation_id, m.seq, std::string_view(whole.data(), whole.size())),
      m);
}

TEST(MessageRecordTest, AnErasedMessageStaysErased) {
  wire::StoredMessage m = sample();
  m.payload = {};
  m.metadata.clear();
  m.erased = true;
  const std::string bytes = encode_message_record(m);
  unit::expect_same_message(decode_message_record(m.conversation_id, m.seq, bytes), m);
  EXPECT_TRUE(decode_message_record(m.conversation_id, m.seq, bytes).erased);
}

TEST(MessageRecordTest, RefusesBytesOfNeitherForm) {
  msgpack::sbuffer other;
  msgpack::pack(other, std::make_tuple(1, 2, 3));
  EXPECT_ANY_THROW(decode_message_record("c", 1, std::string_view(other.data(), other.size())));
}

}  // namespace
}  // namespace chat4all::storage
