// Telegram through the Bot API (https://core.telegram.org/bots/api): the same code speaks to
// api.telegram.org with a real bot token and to a simulator at another base_url.
//
// Every call is  POST {base_url}/bot<token>/<method>  with a JSON body; answers are
// {"ok":true,"result":...} or {"ok":false,"error_code":N,"description":...,
// "parameters":{"retry_after":S}?}.
//
// Sends: sendMessage {"chat_id","text"} and, for a file, sendDocument {"chat_id","document":
// <document_link_prefix + file_id>,"caption"?}. chat_id is a JSON integer when the address is
// one (a user, group or channel id) and a string otherwise ("@channelusername"). The Bot API
// reports no deliveries, so an accepted message is delivered as far as anyone will ever know.
//
// Message ids: Telegram numbers messages per chat, so a message is named "<chat id>:<message id>"
// with the numeric chat id, both for what send_message returns and for the message an inbound
// message replies to; the two therefore match.
//
// Receives updates either by long polling (getUpdates, from poll_updates()) or by webhook
// (setWebhook at connect(), then on_webhook()); only "message" updates are asked for: text, and
// documents (their file_id as the file id, caption as the text).
//
// Settings: bot_token (required); base_url (default https://api.telegram.org);
// updates: polling (default) | webhook | none; poll_timeout_s (default 25);
// webhook_url and secret_token (both required with updates: webhook: Telegram sends the secret in
// X-Telegram-Bot-Api-Secret-Token and on_webhook refuses any request without it, compared in
// constant time, before the body is parsed); document_link_prefix (optional: without it the file id
// is sent as is, which Telegram takes for one of its own file ids or a URL).
//
// Thread-safety: send_message, send_file and on_webhook may be called from any thread at once;
// poll_updates from one thread at a time (the host's polling thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nodes/connector/channel_adapter.h"
#include "nodes/connector/provider_http.h"

namespace chat4all::connector {

class TelegramAdapter final : public ChannelAdapter {
 public:
  enum class UpdateMode { kPolling, kWebhook, kNone };
  // Waits this long; tests pass a recorder instead of sleeping.
  using Pause = std::function<void(std::uint32_t duration_ms)>;

  // After a failed getUpdates, polling pauses this long (or what a 429 asks, up to
  // kPollRetryAfterMaxMs) so that a down or refusing API is not hammered.
  static constexpr std::uint32_t kPollFailurePauseMs = 1000;
  static constexpr std::uint32_t kPollRetryAfterMaxMs = 30'000;
  // The transport timeout of getUpdates exceeds the long poll by this much.
  static constexpr std::uint32_t kPollTransportMarginMs = 10'000;
  static constexpr long kPollTimeoutMaxS = 600;
  // Telegram's own bound on secret_token.
  static constexpr std::size_t kSecretTokenBytesMax = 256;

  // Calls the platform through libcurl (the registered adapter).
  explicit TelegramAdapter(const ChannelSpec& channel);
  TelegramAdapter(const ChannelSpec& channel, std::shared_ptr<ProviderTransport> transport,
                  Pause pause = {});

  // getMe (throws with Telegram's description unless it answers ok), then setWebhook with
  // webhook_url and secret_token (updates: webhook) or deleteWebhook (updates: polling: Telegram
  // refuses getUpdates while a webhook is set).
  void connect() override;
  SendResult send_message(const OutboundMessage& message) override;
  SendResult send_file(const OutboundMessage& message) override;
  WebhookResponse on_webhook(const WebhookRequest& request,
                             std::vector<InboundEvent>& events) override;
  // One getUpdates long poll (updates: polling); false with any other mode.
  bool poll_updates(std::vector<InboundEvent>& events) override;

  // The offset the next getUpdates sends: one past the last update seen.
  std::int64_t next_update_offset() const { return next_update_offset_; }

 private:
  ProviderResponse call(const std::string& method, const nlohmann::json& body,
                        std::uint32_t timeout_ms) const;
  // A call at connect(); throws unless it answers ok.
  void call_or_throw(const std::string& method, const nlohmann::json& body) const;
  SendResult send(const std::string& method, const OutboundMessage& message, nlohmann::json body);
  void add_update(const nlohmann::json& update, std::vector<InboundEvent>& events) const;

  const std::string base_url_;
  const std::string bot_token_;
  const UpdateMode update_mode_;
  const std::uint32_t poll_timeout_s_;
  const std::string webhook_url_;
  const std::string secret_token_;
  const std::string document_link_prefix_;
  const std::uint32_t timeout_ms_;
  const std::shared_ptr<ProviderTransport> transport_;
  const Pause pause_;

  std::int64_t next_update_offset_ = 0;  // only the polling thread touches it
};

}  // namespace chat4all::connector
