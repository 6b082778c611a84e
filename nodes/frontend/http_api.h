// The public REST API v1, independent of the HTTP server that carries it:
// a parsed request in, a response out (at once or later, from another
// thread, through the Respond callback, which is called exactly once).
//
// Thread-safe: handle() may run on several event-loop threads at once.
#pragma once

#include <functional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/auth.h"
#include "common/json_log.h"
#include "common/metrics.h"
#include "common/topology.h"
#include "nodes/frontend/login_pool.h"
#include "nodes/frontend/message_validation.h"
#include "common/router_client.h"

namespace chat4all::frontend {

struct ApiRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query, as sent
  std::string authorization;
  std::string content_type;
  std::string body;
};

struct ApiResponse {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
};

class HttpApi {
 public:
  using Respond = std::function<void(ApiResponse)>;

  HttpApi(const Topology& topology, const NodeSpec& self, RouterClient& routers);

  void handle(const ApiRequest& request, Respond respond);

 private:
  void issue_token(const ApiRequest& request, Respond respond);
  void send_message(const ApiRequest& request, const std::string& user_id, Respond respond);
  void read_history(const std::string& conversation_id, std::string_view query, Respond respond);
  // The caller's user id, or nullopt after answering 401.
  std::optional<std::string> authenticate(const ApiRequest& request, Respond& respond);

  const Topology& topology_;
  const NodeSpec& self_;
  RouterClient& routers_;
  auth::TokenSigner signer_;
  std::unordered_map<std::string, std::string> password_hashes_;  // user id -> argon2id
  std::string unknown_user_hash_;  // verified against for unknown users: same cost, no oracle
  MessageLimits message_limits_;
  LoginPool logins_;
  Log log_{"http_api"};
  Histogram& send_latency_;
};

}  // namespace chat4all::frontend
