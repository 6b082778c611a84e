// Moving a partition's replica set while the cluster runs (schema/README.md,
// "Replica set changes"). CommandKind::kChangeReplicas (90), key
// partition_key(partition), goes to the partition's leader like any command.
// The leader moves its group one safe step toward `target` per request
// (learner added, learner promoted, voter removed, leadership handed to
// target[0]) and answers where the group stands; the caller repeats the
// request until `done`. Asking again for the same target is harmless.
#pragma once

#include <cstdint>
#include <msgpack.hpp>
#include <string>
#include <vector>

namespace chat4all::wire {

// How to reach a storage node the leader may not know from the topology it
// was started with.
struct ReplicaEndpoint {
  std::string name;
  std::string rpc;               // tcp://host:port of its rpc endpoint
  std::string curve_public_key;  // Z85; empty where Curve is off
  MSGPACK_DEFINE(name, rpc, curve_public_key);
};

struct ChangeReplicas {
  std::uint32_t partition = 0;
  std::uint64_t topology_version = 0;  // the topology version that asks for this set
  std::vector<std::string> target;     // ring order; target[0] is the preferred leader
  std::vector<ReplicaEndpoint> endpoints;
  MSGPACK_DEFINE(partition, topology_version, target, endpoints);
};

struct ChangeReplicasResult {
  std::vector<std::string> voters;    // the group's voters now, ring order
  std::vector<std::string> learners;  // replicas still catching up
  bool done = false;                  // voters == target, no learner, no change in flight
  std::string phase;  // "adding_learner" | "catching_up" | "promoting" | "removing"
                      // | "transferring" | "done"
  MSGPACK_DEFINE(voters, learners, done, phase);
};

}  // namespace chat4all::wire
