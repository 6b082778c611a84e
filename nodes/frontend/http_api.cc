#include "nodes/frontend/http_api.h"

#include <chrono>
#include <nlohmann/json.hpp>

#include "common/codec.h"
#include "common/ids.h"

namespace chat4all::frontend {

using nlohmann::json;

namespace {

ApiResponse json_response(int status, const json& body) {
  return ApiResponse{
      status, body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json", {}};
}

ApiResponse error_response(const ApiError& error) {
  ApiResponse response{error.http_status, error.to_json(), "application/json", {}};
  if (error.http_status == 429 || error.http_status == 503)
    response.headers.emplace_back("Retry-After", "1");
  if (error.http_status == 401)
    response.headers.emplace_back("WWW-Authenticate", "Bearer error=\"invalid_token\"");
  return response;
}

ApiResponse error_response(int status, const std::string& code, const std::string& message,
                           const std::string& field = "") {
  return error_response(ApiError{status, code, message, field});
}

// What the client is told when the request got no regular answer.
ApiResponse upstream_failure(wire::Status status, const std::string& detail) {
  switch (status) {
    case wire::Status::kTimeout:
      return error_response(504, "upstream_timeout",
                            "storage did not confirm in time; the outcome is unknown, retry with "
                            "the same message_id" +
                                (detail.empty() ? "" : " (" + detail + ")"));
    case wire::Status::kUnavailable:
    case wire::Status::kNotOwner:
      return error_response(503, "unavailable",
                            "no storage node can take the request now" +
                                (detail.empty() ? std::string() : " (" + detail + ")"));
    case wire::Status::kStorageFull:
      return error_response(507, "storage_full", detail);
    case wire::Status::kConflict:
      return error_response(409, "message_id_conflict", detail, "message_id");
    case wire::Status::kInvalid:
      return error_response(400, "invalid_request", detail);
    case wire::Status::kNotFound:
      return error_response(404, "not_found", detail);
    case wire::Status::kExists:
      return error_response(409, "exists", detail);
    case wire::Status::kOk:
    case wire::Status::kInternal:
      break;
  }
  return error_response(500, "internal", detail.empty() ? "internal error" : detail);
}

std::string percent_decode(std::string_view text, bool& ok) {
  std::string out;
  ok = true;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    if (i + 2 >= text.size()) {
      ok = false;
      return out;
    }
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    const int high = hex(text[i + 1]), low = hex(text[i + 2]);
    if (high < 0 || low < 0) {
      ok = false;
      return out;
    }
    out.push_back(static_cast<char>(high * 16 + low));
    i += 2;
  }
  return out;
}

bool is_json_content_type(const std::string& content_type) {
  if (content_type.empty()) return true;  // tolerated: the body is parsed as JSON anyway
  std::string media = content_type.substr(0, content_type.find(';'));
  while (!media.empty() && media.back() == ' ') media.pop_back();
  for (auto& c : media) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return media == "application/json";
}

// The typed reply of a routed request, or the error response the client gets
// instead: no answer in time, an ErrorReply from a router or storage node, a
// reply of the wrong shape, or a reply whose own status is not ok.
template <typename Reply>
std::variant<Reply, ApiResponse> unwrap_reply(wire::Status status,
                                              const std::optional<codec::Frame>& reply,
                                              wire::MessageType expected) {
  if (status != wire::Status::kOk) return upstream_failure(status, "");
  if (reply->header().type == wire::MessageType::kErrorReply) {
    auto error = reply->body<wire::ErrorReply>();
    return error ? upstream_failure(error->status, error->detail)
                 : upstream_failure(wire::Status::kInternal, "malformed error reply");
  }
  auto answer = reply->header().type == expected ? reply->body<Reply>() : std::nullopt;
  if (!answer) return upstream_failure(wire::Status::kInternal, "malformed reply");
  if (answer->status != wire::Status::kOk) return upstream_failure(answer->status, answer->detail);
  return std::move(*answer);
}

json message_json(const wire::StoredMessage& message) {
  return json{{"message_id", message.message_id},
              {"conversation_id", message.conversation_id},
              {"seq", message.seq},
              {"sender_id", message.sender_id},
              {"to", message.recipients},
              {"payload", {{"type", message.payload.type}, {"text", message.payload.text}}},
              {"received_at_ms", message.received_at_ms},
              {"stored_at_ms", message.stored_at_ms}};
}

std::int64_t now_s() {
  return ids::now_ms() / 1000;
}

}  // namespace

HttpApi::HttpApi(const Topology& topology, const NodeSpec& self, RouterClient& routers)
    : topology_(topology),
      self_(self),
      routers_(routers),
      signer_(auth::load_or_create_token_key(topology.auth.token_secret_file)),
      unknown_user_hash_(auth::hash_password("not-a-user-" + ids::new_trace_id())),
      message_limits_{topology.limits.text_bytes_max, 256},
      logins_(topology.limits.login_concurrency_max, topology.limits.login_queue_max),
      send_latency_(metrics().latency_histogram("chat4all_frontend_send_seconds",
                                                "POST /v1/messages, request to 202")) {
  for (const auto& user : topology.dev_users) password_hashes_[user.id] = user.password_hash;
}

std::optional<std::string> HttpApi::authenticate(const ApiRequest& request, Respond& respond) {
  std::string_view header = request.authorization;
  std::string_view token;
  if (header.size() > 7 && (header.substr(0, 7) == "Bearer " || header.substr(0, 7) == "bearer "))
    token = header.substr(7);
  const auth::VerifiedToken verified = signer_.verify(token, now_s());
  if (!verified.ok()) {
    respond(error_response(401, "unauthorized", auth::token_error_message(verified.error)));
    return std::nullopt;
  }
  return verified.claims.subject;
}

void HttpApi::handle(const ApiRequest& request, Respond respond) {
  const auto question = request.target.find('?');
  const std::string path = request.target.substr(0, question);
  const std::string_view query = question == std::string::npos
                                     ? std::string_view{}
                                     : std::string_view(request.target).substr(question + 1);
  auto method_not_allowed = [&](const char* allowed) {
    ApiResponse response =
        error_response(405, "method_not_allowed", request.method + " is not allowed on " + path);
    response.headers.emplace_back("Allow", allowed);
    respond(std::move(response));
  };

  if (path == "/healthz") {
    if (request.method != "GET") return method_not_allowed("GET");
    return respond(json_response(200, {{"status", "ok"}, {"node", self_.name}}));
  }
  if (path == "/metrics") {
    if (request.method != "GET") return method_not_allowed("GET");
    return respond(ApiResponse{200, metrics().render(), "text/plain; version=0.0.4", {}});
  }
  if (path == "/v1/auth/token") {
    if (request.method != "POST") return method_not_allowed("POST");
    if (!is_json_content_type(request.content_type))
      return respond(error_response(415, "unsupported_media_type", "send application/json"));
    return issue_token(request, std::move(respond));
  }
  if (path == "/v1/messages") {
    if (request.method != "POST") return method_not_allowed("POST");
    auto user = authenticate(request, respond);
    if (!user) return;
    if (!is_json_content_type(request.content_type))
      return respond(error_response(415, "unsupported_media_type", "send application/json"));
    return send_message(request, *user, std::move(respond));
  }
  static constexpr std::string_view kConversations = "/v1/conversations/";
  static constexpr std::string_view kMessagesSuffix = "/messages";
  if (path.size() > kConversations.size() + kMessagesSuffix.size() &&
      path.compare(0, kConversations.size(), kConversations) == 0 &&
      path.compare(path.size() - kMessagesSuffix.size(), kMessagesSuffix.size(), kMessagesSuffix) ==
          0) {
    if (request.method != "GET") return method_not_allowed("GET");
    auto user = authenticate(request, respond);
    if (!user) return;
    bool decoded = false;
    const std::string conversation_id = percent_decode(
        std::string_view(path).substr(kConversations.size(),
                                      path.size() - kConversations.size() - kMessagesSuffix.size()),
        decoded);
    if (!decoded || !ids::is_valid_id(conversation_id))
      return respond(error_response(
          400, "invalid_field", "conversation id must be 1-128 characters of A-Z a-z 0-9 . _ : @ -",
          "conversation_id"));
    return read_history(conversation_id, query, std::move(respond));
  }
  respond(error_response(404, "not_found", "no such endpoint: " + path));
}

void HttpApi::issue_token(const ApiRequest& request, Respond respond) {
  auto parsed = parse_token_request(request.body);
  if (auto* error = std::get_if<ApiError>(&parsed)) return respond(error_response(*error));
  auto credentials = std::get<TokenRequest>(std::move(parsed));
  auto found = password_hashes_.find(credentials.user_id);
  const std::string& hash = found == password_hashes_.end() ? unknown_user_hash_ : found->second;
  const bool known = found != password_hashes_.end();
  auto shared_respond = std::make_shared<Respond>(std::move(respond));
  const bool queued = logins_.try_submit([this, credentials, &hash, known, shared_respond] {
    if (!auth::verify_password(hash, credentials.password) || !known) {
      log_.debug("login_refused", {{"user_id", credentials.user_id}});
      return (*shared_respond)(
          error_response(401, "invalid_credentials", "user_id or password is wrong"));
    }
    const std::uint32_t ttl_s = topology_.auth.token_ttl_s;
    (*shared_respond)(
        json_response(200, {{"access_token", signer_.issue(credentials.user_id, now_s(), ttl_s)},
                            {"token_type", "Bearer"},
                            {"expires_in", ttl_s},
                            {"user_id", credentials.user_id}}));
  });
  if (!queued)
    (*shared_respond)(
        error_response(429, "too_many_logins", "too many logins in progress; retry shortly"));
}

void HttpApi::send_message(const ApiRequest& request, const std::string& user_id, Respond respond) {
  const auto started = std::chrono::steady_clock::now();
  auto parsed = parse_send_message(request.body, user_id, message_limits_, ids::now_ms());
  if (auto* error = std::get_if<ApiError>(&parsed)) return respond(error_response(*error));
  auto append = std::get<wire::AppendRequest>(std::move(parsed));

  const wire::Header header{wire::kWireVersion, wire::MessageType::kAppendRequest,
                            ids::next_request_id(), ids::new_trace_id()};
  std::string frame = codec::encode(header, append);
  routers_.submit(
      header.request_id, std::move(frame),
      [this, respond = std::move(respond), trace_id = header.trace_id, started](
          wire::Status status, std::optional<codec::Frame> reply) {
        auto unwrapped =
            unwrap_reply<wire::AppendReply>(status, reply, wire::MessageType::kAppendReply);
        if (auto* failure = std::get_if<ApiResponse>(&unwrapped)) {
          log_.debug("send_failed", {{"trace_id", trace_id}, {"status", failure->status}});
          return respond(std::move(*failure));
        }
        const auto& answer = std::get<wire::AppendReply>(unwrapped);
        ApiResponse response = json_response(202, {{"status", "accepted"},
                                                   {"message_id", answer.message_id},
                                                   {"conversation_id", answer.conversation_id},
                                                   {"seq", answer.seq}});
        response.headers.emplace_back("X-Trace-Id", trace_id);
        if (answer.duplicate) response.headers.emplace_back("Idempotent-Replayed", "true");
        send_latency_.observe(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
        respond(std::move(response));
      });
}

void HttpApi::read_history(const std::string& conversation_id, std::string_view query,
                           Respond respond) {
  auto parsed = parse_history_query(query, topology_.limits.history_page_max);
  if (auto* error = std::get_if<ApiError>(&parsed)) return respond(error_response(*error));
  const HistoryQuery page = std::get<HistoryQuery>(parsed);

  const wire::Header header{wire::kWireVersion, wire::MessageType::kReadRequest,
                            ids::next_request_id(), ids::new_trace_id()};
  routers_.submit(
      header.request_id,
      codec::encode(header, wire::ReadRequest{conversation_id, page.from_seq, page.limit}),
      [respond = std::move(respond), conversation_id, page](wire::Status status,
                                                            std::optional<codec::Frame> reply) {
        auto unwrapped =
            unwrap_reply<wire::ReadReply>(status, reply, wire::MessageType::kReadReply);
        if (auto* failure = std::get_if<ApiResponse>(&unwrapped))
          return respond(std::move(*failure));
        const auto& answer = std::get<wire::ReadReply>(unwrapped);
        json messages = json::array();
        for (const auto& message : answer.messages) messages.push_back(message_json(message));
        const std::uint64_t next_from_seq =
            answer.messages.empty() ? page.from_seq : answer.messages.back().seq + 1;
        respond(json_response(200, {{"conversation_id", conversation_id},
                                    {"messages", std::move(messages)},
                                    {"next_from_seq", next_from_seq},
                                    {"has_more", next_from_seq <= answer.last_seq},
                                    {"last_seq", answer.last_seq}}));
      });
}

}  // namespace chat4all::frontend
