#include "nodes/runner/topology_apply.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <sstream>
#include <thread>

#include "common/curve.h"
#include "common/router_client.h"
#include "common/storage_client.h"
#include "common/topology.h"
#include "common/topology_change.h"
#include "common/topology_follower.h"
#include "schema/replica_change.h"
#include "schema/topology_version.h"

namespace chat4all::runner {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::uint32_t kRequestTimeoutMs = 5000;
constexpr std::uint32_t kPendingMax = 256;
// A move answered "not done" is asked again after this; a leader that could not be reached
// (no leader yet, timeout) too.
constexpr std::chrono::milliseconds kMoveStepInterval{200};

// Retriable answers (no router connected yet, a new router storage does not admit yet, a
// leader changing) are asked again this many times, this far apart.
constexpr int kReadAttempts = 20;
constexpr std::chrono::milliseconds kRetryInterval{250};

bool retriable(wire::Status status) {
  return status == wire::Status::kNotOwner || status == wire::Status::kUnavailable ||
         status == wire::Status::kTimeout;
}

// Blocking calls over the asynchronous StorageClient: apply does one thing at a time.
class Cluster {
 public:
  explicit Cluster(const Topology& topology)
      : routers_(router_rpc_addresses(topology), kRequestTimeoutMs, kPendingMax),
        storage_(routers_) {}

  void use_routers(std::vector<std::string> addresses) {
    routers_.set_routers(std::move(addresses));
  }

  template <typename Result, typename Body>
  StorageOutcome<Result> command(const std::string& key, wire::CommandKind kind, const Body& body) {
    std::promise<StorageOutcome<Result>> answer;
    auto future = answer.get_future();
    storage_.command<Result>(key, kind, body, [&answer](StorageOutcome<Result> outcome) {
      answer.set_value(std::move(outcome));
    });
    return future.get();
  }

  template <typename Result, typename Body>
  StorageOutcome<Result> query(const std::string& key, wire::QueryKind kind, const Body& body) {
    std::promise<StorageOutcome<Result>> answer;
    auto future = answer.get_future();
    storage_.query<Result>(key, kind, body, [&answer](StorageOutcome<Result> outcome) {
      answer.set_value(std::move(outcome));
    });
    return future.get();
  }

 private:
  RouterClient routers_;
  StorageClient storage_;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw TopologyError(path + ": cannot open the topology file");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string outcome_text(wire::Status status, const std::string& detail) {
  return std::string(codec::status_name(status)) + (detail.empty() ? "" : ": " + detail);
}

std::string names(const std::vector<std::string>& list) {
  std::string text;
  for (const auto& name : list) text += (text.empty() ? "" : " ") + name;
  return "[" + text + "]";
}

// Where the storage nodes of `topology` listen, for leaders that do not know them yet.
std::map<std::string, wire::ReplicaEndpoint> storage_endpoints(const Topology& topology) {
  std::map<std::string, wire::ReplicaEndpoint> endpoints;
  for (const NodeSpec* node : topology.with_role(NodeRole::kStorage))
    endpoints[node->name] = {node->name, node->zmq_address("rpc"),
                             topology.curve.enabled ? curve::public_key_of(topology, *node) : ""};
  return endpoints;
}

wire::ChangeReplicas change_to(const PartitionMove& move, const std::vector<std::string>& target,
                               std::uint64_t version,
                               const std::map<std::string, wire::ReplicaEndpoint>& endpoints) {
  wire::ChangeReplicas change{move.partition, version, target, {}};
  for (const auto& name : target) change.endpoints.push_back(endpoints.at(name));
  return change;
}

// The storage moves of a stored version, at most `moves_at_once` at a time. False when one
// failed or did not finish in time (printed).
bool drive_moves(Cluster& cluster, std::vector<PartitionMove> moves, std::uint64_t version,
                 const std::map<std::string, wire::ReplicaEndpoint>& endpoints,
                 const ApplyOptions& options) {
  const std::size_t total = moves.size();
  MoveSchedule schedule(std::move(moves), options.moves_at_once);
  struct Running {
    PartitionMove move;
    Clock::time_point started;
    std::string phase;
  };
  std::map<PartitionId, Running> running;
  std::size_t finished = 0;
  while (!schedule.done()) {
    for (auto& move : schedule.start()) {
      std::printf("partition %u: moving %s -> %s\n", move.partition, names(move.from).c_str(),
                  names(move.to).c_str());
      running[move.partition] = {std::move(move), Clock::now(), ""};
    }
    for (auto it = running.begin(); it != running.end();) {
      Running& step = it->second;
      const auto outcome = cluster.command<wire::ChangeReplicasResult>(
          wire::partition_key(step.move.partition), wire::CommandKind::kChangeReplicas,
          change_to(step.move, step.move.to, version, endpoints));
      if (!outcome.ok() && !retriable(outcome.status)) {
        std::fprintf(stderr,
                     "partition %u: the leader refused the move (%s); version %llu is stored and "
                     "the other partitions keep their sets: fix the cause and run apply again\n",
                     step.move.partition, outcome_text(outcome.status, outcome.detail).c_str(),
                     static_cast<unsigned long long>(version));
        return false;
      }
      if (outcome.ok() && outcome.value->phase != step.phase) {
        step.phase = outcome.value->phase;
        std::printf("partition %u: %s voters=%s learners=%s\n", step.move.partition,
                    step.phase.c_str(), names(outcome.value->voters).c_str(),
                    names(outcome.value->learners).c_str());
      }
      if (outcome.ok() && outcome.value->done) {
        ++finished;
        std::printf("partition %u: done (%zu of %zu)\n", step.move.partition, finished, total);
        schedule.finished(step.move.partition);
        it = running.erase(it);
        continue;
      }
      if (Clock::now() - step.started > std::chrono::seconds(options.move_timeout_s)) {
        std::fprintf(stderr, "partition %u: not done after %u s (last: %s); stopping\n",
                     step.move.partition, options.move_timeout_s,
                     outcome.ok() ? step.phase.c_str()
                                  : outcome_text(outcome.status, outcome.detail).c_str());
        return false;
      }
      ++it;
    }
    if (!running.empty()) std::this_thread::sleep_for(kMoveStepInterval);
  }
  return true;
}

}  // namespace

int apply_topology(const ApplyOptions& options) {
  const std::string file_text = read_file(options.file);
  const Topology next = load_topology(options.file);
  const std::string next_text = normalise_topology_text(file_text);
  const auto base_dir = std::filesystem::absolute(options.file).parent_path();

  // Curve: apply presents the key pair of a router of this host.
  const NodeSpec* identity = nullptr;
  for (const NodeSpec* router : next.with_role(NodeRole::kRouter))
    if (!identity && is_local_host(router->host)) identity = router;
  if (!identity && next.curve.enabled) {
    std::fprintf(stderr,
                 "topology apply: no router of %s runs on this host; run apply where one does "
                 "(it talks to the cluster with that router's Curve key)\n",
                 options.file.c_str());
    return 1;
  }
  std::optional<curve::NodeSecurity> security;
  if (identity) security.emplace(next, *identity);
  Cluster cluster(next);

  // The file's routers may include new ones the cluster does not admit yet: a read that finds
  // one of those is answered by no storage node and is asked again.
  auto read_stored = [&] {
    StorageOutcome<wire::TopologyVersion> outcome;
    for (int attempt = 0; attempt < kReadAttempts; ++attempt) {
      outcome = cluster.query<wire::TopologyVersion>(
          wire::topology_key(), wire::QueryKind::kGetTopology, wire::TopologyLookup{});
      if (!retriable(outcome.status)) break;
      std::this_thread::sleep_for(kRetryInterval);
    }
    return outcome;
  };
  const auto stored = read_stored();
  if (stored.status == wire::Status::kNotFound) {
    std::fprintf(stderr,
                 "topology apply: the cluster stores no topology version yet (its routers record "
                 "theirs when they start): is a router running?\n");
    return 1;
  }
  if (!stored.ok()) {
    std::fprintf(stderr, "topology apply: cannot read the cluster's topology version (%s)\n",
                 outcome_text(stored.status, stored.detail).c_str());
    return 1;
  }
  const std::uint64_t version = stored.value->version;
  const Topology current = parse_topology(
      stored.value->text, "the cluster's topology version " + std::to_string(version), base_dir);
  // From here on only through the routers the cluster runs, which every node admits.
  cluster.use_routers(router_rpc_addresses(current));
  if (stored.value->text == next_text) {
    std::printf("the cluster runs %s already: version %llu\n", options.file.c_str(),
                static_cast<unsigned long long>(version));
    return 0;
  }

  const TopologyPlan plan = plan_topology_change(current, stored.value->text, next, next_text);
  std::printf("version %llu -> %llu (%s)\n", static_cast<unsigned long long>(version),
              static_cast<unsigned long long>(version + 1), options.file.c_str());
  std::fputs(describe_plan(plan, current, next).c_str(), stdout);
  if (!plan.valid()) {
    std::fprintf(stderr, "topology apply: the change is refused; nothing was stored\n");
    return 2;
  }
  if (options.dry_run) {
    std::printf("dry run: nothing was stored\n");
    return 0;
  }

  std::map<std::string, wire::ReplicaEndpoint> endpoints;
  if (plan.moves_partitions()) {
    try {
      endpoints = storage_endpoints(next);
    } catch (const std::exception& error) {
      std::fprintf(stderr, "topology apply: %s; nothing was stored\n", error.what());
      return 1;
    }
    // Asking a leader for the set its group has is harmless where replica set changes are
    // carried out, and refused where they are not: then nothing half-moved gets recorded.
    const PartitionMove& first = plan.moves.front();
    StorageOutcome<wire::ChangeReplicasResult> probe;
    for (int attempt = 0; attempt < kReadAttempts; ++attempt) {
      probe = cluster.command<wire::ChangeReplicasResult>(
          wire::partition_key(first.partition), wire::CommandKind::kChangeReplicas,
          change_to(first, first.from, version, storage_endpoints(current)));
      if (!retriable(probe.status)) break;
      std::this_thread::sleep_for(kRetryInterval);
    }
    if (!probe.ok()) {
      std::fprintf(stderr,
                   "topology apply: this change moves %zu partitions, and the storage nodes do "
                   "not carry out replica set changes (partition %u's leader answered %s); "
                   "nothing was stored\n",
                   plan.moves.size(), first.partition,
                   outcome_text(probe.status, probe.detail).c_str());
      return 1;
    }
  }

  // Compare-and-set, so asking again after no answer is safe: a store that landed late makes
  // the next one conflict, and the stored version then says it was this one.
  StorageOutcome<wire::TopologyVersion> written;
  for (int attempt = 0; attempt < kReadAttempts; ++attempt) {
    written = cluster.command<wire::TopologyVersion>(
        wire::topology_key(), wire::CommandKind::kStoreTopology,
        wire::StoreTopology{version, version + 1, next_text});
    if (!retriable(written.status) && written.status != wire::Status::kConflict) break;
    const auto now_stored = read_stored();
    if (now_stored.ok() && now_stored.value->version == version + 1 &&
        now_stored.value->text == next_text) {
      written = now_stored;
      break;
    }
    if (written.status == wire::Status::kConflict ||
        (now_stored.ok() && now_stored.value->version != version))
      break;
    std::this_thread::sleep_for(kRetryInterval);
  }
  if (written.status == wire::Status::kConflict) {
    std::fprintf(stderr,
                 "topology apply: another version was stored meanwhile (%s); nothing was stored: "
                 "run apply again to plan against it\n",
                 written.detail.c_str());
    return 1;
  }
  if (!written.ok()) {
    std::fprintf(stderr,
                 "topology apply: storing version %llu failed (%s); run apply again (if it was "
                 "stored after all, apply says so)\n",
                 static_cast<unsigned long long>(version + 1),
                 outcome_text(written.status, written.detail).c_str());
    return 1;
  }
  std::printf("stored version %llu; every node follows it within a few seconds\n",
              static_cast<unsigned long long>(version + 1));
  // A node started before its peers know its key is refused by them, and ZeroMQ does not
  // connect again after a refused handshake: added nodes start once every node has read the
  // version that admits them.
  bool adds_nodes = false;
  for (const auto& role : plan.roles) adds_nodes = adds_nodes || !role.added.empty();
  if (adds_nodes) {
    std::fflush(stdout);
    std::this_thread::sleep_for(2 * kTopologyReadInterval + std::chrono::seconds(1));
    std::printf("every node has read version %llu by now: start the nodes it adds\n",
                static_cast<unsigned long long>(version + 1));
  }
  if (plan.moves_partitions() && !drive_moves(cluster, plan.moves, version + 1, endpoints, options))
    return 1;
  std::printf("version %llu applied\n", static_cast<unsigned long long>(version + 1));
  return 0;
}

}  // namespace chat4all::runner
