// The storage node: hosts a replica of every partition whose replica set
// includes it (one consensus::Replica each), leads some of them, and turns the
// cores' outputs into disk writes and messages.
//
// Wire: a ZMQ ROUTER bound on the node's "rpc" endpoint receives
// [peer identity][token][frame]: routed client requests (token chosen by the
// router, echoed in the reply) and ReplicationBatch frames from the other
// storage nodes (empty token). Replication goes out on one DEALER per peer.
//
// One loop turn: drain what arrived (appends are proposed to the partition's
// core, reads answered from the applied state), tick the cores when the
// consensus clock says so, then collect every core's Ready and
//   1. send the leaders' appends (they may overtake the leader's own fsync),
//   2. append what consensus needs durable (hard states, log changes,
//      snapshot installs) of all partitions as one record to the node-wide
//      write-ahead log, one fsync (group commit across all partitions),
//   3. send acknowledgements and votes (they promise what is now on disk),
//   4. hand the turn to the apply thread (nodes/storage/apply_worker.h),
//      which writes the tables behind the log, many turns per transaction,
//      and hands back the outcomes; the loop answers those clients.
// Reads wait while an answered entry is not yet in the tables. Messages
// between two nodes produced in one turn travel as one batch, so the
// heartbeats of all partitions they share cost one frame.
//
// Threading: run() owns the sockets, the cores and the write-ahead log on
// the calling thread until `stop` becomes true (checked at least every
// 100 ms); the apply thread owns the tables' write side.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <vector>
#include <zmq.hpp>

#include "common/interval_limiter.h"
#include "common/json_log.h"
#include "common/ring.h"
#include "common/topology.h"
#include "nodes/storage/apply_worker.h"
#include "nodes/storage/chunk_store.h"
#include "nodes/storage/consensus.h"
#include "nodes/storage/message_store.h"
#include "nodes/storage/write_ahead_log.h"
#include "schema/records.h"

namespace chat4all::storage {

class StorageNode {
 public:
  StorageNode(const Topology& topology, const NodeSpec& self);
  ~StorageNode();
  void run(const std::atomic<bool>& stop);

 private:
  struct Waiting;
  struct Partition;
  struct Sockets;
  struct Stats;

  void handle_frames(std::vector<zmq::message_t>& frames);
  void handle_append(std::vector<zmq::message_t>& frames, const wire::Header& header,
                     wire::AppendRequest request);
  void handle_read(std::vector<zmq::message_t>& frames, const wire::Header& header,
                   const wire::ReadRequest& request);
  void handle_command(std::vector<zmq::message_t>& frames, const wire::Header& header,
                      wire::CommandRequest request);
  void handle_query(std::vector<zmq::message_t>& frames, const wire::Header& header,
                    const wire::QueryRequest& request);
  // kTyping: the membership check (domain), then typing_limiter_, then the
  // "typing" event on the conversation's topic. Nothing is stored.
  void handle_typing(std::vector<zmq::message_t>& frames, const wire::Header& header,
                     const wire::QueryRequest& request);
  // Every kPresenceSweep on the partitions it leads: proposes kExpirePresence
  // for the presence leases that expired (nodes/storage/presence.h).
  void sweep_presence(std::int64_t now_ms);
  // Every kRetentionSweep on the partitions it leads: proposes kExpireMessages
  // for conversations whose oldest messages passed their retention
  // (nodes/storage/retention.h), with the cutoff from this node's clock.
  void sweep_retention(std::int64_t now_ms);
  // Every kPresenceSweep on the partitions it leads: proposes kExpireUploads
  // for the unfinished uploads past their expiry (nodes/storage/files.h).
  void sweep_uploads(std::int64_t now_ms);
  // A command of the node's own, answered to nobody; false if the partition is
  // not led here or cannot take a write now (the next sweep tries again).
  bool propose_own(PartitionId partition, const wire::ReplicatedCommand& command);
  // Proposes `command` to the partition's core if this node leads it (else
  // redirects, or refuses with storage_full near the map's maximum); the
  // client waits in `waiting` until the entry is applied.
  void propose(std::vector<zmq::message_t>& frames, const wire::Header& header,
               PartitionId partition, const wire::ReplicatedCommand& command, Waiting waiting);
  bool serves_reads(PartitionId partition) const;
  // Sends the hints on the events socket (if any) and clears them.
  void publish(std::vector<wire::Event>& events);
  void handle_replication(const wire::ReplicationBatch& batch);
  // Answers a request for partition `partition` that this node cannot serve
  // as leader: where to go instead, or that there is no leader yet.
  void redirect(zmq::message_t& peer, zmq::message_t& token, const wire::Header& header,
                PartitionId partition);
  void reply(zmq::message_t& peer, zmq::message_t& token, const std::string& frame);
  void error_reply(zmq::message_t& peer, zmq::message_t& token, const wire::Header& request,
                   wire::ErrorReply error);
  bool run_turn();
  void answer_applied();
  void answer(Partition& partition, Waiting& client, std::uint64_t entry_term,
              const AppendOutcome& outcome);
  bool reads_must_wait() const;
  // Holds a read while reads must wait; true if it was held (or refused).
  bool defer_read(std::vector<zmq::message_t>& frames, const wire::Header& header);
  void release_deferred_reads();
  void send_batches(std::map<std::string, std::vector<wire::ReplicationMessage>>& outbox);
  void release_waiting(Partition& partition);
  void note_leadership(Partition& partition);

  const Topology& topology_;
  const NodeSpec& self_;
  Ring ring_;
  MessageStore store_;
  WriteAheadLog wal_;
  std::uint64_t wal_position_ = 0;  // the last record appended
  std::unique_ptr<ApplyWorker> applier_;
  // File chunks, when the node declares a "chunks" endpoint; its own thread.
  std::unique_ptr<ChunkServer> chunk_server_;
  std::uint64_t answered_batch_ = 0;  // the newest apply batch whose outcomes were answered
  std::deque<std::vector<zmq::message_t>> deferred_reads_;
  std::map<PartitionId, std::unique_ptr<Partition>> partitions_;
  std::unique_ptr<Sockets> sockets_;
  std::unique_ptr<Stats> stats_;
  // Typing notices of the conversations led here; a new leader starts empty,
  // so a leadership change may let one notice through early.
  IntervalLimiter typing_limiter_{wire::kTypingIntervalMs, 100000};
  Log log_{"storage"};
};

}  // namespace chat4all::storage
