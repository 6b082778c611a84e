// Webhook registrations: nodes/frontend/webhook_validation.h.
#include "nodes/frontend/webhook_validation.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include "tests/unit/validation_test_util.h"

namespace chat4all::frontend {
namespace {

using nlohmann::json;
using testing::expect_api_error;
using testing::expect_ok;

// "whsec_" + standard base64 of `bytes` bytes.
std::string secret_of(std::size_t bytes) {
  const std::string key(bytes, 'k');
  std::string text(sodium_base64_encoded_len(key.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(text.data(), text.size(), reinterpret_cast<const unsigned char*>(key.data()),
                    key.size(), sodium_base64_VARIANT_ORIGINAL);
  text.resize(text.size() - 1);  // the terminating NUL
  return "whsec_" + text;
}

std::string body(const std::string& url, const json& events, const json& secret = nullptr) {
  json document = {{"url", url}, {"events", events}};
  if (!secret.is_null()) document["secret"] = secret;
  return document.dump();
}

TEST(WebhookCreateTest, Parses) {
  const auto webhook = expect_ok(parse_webhook_create(body(
      "https://hooks.example.com/chat?x=1", {"message.read", "message.sent", "message.read"})));
  EXPECT_EQ(webhook.url, "https://hooks.example.com/chat?x=1");
  EXPECT_EQ(webhook.events, (std::vector<std::string>{"message.read", "message.sent"}));
  EXPECT_TRUE(webhook.secret.empty());
}

TEST(WebhookCreateTest, UrlsAreParsedStrictly) {
  for (const std::string url : {"http://a", "https://a.b:8443/x", "http://127.0.0.1:9/"})
    EXPECT_TRUE(
        std::holds_alternative<WebhookCreate>(parse_webhook_create(body(url, {"message.sent"}))))
        << url;
  // The rules are connector::parse_http_url's (tests/unit/url_guard_test.cc); a few here.
  for (const std::string url : {"ftp://a", "a.example.com", "http://", "http://a b",
                                "http://u:p@host/", "http://a:65536", "http://127.1/"})
    expect_api_error(parse_webhook_create(body(url, {"message.sent"})), 400, "invalid_field",
                     "url");
  expect_api_error(
      parse_webhook_create(body("https://a/" + std::string(2048, 'p'), {"message.sent"})), 400,
      "invalid_field", "url");
  expect_api_error(parse_webhook_create(R"({"events":["message.sent"]})"), 400, "missing_field",
                   "url");
}

TEST(WebhookCreateTest, Events) {
  expect_api_error(parse_webhook_create(R"({"url":"http://a"})"), 400, "missing_field", "events");
  expect_api_error(parse_webhook_create(body("http://a", json::array())), 400, "invalid_field",
                   "events");
  expect_api_error(parse_webhook_create(body("http://a", {"message.sent", "user.created"})), 400,
                   "invalid_field", "events[1]");
  expect_api_error(parse_webhook_create(body("http://a", "message.sent")), 400, "invalid_field",
                   "events");
}

TEST(WebhookCreateTest, Secrets) {
  const std::string sixteen = secret_of(16);
  EXPECT_EQ(sixteen.rfind("whsec_", 0), 0u);
  EXPECT_EQ(expect_ok(parse_webhook_create(body("http://a", {"message.sent"}, sixteen))).secret,
            sixteen);
  EXPECT_TRUE(std::holds_alternative<WebhookCreate>(
      parse_webhook_create(body("http://a", {"message.sent"}, secret_of(64)))));
  for (const std::string& secret :
       {secret_of(15), secret_of(65), std::string("whsec_not base64!"),
        std::string("sk_") + sixteen.substr(6), sixteen.substr(6), std::string("whsec_")})
    expect_api_error(parse_webhook_create(body("http://a", {"message.sent"}, secret)), 400,
                     "invalid_field", "secret");
}

}  // namespace
}  // namespace chat4all::frontend
