// `chat4all topology apply FILE [--dry-run] [--moves-at-once N] [--move-timeout-s S]`: applies
// a changed topology file to the running cluster (README.md, "Changing the topology while it
// runs").
//
// Reads the version the cluster stores, prints the plan (common/topology_change.h), and unless
// --dry-run stores FILE as the next version (compare-and-set: an apply racing another on the
// same version fails and stores nothing), then moves each partition whose replica set changes,
// at most N at once, by asking its leader for kChangeReplicas (schema/replica_change.h) until
// it answers `done`. Before storing a version that moves partitions it asks one leader for a
// change to the set it already has: storage that does not carry out replica set changes
// refuses that, and apply stops there with nothing stored.
//
// It talks to the cluster through its routers, as a Curve client with the key pair of a router
// of FILE that runs on this host (run it on such a host; with Curve off, anywhere).
#pragma once

#include <cstdint>
#include <string>

namespace chat4all::runner {

struct ApplyOptions {
  std::string file;
  bool dry_run = false;
  std::uint32_t moves_at_once = 1;
  std::uint32_t move_timeout_s = 600;  // one partition's move; beyond, apply stops
};

// The process's exit status: 0 applied (or nothing to do, or a dry run), 1 the cluster did not
// take it (unreachable, raced, storage refused), 2 the file or the change is invalid.
int apply_topology(const ApplyOptions& options);

}  // namespace chat4all::runner
