#include "nodes/frontend/http_api.h"

#include "common/ids.h"
#include "nodes/frontend/openapi_document.h"

namespace chat4all::frontend {
namespace {

std::map<std::string, std::vector<std::string>> channels_by_tenant(const Topology& topology) {
  std::map<std::string, std::vector<std::string>> names;
  for (const auto& channel : topology.channels) names[channel.tenant_id].push_back(channel.name);
  return names;
}

}  // namespace

using nlohmann::json;

namespace {

bool is_json_content_type(const std::string& content_type) {
  if (content_type.empty()) return true;  // tolerated: the body is parsed as JSON anyway
  std::string media = content_type.substr(0, content_type.find(';'));
  while (!media.empty() && media.back() == ' ') media.pop_back();
  for (auto& c : media) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return media == "application/json";
}

// The segments of a path ("/v1/users/x" -> "v1", "users", "x").
std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> segments;
  std::size_t start = path.empty() || path.front() != '/' ? 0 : 1;
  while (start <= path.size()) {
    const auto slash = path.find('/', start);
    const auto end = slash == std::string_view::npos ? path.size() : slash;
    segments.push_back(path.substr(start, end - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return segments;
}

// Whether `path` fits `pattern`; its "{}" segments, decoded, go to `params`.
bool match(std::string_view pattern, const std::vector<std::string_view>& path,
           std::vector<std::string>& params) {
  const auto expected = split_path(pattern);
  if (expected.size() != path.size()) return false;
  std::vector<std::string> found;
  for (std::size_t i = 0; i < path.size(); ++i) {
    if (expected[i] != "{}") {
      if (expected[i] != path[i]) return false;
      continue;
    }
    auto decoded = percent_decode(path[i]);
    if (!decoded || decoded->empty()) return false;
    found.push_back(std::move(*decoded));
  }
  params = std::move(found);
  return true;
}

// Webhook registrations are rare; one resolver thread and a short queue bound them.
constexpr std::uint32_t kUrlCheckThreads = 1;
constexpr std::uint32_t kUrlChecksQueuedMax = 16;

// How long this frontend trusts what it read of a service client: a client
// deleted through another frontend has its tokens refused here within this.
constexpr std::int64_t kClientValidityTtlMs = 2000;
constexpr std::size_t kClientValidityEntriesMax = 100000;
// The same for users (their tokens stop once the user is erased): longer, as every user token
// is checked, so that a busy user costs one read of its record per this; the frontend that
// erased the user refuses its tokens at once.
constexpr std::int64_t kUserValidityTtlMs = 30000;

// Messages this frontend accepted, kept for reads right after the 202 until the routers have
// indexed them (tens of milliseconds while they run): a minute of sends, at most this many; at
// the bound the oldest is forgotten.
constexpr std::size_t kAcceptedMessagesMax = 100000;
constexpr std::int64_t kAcceptedMessageAgeMaxMs = 60000;
// Locator lookups waiting for their next try; at the bound a miss is answered 404 at once.
constexpr std::size_t kLookupRetriesWaitingMax = 10000;

std::int64_t now_s() {
  return ids::now_ms() / 1000;
}

}  // namespace

HttpApi::HttpApi(const Topology& topology, const NodeSpec& self, RouterClient& routers)
    : topology_(topology),
      self_(self),
      routers_(routers),
      storage_(routers),
      signer_(auth::load_or_create_token_key(topology.auth.token_secret_file)),
      unknown_user_hash_(auth::hash_password("not-a-user-" + ids::new_trace_id())),
      message_limits_{topology.limits.text_bytes_max, topology.limits.members_max,
                      MessageLimits{}.metadata_bytes_max, channels_by_tenant(topology)},
      logins_(topology.limits.login_concurrency_max, topology.limits.login_queue_max),
      url_checks_(kUrlCheckThreads, kUrlChecksQueuedMax),
      clients_(kClientValidityEntriesMax, kClientValidityTtlMs),
      users_(kClientValidityEntriesMax, kUserValidityTtlMs),
      accepted_(kAcceptedMessagesMax, kAcceptedMessageAgeMaxMs),
      lookup_retries_(kLookupRetriesWaitingMax),
      rate_limiter_(topology.limits.token_requests_per_s, topology.limits.token_burst),
      send_latency_(metrics().latency_histogram("chat4all_frontend_send_seconds",
                                                "POST /v1/messages, request to 202")),
      rate_limited_(metrics().counter("chat4all_frontend_rate_limited_total",
                                      "Requests refused by the per-token rate limit")) {}

const std::vector<HttpApi::Route>& HttpApi::routes() {
  using A = Access;
  static const std::vector<Route> kRoutes = {
      {"GET", "/healthz", A::kPublic, false, &HttpApi::health},
      {"GET", "/metrics", A::kPublic, false, &HttpApi::serve_metrics},
      {"GET", "/v1/openapi.yaml", A::kPublic, false, &HttpApi::serve_openapi},
      {"POST", "/v1/auth/token", A::kPublic, true, &HttpApi::issue_token},
      // identity
      {"POST", "/v1/users", A::kAdmin, true, &HttpApi::create_user},
      {"GET", "/v1/users", A::kAdmin, false, &HttpApi::list_users},
      {"GET", "/v1/users/{}", A::kToken, false, &HttpApi::get_user},
      {"PATCH", "/v1/users/{}", A::kToken, true, &HttpApi::update_user},
      {"GET", "/v1/users/{}/presence", A::kToken, false, &HttpApi::get_presence},
      {"POST", "/v1/users/{}/erase", A::kAdmin, false, &HttpApi::erase_user},
      {"GET", "/v1/users/{}/erase", A::kAdmin, false, &HttpApi::get_erasure},
      {"PUT", "/v1/users/{}/identities/{}", A::kToken, true, &HttpApi::link_identity},
      {"DELETE", "/v1/users/{}/identities/{}", A::kToken, false, &HttpApi::unlink_identity},
      {"POST", "/v1/clients", A::kAdmin, true, &HttpApi::create_client},
      {"GET", "/v1/clients", A::kAdmin, false, &HttpApi::list_clients},
      {"DELETE", "/v1/clients/{}", A::kAdmin, false, &HttpApi::delete_client},
      // conversations
      {"POST", "/v1/conversations", A::kToken, true, &HttpApi::create_conversation},
      {"GET", "/v1/conversations", A::kToken, false, &HttpApi::list_conversations},
      {"GET", "/v1/conversations/{}", A::kToken, false, &HttpApi::get_conversation},
      {"PATCH", "/v1/conversations/{}", A::kToken, true, &HttpApi::update_conversation},
      {"POST", "/v1/conversations/{}/members", A::kToken, true, &HttpApi::add_members},
      {"DELETE", "/v1/conversations/{}/members/{}", A::kToken, false, &HttpApi::remove_member},
      {"POST", "/v1/conversations/{}/read", A::kUser, true, &HttpApi::mark_conversation_read},
      {"POST", "/v1/conversations/{}/delivered", A::kUser, true,
       &HttpApi::mark_conversation_delivered},
      {"GET", "/v1/conversations/{}/messages", A::kToken, false, &HttpApi::read_history},
      // messages
      {"POST", "/v1/messages", A::kToken, true, &HttpApi::send_message},
      {"GET", "/v1/messages/{}", A::kToken, false, &HttpApi::get_message},
      {"GET", "/v1/messages/{}/deliveries", A::kToken, false, &HttpApi::get_channel_deliveries},
      {"POST", "/v1/messages/{}/delivered", A::kUser, true, &HttpApi::mark_message_delivered},
      {"POST", "/v1/messages/{}/read", A::kUser, true, &HttpApi::mark_message_read},
      // webhooks
      {"POST", "/v1/webhooks", A::kAdmin, true, &HttpApi::create_webhook},
      {"GET", "/v1/webhooks", A::kAdmin, false, &HttpApi::list_webhooks},
      {"GET", "/v1/webhooks/{}", A::kAdmin, false, &HttpApi::get_webhook},
      {"DELETE", "/v1/webhooks/{}", A::kAdmin, false, &HttpApi::delete_webhook},
      {"GET", "/v1/webhooks/{}/deliveries", A::kAdmin, false, &HttpApi::list_deliveries},
  };
  return kRoutes;
}

std::variant<Caller, ApiResponse> HttpApi::authenticate(std::string_view authorization) const {
  std::string_view token = authorization;
  if (token.size() > 7 && (token.substr(0, 7) == "Bearer " || token.substr(0, 7) == "bearer "))
    token = token.substr(7);
  else if (token.find(' ') != std::string_view::npos)
    token = {};
  const auth::VerifiedToken verified = signer_.verify(token, now_s());
  if (!verified.ok())
    return error_response(401, "unauthorized", auth::token_error_message(verified.error));
  const auth::TokenClaims& claims = verified.claims;
  if (claims.tenant.empty())
    return error_response(401, "unauthorized", "the token names no tenant; get a new one");
  if (topology_.tenant(claims.tenant) == nullptr)
    return error_response(401, "unauthorized", "the token's tenant does not exist");
  if (claims.role != "user" && claims.role != "admin")
    return error_response(401, "unauthorized", "the token's role is unknown");
  return Caller{claims.tenant, claims.subject, claims.role, claims.issued_at_s};
}

void HttpApi::handle(const ApiRequest& request, Respond respond) {
  const auto question = request.target.find('?');
  const std::string_view path = std::string_view(request.target).substr(0, question);
  Call call;
  call.query = question == std::string::npos ? "" : request.target.substr(question + 1);
  call.trace_id = ids::new_trace_id();
  // Every answer carries the trace id that the request's logs and frames carry.
  call.respond = [respond = std::move(respond), trace_id = call.trace_id](ApiResponse response) {
    set_header(response, "X-Trace-Id", trace_id);
    respond(std::move(response));
  };

  const auto segments = split_path(path);
  const Route* route = nullptr;
  std::string allowed;
  for (const auto& candidate : routes()) {
    std::vector<std::string> params;
    if (!match(candidate.pattern, segments, params)) continue;
    if (candidate.method == request.method) {
      route = &candidate;
      call.params = std::move(params);
      break;
    }
    allowed += (allowed.empty() ? "" : ", ") + std::string(candidate.method);
  }
  if (route == nullptr && allowed.empty())
    return call.respond(error_response(404, "not_found", "no such endpoint: " + std::string(path)));
  if (route == nullptr) {
    ApiResponse response = error_response(
        405, "method_not_allowed",
        request.method + " is not allowed on " + std::string(path) + " (use " + allowed + ")");
    response.headers.emplace_back("Allow", allowed);
    return call.respond(std::move(response));
  }

  if (route->access != Access::kPublic) {
    auto admitted = admit(request.authorization);
    if (auto* failure = std::get_if<ApiResponse>(&admitted))
      return call.respond(std::move(*failure));
    call.caller = std::get<Caller>(std::move(admitted));
    if (route->access == Access::kAdmin && !call.caller.admin())
      return call.respond(error_response(403, "forbidden", "this needs an admin token"));
    if (route->access == Access::kUser && call.caller.admin())
      return call.respond(error_response(403, "user_token_required",
                                         "this acts for a user; use that user's token"));
  }
  if (route->json_body && !is_json_content_type(request.content_type))
    return call.respond(
        error_response(415, "unsupported_media_type", "send the body as application/json"));
  if (call.caller.admin() && !declared_in_topology(call.caller))
    return admit_service_client(request, std::move(call), route->endpoint);
  if (route->access != Access::kPublic && !call.caller.admin())
    return admit_user(request, std::move(call), route->endpoint);
  (this->*(route->endpoint))(request, std::move(call));
}

std::variant<Caller, ApiResponse> HttpApi::admit(std::string_view authorization) {
  auto authenticated = authenticate(authorization);
  if (std::holds_alternative<ApiResponse>(authenticated)) return authenticated;
  const Caller& caller = std::get<Caller>(authenticated);
  const RateLimiter::Decision decision = rate_limiter_.acquire(
      caller.tenant + '/' + caller.role + '/' + caller.subject, ids::now_ms());
  if (decision.allowed) return authenticated;
  rate_limited_.add();
  ApiResponse response = error_response(
      429, "rate_limited",
      "this token made more than " + std::to_string(topology_.limits.token_requests_per_s) +
          " requests per second; retry after the time in Retry-After");
  set_header(response, "Retry-After", std::to_string(decision.retry_after_s));
  return response;
}

bool HttpApi::declared_in_topology(const Caller& caller) const {
  const auto* tenant = topology_.tenant(caller.tenant);
  for (const auto& client : tenant->admin_clients)
    if (client.client_id == caller.subject) return true;
  return false;
}

std::string HttpApi::client_key(const std::string& tenant_id, const std::string& client_id) {
  return tenant_id + '/' + client_id;
}

namespace {

// Reads a tenant record's created_at_ms (ClientRecord, UserRecord) for admit_if_current.
// `existence_only`: the record's being there is what counts, whatever its stamp (the
// stamp is the storage leader's clock, which a token's issue time, the frontend's clock,
// must not be compared with when nothing bounds their skew).
template <typename Record>
std::function<void(std::function<void(StorageOutcome<std::int64_t>)>)> created_at_read(
    StorageClient& storage, wire::QueryKind kind, wire::TenantLookup lookup, std::string trace_id,
    bool existence_only = false) {
  return [&storage, kind, lookup = std::move(lookup), trace_id = std::move(trace_id),
          existence_only](auto done) {
    storage.query<Record>(
        wire::tenant_key(lookup.tenant_id), kind, lookup,
        [done, existence_only](StorageOutcome<Record> outcome) {
          std::optional<std::int64_t> created_at_ms;
          if (outcome.value) created_at_ms = existence_only ? 0 : outcome.value->created_at_ms;
          done({outcome.status, created_at_ms, outcome.detail, outcome.field});
        },
        trace_id);
  };
}

}  // namespace

// A token of a client made through the API passes while that client exists and
// is older than the token: from the cache, or after one read of the client.
void HttpApi::admit_service_client(const ApiRequest& request, Call call, Endpoint endpoint) {
  const wire::TenantLookup lookup{call.caller.tenant, call.caller.subject};
  auto read = created_at_read<wire::ClientRecord>(storage_, wire::QueryKind::kGetClient, lookup,
                                                  call.trace_id);
  admit_if_current(request, std::move(call), endpoint, clients_,
                   client_key(lookup.tenant_id, lookup.id),
                   "the token's client was deleted; get a token for a current one", false, read);
}

void HttpApi::admit_user(const ApiRequest& request, Call call, Endpoint endpoint) {
  const wire::TenantLookup lookup{call.caller.tenant, call.caller.subject};
  // An erased user's record is gone for good (its id is not reused), so its tokens
  // are refused by the record's absence alone.
  auto read = created_at_read<wire::UserRecord>(storage_, wire::QueryKind::kGetUser, lookup,
                                                call.trace_id, true);
  // A send must not depend on the tenant's partition being reachable: the revocation waits
  // for it instead (fail open).
  admit_if_current(request, std::move(call), endpoint, users_,
                   client_key(lookup.tenant_id, lookup.id),
                   "the token's user no longer exists (erased)", true, read);
}

void HttpApi::admit_if_current(const ApiRequest& request, Call call, Endpoint endpoint,
                               ClientValidityCache& cache, const std::string& key,
                               const char* revoked, bool fail_open, const CreatedAtRead& read) {
  auto admit = [this, endpoint, revoked](ClientValidityCache::Verdict verdict,
                                         const ApiRequest& request, Call call) {
    if (verdict == ClientValidityCache::Verdict::kRevoked)
      return call.respond(error_response(401, "unauthorized", revoked));
    (this->*endpoint)(request, std::move(call));
  };
  const auto verdict = cache.check(key, call.caller.issued_at_s, ids::now_ms());
  if (verdict != ClientValidityCache::Verdict::kUnknown)
    return admit(verdict, request, std::move(call));
  // The endpoint runs after the answer, when the caller's request is gone: keep a copy.
  auto kept = std::make_shared<const ApiRequest>(request);
  read([this, &cache, key, kept, call, admit, endpoint,
        fail_open](StorageOutcome<std::int64_t> outcome) {
    if (outcome.status == wire::Status::kNotFound) {
      cache.store(key, std::nullopt, ids::now_ms());
    } else if (!outcome.ok()) {
      if (fail_open) return (this->*endpoint)(*kept, call);
      return call.respond(storage_error(outcome));
    } else {
      cache.store(key, *outcome.value, ids::now_ms());
    }
    admit(cache.check(key, call.caller.issued_at_s, ids::now_ms()), *kept, call);
  });
}

void HttpApi::health(const ApiRequest&, Call call) {
  call.respond(json_response(200, {{"status", "ok"}, {"node", self_.name}}));
}

void HttpApi::serve_metrics(const ApiRequest&, Call call) {
  call.respond(ApiResponse{200, metrics().render(), "text/plain; version=0.0.4", {}});
}

void HttpApi::serve_openapi(const ApiRequest&, Call call) {
  const std::string_view document = openapi_document();
  if (document.empty())
    return call.respond(
        error_response(404, "not_found", "this build has no schema/openapi.yaml to serve"));
  call.respond(ApiResponse{200, std::string(document), "application/yaml", {}});
}

}  // namespace chat4all::frontend
