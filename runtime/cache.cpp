#include "runtime/cache.hpp"

#include <thread>

#include <caf/send.hpp>

namespace karlton {

namespace detail {

void submit(gate& g, const shard_route& route, shard_job* job,
            std::chrono::steady_clock::time_point deadline) {
  // Counted while we touch the shard, so shutdown can wait for us (bridge.hpp).
  g.active.fetch_add(1, std::memory_order_seq_cst);
  if (g.closed.load(std::memory_order_seq_cst)) {
    g.active.fetch_sub(1, std::memory_order_seq_cst);
    job->abandon(make_error(errc::shut_down, "the karlton runtime has stopped"));
    return;
  }
  while (!route.inbox->push(job)) {
    if (std::chrono::steady_clock::now() >= deadline) {
      g.active.fetch_sub(1, std::memory_order_seq_cst);
      job->abandon(make_error(errc::overloaded,
                              "the shard's ingress queue stayed full until the call "
                              "timed out; raise ingress-capacity or slow down"));
      return;
    }
    std::this_thread::yield();
  }
  if (route.inbox->claim_doorbell()) caf::anon_send(route.actor, doorbell_atom::value);
  g.active.fetch_sub(1, std::memory_order_seq_cst);
}

} // namespace detail

std::vector<shard_actor> cache::shards() const {
  std::vector<shard_actor> out;
  for (const auto& r : core_->routes)
    out.push_back(r.actor);
  return out;
}

} // namespace karlton
