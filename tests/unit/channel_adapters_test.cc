// The channel adapters (nodes/connector/adapters/): WhatsApp Cloud API, Instagram Messaging and
// the Telegram Bot API against a fake transport that records each request and returns canned
// answers, so every request is checked byte for byte and no test touches the network. The libcurl
// transport is checked once against a one-shot HTTP server on 127.0.0.1.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "nodes/connector/adapters/instagram/instagram_adapter.h"
#include "nodes/connector/adapters/telegram/telegram_adapter.h"
#include "nodes/connector/adapters/whatsapp/whatsapp_adapter.h"
#include "nodes/connector/channel_adapter.h"
#include "nodes/connector/graph_api.h"
#include "nodes/connector/provider_http.h"

namespace chat4all::connector {
namespace {

using nlohmann::json;
using Outcome = SendResult::Outcome;

// Records every request; answers with the queued responses in order, then with "no answer".
class FakeTransport final : public ProviderTransport {
 public:
  ProviderResponse perform(const ProviderRequest& request) override {
    std::lock_guard lock(mutex_);
    requests_.push_back(request);
    if (answers_.empty()) {
      ProviderResponse none;
      none.error = "no canned answer";
      return none;
    }
    ProviderResponse answer = answers_.front();
    answers_.pop_front();
    return answer;
  }

  void answer(int status, std::string body, std::map<std::string, std::string> headers = {}) {
    std::lock_guard lock(mutex_);
    ProviderResponse response;
    response.status = status;
    response.body = std::move(body);
    response.headers = std::move(headers);
    answers_.push_back(std::move(response));
  }
  void answer_json(int status, const json& body) { answer(status, body.dump()); }
  void fail(std::string error) {
    std::lock_guard lock(mutex_);
    ProviderResponse response;
    response.error = std::move(error);
    answers_.push_back(std::move(response));
  }

  std::vector<ProviderRequest> requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }
  ProviderRequest last() const {
    std::lock_guard lock(mutex_);
    if (requests_.empty()) throw std::logic_error("no request was made");
    return requests_.back();
  }

 private:
  mutable std::mutex mutex_;
  std::deque<ProviderResponse> answers_;
  std::vector<ProviderRequest> requests_;
};

std::string header_of(const ProviderRequest& request, const std::string& name) {
  for (const auto& [key, value] : request.headers)
    if (key == name) return value;
  return "<absent>";
}

json body_of(const ProviderRequest& request) {
  return json::parse(request.body);
}

ChannelSpec channel_of(std::string adapter, std::map<std::string, std::string> settings) {
  ChannelSpec channel;
  channel.name = adapter + "-main";
  channel.adapter = std::move(adapter);
  channel.tenant_id = "t1";
  channel.settings = std::move(settings);
  channel.timeout_ms = 7000;
  return channel;
}

OutboundMessage text_message(std::string address, std::string text) {
  OutboundMessage message;
  message.delivery_id = "m1/u2/chan";
  message.message_id = "m1";
  message.address = std::move(address);
  message.text = std::move(text);
  return message;
}

OutboundMessage file_message(std::string address, std::string file_id) {
  OutboundMessage message = text_message(std::move(address), "");
  message.file_id = std::move(file_id);
  return message;
}

WebhookRequest signed_post(const std::string& body, const std::string& app_secret) {
  WebhookRequest request;
  request.method = "POST";
  request.target = "/channels/x/webhook";
  request.body = body;
  request.headers["content-type"] = "application/json";
  request.headers["x-hub-signature-256"] = hub_signature(app_secret, body);
  return request;
}

WebhookRequest get_request(const std::string& target) {
  WebhookRequest request;
  request.method = "GET";
  request.target = target;
  return request;
}

// ---------------------------------------------------------------------------------------------
// Shared pieces

TEST(ProviderHttp, FailedSendClassifiesByStatusAndThrottling) {
  ProviderResponse response;
  EXPECT_EQ(failed_send(response, false, 0, "x").outcome, Outcome::kRetry);  // no answer
  for (int status : {408, 429, 500, 502, 503, 504}) {
    response.status = status;
    EXPECT_EQ(failed_send(response, false, 0, "x").outcome, Outcome::kRetry) << status;
  }
  for (int status : {300, 400, 401, 403, 404, 409}) {
    response.status = status;
    EXPECT_EQ(failed_send(response, false, 0, "x").outcome, Outcome::kRejected) << status;
  }
  response.status = 400;
  const SendResult throttled = failed_send(response, true, 2500, "slow down");
  EXPECT_EQ(throttled.outcome, Outcome::kRetry);
  EXPECT_EQ(throttled.retry_after_ms, 2500u);
  EXPECT_EQ(throttled.status_code, 400);
  EXPECT_EQ(throttled.error, "slow down");
}

TEST(ProviderHttp, RetryAfterHeaderIsSecondsAndBounded) {
  ProviderResponse response;
  EXPECT_EQ(retry_after_header_ms(response), 0u);
  response.headers["retry-after"] = "7";
  EXPECT_EQ(retry_after_header_ms(response), 7000u);
  response.headers["retry-after"] = "Wed, 21 Oct 2015 07:28:00 GMT";
  EXPECT_EQ(retry_after_header_ms(response), 0u);
  response.headers["retry-after"] = "99999999999";
  EXPECT_EQ(retry_after_header_ms(response), kProviderRetryAfterMaxMs);
}

TEST(ProviderHttp, SecretsEqual) {
  EXPECT_TRUE(secrets_equal("abc", "abc"));
  EXPECT_FALSE(secrets_equal("abc", "abd"));
  EXPECT_FALSE(secrets_equal("abc", "ab"));
  EXPECT_FALSE(secrets_equal("abc", ""));
}

TEST(GraphApi, HubSignatureMatchesAKnownVector) {
  // HMAC-SHA256("The quick brown fox jumps over the lazy dog", key "key"), a published vector.
  const std::string expected =
      "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8";
  const std::string body = "The quick brown fox jumps over the lazy dog";
  EXPECT_EQ(hub_signature("key", body), expected);
  EXPECT_TRUE(verify_hub_signature("key", body, expected));
  std::string upper = expected;
  for (std::size_t i = 7; i < upper.size(); ++i)
    upper[i] = static_cast<char>(std::toupper(upper[i]));
  EXPECT_TRUE(verify_hub_signature("key", body, upper));
  EXPECT_FALSE(verify_hub_signature("other", body, expected));
  EXPECT_FALSE(verify_hub_signature("key", body + " ", expected));
  EXPECT_FALSE(verify_hub_signature("key", body, expected.substr(7)));  // no "sha256="
  EXPECT_FALSE(verify_hub_signature("key", body, expected.substr(0, expected.size() - 2)));
  EXPECT_FALSE(verify_hub_signature("key", body, ""));
}

// ---------------------------------------------------------------------------------------------
// WhatsApp Cloud API

class WhatsAppTest : public ::testing::Test {
 protected:
  ChannelSpec channel = channel_of("whatsapp", {{"base_url", "http://sim:9000/"},
                                                {"phone_number_id", "1055"},
                                                {"access_token", "EAAtoken"},
                                                {"app_secret", "s3cret"},
                                                {"verify_token", "hello-meta"}});
  std::shared_ptr<FakeTransport> transport = std::make_shared<FakeTransport>();
};

TEST_F(WhatsAppTest, SendsTextAndReadsTheMessageId) {
  WhatsAppAdapter adapter(channel, transport);
  transport->answer_json(200, {{"messaging_product", "whatsapp"},
                               {"contacts", {{{"input", "5511999"}, {"wa_id", "5511999"}}}},
                               {"messages", {{{"id", "wamid.ABC"}}}}});
  const SendResult result = adapter.send_message(text_message("5511999", "Olá"));
  EXPECT_EQ(result.outcome, Outcome::kAccepted);
  EXPECT_EQ(result.provider_message_id, "wamid.ABC");
  EXPECT_FALSE(result.delivered);
  EXPECT_EQ(result.status_code, 200);

  const ProviderRequest request = transport->last();
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.url, "http://sim:9000/v21.0/1055/messages");
  EXPECT_EQ(header_of(request, "Authorization"), "Bearer EAAtoken");
  EXPECT_EQ(header_of(request, "Content-Type"), "application/json");
  EXPECT_EQ(request.timeout_ms, 7000u);
  EXPECT_EQ(body_of(request), (json{{"messaging_product", "whatsapp"},
                                    {"recipient_type", "individual"},
                                    {"to", "5511999"},
                                    {"type", "text"},
                                    {"text", {{"body", "Olá"}}}}));
}

TEST_F(WhatsAppTest, SendsFileAsDocumentLink) {
  channel.settings["api_version"] = "v20.0";
  channel.settings["document_link_prefix"] = "https://files.example/f/";
  WhatsAppAdapter adapter(channel, transport);
  transport->answer_json(200, {{"messages", {{{"id", "wamid.DOC"}}}}});
  OutboundMessage message = file_message("5511999", "file-42");
  message.text = "the contract";
  EXPECT_EQ(adapter.send_file(message).provider_message_id, "wamid.DOC");
  const ProviderRequest request = transport->last();
  EXPECT_EQ(request.url, "http://sim:9000/v20.0/1055/messages");
  EXPECT_EQ(body_of(request),
            (json{{"messaging_product", "whatsapp"},
                  {"recipient_type", "individual"},
                  {"to", "5511999"},
                  {"type", "document"},
                  {"document",
                   {{"link", "https://files.example/f/file-42"}, {"caption", "the contract"}}}}));
}

TEST_F(WhatsAppTest, FileWithoutPrefixOrCaptionSendsTheFileIdAsLink) {
  WhatsAppAdapter adapter(channel, transport);
  transport->answer_json(200, {{"messages", {{{"id", "wamid.DOC"}}}}});
  adapter.send_file(file_message("5511999", "https://cdn.example/a.pdf"));
  EXPECT_EQ(body_of(transport->last())["document"], (json{{"link", "https://cdn.example/a.pdf"}}));
}

TEST_F(WhatsAppTest, SuccessWithoutAnIdIsStillAccepted) {
  // The platform took the message: sending it again would reach the user twice.
  WhatsAppAdapter adapter(channel, transport);
  transport->answer(200, "not json");
  const SendResult result = adapter.send_message(text_message("1", "x"));
  EXPECT_EQ(result.outcome, Outcome::kAccepted);
  EXPECT_EQ(result.provider_message_id, "");
}

TEST_F(WhatsAppTest, DefaultBaseUrlAndVersion) {
  channel.settings.erase("base_url");
  WhatsAppAdapter adapter(channel, transport);
  transport->answer_json(200, {{"messages", {{{"id", "wamid.X"}}}}});
  adapter.send_message(text_message("1", "x"));
  EXPECT_EQ(transport->last().url, "https://graph.facebook.com/v21.0/1055/messages");
}

TEST_F(WhatsAppTest, ServerErrorAndTransportErrorAreRetried) {
  WhatsAppAdapter adapter(channel, transport);
  transport->answer_json(503, {{"error",
                                {{"message", "Service temporarily unavailable"},
                                 {"type", "OAuthException"},
                                 {"code", 2}}}});
  SendResult result = adapter.send_message(text_message("1", "x"));
  EXPECT_EQ(result.outcome, Outcome::kRetry);
  EXPECT_EQ(result.status_code, 503);
  EXPECT_NE(result.error.find("503"), std::string::npos) << result.error;
  EXPECT_NE(result.error.find("Service temporarily unavailable"), std::string::npos);

  transport->fail("Connection timed out after 7000 milliseconds");
  result = adapter.send_message(text_message("1", "x"));
  EXPECT_EQ(result.outcome, Outcome::kRetry);
  EXPECT_EQ(result.status_code, 0);
  EXPECT_NE(result.error.find("timed out"), std::string::npos) << result.error;
}

TEST_F(WhatsAppTest, ThrottlingIsRetriedAfterRetryAfter) {
  WhatsAppAdapter adapter(channel, transport);
  transport->answer(
      429, json{{"error", {{"message", "(#130429) Rate limit hit"}, {"code", 130429}}}}.dump(),
      {{"retry-after", "3"}});
  SendResult result = adapter.send_message(text_message("1", "x"));
  EXPECT_EQ(result.outcome, Outcome::kRetry);
  EXPECT_EQ(result.retry_after_ms, 3000u);

  // Graph's throttling codes come with other statuses too.
  transport->answer_json(400, {{"error", {{"message", "(#80007) Rate limit"}, {"code", 80007}}}});
  EXPECT_EQ(adapter.send_message(text_message("1", "x")).outcome, Outcome::kRetry);
  transport->answer_json(403, {{"error", {{"message", "(#4) App limit"}, {"code", 4}}}});
  EXPECT_EQ(adapter.send_message(text_message("1", "x")).outcome, Outcome::kRetry);
}

TEST_F(WhatsAppTest, ClientErrorsAreRejectedWithTheGraphMessage) {
  WhatsAppAdapter adapter(channel, transport);
  transport->answer_json(
      400,
      {{"error",
        {{"message", "(#100) Invalid parameter"}, {"type", "OAuthException"}, {"code", 100}}}});
  SendResult result = adapter.send_message(text_message("nope", "x"));
  EXPECT_EQ(result.outcome, Outcome::kRejected);
  EXPECT_EQ(result.status_code, 400);
  EXPECT_NE(result.error.find("400"), std::string::npos) << result.error;
  EXPECT_NE(result.error.find("(#100) Invalid parameter"), std::string::npos) << result.error;

  transport->answer_json(401, {{"error",
                                {{"message", "Error validating access token"},
                                 {"type", "OAuthException"},
                                 {"code", 190}}}});
  result = adapter.send_message(text_message("1", "x"));
  EXPECT_EQ(result.outcome, Outcome::kRejected);
  EXPECT_EQ(result.status_code, 401);
  EXPECT_NE(result.error.find("Error validating access token"), std::string::npos);
}

TEST_F(WhatsAppTest, SubscriptionHandshake) {
  WhatsAppAdapter adapter(channel, transport);
  std::vector<InboundEvent> events;
  WebhookResponse response = adapter.on_webhook(
      get_request("/channels/wa/webhook?hub.mode=subscribe&hub.verify_token=hello-meta"
                  "&hub.challenge=1158201444"),
      events);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "1158201444");

  response = adapter.on_webhook(
      get_request("/channels/wa/webhook?hub.mode=subscribe&hub.verify_token=guess"
                  "&hub.challenge=1158201444"),
      events);
  EXPECT_EQ(response.status, 403);
  EXPECT_NE(response.body, "1158201444");
  EXPECT_TRUE(events.empty());
  EXPECT_TRUE(transport->requests().empty());
}

TEST_F(WhatsAppTest, HandshakeIsRefusedWithoutAConfiguredVerifyToken) {
  channel.settings.erase("verify_token");
  WhatsAppAdapter adapter(channel, transport);
  std::vector<InboundEvent> events;
  EXPECT_EQ(adapter
                .on_webhook(get_request("/w?hub.mode=subscribe&hub.verify_token=&hub.challenge=1"),
                            events)
                .status,
            403);
}

const char* const kWhatsAppWebhook = R"({
  "object": "whatsapp_business_account",
  "entry": [{
    "id": "WABA1",
    "changes": [{
      "field": "messages",
      "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001", "phone_number_id": "1055"},
        "contacts": [{"profile": {"name": "Ana"}, "wa_id": "5511999"}],
        "statuses": [
          {"id": "wamid.S1", "status": "sent", "timestamp": "1700000000", "recipient_id": "5511999"},
          {"id": "wamid.S1", "status": "delivered", "timestamp": "1700000001",
           "recipient_id": "5511999"},
          {"id": "wamid.S1", "status": "read", "timestamp": "1700000002", "recipient_id": "5511999"},
          {"id": "wamid.S2", "status": "failed", "timestamp": "1700000003",
           "recipient_id": "5511888",
           "errors": [{"code": 131026, "title": "Message undeliverable"}]}
        ],
        "messages": [
          {"from": "5511999", "id": "wamid.IN1", "timestamp": "1700000010", "type": "text",
           "text": {"body": "oi"}, "context": {"from": "15550001", "id": "wamid.S1"}},
          {"from": "5511999", "id": "wamid.IN2", "timestamp": "1700000011", "type": "document",
           "document": {"id": "media-77", "mime_type": "application/pdf", "caption": "here"}},
          {"from": "5511999", "id": "wamid.IN3", "timestamp": "1700000012", "type": "reaction",
           "reaction": {"message_id": "wamid.S1", "emoji": "+1"}}
        ]
      }
    }]
  }]
})";

TEST_F(WhatsAppTest, WebhookStatusesAndMessages) {
  WhatsAppAdapter adapter(channel, transport);
  std::vector<InboundEvent> events;
  const WebhookResponse response =
      adapter.on_webhook(signed_post(kWhatsAppWebhook, "s3cret"), events);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "EVENT_RECEIVED");
  ASSERT_EQ(events.size(), 5u);

  EXPECT_EQ(events[0].kind, InboundEvent::Kind::kStatus);
  EXPECT_EQ(events[0].state, "DELIVERED");
  EXPECT_EQ(events[0].provider_message_id, "wamid.S1");
  EXPECT_EQ(events[0].address, "5511999");
  EXPECT_EQ(events[0].at_ms, 1700000001000);
  EXPECT_EQ(events[1].state, "READ");
  EXPECT_EQ(events[1].at_ms, 1700000002000);
  EXPECT_EQ(events[2].state, "FAILED");
  EXPECT_EQ(events[2].provider_message_id, "wamid.S2");
  EXPECT_EQ(events[2].address, "5511888");
  EXPECT_NE(events[2].error.find("Message undeliverable"), std::string::npos) << events[2].error;

  EXPECT_EQ(events[3].kind, InboundEvent::Kind::kMessage);
  EXPECT_EQ(events[3].address, "5511999");
  EXPECT_EQ(events[3].provider_message_id, "wamid.IN1");
  EXPECT_EQ(events[3].text, "oi");
  EXPECT_EQ(events[3].reply_to_provider_message_id, "wamid.S1");
  EXPECT_EQ(events[3].at_ms, 1700000010000);

  EXPECT_EQ(events[4].kind, InboundEvent::Kind::kMessage);
  EXPECT_EQ(events[4].provider_message_id, "wamid.IN2");
  EXPECT_EQ(events[4].file_id, "media-77");
  EXPECT_EQ(events[4].text, "here");
  EXPECT_EQ(events[4].reply_to_provider_message_id, "");
}

TEST_F(WhatsAppTest, WebhookWithWrongOrMissingSignatureIsRefusedAndEmitsNothing) {
  WhatsAppAdapter adapter(channel, transport);
  std::vector<InboundEvent> events;
  WebhookRequest wrong = signed_post(kWhatsAppWebhook, "not-the-secret");
  EXPECT_EQ(adapter.on_webhook(wrong, events).status, 401);
  WebhookRequest tampered = signed_post(kWhatsAppWebhook, "s3cret");
  tampered.body[tampered.body.size() - 2] = ' ';
  EXPECT_EQ(adapter.on_webhook(tampered, events).status, 401);
  WebhookRequest missing = signed_post(kWhatsAppWebhook, "s3cret");
  missing.headers.erase("x-hub-signature-256");
  EXPECT_EQ(adapter.on_webhook(missing, events).status, 401);
  EXPECT_TRUE(events.empty());
}

// The signature is checked over the raw bytes before anything is parsed: a stranger's body,
// however malformed, gets the same 401 as a well-formed one and never reaches the JSON parser.
TEST_F(WhatsAppTest, TheSignatureIsCheckedBeforeTheBodyIsParsed) {
  WhatsAppAdapter adapter(channel, transport);
  std::vector<InboundEvent> events;
  for (const std::string& body :
       std::vector<std::string>{"{\"object\":", "[1,2]", "", std::string(4096, '{')}) {
    WebhookRequest unsigned_post = signed_post(body, "s3cret");
    unsigned_post.headers.erase("x-hub-signature-256");
    EXPECT_EQ(adapter.on_webhook(unsigned_post, events).status, 401) << body.substr(0, 20);
    EXPECT_EQ(adapter.on_webhook(signed_post(body, "not-the-secret"), events).status, 401);
  }
  // A signature made for other bytes (another webhook replayed with this one's header).
  WebhookRequest swapped = signed_post("{\"object\":\"whatsapp_business_account\"}", "s3cret");
  swapped.headers["x-hub-signature-256"] = hub_signature("s3cret", kWhatsAppWebhook);
  EXPECT_EQ(adapter.on_webhook(swapped, events).status, 401);
  EXPECT_TRUE(events.empty());
}

TEST_F(WhatsAppTest, MalformedJsonIs400) {
  WhatsAppAdapter adapter(channel, transport);
  std::vector<InboundEvent> events;
  EXPECT_EQ(adapter.on_webhook(signed_post("{\"object\":", "s3cret"), events).status, 400);
  EXPECT_EQ(adapter.on_webhook(signed_post("[1,2]", "s3cret"), events).status, 400);
  EXPECT_TRUE(events.empty());
}

TEST_F(WhatsAppTest, UnexpectedShapesAreIgnoredNotFatal) {
  WhatsAppAdapter adapter(channel, transport);
  std::vector<InboundEvent> events;
  for (const char* body :
       {R"({"object":"page","entry":[]})", R"({"object":"whatsapp_business_account","entry":7})",
        R"({"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages",
            "value":{"statuses":[{"status":"read"}],"messages":[{"type":"text","text":5}]}}]}]})"}) {
    EXPECT_EQ(adapter.on_webhook(signed_post(body, "s3cret"), events).status, 200) << body;
  }
  EXPECT_TRUE(events.empty());
}

// ---------------------------------------------------------------------------------------------
// Instagram Messaging

class InstagramTest : public ::testing::Test {
 protected:
  ChannelSpec channel = channel_of("instagram", {{"base_url", "http://sim:9000"},
                                                 {"ig_user_id", "17841400000"},
                                                 {"access_token", "IGtoken"},
                                                 {"app_secret", "ig-secret"},
                                                 {"verify_token", "hello-ig"}});
  std::shared_ptr<FakeTransport> transport = std::make_shared<FakeTransport>();
};

TEST_F(InstagramTest, SendsTextAndFile) {
  channel.settings["document_link_prefix"] = "https://files.example/f/";
  InstagramAdapter adapter(channel, transport);
  transport->answer_json(200, {{"recipient_id", "IGSID1"}, {"message_id", "aWdfZAG1"}});
  SendResult result = adapter.send_message(text_message("IGSID1", "hi"));
  EXPECT_EQ(result.outcome, Outcome::kAccepted);
  EXPECT_EQ(result.provider_message_id, "aWdfZAG1");
  EXPECT_FALSE(result.delivered);
  ProviderRequest request = transport->last();
  EXPECT_EQ(request.url, "http://sim:9000/v21.0/17841400000/messages");
  EXPECT_EQ(header_of(request, "Authorization"), "Bearer IGtoken");
  EXPECT_EQ(body_of(request),
            (json{{"recipient", {{"id", "IGSID1"}}}, {"message", {{"text", "hi"}}}}));

  transport->answer_json(200, {{"recipient_id", "IGSID1"}, {"message_id", "aWdfZAG2"}});
  result = adapter.send_file(file_message("IGSID1", "file-9"));
  EXPECT_EQ(result.provider_message_id, "aWdfZAG2");
  EXPECT_EQ(
      body_of(transport->last()),
      (json{{"recipient", {{"id", "IGSID1"}}},
            {"message",
             {{"attachment",
               {{"type", "file"}, {"payload", {{"url", "https://files.example/f/file-9"}}}}}}}}));
}

TEST_F(InstagramTest, DefaultsToMe) {
  channel.settings.erase("ig_user_id");
  channel.settings.erase("base_url");
  InstagramAdapter adapter(channel, transport);
  transport->answer_json(200, {{"message_id", "m"}});
  adapter.send_message(text_message("IGSID1", "hi"));
  EXPECT_EQ(transport->last().url, "https://graph.facebook.com/v21.0/me/messages");
}

TEST_F(InstagramTest, ErrorsAreClassified) {
  InstagramAdapter adapter(channel, transport);
  transport->answer_json(500, {{"error", {{"message", "An unknown error"}, {"code", 1}}}});
  EXPECT_EQ(adapter.send_message(text_message("a", "x")).outcome, Outcome::kRetry);
  transport->answer(429, "{}", {{"retry-after", "12"}});
  SendResult result = adapter.send_message(text_message("a", "x"));
  EXPECT_EQ(result.outcome, Outcome::kRetry);
  EXPECT_EQ(result.retry_after_ms, 12000u);
  transport->fail("Could not connect");
  EXPECT_EQ(adapter.send_message(text_message("a", "x")).outcome, Outcome::kRetry);
  transport->answer_json(400, {{"error", {{"message", "No matching user found"}, {"code", 100}}}});
  result = adapter.send_message(text_message("a", "x"));
  EXPECT_EQ(result.outcome, Outcome::kRejected);
  EXPECT_NE(result.error.find("No matching user found"), std::string::npos) << result.error;
  transport->answer_json(401, {{"error", {{"message", "Invalid OAuth"}, {"code", 190}}}});
  EXPECT_EQ(adapter.send_message(text_message("a", "x")).outcome, Outcome::kRejected);
}

const char* const kInstagramWebhook = R"({
  "object": "instagram",
  "entry": [{
    "id": "17841400000", "time": 1700000000000,
    "messaging": [
      {"sender": {"id": "IGSID1"}, "recipient": {"id": "17841400000"}, "timestamp": 1700000000100,
       "delivery": {"mids": ["aWdfZAG1", "aWdfZAG2"], "watermark": 1700000000000}},
      {"sender": {"id": "IGSID1"}, "recipient": {"id": "17841400000"}, "timestamp": 1700000000200,
       "read": {"mid": "aWdfZAG2"}},
      {"sender": {"id": "IGSID1"}, "recipient": {"id": "17841400000"}, "timestamp": 1700000000300,
       "message": {"mid": "aWdfIN1", "text": "hey", "reply_to": {"mid": "aWdfZAG1"}}},
      {"sender": {"id": "17841400000"}, "recipient": {"id": "IGSID1"}, "timestamp": 1700000000400,
       "message": {"mid": "aWdfZAG3", "text": "our own", "is_echo": true}},
      {"sender": {"id": "IGSID1"}, "recipient": {"id": "17841400000"}, "timestamp": 1700000000500,
       "message": {"mid": "aWdfIN2",
                   "attachments": [{"type": "file", "payload": {"url": "https://cdn/x.pdf"}}]}}
    ]
  }]
})";

TEST_F(InstagramTest, WebhookDeliveriesReadsAndMessagesSkippingEchoes) {
  InstagramAdapter adapter(channel, transport);
  std::vector<InboundEvent> events;
  const WebhookResponse response =
      adapter.on_webhook(signed_post(kInstagramWebhook, "ig-secret"), events);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "EVENT_RECEIVED");
  ASSERT_EQ(events.size(), 5u);
  for (int i : {0, 1}) {
    EXPECT_EQ(events[i].kind, InboundEvent::Kind::kStatus);
    EXPECT_EQ(events[i].state, "DELIVERED");
    EXPECT_EQ(events[i].address, "IGSID1");
    EXPECT_EQ(events[i].at_ms, 1700000000100);
  }
  EXPECT_EQ(events[0].provider_message_id, "aWdfZAG1");
  EXPECT_EQ(events[1].provider_message_id, "aWdfZAG2");
  EXPECT_EQ(events[2].state, "READ");
  EXPECT_EQ(events[2].provider_message_id, "aWdfZAG2");
  EXPECT_EQ(events[2].address, "IGSID1");

  EXPECT_EQ(events[3].kind, InboundEvent::Kind::kMessage);
  EXPECT_EQ(events[3].address, "IGSID1");
  EXPECT_EQ(events[3].provider_message_id, "aWdfIN1");
  EXPECT_EQ(events[3].text, "hey");
  EXPECT_EQ(events[3].reply_to_provider_message_id, "aWdfZAG1");
  EXPECT_EQ(events[3].at_ms, 1700000000300);

  EXPECT_EQ(events[4].provider_message_id, "aWdfIN2");
  EXPECT_EQ(events[4].file_id, "https://cdn/x.pdf");
  EXPECT_EQ(events[4].text, "");
}

TEST_F(InstagramTest, WebhookSignatureHandshakeAndMalformedBody) {
  InstagramAdapter adapter(channel, transport);
  std::vector<InboundEvent> events;
  EXPECT_EQ(adapter.on_webhook(signed_post(kInstagramWebhook, "s3cret"), events).status, 401);
  WebhookRequest missing = signed_post(kInstagramWebhook, "ig-secret");
  missing.headers.clear();
  EXPECT_EQ(adapter.on_webhook(missing, events).status, 401);
  EXPECT_EQ(adapter.on_webhook(signed_post("not json", "ig-secret"), events).status, 400);
  EXPECT_TRUE(events.empty());

  WebhookResponse response = adapter.on_webhook(
      get_request("/w?hub.mode=subscribe&hub.challenge=abc&hub.verify_token=hello-ig"), events);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "abc");
  EXPECT_EQ(adapter
                .on_webhook(get_request("/w?hub.mode=unsubscribe&hub.challenge=abc"
                                        "&hub.verify_token=hello-ig"),
                            events)
                .status,
            403);
  WebhookRequest put = signed_post(kInstagramWebhook, "ig-secret");
  put.method = "PUT";
  EXPECT_EQ(adapter.on_webhook(put, events).status, 405);
  EXPECT_TRUE(events.empty());
}

// ---------------------------------------------------------------------------------------------
// Telegram Bot API

class TelegramTest : public ::testing::Test {
 protected:
  std::unique_ptr<TelegramAdapter> make() {
    return std::make_unique<TelegramAdapter>(channel, transport, [this](std::uint32_t duration_ms) {
      pauses_ms.push_back(duration_ms);
    });
  }

  ChannelSpec channel =
      channel_of("telegram", {{"base_url", "http://sim:9000"}, {"bot_token", "123:ABC"}});
  std::shared_ptr<FakeTransport> transport = std::make_shared<FakeTransport>();
  std::vector<std::uint32_t> pauses_ms;
};

json sent_message(std::int64_t chat_id, std::int64_t message_id) {
  return {{"ok", true},
          {"result",
           {{"message_id", message_id},
            {"date", 1700000000},
            {"chat", {{"id", chat_id}, {"type", "private"}}},
            {"text", "x"}}}};
}

TEST_F(TelegramTest, SendsTextWithIntegerOrStringChatId) {
  auto adapter = make();
  transport->answer_json(200, sent_message(424242, 17));
  SendResult result = adapter->send_message(text_message("424242", "hello"));
  EXPECT_EQ(result.outcome, Outcome::kAccepted);
  EXPECT_EQ(result.provider_message_id, "424242:17");
  EXPECT_TRUE(result.delivered);
  ProviderRequest request = transport->last();
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.url, "http://sim:9000/bot123:ABC/sendMessage");
  EXPECT_EQ(header_of(request, "Content-Type"), "application/json");
  EXPECT_EQ(request.timeout_ms, 7000u);
  EXPECT_EQ(body_of(request), (json{{"chat_id", 424242}, {"text", "hello"}}));
  EXPECT_TRUE(body_of(request)["chat_id"].is_number_integer());

  transport->answer_json(200, sent_message(-1001234567890, 5));
  adapter->send_message(text_message("-1001234567890", "to a channel"));
  EXPECT_EQ(body_of(transport->last())["chat_id"], -1001234567890);

  // A username: sent as a string; the id names the message by the numeric chat id Telegram
  // answers with, the one inbound replies carry.
  transport->answer_json(200, sent_message(-100777, 9));
  result = adapter->send_message(text_message("@chat4all_news", "news"));
  EXPECT_EQ(body_of(transport->last()), (json{{"chat_id", "@chat4all_news"}, {"text", "news"}}));
  EXPECT_EQ(result.provider_message_id, "-100777:9");
}

TEST_F(TelegramTest, SendsDocument) {
  channel.settings["document_link_prefix"] = "https://files.example/f/";
  auto adapter = make();
  transport->answer_json(200, sent_message(42, 18));
  const SendResult result = adapter->send_file(file_message("42", "file-1"));
  EXPECT_EQ(result.provider_message_id, "42:18");
  EXPECT_TRUE(result.delivered);
  EXPECT_EQ(transport->last().url, "http://sim:9000/bot123:ABC/sendDocument");
  EXPECT_EQ(body_of(transport->last()),
            (json{{"chat_id", 42}, {"document", "https://files.example/f/file-1"}}));
}

TEST_F(TelegramTest, FailuresAreClassified) {
  auto adapter = make();
  transport->answer_json(429, {{"ok", false},
                               {"error_code", 429},
                               {"description", "Too Many Requests: retry after 5"},
                               {"parameters", {{"retry_after", 5}}}});
  SendResult result = adapter->send_message(text_message("42", "x"));
  EXPECT_EQ(result.outcome, Outcome::kRetry);
  EXPECT_EQ(result.retry_after_ms, 5000u);
  EXPECT_EQ(result.status_code, 429);

  transport->answer_json(502, {{"ok", false}, {"error_code", 502}, {"description", "Bad Gateway"}});
  EXPECT_EQ(adapter->send_message(text_message("42", "x")).outcome, Outcome::kRetry);
  transport->fail("Operation timed out");
  EXPECT_EQ(adapter->send_message(text_message("42", "x")).outcome, Outcome::kRetry);

  transport->answer_json(
      400, {{"ok", false}, {"error_code", 400}, {"description", "Bad Request: chat not found"}});
  result = adapter->send_message(text_message("42", "x"));
  EXPECT_EQ(result.outcome, Outcome::kRejected);
  EXPECT_NE(result.error.find("Bad Request: chat not found"), std::string::npos) << result.error;
  transport->answer_json(
      403, {{"ok", false}, {"error_code", 403}, {"description", "Forbidden: bot was blocked"}});
  EXPECT_EQ(adapter->send_message(text_message("42", "x")).outcome, Outcome::kRejected);
  transport->answer_json(401,
                         {{"ok", false}, {"error_code", 401}, {"description", "Unauthorized"}});
  result = adapter->send_message(text_message("42", "x"));
  EXPECT_EQ(result.outcome, Outcome::kRejected);
  EXPECT_EQ(result.error.find("123:ABC"), std::string::npos) << "the token must not leak";
}

TEST_F(TelegramTest, ConnectWithPollingDeletesTheWebhook) {
  auto adapter = make();
  transport->answer_json(200, {{"ok", true}, {"result", {{"id", 123}, {"is_bot", true}}}});
  transport->answer_json(200, {{"ok", true}, {"result", true}});
  adapter->connect();
  const auto requests = transport->requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].url, "http://sim:9000/bot123:ABC/getMe");
  EXPECT_EQ(requests[1].url, "http://sim:9000/bot123:ABC/deleteWebhook");
}

TEST_F(TelegramTest, ConnectWithWebhookSetsIt) {
  channel.settings["updates"] = "webhook";
  channel.settings["webhook_url"] = "https://chat4all.example/channels/tg/webhook";
  channel.settings["secret_token"] = "tg-secret";
  auto adapter = make();
  transport->answer_json(200, {{"ok", true}, {"result", {{"id", 123}}}});
  transport->answer_json(200, {{"ok", true}, {"result", true}});
  adapter->connect();
  const auto requests = transport->requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[1].url, "http://sim:9000/bot123:ABC/setWebhook");
  const json body = body_of(requests[1]);
  EXPECT_EQ(body["url"], "https://chat4all.example/channels/tg/webhook");
  EXPECT_EQ(body["secret_token"], "tg-secret");
  EXPECT_EQ(body["allowed_updates"], json::array({"message"}));
}

TEST_F(TelegramTest, ConnectThrowsWithTheDescription) {
  auto adapter = make();
  transport->answer_json(401,
                         {{"ok", false}, {"error_code", 401}, {"description", "Unauthorized"}});
  try {
    adapter->connect();
    FAIL() << "connect() should throw";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("Unauthorized"), std::string::npos) << error.what();
  }
  EXPECT_EQ(transport->requests().size(), 1u);  // nothing after a failed getMe
  transport->fail("Could not resolve host");
  EXPECT_THROW(adapter->connect(), std::runtime_error);
}

const char* const kTelegramUpdates = R"({"ok": true, "result": [
  {"update_id": 1000,
   "message": {"message_id": 20, "date": 1700000100,
               "chat": {"id": 424242, "type": "private"}, "from": {"id": 424242},
               "text": "reply!", "reply_to_message": {"message_id": 17, "chat": {"id": 424242}}}},
  {"update_id": 1001,
   "message": {"message_id": 21, "date": 1700000101, "chat": {"id": 424242, "type": "private"},
               "document": {"file_id": "BQACAgI", "file_name": "a.pdf"}, "caption": "the pdf"}},
  {"update_id": 1002,
   "message": {"message_id": 22, "date": 1700000102, "chat": {"id": -100777, "type": "group"},
               "new_chat_members": [{"id": 5}]}}
]})";

TEST_F(TelegramTest, PollingMapsUpdatesAndAdvancesTheOffset) {
  auto adapter = make();
  transport->answer(200, kTelegramUpdates);
  std::vector<InboundEvent> events;
  EXPECT_TRUE(adapter->poll_updates(events));
  ProviderRequest request = transport->last();
  EXPECT_EQ(request.url, "http://sim:9000/bot123:ABC/getUpdates");
  EXPECT_EQ(body_of(request),
            (json{{"offset", 0}, {"timeout", 25}, {"allowed_updates", json::array({"message"})}}));
  EXPECT_GT(request.timeout_ms, 25'000u);

  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, InboundEvent::Kind::kMessage);
  EXPECT_EQ(events[0].address, "424242");
  EXPECT_EQ(events[0].provider_message_id, "424242:20");
  EXPECT_EQ(events[0].text, "reply!");
  // The id send_message returned for the message replied to.
  EXPECT_EQ(events[0].reply_to_provider_message_id, "424242:17");
  EXPECT_EQ(events[0].at_ms, 1700000100000);
  EXPECT_EQ(events[1].provider_message_id, "424242:21");
  EXPECT_EQ(events[1].file_id, "BQACAgI");
  EXPECT_EQ(events[1].text, "the pdf");
  EXPECT_EQ(adapter->next_update_offset(), 1003);

  transport->answer_json(200, {{"ok", true}, {"result", json::array()}});
  events.clear();
  EXPECT_TRUE(adapter->poll_updates(events));
  EXPECT_TRUE(events.empty());
  EXPECT_EQ(body_of(transport->last())["offset"], 1003);
  EXPECT_EQ(adapter->next_update_offset(), 1003);
  EXPECT_TRUE(pauses_ms.empty());
}

TEST_F(TelegramTest, PollingPausesAfterFailures) {
  channel.settings["poll_timeout_s"] = "3";
  auto adapter = make();
  std::vector<InboundEvent> events;
  transport->fail("Connection refused");
  EXPECT_TRUE(adapter->poll_updates(events));
  EXPECT_EQ(transport->last().timeout_ms, 3000 + TelegramAdapter::kPollTransportMarginMs);
  transport->answer_json(409, {{"ok", false},
                               {"error_code", 409},
                               {"description",
                                "Conflict: can't use getUpdates method while "
                                "webhook is active"}});
  EXPECT_TRUE(adapter->poll_updates(events));
  transport->answer_json(429, {{"ok", false},
                               {"error_code", 429},
                               {"description", "Too Many Requests"},
                               {"parameters", {{"retry_after", 4}}}});
  EXPECT_TRUE(adapter->poll_updates(events));
  EXPECT_TRUE(events.empty());
  EXPECT_EQ(pauses_ms, (std::vector<std::uint32_t>{1000, 1000, 4000}));
  EXPECT_EQ(adapter->next_update_offset(), 0);
}

TEST_F(TelegramTest, NoPollingUnlessConfigured) {
  for (const char* mode : {"none", "webhook"}) {
    channel.settings["updates"] = mode;
    channel.settings["webhook_url"] = "https://x.example/hook";
    channel.settings["secret_token"] = "tg-secret";
    auto adapter = make();
    std::vector<InboundEvent> events;
    EXPECT_FALSE(adapter->poll_updates(events)) << mode;
  }
  EXPECT_TRUE(transport->requests().empty());
}

TEST_F(TelegramTest, WebhookChecksTheSecretAndMapsTheUpdate) {
  channel.settings["updates"] = "webhook";
  channel.settings["webhook_url"] = "https://x.example/hook";
  channel.settings["secret_token"] = "tg-secret";
  auto adapter = make();
  const json update = json::parse(kTelegramUpdates)["result"][0];
  WebhookRequest request;
  request.method = "POST";
  request.target = "/channels/tg/webhook";
  request.body = update.dump();
  std::vector<InboundEvent> events;

  EXPECT_EQ(adapter->on_webhook(request, events).status, 401);  // missing
  request.headers["x-telegram-bot-api-secret-token"] = "tg-secreT";
  EXPECT_EQ(adapter->on_webhook(request, events).status, 401);  // wrong
  EXPECT_TRUE(events.empty());

  request.headers["x-telegram-bot-api-secret-token"] = "tg-secret";
  const WebhookResponse response = adapter->on_webhook(request, events);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "ok");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].provider_message_id, "424242:20");
  EXPECT_EQ(events[0].reply_to_provider_message_id, "424242:17");

  events.clear();
  request.body = "{not json";
  EXPECT_EQ(adapter->on_webhook(request, events).status, 400);
  EXPECT_TRUE(events.empty());
  EXPECT_TRUE(transport->requests().empty());
}

TEST_F(TelegramTest, TheSecretIsCheckedBeforeTheBodyIsParsed) {
  channel.settings["updates"] = "webhook";
  channel.settings["webhook_url"] = "https://x.example/hook";
  channel.settings["secret_token"] = "tg-secret";
  auto adapter = make();
  WebhookRequest request;
  request.method = "POST";
  request.body = "{not json";
  std::vector<InboundEvent> events;
  EXPECT_EQ(adapter->on_webhook(request, events).status, 401);  // not 400: never parsed
  request.headers["x-telegram-bot-api-secret-token"] = "";
  EXPECT_EQ(adapter->on_webhook(request, events).status, 401);
  request.headers["x-telegram-bot-api-secret-token"] = "tg-secret-and-more";
  EXPECT_EQ(adapter->on_webhook(request, events).status, 401);
  request.headers["x-telegram-bot-api-secret-token"] = "tg-secret";
  EXPECT_EQ(adapter->on_webhook(request, events).status, 400);
  EXPECT_TRUE(events.empty());
}

// Without a secret token a webhook channel would take updates from anyone who learns its URL:
// such a channel does not start.
TEST_F(TelegramTest, AWebhookChannelNeedsAWellFormedSecretToken) {
  channel.settings["updates"] = "webhook";
  channel.settings["webhook_url"] = "https://x.example/hook";
  for (const std::string& token :
       std::vector<std::string>{"", "with space", "semi;colon", "\xc3\xa9t\xc3\xa9",
                                std::string(TelegramAdapter::kSecretTokenBytesMax + 1, 'a')}) {
    if (token.empty())
      channel.settings.erase("secret_token");
    else
      channel.settings["secret_token"] = token;
    try {
      make();
      FAIL() << "accepted secret_token '" << token << "'";
    } catch (const AdapterConfigError& error) {
      EXPECT_NE(std::string(error.what()).find("secret_token"), std::string::npos) << error.what();
    }
  }
  channel.settings["secret_token"] = "A-z_09" + std::string(250, 'x');
  EXPECT_NO_THROW(make());
  // Polling needs none: nothing is posted to the connector.
  channel.settings["updates"] = "polling";
  channel.settings.erase("secret_token");
  EXPECT_NO_THROW(make());
}

TEST_F(TelegramTest, WebhookIsRefusedWhenPolling) {
  auto adapter = make();
  WebhookRequest request;
  request.method = "POST";
  request.body = "{}";
  std::vector<InboundEvent> events;
  EXPECT_EQ(adapter->on_webhook(request, events).status, 404);
}

TEST_F(TelegramTest, ConfigurationErrors) {
  channel.settings["updates"] = "webhook";
  try {
    make();
    FAIL() << "webhook without webhook_url";
  } catch (const AdapterConfigError& error) {
    EXPECT_NE(std::string(error.what()).find("webhook_url"), std::string::npos) << error.what();
  }
  channel.settings["updates"] = "sometimes";
  EXPECT_THROW(make(), AdapterConfigError);
  channel.settings["updates"] = "polling";
  channel.settings["poll_timeout_s"] = "soon";
  EXPECT_THROW(make(), AdapterConfigError);
}

// ---------------------------------------------------------------------------------------------
// The registry

TEST(AdapterRegistry, MakesEachTypeFromAChannelSpec) {
  const auto types = registered_adapter_types();
  for (const char* type : {"whatsapp", "instagram", "telegram"})
    EXPECT_NE(std::find(types.begin(), types.end(), type), types.end()) << type;

  EXPECT_NE(
      dynamic_cast<WhatsAppAdapter*>(make_adapter(channel_of("whatsapp", {{"phone_number_id", "1"},
                                                                          {"access_token", "t"},
                                                                          {"app_secret", "s"}}))
                                         .get()),
      nullptr);
  EXPECT_NE(dynamic_cast<InstagramAdapter*>(
                make_adapter(channel_of("instagram", {{"access_token", "t"}, {"app_secret", "s"}}))
                    .get()),
            nullptr);
  EXPECT_NE(dynamic_cast<TelegramAdapter*>(
                make_adapter(channel_of("telegram", {{"bot_token", "1:x"}})).get()),
            nullptr);
}

void expect_missing(const ChannelSpec& channel, const std::string& key) {
  try {
    make_adapter(channel);
    ADD_FAILURE() << channel.adapter << " without " << key << " was made";
  } catch (const AdapterConfigError& error) {
    EXPECT_NE(std::string(error.what()).find("settings." + key), std::string::npos) << error.what();
  }
}

TEST(AdapterRegistry, MissingRequiredSettingsAreNamed) {
  const std::map<std::string, std::string> whatsapp{
      {"phone_number_id", "1"}, {"access_token", "t"}, {"app_secret", "s"}};
  for (const auto& [key, unused] : whatsapp) {
    auto settings = whatsapp;
    settings.erase(key);
    expect_missing(channel_of("whatsapp", settings), key);
  }
  expect_missing(channel_of("instagram", {{"app_secret", "s"}}), "access_token");
  expect_missing(channel_of("instagram", {{"access_token", "t"}}), "app_secret");
  expect_missing(channel_of("telegram", {}), "bot_token");
  expect_missing(channel_of("telegram", {{"bot_token", "1:x"}, {"updates", "webhook"}}),
                 "webhook_url");
  expect_missing(channel_of("telegram", {{"bot_token", "1:x"},
                                         {"updates", "webhook"},
                                         {"webhook_url", "https://x.example/hook"}}),
                 "secret_token");
}

// ---------------------------------------------------------------------------------------------
// CurlTransport against a loopback server

// Accepts one connection on 127.0.0.1, reads one request (head and Content-Length body), answers
// `reply` and closes. Bounded: gives up after two seconds without a client.
class OneShotHttpServer {
 public:
  explicit OneShotHttpServer(std::string reply) : reply_(std::move(reply)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (listen_fd_ < 0 ||
        ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(listen_fd_, 1) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0)
      throw std::runtime_error("cannot listen on 127.0.0.1");
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~OneShotHttpServer() {
    if (thread_.joinable()) thread_.join();
    ::close(listen_fd_);
  }

  std::string url(const std::string& target) const {
    return "http://127.0.0.1:" + std::to_string(port_) + target;
  }
  // What the client sent; waits for the server's one exchange to end.
  std::string request() {
    if (thread_.joinable()) thread_.join();
    return request_;
  }

 private:
  void serve() {
    pollfd waiting{listen_fd_, POLLIN, 0};
    if (::poll(&waiting, 1, 2000) <= 0) return;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    std::string buffer;
    char chunk[4096];
    std::size_t wanted = std::string::npos;
    while (buffer.size() < wanted) {
      pollfd readable{fd, POLLIN, 0};
      if (::poll(&readable, 1, 2000) <= 0) break;
      const ssize_t got = ::recv(fd, chunk, sizeof chunk, 0);
      if (got <= 0) break;
      buffer.append(chunk, static_cast<std::size_t>(got));
      const auto head_end = buffer.find("\r\n\r\n");
      if (wanted == std::string::npos && head_end != std::string::npos) {
        std::size_t content_length = 0;
        const auto at = buffer.find("Content-Length: ");
        if (at != std::string::npos && at < head_end)
          content_length = std::stoul(buffer.substr(at + 16));
        wanted = head_end + 4 + content_length;
      }
    }
    request_ = buffer;
    std::size_t sent = 0;
    while (sent < reply_.size()) {
      const ssize_t wrote = ::send(fd, reply_.data() + sent, reply_.size() - sent, MSG_NOSIGNAL);
      if (wrote <= 0) break;
      sent += static_cast<std::size_t>(wrote);
    }
    ::close(fd);
  }

  std::string reply_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::string request_;
  std::thread thread_;
};

TEST(CurlTransport, PostsAndReadsStatusBodyAndHeaders) {
  const std::string body = R"({"error":{"message":"slow down","code":4}})";
  OneShotHttpServer server(
      "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
      "Retry-After: 9\r\nX-FB-Trace-ID: AbC\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
  CurlTransport transport;
  ProviderRequest request;
  request.method = "POST";
  request.url = server.url("/v21.0/1055/messages");
  request.headers = {{"Authorization", "Bearer tok"}, {"Content-Type", "application/json"}};
  request.body = R"({"to":"1"})";
  request.timeout_ms = 3000;
  const ProviderResponse response = transport.perform(request);
  EXPECT_EQ(response.status, 429);
  EXPECT_EQ(response.body, body);
  EXPECT_EQ(response.header("retry-after"), "9");
  EXPECT_EQ(response.header("x-fb-trace-id"), "AbC");
  EXPECT_EQ(response.header("content-type"), "application/json");
  EXPECT_TRUE(response.error.empty()) << response.error;
  EXPECT_EQ(retry_after_header_ms(response), 9000u);

  const std::string received = server.request();
  EXPECT_EQ(received.rfind("POST /v21.0/1055/messages HTTP/1.1\r\n", 0), 0u) << received;
  EXPECT_NE(received.find("Authorization: Bearer tok\r\n"), std::string::npos) << received;
  EXPECT_NE(received.find("Content-Type: application/json\r\n"), std::string::npos);
  EXPECT_EQ(received.substr(received.size() - request.body.size()), request.body);
}

TEST(CurlTransport, DoesNotFollowRedirects) {
  OneShotHttpServer server(
      "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/elsewhere\r\nContent-Length: 0\r\n"
      "Connection: close\r\n\r\n");
  CurlTransport transport;
  ProviderRequest request;
  request.method = "GET";
  request.url = server.url("/moved");
  request.timeout_ms = 3000;
  const ProviderResponse response = transport.perform(request);
  EXPECT_EQ(response.status, 302);
  EXPECT_EQ(response.header("location"), "http://127.0.0.1:1/elsewhere");
  EXPECT_EQ(server.request().rfind("GET /moved HTTP/1.1\r\n", 0), 0u);
}

TEST(CurlTransport, RefusesAnswersOverTheBound) {
  // Only the head is sent: the announced length alone is over the bound.
  OneShotHttpServer server(
      "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(kProviderResponseBytesMax + 1) +
      "\r\nConnection: close\r\n\r\n{\"messages\":");
  CurlTransport transport;
  ProviderRequest request;
  request.url = server.url("/big");
  request.body = "{}";
  request.timeout_ms = 3000;
  const ProviderResponse response = transport.perform(request);
  EXPECT_EQ(response.status, 0);
  EXPECT_TRUE(response.body.empty());
  EXPECT_NE(response.error.find("larger than"), std::string::npos) << response.error;
}

TEST(CurlTransport, StopsReadingAnUnannouncedAnswerAtTheBound) {
  // No length announced: the body runs until the server closes, and is cut while read.
  OneShotHttpServer server("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" +
                           std::string(kProviderResponseBytesMax + 1, 'x'));
  CurlTransport transport;
  ProviderRequest request;
  request.method = "GET";
  request.url = server.url("/endless");
  request.timeout_ms = 3000;
  const ProviderResponse response = transport.perform(request);
  EXPECT_EQ(response.status, 0);
  EXPECT_TRUE(response.body.empty());
  EXPECT_NE(response.error.find("larger than"), std::string::npos) << response.error;
}

TEST(CurlTransport, ConnectionRefusedIsAnErrorWithoutStatus) {
  // A port that was just free: bound, then closed without listening.
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  ::close(fd);

  CurlTransport transport;
  ProviderRequest request;
  request.url = "http://127.0.0.1:" + std::to_string(ntohs(address.sin_port)) + "/x";
  request.body = "{}";
  request.timeout_ms = 3000;
  const ProviderResponse response = transport.perform(request);
  EXPECT_EQ(response.status, 0);
  EXPECT_FALSE(response.error.empty());
  EXPECT_EQ(failed_send(response, false, 0, response.error).outcome, Outcome::kRetry);
}

}  // namespace
}  // namespace chat4all::connector
