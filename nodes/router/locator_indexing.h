// The router's shell around LocatorIndexer (locator_indexer.h): it runs on
// every router, in every topology (with or without channels), and moves the
// indexer's reads, kIndexMessages commands and acknowledgements through a
// StorageClient of its own.
//
// Partitions are split among routers as for channel routing
// (Topology::partitions_read_by: router i of n by name order owns p % n == i),
// so each partition's locator outbox has exactly one reader while every
// router runs. A router that is down leaves its partitions' entries in their
// outboxes until it (or a restarted one) reads them; until then those messages
// are found by id only through the frontend that accepted them (its cache).
//
// Threading: start() runs a thread of its own that owns the indexer; storage
// answers (RouterClient thread) are posted to it through a bounded inbox.
#pragma once

#include <atomic>

#include "common/json_log.h"
#include "common/loop_thread.h"
#include "common/topology.h"

namespace chat4all::router {

class LocatorIndexing {
 public:
  LocatorIndexing(const Topology& topology, const NodeSpec& self);
  ~LocatorIndexing();  // stops
  void start();
  void stop();

 private:
  const Topology& topology_;
  const NodeSpec& self_;
  Log log_{"locator_indexing"};
  LoopThread thread_;  // last: stopped before the members it uses go
};

}  // namespace chat4all::router
