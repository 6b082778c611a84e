#include "nodes/connector/adapters/telegram/telegram_adapter.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <utility>

namespace chat4all::connector {
namespace {

using nlohmann::json;

TelegramAdapter::UpdateMode update_mode_of(const ChannelSpec& channel) {
  const std::string mode = setting_or(channel, "updates", "polling");
  if (mode == "polling") return TelegramAdapter::UpdateMode::kPolling;
  if (mode == "webhook") return TelegramAdapter::UpdateMode::kWebhook;
  if (mode == "none") return TelegramAdapter::UpdateMode::kNone;
  throw AdapterConfigError("channel '" + channel.name +
                           "': settings.updates must be polling, webhook or none, not '" + mode +
                           "'");
}

std::uint32_t poll_timeout_s_of(const ChannelSpec& channel) {
  const long seconds = setting_number_or(channel, "poll_timeout_s", 25);
  if (seconds < 0 || seconds > TelegramAdapter::kPollTimeoutMaxS)
    throw AdapterConfigError("channel '" + channel.name + "': settings.poll_timeout_s must be 0.." +
                             std::to_string(TelegramAdapter::kPollTimeoutMaxS));
  return static_cast<std::uint32_t>(seconds);
}

// With updates: webhook the secret token is the only thing that tells Telegram's POSTs from a
// stranger's (the webhook URL is not a secret: it is in logs, proxies and DNS), so it is required
// there. Telegram itself takes 1..256 characters of A-Z a-z 0-9 _ - and refuses setWebhook
// otherwise; checking here names the setting at start instead.
std::string secret_token_of(const ChannelSpec& channel, TelegramAdapter::UpdateMode mode) {
  const std::string token = setting_or(channel, "secret_token", "");
  if (mode != TelegramAdapter::UpdateMode::kWebhook) return token;
  if (token.empty())
    throw AdapterConfigError("channel '" + channel.name +
                             "': settings.secret_token is required with updates: webhook (without "
                             "it anyone who learns the webhook URL can post updates)");
  const bool allowed = token.size() <= TelegramAdapter::kSecretTokenBytesMax &&
                       std::all_of(token.begin(), token.end(), [](char c) {
                         return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
                       });
  if (!allowed)
    throw AdapterConfigError("channel '" + channel.name + "': settings.secret_token must be 1.." +
                             std::to_string(TelegramAdapter::kSecretTokenBytesMax) +
                             " characters of A-Z, a-z, 0-9, _ and -");
  return token;
}

std::string without_trailing_slash(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

// A chat id as Telegram wants it: a number for numeric ids (users, groups, "-100..." channels),
// the text itself for "@channelusername".
json chat_id_of(const std::string& address) {
  std::int64_t id = 0;
  const char* end = address.data() + address.size();
  const auto [parsed_end, error] = std::from_chars(address.data(), end, id);
  if (!address.empty() && error == std::errc() && parsed_end == end) return id;
  return address;
}

// "ok":true answers only; anything else is a failure to classify.
bool answered_ok(const ProviderResponse& response, json& answer) {
  if (response.status < 200 || response.status > 299) return false;
  answer = json::parse(response.body, nullptr, false);
  return answer.is_object() && answer.contains("ok") && answer["ok"].is_boolean() &&
         answer["ok"].get<bool>();
}

// Telegram's description of a failure, e.g. "Bad Request: chat not found".
std::string describe_failure(const std::string& method, const ProviderResponse& response) {
  if (response.status == 0) return "telegram " + method + ": no answer: " + response.error;
  const json answer = json::parse(response.body, nullptr, false);
  std::string description = json_string(answer, "description");
  if (description.empty()) description = response.body.substr(0, 200);
  return "telegram " + method + ": HTTP " + std::to_string(response.status) + ": " + description;
}

// retry_after from {"parameters":{"retry_after":S}}, else the Retry-After header.
std::uint32_t retry_after_ms_of(const ProviderResponse& response) {
  const json answer = json::parse(response.body, nullptr, false);
  const std::int64_t seconds = json_integer(json_member(answer, "parameters"), "retry_after");
  return seconds > 0 ? retry_after_seconds_to_ms(seconds) : retry_after_header_ms(response);
}

}  // namespace

TelegramAdapter::TelegramAdapter(const ChannelSpec& channel)
    : TelegramAdapter(channel, std::make_shared<CurlTransport>()) {}

TelegramAdapter::TelegramAdapter(const ChannelSpec& channel,
                                 std::shared_ptr<ProviderTransport> transport, Pause pause)
    : base_url_(
          without_trailing_slash(setting_or(channel, "base_url", "https://api.telegram.org"))),
      bot_token_(setting(channel, "bot_token")),
      update_mode_(update_mode_of(channel)),
      poll_timeout_s_(poll_timeout_s_of(channel)),
      webhook_url_(update_mode_ == UpdateMode::kWebhook ? setting(channel, "webhook_url") : ""),
      secret_token_(secret_token_of(channel, update_mode_)),
      document_link_prefix_(setting_or(channel, "document_link_prefix", "")),
      timeout_ms_(channel.timeout_ms),
      transport_(std::move(transport)),
      pause_(pause ? std::move(pause) : Pause([](std::uint32_t duration_ms) {
        std::this_thread::sleep_for(std::chrono::milliseconds(duration_ms));
      })) {
  if (base_url_.empty())
    throw AdapterConfigError("channel '" + channel.name + "': settings.base_url is empty");
  if (transport_ == nullptr) throw std::invalid_argument("TelegramAdapter needs a transport");
}

ProviderResponse TelegramAdapter::call(const std::string& method, const json& body,
                                       std::uint32_t timeout_ms) const {
  ProviderRequest request;
  request.method = "POST";
  request.url = base_url_ + "/bot" + bot_token_ + "/" + method;
  request.headers = {{"Content-Type", "application/json"}};
  request.body = body.dump();
  request.timeout_ms = timeout_ms;
  return transport_->perform(request);
}

void TelegramAdapter::call_or_throw(const std::string& method, const json& body) const {
  const ProviderResponse response = call(method, body, timeout_ms_);
  json answer;
  if (!answered_ok(response, answer)) throw std::runtime_error(describe_failure(method, response));
}

void TelegramAdapter::connect() {
  call_or_throw("getMe", json::object());
  switch (update_mode_) {
    case UpdateMode::kWebhook: {
      json body{{"url", webhook_url_}, {"allowed_updates", json::array({"message"})}};
      body["secret_token"] = secret_token_;
      call_or_throw("setWebhook", body);
      break;
    }
    case UpdateMode::kPolling:
      // Pending updates stay queued at Telegram: getUpdates collects them next.
      call_or_throw("deleteWebhook", json::object());
      break;
    case UpdateMode::kNone:
      break;
  }
}

SendResult TelegramAdapter::send(const std::string& method, const OutboundMessage& message,
                                 json body) {
  body["chat_id"] = chat_id_of(message.address);
  const ProviderResponse response = call(method, body, timeout_ms_);
  json answer;
  if (!answered_ok(response, answer)) {
    const json failure = json::parse(response.body, nullptr, false);
    const bool rate_limited = json_integer(failure, "error_code") == 429;
    return failed_send(response, rate_limited, retry_after_ms_of(response),
                       describe_failure(method, response));
  }
  SendResult result;
  result.outcome = SendResult::Outcome::kAccepted;
  result.delivered = true;  // the Bot API reports no deliveries: accepted is final
  result.status_code = response.status;
  const json& sent = json_member(answer, "result");
  // The numeric chat id from the answer, so that "@channel" sends match inbound replies.
  std::string chat_id = json_string(json_member(sent, "chat"), "id");
  if (chat_id.empty()) chat_id = message.address;
  const std::string message_id = json_string(sent, "message_id");
  if (!message_id.empty()) result.provider_message_id = chat_id + ":" + message_id;
  return result;
}

SendResult TelegramAdapter::send_message(const OutboundMessage& message) {
  return send("sendMessage", message, json{{"text", message.text}});
}

SendResult TelegramAdapter::send_file(const OutboundMessage& message) {
  json body{{"document", document_link_prefix_ + message.file_id}};
  if (!message.text.empty()) body["caption"] = message.text;
  return send("sendDocument", message, std::move(body));
}

void TelegramAdapter::add_update(const json& update, std::vector<InboundEvent>& events) const {
  const json& message = json_member(update, "message");
  const std::string chat_id = json_string(json_member(message, "chat"), "id");
  const std::string message_id = json_string(message, "message_id");
  if (chat_id.empty() || message_id.empty()) return;
  InboundEvent event;
  event.kind = InboundEvent::Kind::kMessage;
  event.address = chat_id;
  event.provider_message_id = chat_id + ":" + message_id;
  event.at_ms = json_integer(message, "date") * 1000;
  event.text = json_string(message, "text");
  if (const json& document = json_member(message, "document"); document.is_object()) {
    event.file_id = json_string(document, "file_id");
    if (event.text.empty()) event.text = json_string(message, "caption");
  }
  const std::string replied_id =
      json_string(json_member(message, "reply_to_message"), "message_id");
  if (!replied_id.empty()) event.reply_to_provider_message_id = chat_id + ":" + replied_id;
  // Stickers, photos, service messages (members joining, ...): nothing we carry.
  if (event.text.empty() && event.file_id.empty()) return;
  events.push_back(std::move(event));
}

bool TelegramAdapter::poll_updates(std::vector<InboundEvent>& events) {
  if (update_mode_ != UpdateMode::kPolling) return false;
  const json body{{"offset", next_update_offset_},
                  {"timeout", poll_timeout_s_},
                  {"allowed_updates", json::array({"message"})}};
  const ProviderResponse response =
      call("getUpdates", body, poll_timeout_s_ * 1000 + kPollTransportMarginMs);
  json answer;
  if (!answered_ok(response, answer)) {
    const std::uint32_t retry_after_ms = retry_after_ms_of(response);
    pause_(retry_after_ms > 0 ? std::min(retry_after_ms, kPollRetryAfterMaxMs)
                              : kPollFailurePauseMs);
    return true;
  }
  for (const json& update : json_member(answer, "result")) {
    // Confirming an update (a later offset) makes Telegram forget it; the host stores the events
    // before it polls again, so an update is confirmed only once it is kept.
    const std::int64_t update_id = json_integer(update, "update_id");
    if (update_id > 0 && update_id >= next_update_offset_) next_update_offset_ = update_id + 1;
    add_update(update, events);
  }
  return true;
}

WebhookResponse TelegramAdapter::on_webhook(const WebhookRequest& request,
                                            std::vector<InboundEvent>& events) {
  WebhookResponse response;
  if (update_mode_ != UpdateMode::kWebhook) {
    response.status = 404;
    response.body = "this channel does not take Telegram webhooks (settings.updates)";
    return response;
  }
  if (request.method != "POST") {
    response.status = 405;
    response.body = "method not allowed";
    return response;
  }
  // The secret is checked before the body is looked at; the constructor made sure there is one.
  if (!secrets_equal(secret_token_, request.header("x-telegram-bot-api-secret-token"))) {
    response.status = 401;
    response.body = "bad or missing X-Telegram-Bot-Api-Secret-Token";
    return response;
  }
  const json update = json::parse(request.body, nullptr, false);
  if (update.is_discarded() || !update.is_object()) {
    response.status = 400;
    response.body = "body is not a JSON object";
    return response;
  }
  add_update(update, events);
  response.body = "ok";
  return response;
}

CHAT4ALL_REGISTER_ADAPTER("telegram", TelegramAdapter)

}  // namespace chat4all::connector
