// What a shard holds of a write until the store, the flusher or room takes it
// (actors/shard_writes.cpp), and the handle of a compute that waits its turn
// (actors/shard_compute.cpp). Only the owning shard touches them.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <caf/expected.hpp>

#include "actors/shard_options.hpp"
#include <karlton/messages/ttl.hpp>
#include <karlton/messages/value.hpp>

namespace karlton {

namespace shard_detail {
/// A compute, set_ttl or clear's drop waiting at its shard (shard_compute.cpp).
struct compute_job;
using compute_ptr = std::shared_ptr<compute_job>;
} // namespace shard_detail

/// Told when a write that needed the store (write-through) or the flusher
/// (write-back) is done: for an erase, whether the key was cached (and served).
using write_waiter = std::function<void(caf::expected<bool>)>;

/// A write waiting for the store or flusher (`awaiting_`) or for room (`line_`).
struct pending_write {
  value val; // the put's value, or empty for an erase
  std::string key;
  ttl lifetime;
  write_waiter waiter;
  bool was_cached = false;  // write-back erase: the answer
  uint64_t deadline_ms = 0; // parked: when it fails with overloaded
  bool keep_links = false;  // a compute's put keeps the entry's dependencies
  // Write-back: a compute parked in line (no write yet).
  shard_detail::compute_ptr compute;
  bool turn = false, drop = false; // that compute is set_ttl or a clear's drop: no room
  bool voided = false;         // write-through put: invalidated meanwhile, not installed
  uint64_t kept_expiry_ms = 0; // a compute's: the expiry kept, else `lifetime` counts
  time_point sent{};           // write-through: when it went to the store
};

} // namespace karlton
