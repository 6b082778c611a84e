// Validation of POST /v1/webhooks. Pure: JSON text in, the webhook's fields or
// an ApiError naming the field out. Unknown fields are ignored. The URL's
// syntax is checked here (connector::parse_http_url); whether its host
// resolves to an allowed address needs DNS and is connector::check_url's job.
#pragma once

#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "nodes/frontend/validation_support.h"

namespace chat4all::frontend {

struct WebhookCreate {
  std::string url;
  std::vector<std::string> events;  // distinct, in the order given
  std::string secret;               // empty: the server generates one (common/webhook_signature.h)
};
std::variant<WebhookCreate, ApiError> parse_webhook_create(std::string_view body);

}  // namespace chat4all::frontend
