// The write-back flusher: a thin actor over `flush_state`. It takes the dirty
// writes of a cache's shards, journals them (optional), batches them into
// the store through the store writer, retries failures, and tells the shards
// which entries are clean. It never blocks: disk work is the store writer's
// and the journal writer's (both detached).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <caf/typed_response_promise.hpp>

#include "actors/dirty_budget.hpp"
#include "actors/flush_state.hpp"
#include <karlton/base/clock.hpp>
#include <karlton/messages/shard_interface.hpp>
#include <karlton/messages/writes.hpp>

namespace karlton {

struct flusher_setup {
  flush_options config;
  std::shared_ptr<const clock> time_source;
  store_writer_actor writer;
  /// Workers that load from the store, for keys without a dirty write.
  std::vector<loader_actor> readers;
  /// Null without a journal.
  journal_actor journal;
  std::shared_ptr<dirty_budget> budget;
  /// Where warnings go, one line each (the runtime's log, runtime/log.hpp):
  /// CAF's own log macros are compiled out of Debian's CAF. Null: nowhere.
  std::function<void(const std::string&)> warn;
};

struct flusher_actor_state {
  std::unique_ptr<flush_state> writes;
  flusher_setup setup;
  std::vector<shard_actor> shards; // by index, learned from their first write
  // Group commit: writes that arrive while an append runs go in the next one.
  numbered_writes unjournaled;
  std::vector<caf::typed_response_promise<caf::ok_atom>> unjournaled_acks;
  uint64_t unjournaled_through = 0; // flush_state's number of the last of them
  // Units of max-dirty held by rewrites of pending keys: each replaced its
  // key's write in `writes` at once, but its copy waits here (and then in
  // the append) until the group is written; released then, so a stalled
  // fsync cannot let copies pile up past max-dirty.
  uint64_t unjournaled_coalesced = 0;
  // The numbers of stored writes whose records no stored mark in the journal
  // covers yet: the next group commit carries the mark, or it goes alone.
  std::vector<uint64_t> stored_unmarked;
  bool journal_busy = false;
  bool journal_has_records = false;
  bool truncating = false; // a truncation in flight; its marks return if it fails
  // An append failed: the file lacks writes the flusher took, so nothing more
  // is appended (or stored) until a rewrite from memory succeeds.
  bool journal_broken = false;
  uint64_t journal_bytes = 0;     // its records' bytes, as the flusher wrote them
  uint64_t journal_rewritten = 0; // the length the last rewrite left
  uint64_t journal_appends = 0;
  uint64_t journal_records = 0;
  uint64_t journal_rewrites = 0;
  uint64_t journal_failures = 0;
  std::vector<std::pair<uint64_t, caf::typed_response_promise<caf::ok_atom>>>
    flush_waiters;
  struct draining {
    time_point deadline;
    caf::typed_response_promise<uint64_t> promise;
  };
  std::optional<draining> drain;
  bool drained = false; // shutdown's drain answered: no more writes come
  std::optional<time_point> armed_for;
  uint64_t timer_generation = 0;
  size_t next_reader = 0;

  static inline const char* name = "karlton.flusher";
};

flusher_actor::behavior_type
flusher(flusher_actor::stateful_pointer<flusher_actor_state> self, flusher_setup setup);

} // namespace karlton
