// Drives a user's erasure job (nodes/storage/erasure.h) through the user's
// conversations: per conversation, kEraseMessages on its partition until the
// scan reaches the head, then kEraseProgress on the tenant's partition, which
// records it and, after the last one, marks the job done.
//
// Every step is idempotent, so the job survives anything that stops a driver
// (a leader change, a timeout, this frontend's death): the next POST or GET
// of the job on any frontend drives it on from what storage recorded. A
// failed step stops this driver; it does not retry by itself.
//
// Bounds: one driver per (tenant, user) on this frontend, at most
// kErasuresDrivenMax at once (more are left to the next request); one
// storage request in flight per driver.
//
// Thread-safe: callbacks come on the router client's thread.
#pragma once

#include <cstddef>
#include <mutex>
#include <set>
#include <string>

#include "common/storage_client.h"
#include "schema/retention.h"

namespace chat4all::frontend {

class ErasureDriver {
 public:
  static constexpr std::size_t kErasuresDrivenMax = 64;

  explicit ErasureDriver(StorageClient& storage) : storage_(storage) {}

  // Drives `job` on from where it stands, unless it is done or already driven here.
  void drive(const wire::EraseJob& job, const std::string& trace_id);
  bool driving(const std::string& tenant, const std::string& user) const;

 private:
  struct Step {
    std::string tenant, user, trace_id;
    std::string conversation;
    std::uint64_t index = 0;
    std::uint64_t erased = 0;
  };
  void erase_from(Step step, std::uint64_t from_seq);
  void record(Step step);
  void next(const wire::EraseJob& job, const std::string& trace_id);
  void finish(const std::string& tenant, const std::string& user);

  StorageClient& storage_;
  mutable std::mutex mutex_;
  std::set<std::string> driven_;  // "<tenant>/<user>", guarded by mutex_
};

}  // namespace chat4all::frontend
