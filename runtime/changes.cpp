// The runtime's change feed (docs/plans/postgres.md §3-5): the LISTEN
// connection on its own thread, the change source that turns what it hears
// into invalidations and repairs of the fed caches, and the requests that go
// to that source. Every node listens for itself: no peer hop, no leader.
#include <caf/all.hpp>

#include "actors/feed_routes.hpp"
#include "actors/pg_listener_actor.hpp"
#include "actors/read_lease.hpp"
#include "runtime/bridge.hpp"
#include "runtime/runtime_detail.hpp"
#include "stores/pg_payload.hpp"
#include <karlton/runtime/runtime.hpp>
#include <karlton/stores/postgres_store.hpp>

namespace karlton {

namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

// The listener's view of the options: where, on which channel, how often.
pg_listener_options listener_options(const postgres_options& opts,
                                     std::shared_ptr<const clock> time_source) {
  pg_listener_options l;
  l.conninfo = opts.uri;
  l.channel = opts.channel;
  l.heartbeat = duration_cast<milliseconds>(opts.heartbeat);
  l.reconnect_base = duration_cast<milliseconds>(opts.reconnect_base);
  l.reconnect_max = duration_cast<milliseconds>(opts.reconnect_max);
  l.connect_timeout = duration_cast<milliseconds>(opts.connect_timeout);
  l.time_source = std::move(time_source);
  l.parse = parse_payload;
  return l;
}

} // namespace

caf::expected<std::shared_ptr<change_feed>> runtime::live_feed() {
  std::lock_guard<std::mutex> guard{caches_mtx_};
  if (stopped_) return detail::stopped_error();
  return feed_;
}

caf::error runtime::start_change_feed(postgres_options opts) {
  if (auto err = validate(opts)) return err;
  if (!opts.listen)
    return make_error(errc::invalid_option,
                      "start_change_feed: karlton.postgres.listen is false");
  std::lock_guard<std::mutex> guard{caches_mtx_};
  if (stopped_) return detail::stopped_error();
  if (feed_)
    return make_error(errc::invalid_option,
                      "start_change_feed: this runtime has a change feed already");
  change_source_setup setup;
  setup.limits.lease = opts.lease;
  setup.limits.max_group_keys = opts.max_group_keys;
  setup.limits.max_group_bytes = opts.max_group_bytes;
  setup.routes = std::make_shared<feed_routes>();
  // Lapsed until the feed listens and has repaired (the change source makes
  // sure): a value loaded before LISTEN may have changed unheard.
  // A lapse clears the fed caches' shards, or caps their TTLs at repair-ttl.
  setup.lease = std::make_shared<read_lease>(opts.repair_ttl);
  setup.lease->limit_to(clock::time_point{});
  setup.time_source = clock_;
  setup.repair_ttl = opts.repair_ttl;
  fed_ = setup.routes;
  feed_lease_ = setup.lease;
  feed_ = std::make_shared<change_feed>(
    karlton::start_change_feed(*sys_, listener_options(opts, clock_), std::move(setup)));
  forget_logger_of_this_thread(); // spawning parked one here
  return caf::none;
}

caf::error runtime::sync_changes(caf::timespan timeout) {
  // Held while waiting: shutdown stops the feed (which answers this sync)
  // before it lets the actor system go.
  detail::system_pass pass{*gate_};
  if (!pass) return detail::stopped_error();
  if (auto err = refused_in_actor()) return err;
  auto feed = live_feed();
  if (!feed) return std::move(feed.error());
  if (!*feed)
    return make_error(errc::invalid_option, "sync_changes: call start_change_feed first");
  auto r = detail::ask<bool>(*sys_, (*feed)->source, timeout, pg_sync_atom::value);
  if (!r && r.error() == caf::sec::request_timeout)
    return make_error(errc::timeout, "sync_changes: the change feed did not catch up "
                                     "in time (it is down, or cannot prove it hears)");
  if (!r && gate_->closed.load()) return detail::stopped_error(); // the feed stopped
  if (!r) return std::move(r.error());
  if (!*r) return detail::stopped_error(); // the feed stopped (shutdown) meanwhile
  return caf::none;
}

caf::expected<karlton::change_feed_stats> runtime::change_stats() {
  detail::system_pass pass{*gate_};
  if (!pass) return detail::stopped_error();
  if (auto err = refused_in_actor()) return err;
  auto feed = live_feed();
  if (!feed) return std::move(feed.error());
  if (!*feed) return karlton::change_feed_stats{};
  return detail::ask<karlton::change_feed_stats>(*sys_, (*feed)->source,
                                                 detail::bus_timeout, pg_stats_atom::value);
}

void runtime::stop_change_feed(caf::scoped_actor& self) {
  if (!feed_) return;
  // The listener's loop returns at once (stop wakes its poll), which ends
  // its thread; the source stops on the exit message. Both are gone before
  // the shards stop, so nothing invalidates a stopped shard.
  self->monitor(feed_->source);
  self->monitor(feed_->thread);
  feed_->stop();
  for (int pending = 2; pending > 0; --pending)
    self->receive([](const caf::down_msg&) {});
}

} // namespace karlton
