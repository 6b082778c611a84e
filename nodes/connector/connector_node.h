// The connector node. Today it hosts the webhook dispatcher: it reads the
// event outbox of the partitions assigned to it (schema/records.h
// OutboxEvent) by cursor, POSTs each event to the tenant's webhooks that
// subscribed to its type (Standard Webhooks signature, libcurl), retries with
// backoff and jitter, records every attempt (kRecordDelivery) and acknowledges
// the outbox (kAckOutbox) once every delivery of an event has ended.
//
// Partitions are split among the connector nodes of the topology by name
// order: node i of n takes the partitions p with p % n == i.
//
// Delivery is at least once: events not yet acknowledged when the node stops
// are delivered again, with the same webhook-id, after it restarts.
//
// Threading: run() owns everything on the calling thread; replies from
// storage (router client thread) and HTTP completions (sender thread) are
// posted to it through a bounded inbox.
#pragma once

#include <atomic>

#include "common/json_log.h"
#include "common/topology.h"

namespace chat4all::connector {

class ConnectorNode {
 public:
  ConnectorNode(const Topology& topology, const NodeSpec& self);
  void run(const std::atomic<bool>& stop);

 private:
  const Topology& topology_;
  const NodeSpec& self_;
  Log log_{"connector"};
};

}  // namespace chat4all::connector
