// The public REST API v1, independent of the HTTP server that carries it:
// a parsed request in, a response out (at once or later, from another
// thread, through the Respond callback, which is called exactly once).
//
// handle() routes by path (404 for an unknown one, 405 with Allow for a
// method the path does not take), authenticates the bearer token into a
// Caller, applies the per-token rate limit, checks the role and the
// Content-Type, and hands the request to its endpoint. The endpoints live in
// one file per area: api_identity.cc (token, users, identities, clients),
// api_conversations.cc (conversations, members, horizons, history),
// api_messages.cc (send, get, mark, channel deliveries), api_webhooks.cc.
//
// Thread-safe: handle() may run on several event-loop threads at once.
// Password and secret hashing runs in the login pool's threads, never on the
// caller's; storage answers arrive on the RouterClient's thread.
#pragma once

#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/auth.h"
#include "common/delayed_tasks.h"
#include "common/json_log.h"
#include "common/metrics.h"
#include "common/router_client.h"
#include "common/storage_client.h"
#include "common/topology.h"
#include "common/worker_pool.h"
#include "nodes/frontend/accepted_messages.h"
#include "nodes/frontend/api_support.h"
#include "nodes/frontend/client_validity.h"
#include "nodes/frontend/erasure_driver.h"
#include "nodes/frontend/message_validation.h"
#include "nodes/frontend/rate_limiter.h"

namespace chat4all::frontend {

struct ApiRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query, as sent
  std::string authorization;
  std::string content_type;
  std::string body;
  std::string idempotency_key;  // the Idempotency-Key header (creating a group)
};

class HttpApi {
 public:
  HttpApi(const Topology& topology, const NodeSpec& self, RouterClient& routers);

  void handle(const ApiRequest& request, Respond respond);

  // The caller an "Authorization: Bearer ..." header value (or a bare token)
  // names, or the 401 to answer. A token must name a tenant of the topology.
  std::variant<Caller, ApiResponse> authenticate(std::string_view authorization) const;
  // authenticate(), then the per-token rate limit (429 with Retry-After beyond it).
  std::variant<Caller, ApiResponse> admit(std::string_view authorization);

 private:
  // One routed request on its way through an endpoint.
  struct Call {
    Caller caller;                    // empty for public endpoints
    std::vector<std::string> params;  // path parameters, percent-decoded, in order
    std::string query;                // the raw query string
    std::string trace_id;
    Respond respond;
  };
  using Endpoint = void (HttpApi::*)(const ApiRequest&, Call);
  enum class Access {
    kPublic,  // no token
    kToken,   // any token of the tenant
    kUser,    // user tokens only (403 user_token_required)
    kAdmin,   // admin tokens only (403 forbidden)
  };
  struct Route {
    std::string_view method;
    std::string_view pattern;  // "/v1/users/{}": "{}" matches one path segment
    Access access;
    bool json_body;  // 415 unless the body is JSON
    Endpoint endpoint;
  };
  static const std::vector<Route>& routes();

  // A channel identity's address as its platform names users (api_identity.cc).
  FieldError normalize_address(wire::Identity& identity, const std::string& field) const;

  // Admin tokens of clients made through the API (not the topology's) are
  // checked against the client's current record before the endpoint runs.
  bool declared_in_topology(const Caller& caller) const;
  static std::string client_key(const std::string& tenant_id, const std::string& client_id);
  void admit_service_client(const ApiRequest& request, Call call, Endpoint endpoint);
  // User tokens likewise, against the user's record: the tokens of an erased
  // (or deleted and made again) user stop working.
  void admit_user(const ApiRequest& request, Call call, Endpoint endpoint);
  // Both: the endpoint runs if `cache` holds `key` as current for the token, or
  // after `read` (the record's created_at_ms from storage, kNotFound when it
  // does not exist) says so; otherwise 401 with `revoked`. When storage cannot
  // answer: with `fail_open` the endpoint runs (the signed token stands), else
  // the storage error is the answer.
  using CreatedAtRead = std::function<void(std::function<void(StorageOutcome<std::int64_t>)>)>;
  void admit_if_current(const ApiRequest& request, Call call, Endpoint endpoint,
                        ClientValidityCache& cache, const std::string& key, const char* revoked,
                        bool fail_open, const CreatedAtRead& read);

  // Service endpoints (http_api.cc).
  void health(const ApiRequest& request, Call call);
  void serve_metrics(const ApiRequest& request, Call call);
  void serve_openapi(const ApiRequest& request, Call call);

  // A page of the tenant's records of `kind` (a TenantList query on the
  // tenant's directory, narrowed to `owner`): answers `body` with the records
  // rendered into body[items] (after those it holds already) and next_after.
  template <typename Record, typename Render, typename IdOf>
  void list_page(Call call, wire::QueryKind kind, std::string owner, const PageQuery& page,
                 const char* items, nlohmann::json body, Render render, IdOf id_of) {
    const wire::TenantList list{call.caller.tenant, std::move(owner), page.after, page.limit};
    storage_.query<std::vector<Record>>(
        wire::tenant_key(call.caller.tenant), kind, list,
        on_ok<std::vector<Record>>(call.respond,
                                   [call, items, body = std::move(body), render, id_of,
                                    limit = page.limit](std::vector<Record> records) mutable {
                                     if (!body.contains(items))
                                       body[items] = nlohmann::json::array();
                                     for (const auto& record : records)
                                       body[items].push_back(render(record));
                                     body["next_after"] = next_after(records, limit, id_of);
                                     call.respond(json_response(200, body));
                                   }),
        call.trace_id);
  }

  // api_identity.cc
  void issue_token(const ApiRequest& request, Call call);
  void create_user(const ApiRequest& request, Call call);
  void list_users(const ApiRequest& request, Call call);
  void get_user(const ApiRequest& request, Call call);
  void refuse_managing(Call call, const std::string& user_id);
  void update_user(const ApiRequest& request, Call call);
  // POST /v1/users/{id}/erase (202 with the job) and GET of the job, which
  // drives a pending one on (nodes/frontend/erasure_driver.h).
  void erase_user(const ApiRequest& request, Call call);
  void get_erasure(const ApiRequest& request, Call call);
  void get_presence(const ApiRequest& request, Call call);
  void link_identity(const ApiRequest& request, Call call);
  void unlink_identity(const ApiRequest& request, Call call);
  void create_client(const ApiRequest& request, Call call);
  void list_clients(const ApiRequest& request, Call call);
  void delete_client(const ApiRequest& request, Call call);
  // Verifies `secret` against `hash` (or the dummy hash when there is none) in
  // the login pool and answers with a token for `subject` when it matches.
  void verify_and_issue(Call call, std::string tenant, std::string subject, std::string role,
                        std::optional<std::string> hash, std::string secret);
  // Hashes `secret` in the login pool, then continues there with the hash.
  void hash_then(Call call, std::string secret, std::function<void(Call, std::string)> next);

  // api_conversations.cc
  void create_conversation(const ApiRequest& request, Call call);
  void list_conversations(const ApiRequest& request, Call call);
  void get_conversation(const ApiRequest& request, Call call);
  void update_conversation(const ApiRequest& request, Call call);
  void add_members(const ApiRequest& request, Call call);
  void add_members_to(Call call, const std::string& conversation_id,
                      const std::vector<std::string>& users);
  void remove_member(const ApiRequest& request, Call call);
  void mark_conversation_read(const ApiRequest& request, Call call);
  void mark_conversation_delivered(const ApiRequest& request, Call call);
  void mark_horizon(const ApiRequest& request, Call call, const char* state);
  void move_horizon(Call call, wire::MarkState mark, int rounds_left);
  void read_history(const ApiRequest& request, Call call);
  // Indexes `users` as members (or former members) of a conversation, then
  // answers with `response`.
  void index_membership(Call call, std::string conversation_id, std::vector<std::string> users,
                        bool joined, ApiResponse response);
  // The group `conversation_id` as the caller sees it, to change its members:
  // continues with its record, or answers 409 for a private conversation.
  void with_group(Call call, const std::string& conversation_id,
                  std::function<void(Call, wire::ConversationRecord)> next);
  // Answers the conversation as `call`'s caller sees it (ConversationSummary).
  void answer_summary(Call call, std::string conversation_id, int status);

  // api_messages.cc
  void send_message(const ApiRequest& request, Call call);
  void get_message(const ApiRequest& request, Call call);
  void get_channel_deliveries(const ApiRequest& request, Call call);
  void mark_message_delivered(const ApiRequest& request, Call call);
  void mark_message_read(const ApiRequest& request, Call call);
  void mark_message(Call call, const char* state);
  // Where the tenant's message `message_id` is stored: continues with its conversation_id.
  void find_message(Call call, std::function<void(Call, std::string)> next);
  void look_up_message(Call call, std::function<void(Call, std::string)> next, int tries_left);
  void append(Call call, wire::AppendRequest append);
  // A file message: checks the file and shares it into the conversation, then append().
  void attach_file(Call call, wire::AppendRequest append);

  // api_webhooks.cc
  void create_webhook(const ApiRequest& request, Call call);
  void list_webhooks(const ApiRequest& request, Call call);
  void get_webhook(const ApiRequest& request, Call call);
  void delete_webhook(const ApiRequest& request, Call call);
  void list_deliveries(const ApiRequest& request, Call call);

  const Topology& topology_;
  const NodeSpec& self_;
  RouterClient& routers_;
  StorageClient storage_;
  auth::TokenSigner signer_;
  std::string unknown_user_hash_;  // verified against for unknown users: same cost, no oracle
  MessageLimits message_limits_;
  WorkerPool logins_;
  // Resolves webhook URLs (connector::check_url: getaddrinfo blocks for as long as DNS takes),
  // apart from the logins so that a slow resolver cannot hold them up.
  WorkerPool url_checks_;
  ClientValidityCache clients_;
  ClientValidityCache users_;  // user tokens' users, as clients_ (kUserValidityTtlMs)
  // What this frontend accepted lately, for reads right after a 202 (see AcceptedMessages).
  AcceptedMessages accepted_;
  // Locator lookups waiting to be tried again (find_message).
  DelayedTasks lookup_retries_;
  RateLimiter rate_limiter_;
  Log log_{"http_api"};
  Histogram& send_latency_;
  Counter& rate_limited_;
  ErasureDriver erasures_{storage_};
};

}  // namespace chat4all::frontend
