#include "actors/pg_listener_actor.hpp"

#include <algorithm>
#include <cmath>

#include <caf/all.hpp>

namespace karlton {

namespace {

// The thread: runs the loop until `pg_listener::stop`. It never receives:
// the loop blocks in poll() on the connection and its wake-up eventfd.
void listener_loop(caf::blocking_actor*, std::shared_ptr<pg_listener> listener) {
  listener->run();
}

} // namespace

void change_feed::stop() {
  if (listener) listener->stop();
  if (source) caf::anon_send_exit(source, caf::exit_reason::user_shutdown);
}

change_feed start_change_feed(caf::actor_system& sys, pg_listener_options opts,
                              change_source_setup setup) {
  if (!opts.time_source) opts.time_source = setup.time_source;
  // Filled before the loop starts, read only by the loop's thread. All
  // reports come from that one thread, so they reach the source in order.
  auto to = std::make_shared<change_source_actor>();
  pg_listener_events events;
  events.up = [to] { caf::anon_send(*to, pg_up_atom::value); };
  events.down = [to](const std::string& why) {
    caf::anon_send(*to, pg_down_atom::value, why);
  };
  events.changes = [to](std::vector<pg_change> cs, uint64_t malformed) {
    caf::anon_send(*to, pg_changes_atom::value, std::move(cs), malformed);
  };
  events.heard = [to](clock::time_point sent_at, double usage,
                      const std::string& triggers, bool with_changes) {
    // Millionths, not a double: CAF 0.17's float serializer never ends on an
    // infinity or NaN (the messages fuzzer found it), so no message carries one.
    auto ppm = std::isfinite(usage) ? std::clamp(usage, 0.0, 1.0) * 1e6 + 0.5 : 0.0;
    caf::anon_send(*to, pg_heard_atom::value,
                   static_cast<int64_t>(sent_at.time_since_epoch().count()),
                   static_cast<uint32_t>(ppm), triggers, with_changes);
  };
  events.barrier_done = [to](uint64_t id) {
    caf::anon_send(*to, pg_barrier_done_atom::value, id);
  };
  change_feed feed;
  feed.listener = std::make_shared<pg_listener>(std::move(opts), std::move(events));
  std::weak_ptr<pg_listener> weak = feed.listener;
  setup.barrier = [weak](uint64_t id) {
    if (auto l = weak.lock()) l->barrier(id);
  };
  feed.source = sys.spawn(change_source, std::move(setup));
  *to = feed.source;
  feed.thread = sys.spawn<caf::detached>(listener_loop, feed.listener);
  return feed;
}

} // namespace karlton
