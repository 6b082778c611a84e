#include "common/topology_follower.h"

#include <fstream>
#include <sstream>

#include "common/curve.h"
#include "common/storage_client.h"
#include "common/topology_change.h"

namespace chat4all {

TopologyVersionTracker::TopologyVersionTracker(std::string running_text)
    : text_(std::move(running_text)) {}

std::optional<TopologyVersionTracker::Adoption> TopologyVersionTracker::observe(
    const wire::TopologyVersion& stored) {
  if (stored.version <= version_) return std::nullopt;
  const bool first = version_ == 0;
  version_ = stored.version;
  if (stored.text == text_) return std::nullopt;
  text_ = stored.text;
  return Adoption{stored.version, stored.text, first};
}

std::string running_topology_text(const Topology& topology) {
  std::ifstream in(topology.source_path);
  if (!in) return {};
  std::stringstream text;
  text << in.rdbuf();
  try {
    return normalise_topology_text(text.str());
  } catch (const TopologyError&) {
    return {};
  }
}

TopologyFollower::TopologyFollower(const Topology& started_with, std::string self_name,
                                   RouterClient& routers, OnChange on_change,
                                   bool record_when_empty, std::chrono::milliseconds interval)
    : base_dir_(std::filesystem::absolute(started_with.source_path).parent_path()),
      self_name_(std::move(self_name)),
      routers_(routers),
      on_change_(std::move(on_change)),
      record_when_empty_(record_when_empty),
      interval_(interval),
      tracker_(running_topology_text(started_with)),
      thread_([this] { run(); }) {}

TopologyFollower::~TopologyFollower() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void TopologyFollower::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    lock.unlock();
    read_once();
    lock.lock();
    wake_.wait_for(lock, interval_, [this] { return stopping_; });
  }
}

void TopologyFollower::read_once() {
  // One read at a time, waited for here: the answer (or the client's timeout) always comes.
  StorageClient storage(routers_);
  std::mutex done_mutex;
  std::condition_variable done;
  std::optional<StorageOutcome<wire::TopologyVersion>> answer;
  auto wait = [&] {
    std::unique_lock lock(done_mutex);
    done.wait(lock, [&] { return answer.has_value(); });
  };
  auto finish = [&](StorageOutcome<wire::TopologyVersion> outcome) {
    std::lock_guard lock(done_mutex);
    answer = std::move(outcome);
    done.notify_all();
  };
  storage.query<wire::TopologyVersion>(wire::topology_key(), wire::QueryKind::kGetTopology,
                                       wire::TopologyLookup{}, finish);
  wait();
  if (answer->status == wire::Status::kNotFound && record_when_empty_ && !tracker_.text().empty()) {
    const std::string text = tracker_.text();
    answer.reset();
    storage.command<wire::TopologyVersion>(wire::topology_key(), wire::CommandKind::kStoreTopology,
                                           wire::StoreTopology{0, 1, text}, finish);
    wait();
    if (answer->ok()) log_.info("topology_version_recorded", {{"version", 1}});
  }
  if (!answer->ok()) return;  // none stored, or storage did not answer: read again later

  const auto adoption = tracker_.observe(*answer->value);
  version_ = tracker_.version();
  if (!adoption) return;
  std::shared_ptr<const Topology> next;
  try {
    next = std::make_shared<const Topology>(parse_topology(
        adoption->text, "topology version " + std::to_string(adoption->version), base_dir_));
  } catch (const TopologyError& error) {
    log_.error("topology_version_invalid",
               {{"version", adoption->version}, {"error", error.what()}});
    return;
  }
  if (adoption->at_start)
    log_.warn("topology_file_older",
              {{"version", adoption->version},
               {"detail",
                "this node's topology file is not the cluster's stored version; the "
                "node follows the stored one"}});
  else
    log_.info("topology_version_adopted", {{"version", adoption->version}});
  if (!next->find(self_name_))
    log_.warn("node_not_in_topology",
              {{"version", adoption->version},
               {"detail", "the stored topology no longer lists this node: stop it"}});
  curve::learn(*next);
  adopted_ = next;
  on_change_(std::move(next), adoption->version);
}

}  // namespace chat4all
