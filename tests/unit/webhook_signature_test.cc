// Standard Webhooks signatures: common/webhook_signature.h.
#include "common/webhook_signature.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace chat4all::webhook {
namespace {

// The test vector of the Standard Webhooks reference libraries (e.g. TestWebhookSign in
// libraries/go/webhook_test.go of github.com/standard-webhooks/standard-webhooks).
constexpr std::string_view kSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
constexpr std::string_view kMsgId = "msg_p5jXN8AQM9LWM0D4loKWxJek";
constexpr std::int64_t kTimestamp = 1614265330;
constexpr std::string_view kBody = R"({"test": 2432232314})";
constexpr std::string_view kSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

std::string key() {
  return secret_bytes(kSecret).value();
}

TEST(WebhookSignatureTest, ReproducesTheReferenceVector) {
  EXPECT_EQ(key().size(), 24u);
  EXPECT_EQ(sign(key(), kMsgId, kTimestamp, kBody), kSignature);
  EXPECT_TRUE(verify(key(), kMsgId, kTimestamp, kBody, kSignature));
}

TEST(WebhookSignatureTest, TamperedInputsFail) {
  EXPECT_FALSE(verify(key(), kMsgId, kTimestamp, R"({"test": 2432232315})", kSignature));
  EXPECT_FALSE(verify(key(), kMsgId, kTimestamp, std::string(kBody) + " ", kSignature));
  EXPECT_FALSE(verify(key(), "msg_p5jXN8AQM9LWM0D4loKWxJeK", kTimestamp, kBody, kSignature));
  EXPECT_FALSE(verify(key(), kMsgId, kTimestamp + 1, kBody, kSignature));
  const std::string other_key = secret_bytes(generate_secret()).value();
  EXPECT_FALSE(verify(other_key, kMsgId, kTimestamp, kBody, kSignature));
  // A signature one bit off.
  EXPECT_FALSE(
      verify(key(), kMsgId, kTimestamp, kBody, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="));
}

TEST(WebhookSignatureTest, HeaderWithSeveralEntries) {
  const std::string wrong = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
  const std::string header =
      wrong + " v1a,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= " + std::string(kSignature) + " " +
      wrong;
  EXPECT_TRUE(verify(key(), kMsgId, kTimestamp, kBody, header));
  EXPECT_FALSE(verify(key(), kMsgId, kTimestamp, kBody, wrong + " " + wrong));
  // Entries of another version, empty entries and garbage are skipped, never matched.
  EXPECT_FALSE(
      verify(key(), kMsgId, kTimestamp, kBody, "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="));
  EXPECT_FALSE(verify(key(), kMsgId, kTimestamp, kBody, ""));
  EXPECT_FALSE(verify(key(), kMsgId, kTimestamp, kBody, "v1,"));
  EXPECT_FALSE(verify(key(), kMsgId, kTimestamp, kBody, "v1,!!!! g0hM9SsE"));
  EXPECT_TRUE(verify(key(), kMsgId, kTimestamp, kBody, "  " + std::string(kSignature) + "  "));
}

TEST(WebhookSignatureTest, SecretBytesRefusesMalformedSecrets) {
  EXPECT_FALSE(secret_bytes("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));        // no prefix
  EXPECT_FALSE(secret_bytes("whsec_"));                                  // empty
  EXPECT_FALSE(secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS"));   // not a multiple of 4
  EXPECT_FALSE(secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa$w"));  // not base64
  EXPECT_FALSE(secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa_w"));  // url-safe alphabet
  EXPECT_FALSE(secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw "));
  EXPECT_FALSE(secret_bytes("WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
  // 15 bytes is too short, 16 and 64 are the bounds, 65 is too long.
  EXPECT_FALSE(secret_bytes("whsec_" + std::string(20, 'A')));
  EXPECT_EQ(secret_bytes("whsec_" + std::string(22, 'A') + "==")->size(), 16u);
  EXPECT_EQ(secret_bytes("whsec_" + std::string(86, 'A') + "==")->size(), 64u);
  EXPECT_FALSE(secret_bytes("whsec_" + std::string(87, 'A') + "="));
}

TEST(WebhookSignatureTest, GeneratedSecretsAreWellFormedAndDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    const std::string secret = generate_secret();
    ASSERT_TRUE(secret.starts_with("whsec_")) << secret;
    const auto bytes = secret_bytes(secret);
    ASSERT_TRUE(bytes) << secret;
    EXPECT_EQ(bytes->size(), kSecretGeneratedBytes);
    EXPECT_TRUE(seen.insert(secret).second);
  }
  const std::string key_bytes = secret_bytes(generate_secret()).value();
  const std::string signature = sign(key_bytes, "msg_1", 1700000000, "{}");
  EXPECT_TRUE(verify(key_bytes, "msg_1", 1700000000, "{}", signature));
}

}  // namespace
}  // namespace chat4all::webhook
