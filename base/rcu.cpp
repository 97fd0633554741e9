#include "base/rcu.hpp"

// Function calls into liburcu, not its inline versions: inlining them
// (_LGPL_SOURCE) is for LGPL-compatible code only. A call costs about 2 ns
// a lookup (see README, the direct read path).
#include <urcu/urcu-memb.h>

#include <new>
#include <utility>

namespace karlton::rcu {

namespace {

// liburcu wants each reader thread registered before its first read lock and
// unregistered before it exits; a thread-local object does both, lazily.
struct registration {
  registration() { urcu_memb_register_thread(); }
  ~registration() { urcu_memb_unregister_thread(); }
};

struct retired_node {
  rcu_head head;
  std::unique_ptr<garbage> payload;
};

void destroy(rcu_head* head) {
  // `head` is the first member of a standard-layout node we allocated.
  delete reinterpret_cast<retired_node*>(head);
}

} // namespace

void register_this_thread() {
  thread_local registration registered;
  (void) registered;
}

void retire(std::unique_ptr<garbage> g) {
  if (!g) return;
  register_this_thread(); // call_rcu wants a registered caller
  auto node = new retired_node{{}, std::move(g)};
  urcu_memb_call_rcu(&node->head, destroy);
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
