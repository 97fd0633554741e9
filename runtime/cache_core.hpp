// What a cache handle shares with its runtime: options, routes to the shards,
// and the actors stopped with them. Internal (the public cache.hpp only names it).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "actors/shard_state.hpp"
#include "runtime/bridge.hpp"
#include <karlton/messages/loading.hpp>
#include <karlton/messages/writes.hpp>
#include <karlton/runtime/options.hpp>

namespace karlton {

namespace detail {

/// Everything a cache handle needs; shared with the runtime.
struct cache_core {
  cache_options options;
  shard_options shard_cfg; // per-shard bounds, for checks made before a call
  std::vector<shard_route> routes;
  std::vector<loader_actor> loaders; // stopped with the shards
  store_writer_actor store_writer;   // write-through and write-back
  flusher_actor flusher;             // write-back
  journal_actor journal_writer;      // write-back with a journal
  std::shared_ptr<gate> runtime_gate;
  /// Puts refused for their size before reaching a shard: counted in
  /// `stats().rejected` with those the shards refused.
  std::atomic<uint64_t> refused_puts{0};
};

} // namespace detail

} // namespace karlton
