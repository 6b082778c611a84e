// Wire frames: common/codec.h over schema/wire.h.
#include "common/codec.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <msgpack.hpp>
#include <random>
#include <string>
#include <vector>

#include "tests/unit/test_util.h"

namespace chat4all {
namespace {

using wire::MessageType;
using wire::Status;

wire::Header make_header(MessageType type, std::uint64_t request_id = 42) {
  wire::Header header;
  header.type = type;
  header.request_id = request_id;
  header.trace_id = "0123456789abcdef0123456789abcdef";
  return header;
}

wire::AppendRequest sample_append_request() {
  wire::AppendRequest r;
  r.conversation_id = "conv-1";
  r.message_id = "0190a0b2-0000-7000-8000-000000000001";
  r.sender_id = "alice";
  r.recipients = {"bob", "carol"};
  r.payload = {"text", "hello \xc3\xa9 world"};
  r.received_at_ms = 1700000000123;
  return r;
}

wire::StoredMessage sample_stored(std::uint64_t seq) {
  wire::StoredMessage m;
  m.conversation_id = "conv-1";
  m.seq = seq;
  m.message_id = "m-" + std::to_string(seq);
  m.sender_id = "alice";
  m.recipients = {"bob"};
  m.payload = {"text", "message " + std::to_string(seq)};
  m.received_at_ms = -5;  // signed on the wire
  m.stored_at_ms = 1700000000456;
  return m;
}

void expect_same(const wire::Header& a, const wire::Header& b) {
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.request_id, b.request_id);
  EXPECT_EQ(a.trace_id, b.trace_id);
}

// Packs an arbitrary frame: [version, type, request_id, trace_id, body...].
template <typename Body>
std::string raw_frame(std::uint16_t version, std::uint16_t type, const Body& body,
                      std::size_t array_size = 5) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_array(static_cast<std::uint32_t>(array_size));
  if (array_size > 0) packer.pack(version);
  if (array_size > 1) packer.pack(type);
  if (array_size > 2) packer.pack(std::uint64_t{7});
  if (array_size > 3) packer.pack(std::string("trace"));
  if (array_size > 4) packer.pack(body);
  for (std::size_t i = 5; i < array_size; ++i) packer.pack_nil();
  return std::string(buffer.data(), buffer.size());
}

// Decodes and expects failure; returns the error text.
std::string decode_error(const std::string& bytes) {
  std::string error;
  auto frame = codec::decode(bytes, &error);
  EXPECT_FALSE(frame.has_value());
  EXPECT_FALSE(error.empty());
  return error;
}

TEST(CodecTest, AppendRequestRoundTrip) {
  const auto header = make_header(MessageType::kAppendRequest, 0xfffffffffffffff0ull);
  const auto body = sample_append_request();
  const std::string bytes = codec::encode(header, body);
  wire::Header decoded_header;
  std::string error;
  auto decoded = codec::decode_as<wire::AppendRequest>(bytes, MessageType::kAppendRequest,
                                                       &decoded_header, &error);
  ASSERT_TRUE(decoded) << error;
  expect_same(decoded_header, header);
  EXPECT_EQ(decoded_header.version, wire::kWireVersion);
  EXPECT_EQ(decoded->conversation_id, body.conversation_id);
  EXPECT_EQ(decoded->message_id, body.message_id);
  EXPECT_EQ(decoded->sender_id, body.sender_id);
  EXPECT_EQ(decoded->recipients, body.recipients);
  EXPECT_EQ(decoded->payload.type, "text");
  EXPECT_EQ(decoded->payload.text, body.payload.text);
  EXPECT_EQ(decoded->received_at_ms, body.received_at_ms);
}

TEST(CodecTest, AppendReplyRoundTrip) {
  for (Status status :
       {Status::kOk, Status::kNotOwner, Status::kUnavailable, Status::kTimeout,
        Status::kStorageFull, Status::kConflict, Status::kInvalid, Status::kInternal}) {
    wire::AppendReply body{status, "conv-9", "msg-9", 123456789012ull, true, "some detail"};
    const std::string bytes = codec::encode(make_header(MessageType::kAppendReply), body);
    auto decoded = codec::decode_as<wire::AppendReply>(bytes, MessageType::kAppendReply);
    ASSERT_TRUE(decoded);
    EXPECT_EQ(decoded->status, status);
    EXPECT_EQ(decoded->conversation_id, "conv-9");
    EXPECT_EQ(decoded->message_id, "msg-9");
    EXPECT_EQ(decoded->seq, 123456789012ull);
    EXPECT_TRUE(decoded->duplicate);
    EXPECT_EQ(decoded->detail, "some detail");
  }
}

TEST(CodecTest, ReadRequestRoundTrip) {
  wire::ReadRequest body{"conv-2", 1ull << 40, 500};
  const std::string bytes = codec::encode(make_header(MessageType::kReadRequest), body);
  auto decoded = codec::decode_as<wire::ReadRequest>(bytes, MessageType::kReadRequest);
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->conversation_id, "conv-2");
  EXPECT_EQ(decoded->from_seq, 1ull << 40);
  EXPECT_EQ(decoded->limit, 500u);
}

TEST(CodecTest, ReadReplyRoundTrip) {
  wire::ReadReply body;
  body.status = Status::kOk;
  body.messages = {sample_stored(1), sample_stored(2), sample_stored(3)};
  body.last_seq = 3;
  body.detail = "";
  const std::string bytes = codec::encode(make_header(MessageType::kReadReply), body);
  auto decoded = codec::decode_as<wire::ReadReply>(bytes, MessageType::kReadReply);
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->status, Status::kOk);
  ASSERT_EQ(decoded->messages.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i)
    unit::expect_same_message(decoded->messages[i], body.messages[i]);
  EXPECT_EQ(decoded->last_seq, 3u);
}

TEST(CodecTest, EmptyReadReplyRoundTrip) {
  wire::ReadReply body;
  body.status = Status::kNotOwner;
  const std::string bytes = codec::encode(make_header(MessageType::kReadReply), body);
  auto decoded = codec::decode_as<wire::ReadReply>(bytes, MessageType::kReadReply);
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->status, Status::kNotOwner);
  EXPECT_TRUE(decoded->messages.empty());
}

TEST(CodecTest, ErrorReplyRoundTrip) {
  wire::ErrorReply body{Status::kNotOwner, "not the leader", "storage-2"};
  const std::string bytes = codec::encode(make_header(MessageType::kErrorReply), body);
  auto decoded = codec::decode_as<wire::ErrorReply>(bytes, MessageType::kErrorReply);
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->status, Status::kNotOwner);
  EXPECT_EQ(decoded->detail, "not the leader");
  EXPECT_EQ(decoded->owner_hint, "storage-2");
}

TEST(CodecTest, DecodeGivesHeaderAndTypedBody) {
  const auto header = make_header(MessageType::kReadRequest, 99);
  const std::string bytes = codec::encode(header, wire::ReadRequest{"c", 5, 10});
  std::string error;
  auto frame = codec::decode(bytes, &error);
  ASSERT_TRUE(frame) << error;
  expect_same(frame->header(), header);
  auto body = frame->body<wire::ReadRequest>();
  ASSERT_TRUE(body);
  EXPECT_EQ(body->from_seq, 5u);
}

TEST(CodecTest, FrameOwnsItsMemory) {
  std::optional<codec::Frame> frame;
  {
    std::string bytes =
        codec::encode(make_header(MessageType::kAppendRequest), sample_append_request());
    frame = codec::decode(bytes);
    ASSERT_TRUE(frame);
    std::fill(bytes.begin(), bytes.end(), '\xff');
  }  // the input is gone; the frame must not refer to it
  codec::Frame moved = std::move(*frame);
  frame.reset();
  auto body = moved.body<wire::AppendRequest>();
  ASSERT_TRUE(body);
  EXPECT_EQ(body->payload.text, sample_append_request().payload.text);
  EXPECT_EQ(moved.header().trace_id, "0123456789abcdef0123456789abcdef");
}

TEST(CodecTest, DecodeAsRefusesAnotherMessageType) {
  const std::string bytes =
      codec::encode(make_header(MessageType::kReadRequest), wire::ReadRequest{"c", 1, 5});
  std::string error;
  wire::Header header_out;
  header_out.request_id = 12345;
  auto decoded = codec::decode_as<wire::AppendRequest>(bytes, MessageType::kAppendRequest,
                                                       &header_out, &error);
  EXPECT_FALSE(decoded);
  EXPECT_NE(error.find("unexpected message type 3"), std::string::npos) << error;
  EXPECT_EQ(header_out.request_id, 12345u) << "header_out must be left alone on failure";
}

TEST(CodecTest, BodyOfAMismatchedTypeIsNullopt) {
  const std::string bytes =
      codec::encode(make_header(MessageType::kAppendRequest), sample_append_request());
  auto frame = codec::decode(bytes);
  ASSERT_TRUE(frame);
  EXPECT_TRUE(frame->body<wire::AppendRequest>());
  EXPECT_FALSE(frame->body<wire::AppendReply>());  // string where a status is expected
  EXPECT_FALSE(frame->body<wire::ReadReply>());
  EXPECT_FALSE(frame->body<wire::ReadRequest>());  // string where from_seq is expected
  EXPECT_FALSE(frame->body<wire::ErrorReply>());
}

TEST(CodecTest, BodyThatIsNotAnArrayIsRefused) {
  std::string error;
  const std::string bytes = raw_frame(wire::kWireVersion, 1, std::string("not a struct"));
  auto frame = codec::decode(bytes, &error);
  ASSERT_TRUE(frame) << "the envelope is fine: " << error;
  EXPECT_FALSE(frame->body<wire::AppendRequest>());
  error.clear();
  EXPECT_FALSE(
      codec::decode_as<wire::AppendRequest>(bytes, MessageType::kAppendRequest, nullptr, &error));
  EXPECT_EQ(error, "body does not match its message type");
}

TEST(CodecTest, ShorterBodyFromAnOlderSenderTakesDefaults) {
  // An older sender knew only the first fields of AppendReply.
  const auto bytes = raw_frame(
      wire::kWireVersion, 2, std::make_tuple(Status::kOk, std::string("conv"), std::string("m1")));
  std::string error;
  auto reply =
      codec::decode_as<wire::AppendReply>(bytes, MessageType::kAppendReply, nullptr, &error);
  ASSERT_TRUE(reply) << error;
  EXPECT_EQ(reply->status, Status::kOk);
  EXPECT_EQ(reply->conversation_id, "conv");
  EXPECT_EQ(reply->message_id, "m1");
  EXPECT_EQ(reply->seq, 0u);
  EXPECT_FALSE(reply->duplicate);
  EXPECT_EQ(reply->detail, "");

  // ReadRequest with only the conversation: from_seq and limit default.
  const auto read_bytes = raw_frame(wire::kWireVersion, 3, std::make_tuple(std::string("c")));
  auto read = codec::decode_as<wire::ReadRequest>(read_bytes, MessageType::kReadRequest);
  ASSERT_TRUE(read);
  EXPECT_EQ(read->conversation_id, "c");
  EXPECT_EQ(read->from_seq, 1u);
  EXPECT_EQ(read->limit, 50u);

  // An empty body array: everything at its default.
  const auto empty_bytes = raw_frame(wire::kWireVersion, 5, std::vector<int>{});
  auto empty = codec::decode_as<wire::ErrorReply>(empty_bytes, MessageType::kErrorReply);
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->status, Status::kInternal);
  EXPECT_EQ(empty->owner_hint, "");
}

TEST(CodecTest, ShorterNestedStructTakesDefaults) {
  // AppendRequest whose payload lacks `text` and which lacks received_at_ms.
  const auto bytes = raw_frame(
      wire::kWireVersion, 1,
      std::make_tuple(std::string("c"), std::string("m"), std::string("s"),
                      std::vector<std::string>{"r"}, std::make_tuple(std::string("text"))));
  auto request = codec::decode_as<wire::AppendRequest>(bytes, MessageType::kAppendRequest);
  ASSERT_TRUE(request);
  EXPECT_EQ(request->payload.type, "text");
  EXPECT_EQ(request->payload.text, "");
  EXPECT_EQ(request->received_at_ms, 0);
}

TEST(CodecTest, LongerBodyFromANewerSenderIsAccepted) {
  // A newer minor revision appended fields; an older decoder ignores them.
  const auto bytes =
      raw_frame(wire::kWireVersion, 5,
                std::make_tuple(Status::kTimeout, std::string("slow"), std::string("storage-1"), 17,
                                4, std::string("new")));
  auto reply = codec::decode_as<wire::ErrorReply>(bytes, MessageType::kErrorReply);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, Status::kTimeout);
  EXPECT_EQ(reply->detail, "slow");
  EXPECT_EQ(reply->owner_hint, "storage-1");
  EXPECT_EQ(reply->partition, 17u);
  EXPECT_EQ(reply->epoch, 4u);
}

TEST(CodecTest, GarbageIsRefused) {
  EXPECT_EQ(decode_error(""), "not a msgpack value");
  EXPECT_EQ(decode_error("\xc1"), "not a msgpack value");  // reserved msgpack byte
  EXPECT_EQ(decode_error("hello world"), "trailing bytes after the frame");
  // A valid msgpack value that is not a frame.
  EXPECT_EQ(decode_error(std::string("\x2a", 1)), "frame is not a 5-element array");
  msgpack::sbuffer map_buffer;
  msgpack::pack(map_buffer, std::map<std::string, int>{{"a", 1}});
  EXPECT_EQ(decode_error(std::string(map_buffer.data(), map_buffer.size())),
            "frame is not a 5-element array");
}

TEST(CodecTest, TruncatedFramesAreRefused) {
  const std::string bytes = codec::encode(make_header(MessageType::kReadReply), [] {
    wire::ReadReply r;
    r.status = Status::kOk;
    r.messages = {sample_stored(1), sample_stored(2)};
    return r;
  }());
  for (std::size_t length = 0; length < bytes.size(); ++length) {
    std::string error;
    EXPECT_FALSE(codec::decode(bytes.substr(0, length), &error)) << "length " << length;
    EXPECT_EQ(error, "not a msgpack value") << "length " << length;
  }
  EXPECT_TRUE(codec::decode(bytes));
}

TEST(CodecTest, TrailingBytesAreRefused) {
  const std::string bytes =
      codec::encode(make_header(MessageType::kReadRequest), wire::ReadRequest{"c", 1, 5});
  EXPECT_EQ(decode_error(bytes + std::string(1, '\0')), "trailing bytes after the frame");
  EXPECT_EQ(decode_error(bytes + bytes), "trailing bytes after the frame");
}

TEST(CodecTest, WrongVersionIsRefused) {
  wire::Header header = make_header(MessageType::kReadRequest);
  header.version = 7;
  EXPECT_EQ(decode_error(codec::encode(header, wire::ReadRequest{})), "unsupported wire version 7");
  header.version = 0;
  EXPECT_EQ(decode_error(codec::encode(header, wire::ReadRequest{})), "unsupported wire version 0");
  header.version = wire::kWireVersion + 1;
  EXPECT_NE(
      decode_error(codec::encode(header, wire::ReadRequest{})).find("unsupported wire version"),
      std::string::npos);
}

TEST(CodecTest, UnknownTypeIsRefused) {
  EXPECT_EQ(decode_error(raw_frame(wire::kWireVersion, 0, std::vector<int>{})),
            "unknown message type 0");
  EXPECT_EQ(decode_error(raw_frame(wire::kWireVersion, 15, std::vector<int>{})),
            "unknown message type 15");
  EXPECT_EQ(decode_error(raw_frame(wire::kWireVersion, 999, std::vector<int>{})),
            "unknown message type 999");
}

TEST(CodecTest, WrongFrameArraySizeIsRefused) {
  for (std::size_t size : {0u, 1u, 4u, 6u, 10u}) {
    EXPECT_EQ(decode_error(raw_frame(wire::kWireVersion, 1, sample_append_request(), size)),
              "frame is not a 5-element array")
        << "size " << size;
  }
}

TEST(CodecTest, MalformedHeaderFieldsAreRefused) {
  auto frame_of = [](auto version, auto type, auto request_id, auto trace_id) {
    msgpack::sbuffer buffer;
    msgpack::packer<msgpack::sbuffer> packer(buffer);
    packer.pack_array(5);
    packer.pack(version);
    packer.pack(type);
    packer.pack(request_id);
    packer.pack(trace_id);
    packer.pack(std::vector<int>{});
    return std::string(buffer.data(), buffer.size());
  };
  const std::string trace = "t";
  EXPECT_EQ(decode_error(frame_of(std::string("1"), 1, 1, trace)), "malformed frame header");
  EXPECT_EQ(decode_error(frame_of(70000, 1, 1, trace)), "malformed frame header");
  EXPECT_EQ(decode_error(frame_of(-1, 1, 1, trace)), "malformed frame header");
  EXPECT_EQ(decode_error(frame_of(1, std::string("append"), 1, trace)), "malformed frame header");
  EXPECT_EQ(decode_error(frame_of(1, 1, -5, trace)), "malformed frame header");
  EXPECT_EQ(decode_error(frame_of(1, 1, 1.5, trace)), "malformed frame header");
  EXPECT_EQ(decode_error(frame_of(1, 1, 1, 12345)), "malformed frame header");
  EXPECT_TRUE(codec::decode(frame_of(1, 1, 1, trace)));
}

TEST(CodecTest, ErrorPointerIsOptional) {
  EXPECT_FALSE(codec::decode("junk"));
  EXPECT_FALSE(codec::decode_as<wire::ReadRequest>("junk", MessageType::kReadRequest));
}

TEST(CodecTest, StatusNames) {
  EXPECT_STREQ(codec::status_name(Status::kOk), "ok");
  EXPECT_STREQ(codec::status_name(Status::kNotOwner), "not_owner");
  EXPECT_STREQ(codec::status_name(Status::kUnavailable), "unavailable");
  EXPECT_STREQ(codec::status_name(Status::kTimeout), "timeout");
  EXPECT_STREQ(codec::status_name(Status::kStorageFull), "storage_full");
  EXPECT_STREQ(codec::status_name(Status::kConflict), "conflict");
  EXPECT_STREQ(codec::status_name(Status::kInvalid), "invalid");
  EXPECT_STREQ(codec::status_name(Status::kInternal), "internal");
  EXPECT_STREQ(codec::status_name(static_cast<Status>(200)), "unknown");
}

TEST(CodecTest, StatusValuesAreTheWireContract) {
  EXPECT_EQ(int(Status::kOk), 0);
  EXPECT_EQ(int(Status::kNotOwner), 1);
  EXPECT_EQ(int(Status::kUnavailable), 2);
  EXPECT_EQ(int(Status::kTimeout), 3);
  EXPECT_EQ(int(Status::kStorageFull), 4);
  EXPECT_EQ(int(Status::kConflict), 5);
  EXPECT_EQ(int(Status::kInvalid), 6);
  EXPECT_EQ(int(Status::kInternal), 7);
  // And they travel as plain integers.
  const auto bytes = raw_frame(wire::kWireVersion, 5, std::make_tuple(4, std::string("full")));
  auto reply = codec::decode_as<wire::ErrorReply>(bytes, MessageType::kErrorReply);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, Status::kStorageFull);
}

TEST(CodecTest, DeeplyNestedInputIsRefusedNotRecursedInto) {
  std::string bytes(100000, '\x91');  // 100k nested one-element arrays
  bytes += '\xc0';
  EXPECT_EQ(decode_error(bytes), "not a msgpack value");
  // The same nesting as the body of a proper envelope: over the depth limit.
  std::string frame = raw_frame(wire::kWireVersion, 1, 0);
  frame.pop_back();  // drop the packed 0 body
  frame += bytes;
  EXPECT_FALSE(codec::decode(frame));
}

// Peak virtual memory of this process in KiB (VmPeak), or -1.
long vm_peak_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmPeak:", 0) == 0) return std::stol(line.substr(7));
  return -1;
}

TEST(CodecTest, LengthPrefixOfAHugeArrayDoesNotAllocateForIt) {
  // Six bytes claiming a 64M-element array inside the frame array. A decoder
  // must not reserve memory in proportion to a count it has no bytes for:
  // otherwise any peer can make a node allocate gigabytes (or, under
  // AddressSanitizer, abort) with a handful of bytes. Measured in a forked
  // child, whose VmPeak starts at its current size.
  const std::string bytes("\x95\xdd\x04\x00\x00\x00", 6);
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(pipe_fds[0]);
    const long before = vm_peak_kib();
    std::string error;
    const bool decoded = codec::decode(bytes, &error).has_value();
    const long grown = vm_peak_kib() - before;
    char report[128];
    const int n = std::snprintf(report, sizeof report, "%ld %d", grown, decoded ? 1 : 0);
    (void)!::write(pipe_fds[1], report, n);
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  char report[128] = {};
  std::size_t got = 0;
  ssize_t n;
  while ((n = ::read(pipe_fds[0], report + got, sizeof report - 1 - got)) > 0) got += n;
  ::close(pipe_fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "decoding 6 bytes killed the process";
  long grown_kib = -1;
  int decoded = -1;
  ASSERT_EQ(std::sscanf(report, "%ld %d", &grown_kib, &decoded), 2) << report;
  EXPECT_EQ(decoded, 0);
  EXPECT_LT(grown_kib, 64 * 1024) << "decoding a 6-byte frame reserved " << grown_kib / 1024
                                  << " MiB";
}

// Tries every body type on whatever decodes; must never crash or throw.
void decode_everything(const std::string& bytes) {
  std::string error;
  auto frame = codec::decode(bytes, &error);
  if (!frame) {
    EXPECT_FALSE(error.empty());
    return;
  }
  (void)frame->body<wire::AppendRequest>();
  (void)frame->body<wire::AppendReply>();
  (void)frame->body<wire::ReadRequest>();
  (void)frame->body<wire::ReadReply>();
  (void)frame->body<wire::ErrorReply>();
}

TEST(CodecFuzzTest, RandomBytesNeverCrash) {
  std::mt19937 rng(20240601);
  std::uniform_int_distribution<int> length_of(0, 64);
  std::uniform_int_distribution<int> byte_of(0, 255);
  for (int i = 0; i < 10000; ++i) {
    std::string bytes(length_of(rng), '\0');
    for (auto& c : bytes) c = static_cast<char>(byte_of(rng));
    // Half of the inputs start like a frame, so that the header paths run too.
    if (i % 2 == 0 && !bytes.empty()) bytes[0] = '\x95';
    if (i % 4 == 0 && bytes.size() > 1) bytes[1] = '\x01';
    decode_everything(bytes);
  }
}

TEST(CodecFuzzTest, MutatedFramesNeverCrash) {
  std::vector<std::string> seeds;
  seeds.push_back(codec::encode(make_header(MessageType::kAppendRequest), sample_append_request()));
  seeds.push_back(codec::encode(make_header(MessageType::kAppendReply),
                                wire::AppendReply{Status::kOk, "c", "m", 3, false, ""}));
  seeds.push_back(
      codec::encode(make_header(MessageType::kReadRequest), wire::ReadRequest{"c", 2, 9}));
  wire::ReadReply read_reply;
  read_reply.status = Status::kOk;
  read_reply.messages = {sample_stored(1), sample_stored(2)};
  seeds.push_back(codec::encode(make_header(MessageType::kReadReply), read_reply));
  seeds.push_back(codec::encode(make_header(MessageType::kErrorReply),
                                wire::ErrorReply{Status::kNotOwner, "d", "storage-1"}));

  std::mt19937 rng(7);
  std::uniform_int_distribution<int> byte_of(0, 255);
  for (int i = 0; i < 10000; ++i) {
    std::string bytes = seeds[i % seeds.size()];
    const int mutations = 1 + static_cast<int>(rng() % 4);
    for (int m = 0; m < mutations && !bytes.empty(); ++m) {
      const std::size_t at = rng() % bytes.size();
      switch (rng() % 4) {
        case 0:
          bytes[at] = static_cast<char>(byte_of(rng));
          break;  // replace
        case 1:
          bytes[at] = static_cast<char>(bytes[at] ^ (1 << (rng() % 8)));
          break;  // flip
        case 2:
          bytes.resize(at);
          break;  // truncate
        case 3:
          bytes.insert(at, 1, static_cast<char>(byte_of(rng)));
          break;  // insert
      }
    }
    decode_everything(bytes);
  }
}

}  // namespace
}  // namespace chat4all
