// The frontend's presence reports to storage (nodes/storage/presence.h): the
// shell around PresenceLedger. Sessions take a Hold while they are open; a
// thread sends what the ledger says is due as kReportPresence commands
// (tenant_key partitions) and feeds the answers back.
//
// The instance name is the node's name and a random suffix chosen at start,
// so a restarted frontend never renews the lease of its previous life: the
// storage leader expires that one and its users go offline, unless they are
// back by then (reported by the new instance).
//
// Timing: a change is sent at once (opened/closed wake the thread) and
// otherwise looked at every kTick; with stream.presence_grace_ms of grace
// before an offline and the lease (stream.presence_lease_ms) renewed at a
// third of its length.
//
// Threading: hold() and Hold's release from any thread; start() and stop()
// from the owner's. Answers arrive on the router client's thread and only
// touch the ledger under the mutex. Bounded: the ledger holds the users of
// open sessions and those within their grace; at most one report per tenant
// is in flight.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/json_log.h"
#include "common/router_client.h"
#include "common/storage_client.h"
#include "common/topology.h"
#include "nodes/frontend/presence_ledger.h"

namespace chat4all::frontend {

class PresenceReporter {
 public:
  static constexpr std::chrono::milliseconds kTick{250};
  // How long stop() waits for the final offline reports.
  static constexpr std::chrono::milliseconds kStopWait{1000};

  PresenceReporter(const StreamSettings& settings, const std::string& node_name);
  ~PresenceReporter();  // stop()
  PresenceReporter(const PresenceReporter&) = delete;
  PresenceReporter& operator=(const PresenceReporter&) = delete;

  // One open stream of a user; released on destruction or release().
  class Hold {
   public:
    Hold() = default;
    Hold(Hold&& other) noexcept
        : reporter_(std::exchange(other.reporter_, nullptr)),
          tenant_(std::move(other.tenant_)),
          user_(std::move(other.user_)) {}
    Hold& operator=(Hold&& other) noexcept;
    ~Hold() { release(); }
    void release();

   private:
    friend class PresenceReporter;
    Hold(PresenceReporter* reporter, std::string tenant, std::string user)
        : reporter_(reporter), tenant_(std::move(tenant)), user_(std::move(user)) {}
    PresenceReporter* reporter_ = nullptr;
    std::string tenant_;
    std::string user_;
  };
  Hold hold(const std::string& tenant, const std::string& user);

  // Starts the thread; `routers` must outlive stop().
  void start(RouterClient& routers);
  // Reports every user offline (waiting at most kStopWait for the answers),
  // then joins. Idempotent.
  void stop();

  const std::string& instance() const { return instance_; }

 private:
  void closed(const std::string& tenant, const std::string& user);
  void run();
  // Sends what the ledger says is due; `lock` (of mutex_) is held on entry and
  // return, released while submitting.
  void send_due(std::unique_lock<std::mutex>& lock);

  const std::uint32_t lease_ms_;
  const std::string instance_;
  std::mutex mutex_;
  std::condition_variable wake_;
  PresenceLedger ledger_;      // guarded by mutex_
  bool stopping_ = false;      // guarded by mutex_
  bool wake_pending_ = false;  // guarded by mutex_: something may be due
  std::optional<StorageClient> storage_;
  std::thread thread_;
  Log log_{"presence"};
};

}  // namespace chat4all::frontend
