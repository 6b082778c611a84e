// Where a message goes on outside channels, and what happens when that
// fails: the pure core of a router's channel dispatch.
//
// Input: messages from the partitions' channel outboxes, each already
// resolved by the shell into targets (recipient x channel, with the
// recipient's address there, or none); what connectors say about themselves
// (ConnectorStatus) and how each job went (DeliveryResult); the time.
// Output: jobs to send to connectors, delivery records to write, and how far
// each partition's channel outbox may be acknowledged.
//
// Rules:
// - A target without an address is recorded "no_identity" and never sent.
// - Order: deliveries of one conversation to one recipient on one channel (a
//   lane) go one at a time, in seq order; a failing head holds its lane, so a
//   platform that returns drains the backlog in order.
// - A job goes to a live, connected connector of its channel whose breaker is
//   not open and that has a free slot (half-open: one job at a time); the one
//   with most free slots wins.
// - "accepted" ends the delivery (sent, or delivered when the channel reports
//   no deliveries); "rejected" dead-letters it (failed); "retry", and a job
//   whose connector went silent or did not answer within the lease ("lost"),
//   count an attempt and wait a full-jitter backoff (common/backoff.h), until
//   attempts_max, then dead-letter; "busy" waits briefly and counts nothing.
// - Every attempt is recorded; an outbox entry is acknowledged once every
//   target's final record is written (the shell reports record writes), so a
//   router that dies loses nothing: its successor re-reads the entry and skips
//   what the records say is done.
//
// No sockets, threads or clocks: every call takes `now_ms`; jitter comes
// from a seeded generator.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "common/topology.h"
#include "schema/records.h"

namespace chat4all::router {

struct DispatchLimits {
  std::uint32_t connector_silence_ms = 3000;  // no status this long: the connector is gone
  std::uint32_t lease_margin_ms = 5000;       // a job's lease: the channel's timeout_ms + this
  std::uint32_t busy_wait_ms = 200;           // after "busy", or with no connector available
  std::uint32_t targets_max = 20000;          // held in memory; accepting() says when full
};

// One recipient on one channel of a message, as the shell resolved it.
struct Target {
  std::string recipient_id;
  std::string channel;
  std::string address;              // empty: no identity on the channel
  bool done = false;                // its record already says it ended
  std::uint32_t attempts_made = 0;  // per its record
};

struct RouteWork {
  std::uint32_t partition = 0;
  wire::OutboxEvent event;  // stream kOutboxChannels
  std::vector<Target> targets;
};

struct RecordWrite {
  std::uint64_t token = 0;  // record_written(token) when stored
  wire::ChannelDeliveryUpdate update;
};

struct DispatchOutput {
  std::vector<std::pair<std::string, wire::DeliveryJob>> jobs;  // (connector, job)
  std::vector<RecordWrite> records;
  std::vector<std::pair<std::uint32_t, std::uint64_t>> acks;  // (partition, up_to)
};

struct DispatchCounters {
  std::uint64_t jobs_sent = 0;
  std::uint64_t accepted = 0;
  std::uint64_t retries = 0;
  std::uint64_t dead_lettered = 0;
  std::uint64_t lost = 0;  // no answer within the lease, or the connector went silent
  std::uint64_t busy = 0;
  std::uint64_t no_identity = 0;
  std::uint64_t stale_results = 0;  // for a job no longer in flight
};

class ChannelDispatcher {
 public:
  ChannelDispatcher(std::vector<ChannelSpec> channels, DispatchLimits limits, std::uint64_t seed);

  // Whether to read more work; false when targets_max are held.
  bool accepting() const;
  // The highest outbox index handed in for `partition` (the read cursor).
  std::uint64_t cursor(std::uint32_t partition) const;

  void add(RouteWork work, std::int64_t now_ms);
  void connector_status(const wire::ConnectorStatus& status, std::int64_t now_ms);
  void result(const wire::DeliveryResult& result, std::int64_t now_ms);
  // A record write succeeded; a failed one is handed back with retry_record.
  void record_written(std::uint64_t token);
  void retry_record(RecordWrite write);
  void tick(std::int64_t now_ms);

  // What to do now; clears it.
  DispatchOutput take_output();

  std::size_t targets_held() const { return targets_held_; }
  std::size_t jobs_in_flight() const { return in_flight_.size(); }
  const DispatchCounters& counters() const { return counters_; }

 private:
  struct WorkItem {
    RouteWork work;
    std::size_t unfinished = 0;  // targets whose final record is not written yet
  };
  using LaneKey =
      std::tuple<std::string, std::string, std::string>;  // conversation, recipient, channel
  struct TargetRef {
    std::uint64_t work_id = 0;
    std::size_t index = 0;
  };
  struct Lane {
    std::deque<TargetRef> queue;  // head first
    std::int64_t ready_at_ms = 0;
    std::string job_in_flight;  // job id, or empty
  };
  struct InFlight {
    LaneKey lane;
    std::string connector;
    std::string channel;
    std::int64_t sent_at_ms = 0;
    std::int64_t deadline_ms = 0;
  };
  struct ConnectorState {
    std::int64_t last_seen_ms = 0;
    std::map<std::string, wire::ChannelCapacity> channels;
    std::map<std::string, std::uint32_t> outstanding;  // per channel
  };

  const ChannelSpec* spec(const std::string& channel) const;
  Target& target_of(const TargetRef& ref);
  wire::ChannelDeliveryUpdate record_for(const TargetRef& ref, const std::string& state) const;
  void emit_record(const TargetRef& ref, wire::ChannelDeliveryUpdate update, bool final);
  void finish_target(std::uint64_t work_id);
  void pop_head(const LaneKey& key, std::int64_t now_ms);
  void dispatch(std::int64_t now_ms);
  std::string pick_connector(const std::string& channel, std::int64_t now_ms) const;
  void end_attempt(const std::string& job_id, const wire::DeliveryResult& result,
                   std::int64_t now_ms);
  void update_acks();

  std::vector<ChannelSpec> channels_;
  DispatchLimits limits_;
  std::mt19937_64 random_;
  std::uint64_t next_work_id_ = 1;
  std::uint64_t next_job_ = 1;
  std::uint64_t next_token_ = 1;
  std::map<std::uint64_t, WorkItem> work_;
  std::map<LaneKey, Lane> lanes_;
  std::set<LaneKey> ready_lanes_;  // lanes with a head and no job in flight
  std::unordered_map<std::string, InFlight> in_flight_;
  std::map<std::string, ConnectorState> connectors_;
  std::unordered_map<std::uint64_t, std::uint64_t> final_records_;  // token -> work id
  // Per partition: outbox indexes handed in and not yet finished, and the
  // highest handed in.
  std::map<std::uint32_t, std::set<std::uint64_t>> open_indexes_;
  std::map<std::uint32_t, std::uint64_t> cursors_;
  std::map<std::uint32_t, std::uint64_t> acked_;
  std::size_t targets_held_ = 0;
  DispatchOutput output_;
  DispatchCounters counters_;
};

// "<message_id>/<recipient_id>/<channel>": a delivery's id on every attempt.
std::string delivery_id(const std::string& message_id, const std::string& recipient_id,
                        const std::string& channel);

// The channels a message's choice means for one recipient: the named ones
// (but "internal"), or with no choice ("all") every channel of the message's
// tenant the recipient has an identity on. Pure; the shell resolves with it.
std::vector<Target> resolve_targets(const std::vector<std::string>& choice,
                                    const std::vector<ChannelSpec>& channels,
                                    const std::string& tenant_id, const std::string& recipient_id,
                                    const std::vector<wire::Identity>& identities);

}  // namespace chat4all::router
