#include "common/topology_change.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <map>
#include <sstream>

namespace chat4all {

namespace {

void emit_sorted(YAML::Emitter& out, const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      std::map<std::string, YAML::Node> sorted;
      for (const auto& item : node) sorted.emplace(item.first.Scalar(), item.second);
      out << YAML::BeginMap;
      for (const auto& [key, value] : sorted) {
        out << YAML::Key << key << YAML::Value;
        emit_sorted(out, value);
      }
      out << YAML::EndMap;
      break;
    }
    case YAML::NodeType::Sequence:
      out << YAML::BeginSeq;
      for (const auto& item : node) emit_sorted(out, item);
      out << YAML::EndSeq;
      break;
    case YAML::NodeType::Scalar:
      out << node.Scalar();
      break;
    default:
      out << YAML::Null;
  }
}

std::vector<std::string> names_of(const Topology& topology, NodeRole role) {
  std::vector<std::string> names;
  for (const NodeSpec* node : topology.with_role(role)) names.push_back(node->name);
  return names;
}

std::vector<std::string> minus(const std::vector<std::string>& a,
                               const std::vector<std::string>& b) {
  std::vector<std::string> result;
  for (const auto& item : a)
    if (std::find(b.begin(), b.end(), item) == b.end()) result.push_back(item);
  return result;
}

// "host:port" of every endpoint, the way two nodes could clash on one address.
std::set<std::string> addresses_of(const NodeSpec& node) {
  std::set<std::string> addresses;
  for (const auto& [name, port] : node.endpoints)
    addresses.insert((node.host == "localhost" ? "127.0.0.1" : node.host) + ":" +
                     std::to_string(port));
  return addresses;
}

std::string without_nodes(const std::string& text) {
  YAML::Node root = YAML::Load(text);
  if (root.IsMap()) root.remove("nodes");
  YAML::Emitter out;
  emit_sorted(out, root);
  return out.c_str();
}

std::string joined(const std::vector<std::string>& names) {
  std::string text;
  for (const auto& name : names) text += (text.empty() ? "" : " ") + name;
  return text;
}

}  // namespace

std::string normalise_topology_text(const std::string& yaml_text) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::ParserException& e) {
    throw TopologyError("invalid YAML: " + e.msg);
  }
  YAML::Emitter out;
  emit_sorted(out, root);
  return std::string(out.c_str()) + "\n";
}

std::vector<std::string> PartitionMove::joining() const {
  return minus(to, from);
}
std::vector<std::string> PartitionMove::leaving() const {
  return minus(from, to);
}

bool TopologyPlan::changes_nodes() const {
  for (const auto& role : roles)
    if (!role.added.empty() || !role.removed.empty()) return true;
  return false;
}

TopologyPlan plan_topology_change(const Topology& current, const std::string& current_text,
                                  const Topology& next, const std::string& next_text) {
  TopologyPlan plan;
  plan.partition_count = next.partition_count;
  auto refuse = [&](std::string why) { plan.refusals.push_back(std::move(why)); };

  // The ring's shape: changing it would move every partition at once, not a share of them.
  if (next.cluster_name != current.cluster_name)
    refuse("cluster.name changes from '" + current.cluster_name + "' to '" + next.cluster_name +
           "': that is another cluster");
  if (next.partition_count != current.partition_count)
    refuse("cluster.partition_count changes from " + std::to_string(current.partition_count) +
           " to " + std::to_string(next.partition_count) + ": it cannot change at run time");
  if (next.replication_factor != current.replication_factor)
    refuse("cluster.replication_factor changes from " + std::to_string(current.replication_factor) +
           " to " + std::to_string(next.replication_factor) + ": it cannot change at run time");
  if (next.virtual_nodes != current.virtual_nodes)
    refuse("cluster.virtual_nodes changes from " + std::to_string(current.virtual_nodes) + " to " +
           std::to_string(next.virtual_nodes) + ": it cannot change at run time");

  // A node keeps its name, role, address and key for as long as it exists: peers know it by them.
  for (const NodeSpec& node : next.nodes) {
    const NodeSpec* before = current.find(node.name);
    if (!before) continue;
    if (before->role != node.role)
      refuse("node " + node.name + " changes its role from " + role_name(before->role) + " to " +
             role_name(node.role) + ": remove it in one version, add it in the next");
    else if (before->host != node.host || before->endpoints != node.endpoints)
      refuse("node " + node.name +
             " changes its address: remove it in one version, add it under a new name in the "
             "next");
    else if (before->curve_public_key != node.curve_public_key)
      refuse("node " + node.name + " changes its curve_public_key");
  }
  for (const NodeSpec& added : next.nodes) {
    if (current.find(added.name)) continue;
    for (const NodeSpec& removed : current.nodes) {
      if (next.find(removed.name)) continue;
      const auto a = addresses_of(added), r = addresses_of(removed);
      std::vector<std::string> shared;
      std::set_intersection(a.begin(), a.end(), r.begin(), r.end(), std::back_inserter(shared));
      if (!shared.empty())
        refuse("node " + added.name + " takes the address " + shared.front() + " of removed node " +
               removed.name + " (a renamed node): remove " + removed.name +
               " in one version and add " + added.name + " in the next");
    }
  }

  for (NodeRole role :
       {NodeRole::kFrontend, NodeRole::kRouter, NodeRole::kStorage, NodeRole::kConnector}) {
    const auto before = names_of(current, role), after = names_of(next, role);
    plan.roles.push_back({role, minus(after, before), minus(before, after)});
  }

  const auto before_storage = current.storage_node_names();
  const auto after_storage = next.storage_node_names();
  if (after_storage.size() < before_storage.size() &&
      after_storage.size() < next.replication_factor)
    refuse("removing storage nodes leaves " + std::to_string(after_storage.size()) +
           ", fewer than replication_factor " + std::to_string(next.replication_factor));
  if (minus(before_storage, after_storage).size() == before_storage.size())
    refuse("no storage node of the running cluster stays: every partition would lose its data");

  if (plan.valid() && (!minus(after_storage, before_storage).empty() ||
                       !minus(before_storage, after_storage).empty())) {
    const Ring old_ring(before_storage, current.partition_count, current.replication_factor,
                        current.virtual_nodes);
    const Ring new_ring(after_storage, next.partition_count, next.replication_factor,
                        next.virtual_nodes);
    for (PartitionId p = 0; p < next.partition_count; ++p)
      if (old_ring.replicas(p) != new_ring.replicas(p))
        plan.moves.push_back({p, old_ring.replicas(p), new_ring.replicas(p)});
  }

  try {
    plan.settings_changed = without_nodes(current_text) != without_nodes(next_text);
  } catch (const YAML::Exception& e) {
    refuse(std::string("cannot compare the files' settings: ") + e.what());
  }
  return plan;
}

std::string describe_plan(const TopologyPlan& plan, const Topology& current, const Topology& next) {
  std::ostringstream out;
  for (const auto& refusal : plan.refusals) out << "refused: " << refusal << "\n";
  for (const auto& role : plan.roles) {
    if (role.added.empty() && role.removed.empty()) continue;
    out << role_name(role.role) << ":";
    for (const auto& name : role.added) out << " +" << name;
    for (const auto& name : role.removed) out << " -" << name;
    out << "\n";
  }
  if (!plan.changes_nodes()) out << "nodes: no change\n";
  out << "partitions moving: " << plan.moves.size() << " of " << plan.partition_count << "\n";
  for (const auto& move : plan.moves)
    out << "  partition " << move.partition << ": [" << joined(move.from) << "] -> ["
        << joined(move.to) << "]\n";
  if (!plan.moves.empty()) {
    std::map<std::string, std::pair<int, int>> held;  // node -> (before, after)
    for (const auto& name : current.storage_node_names()) held[name];
    for (const auto& name : next.storage_node_names()) held[name];
    const Ring old_ring(current.storage_node_names(), current.partition_count,
                        current.replication_factor, current.virtual_nodes);
    const Ring new_ring(next.storage_node_names(), next.partition_count, next.replication_factor,
                        next.virtual_nodes);
    for (PartitionId p = 0; p < plan.partition_count; ++p) {
      for (const auto& name : old_ring.replicas(p)) ++held[name].first;
      for (const auto& name : new_ring.replicas(p)) ++held[name].second;
    }
    out << "replicas per storage node (before -> after):\n";
    for (const auto& [name, counts] : held)
      out << "  " << name << ": " << counts.first << " -> " << counts.second << "\n";
  }
  if (plan.settings_changed)
    out << "settings outside 'nodes' change: each node reads them when it next starts\n";
  return out.str();
}

MoveSchedule::MoveSchedule(std::vector<PartitionMove> moves, std::uint32_t moves_at_once)
    : waiting_(std::move(moves)), budget_(std::max<std::uint32_t>(moves_at_once, 1)) {}

std::vector<PartitionMove> MoveSchedule::start() {
  std::vector<PartitionMove> started;
  auto busy_joining = [&](const PartitionMove& move) {
    for (const auto& node : move.joining())
      for (const auto& running : in_flight_) {
        const auto others = running.joining();
        if (std::find(others.begin(), others.end(), node) != others.end()) return true;
      }
    return false;
  };
  while (in_flight_.size() < budget_ && !waiting_.empty()) {
    auto pick = std::find_if(waiting_.begin(), waiting_.end(),
                             [&](const PartitionMove& move) { return !busy_joining(move); });
    if (pick == waiting_.end()) pick = waiting_.begin();
    in_flight_.push_back(*pick);
    started.push_back(*pick);
    waiting_.erase(pick);
  }
  return started;
}

void MoveSchedule::finished(PartitionId partition) {
  std::erase_if(in_flight_, [&](const PartitionMove& move) { return move.partition == partition; });
}

EndpointDiff diff_endpoints(const std::vector<std::string>& current,
                            const std::vector<std::string>& wanted) {
  const std::set<std::string> have(current.begin(), current.end());
  const std::set<std::string> want(wanted.begin(), wanted.end());
  EndpointDiff diff;
  std::set_difference(want.begin(), want.end(), have.begin(), have.end(),
                      std::back_inserter(diff.connect));
  std::set_difference(have.begin(), have.end(), want.begin(), want.end(),
                      std::back_inserter(diff.disconnect));
  return diff;
}

std::vector<std::string> router_rpc_addresses(const Topology& topology) {
  std::vector<std::string> addresses;
  for (const NodeSpec* node : topology.with_role(NodeRole::kRouter))
    addresses.push_back(node->zmq_address("rpc"));
  return addresses;
}

}  // namespace chat4all
