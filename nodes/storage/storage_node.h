// The storage node: owns the partitions whose preferred leader it is, appends
// messages to its MessageStore in group commits and serves history reads.
//
// Wire: a ZMQ ROUTER bound on the node's "rpc" endpoint. Each request is
// [peer identity][correlation token][frame]; the reply repeats the first two
// frames, so a router matches replies to requests without decoding them.
//
// Threading: run() owns the socket and the store's write side on the calling
// thread until `stop` becomes true (checked at least every 100 ms).
#pragma once

#include <atomic>
#include <memory>

#include "common/json_log.h"
#include "common/ring.h"
#include "common/topology.h"
#include "nodes/storage/message_store.h"

namespace chat4all::storage {

class StorageNode {
 public:
  StorageNode(const Topology& topology, const NodeSpec& self);
  void run(const std::atomic<bool>& stop);

 private:
  const Topology& topology_;
  const NodeSpec& self_;
  Ring ring_;
  MessageStore store_;
  Log log_{"storage"};
};

}  // namespace chat4all::storage
