// How a router writes the message locator ((tenant, message_id) ->
// conversation_id) behind the committed log, so that a send is one replicated
// round on its conversation's partition only.
//
// Storage puts a "message.locate" event on the locator outbox
// (wire::kOutboxLocator) of the partition that stored a message. The indexer
// reads the outboxes of the partitions this router owns by cursor, gathers the
// entries of all of them into rounds, and writes each round as one
// kIndexMessages command per locator partition (the partition of the entry's
// locator_key). Only when every command of a round has succeeded does it
// acknowledge each outbox up to the last entry the round carried.
//
// Nothing is lost by a crash or a failure: the outboxes are the durable copy
// and the cursors live in memory only. A new indexer (a restarted router) reads
// every outbox from its acknowledged point again and writes those entries once
// more, which changes nothing (kIndexMessages replays are no-ops). A failed
// read is repeated, a failed command is sent again with the same entries, a
// failed acknowledgement is sent again; until then nothing past it is lost,
// only read again after a restart.
//
// Pure decisions: no sockets, threads or clock inside; time comes in as
// `now_ms`. LocatorIndexing (locator_indexing.h) moves the bytes. Not
// thread-safe: one owner thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string_view>
#include <vector>

#include "common/ring.h"
#include "schema/records.h"

namespace chat4all::router {

struct IndexerLimits {
  std::uint32_t page_events = 512;  // per outbox read
  // Entries of one round, all its commands together (so each command stays within
  // wire::kIndexMessagesEntriesMax). More wait for the next round.
  std::size_t round_entries_max = 4096;
  // Entries read and not yet written, per partition: at the bound its outbox is not read
  // further until a round takes some (storage keeps them meanwhile).
  std::size_t held_per_partition_max = 4096;
  std::int64_t idle_poll_ms = 40;      // an outbox found empty is read again after this
  std::int64_t failure_wait_ms = 200;  // after a failed read, command or acknowledgement
};

struct OutboxRead {
  PartitionId partition = 0;
  std::uint64_t after = 0;  // events with a greater index
  std::uint32_t limit = 0;
};

struct IndexCommand {
  std::uint64_t token = 0;  // names the command in command_done()
  PartitionId locator_partition = 0;
  wire::IndexMessages body;
};

struct OutboxAck {
  PartitionId partition = 0;
  std::uint64_t up_to = 0;
};

struct IndexerOutput {
  std::vector<OutboxRead> reads;
  std::vector<IndexCommand> commands;
  std::vector<OutboxAck> acks;
  // Entries refused because their id names another conversation of the tenant (the first
  // indexed keeps it), for the shell to count and log.
  std::vector<wire::LocatorConflict> conflicts;
};

struct IndexerCounters {
  std::uint64_t entries_read = 0;
  std::uint64_t added = 0;     // ids that were free
  std::uint64_t replayed = 0;  // entries written before (a restart, a retried command)
  std::uint64_t conflicts = 0;
  std::uint64_t commands_sent = 0;
  std::uint64_t commands_failed = 0;
  std::uint64_t reads_failed = 0;
  std::uint64_t acks_failed = 0;
  std::uint64_t rounds = 0;  // rounds completed (acknowledged)
};

class LocatorIndexer {
 public:
  // The locator partition of a routing key (Ring::partition_of).
  using PartitionOf = std::function<PartitionId(std::string_view key)>;

  LocatorIndexer(const std::vector<PartitionId>& sources, PartitionOf partition_of,
                 IndexerLimits limits = {});

  // Reads that are due, and a new round when none is under way and entries wait.
  void tick(std::int64_t now_ms);
  // The answer to an OutboxRead: the events, or nullopt when the read failed.
  void outbox_read(PartitionId partition, std::optional<std::vector<wire::OutboxEvent>> events,
                   std::int64_t now_ms);
  // The answer to an IndexCommand: its result, or nullopt when it failed.
  void command_done(std::uint64_t token, std::optional<wire::IndexMessagesResult> result,
                    std::int64_t now_ms);
  // The answer to an OutboxAck.
  void ack_done(PartitionId partition, std::uint64_t up_to, bool ok, std::int64_t now_ms);

  IndexerOutput take_output() { return std::exchange(output_, {}); }

  const IndexerCounters& counters() const { return counters_; }
  std::size_t entries_held() const;  // read and not yet acknowledged
  bool round_under_way() const { return !round_.commands.empty(); }

 private:
  struct Source {
    std::uint64_t read_to = 0;              // highest index read
    std::uint64_t acked_to = 0;             // highest index acknowledged (or being acknowledged)
    std::deque<wire::OutboxEvent> waiting;  // read, in no round yet, in index order
    std::size_t in_round = 0;               // entries of this partition in the current round
    bool reading = false;
    std::int64_t next_read_ms = 0;
    bool ack_failed = false;  // send the acknowledgement of acked_to again at next_ack_ms
    std::int64_t next_ack_ms = 0;
  };
  struct Command {
    IndexCommand command;
    bool answered = false;
    bool failed = false;
  };
  struct Round {
    std::map<std::uint64_t, Command> commands;   // by token
    std::map<PartitionId, std::uint64_t> up_to;  // per source partition: its last entry here
    std::int64_t resend_at_ms = 0;               // failed commands go again then
  };

  void start_round();
  void resend_failed(std::int64_t now_ms);
  void finish_round();
  std::uint64_t send(PartitionId locator_partition, wire::IndexMessages body);

  std::map<PartitionId, Source> sources_;
  PartitionOf partition_of_;
  IndexerLimits limits_;
  Round round_;
  PartitionId next_first_source_ = 0;  // where the next round starts taking, for fairness
  std::uint64_t next_token_ = 1;
  IndexerOutput output_;
  IndexerCounters counters_;
};

}  // namespace chat4all::router
