// Webhook registrations and their deliveries (HttpApi, see http_api.h).
#include "common/ids.h"
#include "common/url_guard.h"
#include "common/webhook_signature.h"
#include "nodes/frontend/api_json.h"
#include "nodes/frontend/http_api.h"
#include "nodes/frontend/webhook_validation.h"

namespace chat4all::frontend {

using nlohmann::json;
using Empty = StorageClient::Empty;

// The URL is resolved first, off the event loop (url_checks_): a host whose
// addresses are not all public is refused unless the topology allows it. The
// connector checks it again before every call, as DNS answers change.
void HttpApi::create_webhook(const ApiRequest& request, Call call) {
  auto parsed = parse_webhook_create(request.body);
  if (auto* error = std::get_if<ApiError>(&parsed)) return call.respond(error_response(*error));
  WebhookCreate create = std::get<WebhookCreate>(std::move(parsed));
  if (create.secret.empty()) create.secret = webhook::generate_secret();
  const connector::UrlPolicy policy{topology_.webhooks.allow_loopback,
                                    topology_.webhooks.allow_private};
  const bool queued = url_checks_.try_submit([this, call, create, policy] {
    const connector::GuardResult guard = connector::check_url(create.url, policy);
    if (!guard.ok())
      return call.respond(error_response(400, "url_not_allowed", "url: " + guard.error, "url"));
    const wire::WebhookRecord webhook{call.caller.tenant, ids::new_random_id("wh_"),
                                      create.url,         create.events,
                                      create.secret,      ids::now_ms()};
    storage_.command<wire::WebhookRecord>(
        wire::tenant_key(call.caller.tenant), wire::CommandKind::kCreateWebhook,
        wire::CreateWebhook{webhook},
        on_ok<wire::WebhookRecord>(call.respond,
                                   [call](wire::WebhookRecord stored) {
                                     json body = webhook_json(stored);
                                     // Shown once: later reads never include it.
                                     body["secret"] = stored.secret;
                                     ApiResponse response = json_response(201, body);
                                     response.headers.emplace_back(
                                         "Location", "/v1/webhooks/" + stored.webhook_id);
                                     response.headers.emplace_back("Cache-Control", "no-store");
                                     call.respond(std::move(response));
                                   }),
        call.trace_id);
  });
  if (!queued)
    call.respond(error_response(429, "busy", "too many webhook registrations in progress; retry"));
}

void HttpApi::list_webhooks(const ApiRequest&, Call call) {
  auto parsed = parse_page_query(call.query);
  if (auto* error = std::get_if<ApiError>(&parsed)) return call.respond(error_response(*error));
  list_page<wire::WebhookRecord>(
      std::move(call), wire::QueryKind::kListWebhooks, "", std::get<PageQuery>(parsed), "webhooks",
      json::object(), [](const wire::WebhookRecord& webhook) { return webhook_json(webhook); },
      [](const wire::WebhookRecord& webhook) { return webhook.webhook_id; });
}

void HttpApi::get_webhook(const ApiRequest&, Call call) {
  const std::string& webhook_id = call.params[0];
  if (auto error = check_id(webhook_id, "webhook_id")) return call.respond(error_response(*error));
  storage_.query<wire::WebhookRecord>(
      wire::tenant_key(call.caller.tenant), wire::QueryKind::kGetWebhook,
      wire::TenantLookup{call.caller.tenant, webhook_id},
      on_ok<wire::WebhookRecord>(call.respond,
                                 [call](wire::WebhookRecord webhook) {
                                   call.respond(json_response(200, webhook_json(webhook)));
                                 }),
      call.trace_id);
}

void HttpApi::delete_webhook(const ApiRequest&, Call call) {
  const std::string& webhook_id = call.params[0];
  if (auto error = check_id(webhook_id, "webhook_id")) return call.respond(error_response(*error));
  storage_.command<Empty>(wire::tenant_key(call.caller.tenant), wire::CommandKind::kDeleteWebhook,
                          wire::TenantLookup{call.caller.tenant, webhook_id},
                          on_ok<Empty>(call.respond, [call](Empty) { call.respond(no_content()); }),
                          call.trace_id);
}

void HttpApi::list_deliveries(const ApiRequest&, Call call) {
  const std::string webhook_id = call.params[0];
  if (auto error = check_id(webhook_id, "webhook_id")) return call.respond(error_response(*error));
  auto parsed = parse_page_query(call.query);
  if (auto* error = std::get_if<ApiError>(&parsed)) return call.respond(error_response(*error));
  // Storage answers kNotFound for a webhook that is not the tenant's, not an empty list.
  list_page<wire::DeliveryRecord>(
      std::move(call), wire::QueryKind::kListDeliveries, webhook_id, std::get<PageQuery>(parsed),
      "deliveries", json{{"webhook_id", webhook_id}},
      [](const wire::DeliveryRecord& delivery) { return delivery_json(delivery); },
      [](const wire::DeliveryRecord& delivery) { return delivery.event_id; });
}

}  // namespace chat4all::frontend
