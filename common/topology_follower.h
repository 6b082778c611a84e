// How a running node learns the cluster's topology version (schema/README.md, "Topology
// versions"): it reads the version stored in replicated storage every few seconds and, when
// the stored text differs from what it runs with, adopts it: the node's Curve admission and
// connections learn the new nodes, and the node's own callback connects, drops and reassigns
// what the new version changes. A node started with an older file than the stored version is
// told so at its first read and follows the stored one.
//
// TopologyVersionTracker is the pure decision; TopologyFollower the shell (a thread of its
// own, a StorageClient over the node's RouterClient).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/json_log.h"
#include "common/router_client.h"
#include "common/topology.h"
#include "schema/topology_version.h"

namespace chat4all {

// How often a node reads the stored version: a new version reaches every node within about
// this (plus one storage round trip).
inline constexpr std::chrono::milliseconds kTopologyReadInterval{2000};

class TopologyVersionTracker {
 public:
  // `running_text`: the normalised text the node started with (its file).
  explicit TopologyVersionTracker(std::string running_text);

  struct Adoption {
    std::uint64_t version = 0;
    std::string text;
    bool at_start = false;  // the first version read: the node's file was not the stored one
  };
  // A stored version read from storage: what the node must switch to, if anything. Versions
  // only grow; one at or below what was seen (an answer that overtook a newer one) is ignored.
  std::optional<Adoption> observe(const wire::TopologyVersion& stored);

  std::uint64_t version() const { return version_; }  // 0: none read yet
  const std::string& text() const { return text_; }

 private:
  std::string text_;
  std::uint64_t version_ = 0;
};

class TopologyFollower {
 public:
  // Runs on the follower's thread with the adopted topology (kept alive by the follower until
  // the next adoption and by the shared_ptr the callback may keep) and its version.
  using OnChange = std::function<void(std::shared_ptr<const Topology> next, std::uint64_t version)>;

  // `record_when_empty`: when no version is stored yet, store the node's own file as version 1
  // (routers do, so that a cluster has a version from its first start on). `routers` must
  // outlive the follower.
  TopologyFollower(const Topology& started_with, std::string self_name, RouterClient& routers,
                   OnChange on_change, bool record_when_empty = false,
                   std::chrono::milliseconds interval = kTopologyReadInterval);
  ~TopologyFollower();  // stops the thread; no callback runs after it returns
  TopologyFollower(const TopologyFollower&) = delete;
  TopologyFollower& operator=(const TopologyFollower&) = delete;

  std::uint64_t version() const { return version_.load(); }

 private:
  void run();
  void read_once();

  const std::filesystem::path base_dir_;
  const std::string self_name_;
  RouterClient& routers_;
  const OnChange on_change_;
  const bool record_when_empty_;
  const std::chrono::milliseconds interval_;
  TopologyVersionTracker tracker_;
  std::shared_ptr<const Topology> adopted_;
  std::atomic<std::uint64_t> version_{0};
  Log log_{"topology"};

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;  // guarded by mutex_
  std::thread thread_;     // last
};

// The normalised text of the file a topology was loaded from; empty when it cannot be read.
std::string running_topology_text(const Topology& topology);

}  // namespace chat4all
