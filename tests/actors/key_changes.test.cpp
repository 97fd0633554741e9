// The key-change hook (base/key_changes.hpp): every cause of a change reaches
// the listener, once per after-change step, after direct readers see it.
#include "support/caf_catch_bridge.hpp"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "actors/shard_actor.hpp"
#include "support/coordinator_clock.hpp"
#include "support/times.hpp"
#include <karlton/messages/type_ids.hpp>

using namespace karlton;
using namespace std::chrono_literals;
using karlton::test::at;
using karlton::test::t0;
using karlton::testing::coordinator_clock;
using karlton::testing::test_config;

namespace {

/// Records each call: the keys of a batch, or "*" for all_changed. Optionally
/// reads each key directly when told (what a client would re-read).
struct recording_listener final : key_change_listener {
  std::vector<std::vector<std::string>> batches;
  std::shared_ptr<read_side> reads; // null: no direct reads
  std::vector<std::string> seen;    // what direct reads returned ("" = miss)

  void keys_changed(const key_batch& keys) override {
    std::vector<std::string> b;
    keys.for_each([&](std::string_view k) {
      b.emplace_back(k);
      if (reads)
        seen.emplace_back(reads->read(k, static_cast<uint32_t>(hash_key(k))).val.bytes());
    });
    batches.push_back(std::move(b));
  }
  void all_changed() override { batches.push_back({"*"}); }

  /// The batches so far, then forgets them.
  std::vector<std::vector<std::string>> take() { return std::exchange(batches, {}); }
};

using batches = std::vector<std::vector<std::string>>;

struct state_fixture {
  std::shared_ptr<recording_listener> heard = std::make_shared<recording_listener>();
  shard_options cfg;
  state_fixture() {
    cfg.default_ttl = ttl::after(1s);
    cfg.change_listener = heard;
  }
  /// The after-change step's notification.
  batches step(shard_state& s) {
    if (s.pending_effects().changes) s.notify_changes();
    return heard->take();
  }
};

value val(const std::string& k, const std::string& v = "v") {
  return value::make(k, v);
}

} // namespace

TEST_CASE_METHOD(state_fixture, "a put, new or replacing, and an erase are told",
                 "[key-changes]") {
  shard_state s{cfg};
  REQUIRE_FALSE(s.put(val("a", "1"), ttl::cache_default(), t0));
  CHECK(step(s) == batches{{"a"}});
  REQUIRE_FALSE(s.put(val("a", "2"), ttl::cache_default(), t0));
  CHECK(step(s) == batches{{"a"}});
  CHECK(s.erase("a", t0));
  CHECK(step(s) == batches{{"a"}});
  // A key this shard does not hold: by its name.
  CHECK_FALSE(s.erase("never", t0));
  CHECK(step(s) == batches{{"never"}});
  CHECK(step(s).empty()); // nothing changed since
}

TEST_CASE_METHOD(state_fixture, "expiry by the timer and lazily, and eviction, are told",
                 "[key-changes]") {
  cfg.max_entries = 1;
  cfg.policy = eviction_policy_kind::lru;
  shard_state s{cfg};
  REQUIRE_FALSE(s.put(val("timer"), ttl::cache_default(), t0));
  step(s);
  CHECK(s.remove_expired(at(1000ms)) == 1);
  CHECK(step(s) == batches{{"timer"}});
  REQUIRE_FALSE(s.put(val("lazy"), ttl::cache_default(), t0));
  step(s);
  CHECK_FALSE(s.get("lazy", at(1000ms)));
  CHECK(step(s) == batches{{"lazy"}});
  REQUIRE_FALSE(s.put(val("old"), ttl::never(), t0));
  REQUIRE_FALSE(s.put(val("new"), ttl::never(), t0));
  CHECK(s.stats().evictions == 1);
  CHECK(step(s) == batches{{"old", "new", "old"}}); // one step, one batch
}

TEST_CASE_METHOD(state_fixture, "a load's install is told, a voided load's is not",
                 "[key-changes]") {
  cfg.read_through = true;
  shard_state s{cfg};
  auto ignore = [](caf::expected<value>) {};
  REQUIRE_FALSE(s.get_or_load("k", test::table_hash("k"), t0, ignore));
  auto loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  step(s);
  s.complete_load("k", loads[0].second, std::string{"loaded"}, 1ms, t0);
  CHECK(step(s) == batches{{"k"}});
}

TEST_CASE_METHOD(state_fixture, "write-through is told when the store took the write",
                 "[key-changes]") {
  cfg.writes = write_mode::write_through;
  shard_state s{cfg};
  CHECK_FALSE(s.write(val("k"), ttl::never(), t0, [](caf::expected<bool>) {}));
  CHECK(step(s).empty()); // the cache holds nothing new yet
  auto items = s.take_writes();
  s.writes_done({items.at(0).seq}, caf::none, t0);
  CHECK(step(s) == batches{{"k"}});
}

TEST_CASE_METHOD(state_fixture, "write-back is told when the write is accepted",
                 "[key-changes]") {
  cfg.writes = write_mode::write_back;
  cfg.budget = std::make_shared<dirty_budget>(10);
  shard_state s{cfg};
  CHECK_FALSE(s.write(val("k"), ttl::never(), t0, [](caf::expected<bool>) {}));
  CHECK(step(s) == batches{{"k"}});
}

TEST_CASE_METHOD(state_fixture, "tags, events and cascades are told", "[key-changes]") {
  shard_state s{cfg};
  REQUIRE_FALSE(s.put(val("by-tag"), ttl::never(), t0, dependencies{}.on_keys({"t"})));
  REQUIRE_FALSE(
    s.put(val("by-event"), ttl::never(), t0, dependencies{}.on_events({"e"})));
  REQUIRE_FALSE(s.put(val("by-key"), ttl::never(), t0, dependencies{}.on_keys({"k"})));
  step(s);
  s.invalidate_dependents({"t"}, invalidation_cause::tag, t0);
  CHECK(step(s) == batches{{"by-tag"}});
  s.invalidate_dependents({"e"}, invalidation_cause::event, t0);
  CHECK(step(s) == batches{{"by-event"}});
  s.invalidate_dependents({"k"}, invalidation_cause::cascade, t0);
  CHECK(step(s) == batches{{"by-key"}});
}

TEST_CASE_METHOD(state_fixture,
                 "another node's invalidation is told, held here or not, both forms",
                 "[key-changes]") {
  shard_state s{cfg};
  REQUIRE_FALSE(s.put(val("held"), ttl::never(), t0));
  step(s);
  CHECK(s.invalidate({"held", "elsewhere"}, t0) == 1);
  CHECK(step(s) == batches{{"held", "elsewhere"}});
  REQUIRE_FALSE(s.put(val("held"), ttl::never(), t0));
  step(s);
  CHECK(s.invalidate({"held"}, t0, false) == 1);
  CHECK(step(s) == batches{{"held"}});
}

TEST_CASE_METHOD(state_fixture, "a clear, both repairs and a lapsed lease: all changed",
                 "[key-changes]") {
  auto lease = std::make_shared<read_lease>();
  lease->extend_to(at(500ms));
  cfg.lease = lease;
  shard_state s{cfg};
  REQUIRE_FALSE(s.put(val("k"), ttl::never(), t0));
  CHECK(s.clear() == 1);
  CHECK(step(s) == batches{{"*"}}); // not "k" as well: all covers it
  s.clear_here();
  CHECK(step(s) == batches{{"*"}});
  REQUIRE_FALSE(s.put(val("k"), ttl::never(), t0));
  step(s);
  CHECK(s.cap_ttl(t0, 10ms) == 1);
  CHECK(step(s) == batches{{"*"}});
  REQUIRE_FALSE(s.put(val("k"), ttl::never(), t0));
  step(s);
  CHECK_FALSE(s.get("k", at(600ms))); // the lease lapsed: the shard clears
  CHECK(step(s) == batches{{"*"}});
}

TEST_CASE_METHOD(state_fixture, "a lapsed lease is told when it lapses, without a read",
                 "[key-changes][lease]") {
  auto lease = std::make_shared<read_lease>();
  lease->extend_to(at(500ms));
  cfg.lease = lease;
  shard_state s{cfg};
  CHECK_FALSE(s.next_expiry()); // nothing to clear: no timer for the lease
  REQUIRE_FALSE(s.put(val("k"), ttl::never(), t0));
  step(s);
  // The timer's deadline is the lease's end (a whole ms after it), even
  // though the entry never expires: a tracking client that reads only its
  // own copy must hear of the lapse without anyone reading through the node.
  REQUIRE(s.next_expiry());
  CHECK(*s.next_expiry() == at(501ms));
  CHECK(s.remove_expired(at(500ms)) == 0); // still valid at its end
  CHECK(step(s).empty());
  s.remove_expired(at(501ms));
  CHECK(step(s) == batches{{"*"}});
  CHECK(s.stats().lease_clears == 1);
  CHECK_FALSE(s.next_expiry());
  // A put while the lease stays lapsed arms nothing: the next read clears
  // it, and a long partition's puts do not each clear the shard by timer.
  REQUIRE_FALSE(s.put(val("during"), ttl::never(), at(600ms)));
  CHECK(step(s) == batches{{"during"}});
  CHECK_FALSE(s.next_expiry());
  // Renewed, the lease is watched again, and told again when it lapses again.
  lease->extend_to(at(2000ms));
  REQUIRE(s.next_expiry());
  CHECK(*s.next_expiry() == at(2001ms));
  s.remove_expired(at(2001ms));
  CHECK(step(s) == batches{{"*"}});
  CHECK(s.stats().lease_clears == 2);
}

TEST_CASE_METHOD(
  state_fixture,
  "a lapse that withholds hits is told each time, though it caps nothing new",
  "[key-changes][lease][rule7]") {
  // The cluster's lease under repair-ttl keeps the entries, capped, and serves
  // none of them: tracking clients must drop their copies too. Before, a lapse
  // with nothing put since the last cap told them nothing.
  auto lease = std::make_shared<read_lease>(10s, lapsed_hits::withheld);
  lease->extend_to(at(500ms));
  cfg.lease = lease;
  shard_state s{cfg};
  REQUIRE_FALSE(s.put(val("k"), ttl::never(), t0));
  step(s);
  s.remove_expired(at(501ms));
  CHECK(step(s) == batches{{"*"}}); // capped
  CHECK_FALSE(s.get("k", at(600ms)));
  CHECK(step(s).empty()); // told once a lapse
  lease->extend_to(at(2000ms));
  CHECK(s.get("k", at(1000ms))); // held again: served, and a client reads it
  s.remove_expired(at(2001ms));  // nothing new to cap
  CHECK(step(s) == batches{{"*"}});
}

TEST_CASE_METHOD(state_fixture,
                 "a lapse that serves what it capped is told only when it caps",
                 "[key-changes][lease]") {
  // The change feed's under repair-ttl: hits go on, each capped entry is told
  // when it expires. A lapse with nothing put since the last cap caps nothing
  // and has nothing to tell; "all changed" each time would empty every
  // client's cache at every reconnect of the feed (only a lapse that
  // withholds is told as such: `lease_watch::saw_lapse`).
  auto feed = std::make_shared<read_lease>(10s);
  feed->extend_to(at(500ms));
  cfg.lease.changes = feed;
  shard_state s{cfg};
  REQUIRE_FALSE(s.put(val("k"), ttl::never(), t0));
  step(s);
  s.remove_expired(at(501ms));
  CHECK(step(s) == batches{{"*"}}); // capped
  feed->extend_to(at(2000ms));
  CHECK(s.get("k", at(1000ms)));
  s.remove_expired(at(2001ms)); // nothing new to cap
  CHECK(step(s).empty());
  CHECK(s.get("k", at(2100ms))); // served through it
  CHECK(step(s).empty());
}

TEST_CASE_METHOD(state_fixture,
                 "a cluster lapse is told though the change feed's lease stays lapsed",
                 "[key-changes][lease][rule7]") {
  // Both end at the epoch as far as the earliest end can tell: before, the
  // cluster's lapse looked like the feed's, seen already, and went untold.
  auto cluster = std::make_shared<read_lease>(10s, lapsed_hits::withheld);
  auto feed = std::make_shared<read_lease>(10s);
  feed->limit_to(clock::time_point{}); // not listening yet
  cfg.lease = cluster;
  cfg.lease.changes = feed;
  shard_state s{cfg};
  REQUIRE_FALSE(s.put(val("k"), ttl::never(), t0)); // capped as it goes in
  step(s);
  CHECK(s.get("k", at(1ms))); // the feed's lapse serves what it capped
  cluster->limit_to(at(2ms)); // a member lost
  // The shard's timer looks at its end, though the feed's, earlier, was seen.
  REQUIRE(s.next_expiry());
  CHECK(*s.next_expiry() == at(3ms));
  s.remove_expired(at(3ms));
  CHECK(step(s) == batches{{"*"}});
  REQUIRE(s.next_expiry()); // acted on: not again at once
  CHECK(*s.next_expiry() > at(3ms));
  CHECK_FALSE(s.get("k", at(4ms)));
  CHECK(step(s).empty());
}

TEST_CASE_METHOD(state_fixture,
                 "the change feed's next lapse to the same end is watched by the timer",
                 "[key-changes][lease]") {
  // The feed lapses to the clock's epoch every time. Before, the end of its
  // first lapse stayed noted as seen, so the next one armed no timer: tracking
  // clients heard of it at the next read, however late.
  auto feed = std::make_shared<read_lease>(10s);
  cfg.lease.changes = feed;
  shard_state s{cfg};
  feed->limit_to(clock::time_point{});
  REQUIRE_FALSE(s.put(val("k"), ttl::never(), t0)); // acts on the lapse
  step(s);
  feed->extend_to(at(1000ms)); // it listens
  CHECK(s.get("k", at(100ms)));
  REQUIRE_FALSE(s.put(val("x"), ttl::never(), at(100ms))); // uncapped
  step(s);
  feed->limit_to(clock::time_point{}); // a trigger problem
  REQUIRE(s.next_expiry());
  CHECK(*s.next_expiry() <= at(200ms)); // due now, not at k's cap
  s.remove_expired(at(200ms));
  CHECK(step(s) == batches{{"*"}});
}

TEST_CASE_METHOD(state_fixture, "under stale-if-error an expiry is told when it happens",
                 "[key-changes]") {
  cfg.stale_if_error = 5s;
  shard_state s{cfg};
  REQUIRE_FALSE(s.put(val("k"), ttl::cache_default(), t0)); // expires at 1 s
  step(s);
  REQUIRE(s.next_expiry());
  CHECK(*s.next_expiry() == at(1000ms));
  // Kept for a failing reload, but tracking clients must drop their copies now.
  CHECK(s.remove_expired(at(1000ms)) == 0);
  CHECK(step(s) == batches{{"k"}});
  CHECK(s.stats().entries == 1);
  REQUIRE(s.next_expiry());
  CHECK(*s.next_expiry() == at(6001ms)); // then reclaimed
  CHECK(s.remove_expired(at(6001ms)) == 1);
  CHECK(step(s) == batches{{"k"}});
  // Replaced before its expiry: the old deadline tells nothing.
  REQUIRE_FALSE(s.put(val("r"), ttl::cache_default(), at(7000ms)));
  REQUIRE_FALSE(s.put(val("r"), ttl::never(), at(7500ms)));
  step(s);
  s.remove_expired(at(8000ms));
  CHECK(step(s).empty());
}

TEST_CASE("without a listener nothing is collected", "[key-changes]") {
  shard_state s{shard_options{}};
  REQUIRE_FALSE(s.put(val("k"), ttl::never(), t0));
  CHECK(s.erase("k", t0));
  s.clear();
  CHECK_FALSE(s.pending_effects().changes);
}

namespace {

struct actor_fixture : test_coordinator_fixture<test_config> {
  std::shared_ptr<coordinator_clock> time_source =
    std::make_shared<coordinator_clock>(sched);
  std::shared_ptr<read_side> reads = std::make_shared<read_side>(time_source);
  std::shared_ptr<recording_listener> heard = std::make_shared<recording_listener>();
  shard_actor s;

  actor_fixture() {
    heard->reads = reads;
    shard_setup setup;
    setup.config.default_ttl = ttl::after(1s);
    setup.config.reads = reads;
    setup.config.change_listener = heard;
    setup.time_source = time_source;
    s = sys.spawn(shard, std::move(setup));
    sched.run();
  }
  ~actor_fixture() override {
    caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
    sched.run();
  }
  template <class... Ts>
  void tell(Ts&&... xs) {
    self->send(s, std::forward<Ts>(xs)...);
    sched.run();
  }
};

} // namespace

TEST_CASE_METHOD(
  actor_fixture,
  "the shard actor tells each step's keys once, after direct readers see them",
  "[key-changes][shard-actor]") {
  tell(caf::put_atom::value, value::make("a", "1"), ttl::cache_default());
  CHECK(heard->take() == batches{{"a"}});
  CHECK(heard->seen == std::vector<std::string>{"1"}); // the new value, read directly
  tell(caf::put_atom::value, std::vector<value>{val("b", "2"), val("c", "3")},
       ttl::cache_default());
  CHECK(heard->take() == batches{{"b", "c"}}); // one step: one call
  tell(caf::delete_atom::value, std::string{"a"});
  CHECK(heard->take() == batches{{"a"}});
  CHECK(heard->seen.back().empty()); // gone for direct readers too
  tell(invalidate_atom::value, std::vector<std::string>{"b"});
  CHECK(heard->take() == batches{{"b"}});
  tell(invalidate_atom::value, std::vector<std::string>{"c"}, false);
  CHECK(heard->take() == batches{{"c"}});
  tell(invalidate_atom::value);
  CHECK(heard->take() == batches{{"*"}});
  tell(repair_atom::value);
  CHECK(heard->take() == batches{{"*"}});
  tell(repair_atom::value, caf::timespan{1s});
  CHECK(heard->take() == batches{{"*"}});
  tell(caf::put_atom::value, value::make("x", "1"), ttl::cache_default(),
       dependencies{}.on_keys({"t"}));
  heard->take();
  tell(invalidate_dependents_atom::value, std::vector<std::string>{"t"},
       invalidation_cause::tag, uint32_t{0});
  CHECK(heard->take() == batches{{"x"}});
  tell(clear_atom::value);
  CHECK(heard->take() == batches{{"*"}});
  tell(caf::put_atom::value, value::make("t", "1"), ttl::cache_default());
  heard->take();
  advance_time(1001ms); // the expiry timer
  sched.run();
  CHECK(heard->take() == batches{{"t"}});
}
