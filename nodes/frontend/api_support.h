// What the endpoint areas of the REST API (api_*.cc) share: the caller a
// token names, responses, the mapping of storage outcomes to HTTP, and small
// combinators for chains and fans of storage calls.
//
// Thread-safety: everything here is stateless; storage callbacks run on the
// router client's thread (see common/storage_client.h), so continuations
// must stay quick.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "common/codec.h"
#include "common/storage_client.h"
#include "nodes/frontend/validation_support.h"

namespace chat4all::frontend {

struct ApiResponse {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
};

using Respond = std::function<void(ApiResponse)>;

// Who a verified token speaks for. Everything the request touches belongs to
// `tenant`.
struct Caller {
  std::string tenant;
  std::string subject;           // user id, or client id of an admin
  std::string role;              // "user" | "admin"
  std::int64_t issued_at_s = 0;  // of the token

  bool admin() const { return role == "admin"; }
  // The user storage checks membership for; empty for an admin, who sees the
  // whole tenant.
  std::string requester() const { return admin() ? std::string() : subject; }
  // The user a user token acts as; empty for an admin.
  const std::string& user() const {
    static const std::string kNone;
    return admin() ? kNone : subject;
  }
};

ApiResponse json_response(int status, const nlohmann::json& body);
ApiResponse error_response(const ApiError& error);
ApiResponse error_response(int status, const std::string& code, const std::string& message,
                           const std::string& field = "");
// 204 No Content.
ApiResponse no_content();
// Sets (or replaces) a header.
void set_header(ApiResponse& response, const std::string& name, std::string value);

// Codes of the 404 / 409 answers, named by what the endpoint manages.
struct FailureCodes {
  const char* not_found = "not_found";
  const char* exists = "exists";
  const char* conflict = "conflict";
};

// The answer for a storage outcome that is not ok: kNotFound 404, kExists and
// kConflict 409, kInvalid 400 (with storage's field), kUnavailable and
// kNotOwner 503 with Retry-After, kTimeout 504, kStorageFull 507, else 500.
ApiResponse storage_error(wire::Status status, const std::string& detail, const std::string& field,
                          const FailureCodes& codes = {});
template <typename Result>
ApiResponse storage_error(const StorageOutcome<Result>& outcome, const FailureCodes& codes = {}) {
  return storage_error(outcome.status, outcome.detail, outcome.field, codes);
}

// A storage callback that continues with `next(value)` when the outcome is ok
// and answers the client with storage_error() otherwise.
template <typename Result, typename Next>
std::function<void(StorageOutcome<Result>)> on_ok(Respond respond, Next next,
                                                  FailureCodes codes = {}) {
  return [respond = std::move(respond), next = std::move(next),
          codes](StorageOutcome<Result> outcome) mutable {
    if (!outcome.ok()) return respond(storage_error(outcome, codes));
    next(std::move(*outcome.value));
  };
}

// Starts `count` storage calls at once (start(i, done_i)) and calls `done`
// once with all outcomes, in index order, when the last one is in. The
// callbacks may come from several threads (a refused submission answers on
// the caller's), hence the mutex.
template <typename Result>
void gather(
    std::size_t count,
    const std::function<void(std::size_t, std::function<void(StorageOutcome<Result>)>)>& start,
    std::function<void(std::vector<StorageOutcome<Result>>)> done) {
  if (count == 0) return done({});
  struct State {
    std::mutex mutex;
    std::vector<StorageOutcome<Result>> outcomes;
    std::size_t remaining;
    std::function<void(std::vector<StorageOutcome<Result>>)> done;
  };
  auto state = std::make_shared<State>();
  state->outcomes.resize(count);
  state->remaining = count;
  state->done = std::move(done);
  for (std::size_t i = 0; i < count; ++i)
    start(i, [state, i](StorageOutcome<Result> outcome) {
      std::unique_lock lock(state->mutex);
      state->outcomes[i] = std::move(outcome);
      if (--state->remaining > 0) return;
      lock.unlock();
      state->done(std::move(state->outcomes));
    });
}

// The typed reply of a routed append or read, or the error response the
// client gets instead: no answer in time, an ErrorReply from a router or
// storage node, a reply of the wrong shape, or a reply whose status is not ok.
template <typename Reply>
std::variant<Reply, ApiResponse> unwrap_reply(wire::Status status,
                                              const std::optional<codec::Frame>& reply,
                                              wire::MessageType expected,
                                              const FailureCodes& codes = {}) {
  if (status != wire::Status::kOk) return storage_error(status, "", "", codes);
  if (reply->header().type == wire::MessageType::kErrorReply) {
    auto error = reply->body<wire::ErrorReply>();
    return error ? storage_error(error->status, error->detail, "", codes)
                 : storage_error(wire::Status::kInternal, "malformed error reply", "");
  }
  auto answer = reply->header().type == expected ? reply->body<Reply>() : std::nullopt;
  if (!answer) return storage_error(wire::Status::kInternal, "malformed reply", "");
  if (answer->status != wire::Status::kOk) {
    std::string field;
    if constexpr (requires { answer->field; }) field = answer->field;
    return storage_error(answer->status, answer->detail, field, codes);
  }
  return std::move(*answer);
}

// "?after=" of the next page: the last id of a full page, else null.
template <typename Item, typename Id>
nlohmann::json next_after(const std::vector<Item>& items, std::uint32_t limit, Id id_of) {
  if (items.empty() || items.size() < limit) return nullptr;
  return id_of(items.back());
}

}  // namespace chat4all::frontend
