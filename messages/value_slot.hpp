// Atomic access to a `value` handle that threads other than its writer read
// without a lock: the entries of a shard's table, which callers search on
// their own threads (the direct read path, actors/entry_table.hpp).
// Internal: not a public header.
#pragma once

#include <karlton/messages/value.hpp>

namespace karlton {

/// The writer stores with release ordering, so a reader that loads the new
/// buffer (acquire) sees everything written before it; the writer is the one
/// thread that changes the slot. A reader must keep the loaded buffer alive
/// until it holds its own reference: it loads inside an RCU read section, and
/// the writer retires what it replaced (base/rcu.hpp) instead of dropping it.
struct value_slot {
  /// Stores `v` into `slot` and returns what `slot` held. Writer only.
  static value exchange(value& slot, value v) noexcept;
  /// A handle to what `slot` holds now (one atomic increment), or empty.
  static value load(const value& slot) noexcept;
  /// True if `slot` holds `v`'s very buffer now (no increment).
  static bool holds(const value& slot, const value& v) noexcept {
    return __atomic_load_n(&slot.block_, __ATOMIC_ACQUIRE) == v.block_;
  }
  /// Hints the CPU to load the buffer `slot` holds (a batch's lookups).
  static void prefetch(const value& slot) noexcept {
    __builtin_prefetch(__atomic_load_n(&slot.block_, __ATOMIC_RELAXED));
  }
  /// Hints the CPU to load the buffer `slot` holds for writing: its count,
  /// which releasing the handle changes. Writer only.
  static void prefetch_to_release(const value& slot) noexcept {
    __builtin_prefetch(__atomic_load_n(&slot.block_, __ATOMIC_RELAXED), 1);
  }
  // GCC's __atomic builtins on the plain pointer member: std::atomic_ref is
  // C++20, and making the member atomic would change `value` for everyone.
};

} // namespace karlton
