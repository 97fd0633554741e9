#include "base/rcu.hpp"

// Function calls into liburcu, not its inline versions: inlining them
// (_LGPL_SOURCE) is for LGPL-compatible code only. A call costs about 2 ns
// a lookup (see README, the direct read path).
#include <urcu/urcu-memb.h>

#include <new>
#include <utility>

namespace karlton::rcu {

namespace {

// Built in the garbage's own `retire_link`; the head first, so the callback
// finds the link at the head's address.
struct retired_link {
  rcu_head head;
  garbage* owner;
};
static_assert(sizeof(retired_link) <= sizeof(garbage::retire_link) &&
                alignof(retired_link) <= alignof(void*),
              "garbage::retire_link must hold a retired_link");

// liburcu wants each reader thread registered before its first read lock and
// unregistered before it exits; a thread-local object does both, lazily.
struct registration {
  registration() { urcu_memb_register_thread(); }
  ~registration() { urcu_memb_unregister_thread(); }
};

void destroy(rcu_head* head) {
  // `head` is the first member of a standard-layout link `retire` built.
  delete reinterpret_cast<retired_link*>(head)->owner;
}

} // namespace

void register_this_thread() {
  thread_local registration registered;
  (void)registered;
}

void retire(std::unique_ptr<garbage> g) {
  if (!g) return;
  register_this_thread(); // call_rcu wants a registered caller
  auto owner = g.release();
  auto link = new (owner->retire_link) retired_link{{}, owner};
  urcu_memb_call_rcu(&link->head, destroy);
}

void barrier() {
  register_this_thread();
  urcu_memb_barrier();
}

read_section::read_section() noexcept {
  register_this_thread();
  urcu_memb_read_lock();
}

read_section::~read_section() {
  urcu_memb_read_unlock();
}

} // namespace karlton::rcu
