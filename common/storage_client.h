// Typed commands, queries and appends on the replicated state (schema/records.h),
// over a RouterClient: encodes the body, routes it by its key, and decodes
// the result struct of the reply.
//
// Thread-safety: as RouterClient; `done` runs once, on the router client's
// thread, so it must be quick (post longer work elsewhere).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>

#include "common/codec.h"
#include "common/ids.h"
#include "common/router_client.h"
#include "schema/records.h"

namespace chat4all {

// The answer to one command or query: `value` is set exactly when status is
// kOk. Otherwise status, detail and field say why (kTimeout / kUnavailable
// when no storage answer came at all).
template <typename Result>
struct StorageOutcome {
  wire::Status status = wire::Status::kInternal;
  std::optional<Result> value;
  std::string detail;
  std::string field;
  bool ok() const { return status == wire::Status::kOk; }
};

class StorageClient {
 public:
  explicit StorageClient(RouterClient& routers) : routers_(routers) {}

  template <typename Result, typename Body>
  void command(std::string key, wire::CommandKind kind, const Body& body,
               std::function<void(StorageOutcome<Result>)> done, std::string trace_id = {}) {
    submit<Result>(wire::MessageType::kCommandRequest, wire::MessageType::kCommandReply,
                   wire::CommandRequest{std::move(key), kind, codec::pack_body(body)},
                   std::move(done), std::move(trace_id));
  }

  template <typename Result, typename Body>
  void query(std::string key, wire::QueryKind kind, const Body& body,
             std::function<void(StorageOutcome<Result>)> done, std::string trace_id = {}) {
    submit<Result>(wire::MessageType::kQueryRequest, wire::MessageType::kQueryReply,
                   wire::QueryRequest{std::move(key), kind, codec::pack_body(body)},
                   std::move(done), std::move(trace_id));
  }

  // One append (a replicated round on the conversation's partition): the reply's status and
  // detail are the outcome's, and `value` is the AppendReply when the message is stored.
  void append(const wire::AppendRequest& request,
              std::function<void(StorageOutcome<wire::AppendReply>)> done,
              std::string trace_id = {}) {
    send(wire::MessageType::kAppendRequest, request, wire::MessageType::kAppendReply,
         std::move(done), std::move(trace_id),
         [](StorageOutcome<wire::AppendReply>& outcome, const codec::Frame& reply) {
           auto answer = reply.body<wire::AppendReply>();
           if (!answer) return false;
           outcome.status = answer->status;
           outcome.detail = answer->detail;
           outcome.field = answer->field;
           if (outcome.ok()) outcome.value = std::move(*answer);
           return true;
         });
  }

  // A command whose result carries nothing (wire says "(empty)").
  struct Empty {
    MSGPACK_DEFINE();
  };

 private:
  template <typename Result, typename Request>
  void submit(wire::MessageType type, wire::MessageType reply_type, const Request& request,
              std::function<void(StorageOutcome<Result>)> done, std::string trace_id) {
    send(type, request, reply_type, std::move(done), std::move(trace_id),
         [](StorageOutcome<Result>& outcome, const codec::Frame& reply) {
           auto answer = reply.body<wire::CommandReply>();
           if (!answer) return false;
           outcome.status = answer->status;
           outcome.detail = std::move(answer->detail);
           outcome.field = std::move(answer->field);
           if (outcome.ok()) {
             outcome.value = codec::unpack_body<Result>(answer->body);
             if (!outcome.value) {
               outcome.status = wire::Status::kInternal;
               outcome.detail = "reply body does not match its kind";
             }
           }
           return true;
         });
  }

  // Sends `request` and unwraps what comes back, the same way for every kind of reply: no
  // answer (timeout, no router) and an ErrorReply become the outcome's status and detail; a
  // reply of `reply_type` is read by `read` (false: its body is malformed); anything else is
  // malformed.
  template <typename Result, typename Request, typename Read>
  void send(wire::MessageType type, const Request& request, wire::MessageType reply_type,
            std::function<void(StorageOutcome<Result>)> done, std::string trace_id, Read read) {
    const wire::Header header{wire::kWireVersion, type, ids::next_request_id(),
                              trace_id.empty() ? ids::new_trace_id() : std::move(trace_id)};
    routers_.submit(header.request_id, codec::encode(header, request),
                    [done = std::move(done), reply_type, read](wire::Status status,
                                                               std::optional<codec::Frame> reply) {
                      StorageOutcome<Result> outcome;
                      outcome.status = status;
                      if (status != wire::Status::kOk) return done(std::move(outcome));
                      if (reply->header().type == wire::MessageType::kErrorReply) {
                        auto error = reply->body<wire::ErrorReply>();
                        outcome.status = error ? error->status : wire::Status::kInternal;
                        outcome.detail = error ? error->detail : "malformed error reply";
                        return done(std::move(outcome));
                      }
                      if (reply->header().type != reply_type || !read(outcome, *reply)) {
                        outcome = {};
                        outcome.status = wire::Status::kInternal;
                        outcome.detail = "malformed reply";
                      }
                      done(std::move(outcome));
                    });
  }

  RouterClient& routers_;
};

}  // namespace chat4all
