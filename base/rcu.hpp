// Deferred reclamation for the direct read path (userspace RCU, Debian's
// liburcu-dev, flavour `memb`). Readers of a shard's table take no lock and
// write nothing shared; the shard, the table's only writer, hands what it
// unlinked to `retire`, which destroys it once every reader that might still
// see it has left its read section. Internal: not a public header.
//
// No fork handlers: liburcu's would start a call_rcu thread (and allocate) in
// every child between fork and exec, where only async-signal-safe calls are
// safe (the test suite's children hung in the allocator under ASan once). A
// child of fork has neither CAF's threads nor liburcu's: the child of a
// process that used karlton may use it only after an exec.
#pragma once

#include <memory>

namespace karlton::rcu {

/// What a writer unlinked and readers may still see: destroyed (its virtual
/// destructor runs) a grace period after `retire`.
struct garbage {
  virtual ~garbage() = default;

  /// Room for retire's link to liburcu (its rcu_head and this object's
  /// address), so that retiring allocates nothing of its own; rcu.cpp
  /// checks the size, and this header stays free of liburcu's.
  alignas(void*) unsigned char retire_link[3 * sizeof(void*)];
};

/// Destroys `g` after every read section running now has ended, on
/// liburcu's `call_rcu` thread; never blocks. May be called from any thread.
void retire(std::unique_ptr<garbage> g);

/// Waits until everything retired before the call is destroyed (liburcu's
/// `rcu_barrier`): for shutdown and for tests that count frees. Never call it
/// inside a read section.
void barrier();

/// Registers the calling thread with liburcu once, and unregisters it when
/// the thread exits: a service's threads and actors need no call of their own.
void register_this_thread();

/// A read section: while one lives on a thread, nothing retired after it
/// began is destroyed. Cheap (a thread-local counter and a compiler barrier
/// with the kernel's membarrier), nestable, never blocks.
class read_section {
public:
  read_section() noexcept;
  ~read_section();
  read_section(const read_section&) = delete;
  read_section& operator=(const read_section&) = delete;
};

} // namespace karlton::rcu
