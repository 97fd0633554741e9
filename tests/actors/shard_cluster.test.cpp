// What a shard of a distributed cache adds, without actors: it collects the
// changes other nodes must hear of (and not those they told it), and it
// stops serving when the node's read lease lapsed.
#include <catch2/catch.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "actors/shard_state.hpp"
#include "support/compute_answers.hpp"
#include "support/load_readers.hpp"
#include "support/times.hpp"
#include <karlton/messages/errors.hpp>

using namespace karlton;
using namespace std::chrono_literals;
using karlton::test::at;
using karlton::test::t0;

namespace {

shard_options distributed(std::shared_ptr<read_lease> lease = nullptr) {
  shard_options cfg;
  cfg.default_ttl = ttl::never();
  cfg.distributed = true;
  cfg.lease = std::move(lease);
  return cfg;
}

value val(const std::string& k) {
  return value::make(k, "v");
}

std::vector<std::string> changed_keys(shard_state& s) {
  std::vector<std::string> out;
  for (auto& c : s.take_changes())
    out.push_back(std::move(c.key));
  return out;
}

} // namespace

TEST_CASE("puts erases and clears are told to other nodes") {
  shard_state s{distributed()};
  REQUIRE_FALSE(s.put(val("a"), ttl::cache_default(), t0));
  s.erase("b", t0); // not cached here, but maybe elsewhere
  CHECK(changed_keys(s) == std::vector<std::string>{"a", "b"});
  CHECK(changed_keys(s).empty());
  CHECK_FALSE(s.take_cleared());
  s.clear();
  CHECK(s.take_cleared());
  CHECK_FALSE(s.take_cleared());
}

TEST_CASE("what other nodes told a shard is not told back") {
  shard_state s{distributed()};
  REQUIRE_FALSE(s.put(val("a"), ttl::cache_default(), t0));
  REQUIRE_FALSE(s.put(val("b"), ttl::cache_default(), t0));
  changed_keys(s);
  CHECK(s.invalidate({"a", "x"}, t0) == 1);
  CHECK(s.clear_here() == 1);
  CHECK(changed_keys(s).empty());
  CHECK_FALSE(s.take_cleared());
  CHECK(s.size() == 0);
}

TEST_CASE("a local cache collects nothing for other nodes") {
  shard_options cfg;
  shard_state s{cfg};
  REQUIRE_FALSE(s.put(val("a"), ttl::cache_default(), t0));
  s.erase("a", t0);
  s.clear();
  CHECK(changed_keys(s).empty());
  CHECK_FALSE(s.take_cleared());
}

TEST_CASE("a lapsed read lease clears the shard before a read is served") {
  auto lease = std::make_shared<read_lease>();
  shard_state s{distributed(lease)};
  REQUIRE_FALSE(s.put(val("a"), ttl::cache_default(), t0));
  REQUIRE_FALSE(s.put(val("b"), ttl::cache_default(), t0));
  lease->extend_to(at(1000ms));
  CHECK(s.get("a", at(1000ms))); // still within the lease
  CHECK(s.contains("b", at(1000ms)));
  CHECK(s.ttl_of("b", at(1000ms)).state != remaining_ttl::missing);
  CHECK_FALSE(s.contains("b", at(1001ms))); // lapsed: nothing is trusted
  CHECK(s.ttl_of("b", at(1001ms)).state == remaining_ttl::missing); // nor its TTL
  CHECK_FALSE(s.get("a", at(1001ms)));
  CHECK(s.size() == 0); // and b went with it
  auto st = s.stats();
  CHECK(st.lease_clears == 1);
  CHECK(st.misses == 1);
  // Renewed: what is cached from now on is served again.
  lease->extend_to(at(5000ms));
  REQUIRE_FALSE(s.put(val("a"), ttl::cache_default(), at(2000ms)));
  CHECK(s.get("a", at(2000ms)));
  CHECK(s.stats().lease_clears == 1);
}

TEST_CASE("a fed cache's shard clears when the change feed's lease lapses, even with the "
          "cluster's held",
          "[lease]") {
  auto cluster = std::make_shared<read_lease>();
  auto changes = std::make_shared<read_lease>();
  auto cfg = distributed(cluster);
  cfg.lease.changes = changes;
  shard_state s{cfg};
  cluster->extend_to(at(10'000ms));
  changes->extend_to(at(1000ms));
  REQUIRE_FALSE(s.put(val("a"), ttl::cache_default(), t0));
  CHECK(s.get("a", at(1000ms)));
  CHECK_FALSE(s.contains("a", at(1001ms))); // the earlier end counts
  CHECK_FALSE(s.get("a", at(1001ms)));
  CHECK(s.size() == 0);
  CHECK(s.stats().lease_clears == 1);
}

TEST_CASE("a cache fed by the change feed alone is served only while its lease holds",
          "[lease]") {
  auto changes = std::make_shared<read_lease>();
  changes->limit_to(clock::time_point{}); // lapsed until the feed listens
  shard_options cfg;
  cfg.default_ttl = ttl::never();
  cfg.lease.changes = changes;
  shard_state s{cfg};
  REQUIRE_FALSE(s.put(val("a"), ttl::cache_default(), t0));
  CHECK_FALSE(s.get("a", t0));
  changes->extend_to(at(1000ms));
  REQUIRE_FALSE(s.put(val("a"), ttl::cache_default(), t0));
  CHECK(s.get("a", at(500ms)));
}

namespace {

caf::timespan left_of(const shard_state& s, const std::string& key,
                      clock::time_point now) {
  auto t = s.ttl_of(key, now);
  REQUIRE(t.state == remaining_ttl::expires);
  return t.left;
}

// A cache fed by the change feed, whose lease lapses as `lease` says.
shard_options fed(std::shared_ptr<read_lease> lease) {
  shard_options cfg;
  cfg.default_ttl = ttl::never();
  cfg.lease.changes = std::move(lease);
  return cfg;
}

// As `fed`, with a loader (TTL 1 h).
shard_options fed_loading(std::shared_ptr<read_lease> lease) {
  auto cfg = test::loading(1h);
  cfg.lease.changes = std::move(lease);
  return cfg;
}

} // namespace

TEST_CASE("under the change feed's repair-ttl a lapsed lease caps every TTL and keeps "
          "serving",
          "[lease]") {
  // Before, a lapse cleared the shard whatever repair-ttl said: a deaf feed
  // emptied the warm cache repair-ttl was set to keep.
  auto lease = std::make_shared<read_lease>(10s);
  shard_state s{fed(lease)};
  REQUIRE_FALSE(s.put(val("a"), ttl::never(), t0));
  REQUIRE_FALSE(s.put(val("b"), ttl::after(1h), t0));
  REQUIRE_FALSE(s.put(val("c"), ttl::after(2s), t0));
  lease->extend_to(at(1000ms));
  CHECK(s.contains("a", at(1001ms)));
  CHECK(left_of(s, "a", at(1001ms)) == 9999ms); // what the cap will leave it
  CHECK(s.get("a", at(1001ms)));                // lapsed: capped, and served
  CHECK(s.size() == 3);
  // From the lease's end, not from the read that found it lapsed.
  CHECK(left_of(s, "a", at(1001ms)) == 9999ms);
  CHECK(left_of(s, "b", at(1001ms)) == 9999ms);
  CHECK(left_of(s, "c", at(1001ms)) == 999ms); // due sooner: keeps its own
  CHECK(s.get("b", at(1002ms)));
  CHECK(s.stats().lease_caps == 1); // once for the lapse
  CHECK(s.stats().lease_clears == 0);
  // While it lasts, changes may go unheard: what is put or retimed is capped too.
  REQUIRE_FALSE(s.put(val("d"), ttl::never(), at(2000ms)));
  CHECK(left_of(s, "d", at(2000ms)) == 10s);
  // A retime shortens only: the value is no fresher for it.
  auto retimed = s.set_ttl("b", caf::timespan{1h}, at(3000ms), [](auto) {});
  REQUIRE(retimed);
  CHECK(left_of(s, "b", at(3000ms)) == 8s); // before: 10 s, and again at each call
  REQUIRE(s.set_ttl("b", caf::timespan{2s}, at(3000ms), [](auto) {}));
  CHECK(left_of(s, "b", at(3000ms)) == 2s);
  CHECK_FALSE(s.get("a", at(11'000ms))); // expired by the cap
  CHECK_FALSE(s.get("d", at(12'000ms)));
  // Renewed: puts get their own TTL again, until the next lapse caps them.
  lease->extend_to(at(100'000ms));
  REQUIRE_FALSE(s.put(val("e"), ttl::never(), at(13'000ms)));
  CHECK(s.ttl_of("e", at(13'000ms)).state == remaining_ttl::never_expires);
  CHECK(s.get("e", at(100'001ms)));
  CHECK(s.stats().lease_caps == 2);
  CHECK(left_of(s, "e", at(100'001ms)) == 9999ms);
}

TEST_CASE("under the cluster's repair-ttl a lapsed lease caps every TTL and withholds "
          "hits until it holds again",
          "[lease][rule7]") {
  // Rule 7: a node that lost a member serves no hits until it repaired. Before,
  // that lapse cleared whatever repair-ttl said: the warm cache repair-ttl was
  // set to keep was emptied by every member lost.
  auto lease = std::make_shared<read_lease>(10s, lapsed_hits::withheld);
  auto cfg = test::loading(1h);
  cfg.distributed = true;
  cfg.lease = lease;
  cfg.negative_ttl = 1h;
  shard_state s{cfg};
  REQUIRE_FALSE(s.put(val("a"), ttl::never(), t0));
  REQUIRE_FALSE(s.put(val("b"), ttl::never(), t0));
  lease->extend_to(at(1000ms));
  CHECK_FALSE(s.get("a", at(1001ms))); // withheld
  CHECK_FALSE(s.contains("b", at(1001ms)));
  CHECK(s.ttl_of("b", at(1001ms)).state == remaining_ttl::missing);
  CHECK(s.size() == 2); // kept, capped
  CHECK(s.stats().lease_caps == 1);
  CHECK(s.stats().lease_clears == 0);
  // A read-through read misses and loads: its callers get the value, and the
  // table keeps it capped, withheld like the rest.
  test::reader r;
  CHECK_FALSE(r.read(s, "a", at(2s)));
  test::finish_the_load(s, "a", std::string{"v2"}, at(2s));
  CHECK(r.got == std::vector<std::string>{"v2"});
  CHECK_FALSE(s.get("a", at(2s)));
  // A remembered failure is a cached answer too: not given while it lasts.
  test::reader failing;
  CHECK_FALSE(failing.read(s, "x", at(2s)));
  test::finish_the_load(s, "x", make_error(errc::store_failure, "down"), at(2s));
  test::reader again;
  CHECK_FALSE(again.read(s, "x", at(2s))); // loads again
  CHECK(s.take_loads_to_start().size() == 1);
  REQUIRE_FALSE(s.put(val("c"), ttl::never(), at(3s))); // capped as it goes in
  CHECK_FALSE(s.get("c", at(3s)));
  // An erase removes what it withholds, and answers as `contains`: not cached.
  REQUIRE_FALSE(s.put(val("d"), ttl::never(), at(3s)));
  CHECK_FALSE(s.erase("d", at(3s)));
  // Held again (the repair is done): all of it is served, each capped.
  lease->extend_to(at(100s));
  CHECK(s.get("b", at(4s)));
  CHECK(left_of(s, "b", at(4s)) == 7s); // from the lease's end
  CHECK(left_of(s, "a", at(4s)) == 8s); // from its load's start
  CHECK(left_of(s, "c", at(4s)) == 9s); // from its put
  CHECK(s.get("a", at(4s)).bytes() == "v2");
  CHECK_FALSE(s.get("d", at(4s)));
  CHECK(s.stats().lease_clears == 0);
}

TEST_CASE("a lapse that caps caps again what was put while the lease held, though it "
          "lapses to the same end",
          "[lease]") {
  // The change feed lapses its lease to the clock's epoch every time (at its
  // start, on a trigger problem): before, the second lapse found that end
  // already handled, and what was put between served uncapped.
  auto feed = std::make_shared<read_lease>(10s);
  feed->limit_to(clock::time_point{});
  shard_state s{fed(feed)};
  CHECK_FALSE(s.get("z", t0)); // before the feed listens: caps (nothing held, uncounted)
  CHECK(s.stats().lease_caps == 0);
  feed->extend_to(at(100'000ms)); // it listens
  REQUIRE_FALSE(s.put(val("x"), ttl::never(), at(1000ms)));
  feed->limit_to(clock::time_point{}); // a trigger problem
  CHECK(s.get("x", at(2000ms)));
  CHECK(s.stats().lease_caps == 1);
  // From when the lease was last seen valid: its end says nothing here.
  CHECK(left_of(s, "x", at(2000ms)) == 9s);
  CHECK_FALSE(s.get("x", at(11'001ms)));
  // Nothing new since: a later read of the same lapse caps nothing again.
  CHECK_FALSE(s.get("x", at(13'000ms)));
  CHECK(s.stats().lease_caps == 1);
}

TEST_CASE("with two leases a clearing lapse clears though the other caps, and what is "
          "put meanwhile is capped once only the capping one stays lapsed",
          "[lease]") {
  auto cluster = std::make_shared<read_lease>(); // clears on a lapse (rule 7)
  auto changes = std::make_shared<read_lease>(10s);
  auto cfg = distributed(cluster);
  cfg.lease.changes = changes;
  shard_state s{cfg};
  changes->extend_to(at(1000ms));
  cluster->extend_to(at(2000ms));
  REQUIRE_FALSE(s.put(val("a"), ttl::never(), t0));
  CHECK(s.get("a", at(1001ms))); // the feed's lapse caps
  CHECK(s.stats().lease_caps == 1);
  CHECK_FALSE(s.contains("a", at(2001ms))); // the cluster's clears: nothing is trusted
  CHECK_FALSE(s.get("a", at(2001ms)));
  CHECK(s.size() == 0);
  CHECK(s.stats().lease_clears == 1);
  REQUIRE_FALSE(s.put(val("x"), ttl::never(), at(2500ms)));
  cluster->extend_to(at(100'000ms)); // the members heard again, the feed still deaf
  CHECK(s.get("x", at(3001ms)));
  CHECK(s.stats().lease_caps == 2);
  CHECK_FALSE(s.get("x", at(13'002ms))); // before: served long past the cap
}

TEST_CASE("a put in the very millisecond after a capping lapse began is capped",
          "[lease]") {
  auto lease = std::make_shared<read_lease>(10s);
  shard_state s{fed(lease)};
  REQUIRE_FALSE(s.put(val("a"), ttl::never(), t0));
  lease->extend_to(at(1000ms) + 300us);
  CHECK(s.get("a", at(1000ms) + 500us)); // caps
  REQUIRE_FALSE(s.put(val("y"), ttl::never(), at(1000ms) + 700us));
  CHECK(left_of(s, "y", at(1000ms) + 700us) <= 10s);
  CHECK_FALSE(s.get("y", at(60'000ms)));
}

TEST_CASE("during a capping lapse a load failure is not remembered and nothing is kept "
          "for stale-if-error past the cap",
          "[lease]") {
  auto lease = std::make_shared<read_lease>(10s);
  auto cfg = fed_loading(lease);
  cfg.stale_if_error = 1h;
  cfg.negative_ttl = 1h;
  shard_state s{cfg};
  lease->extend_to(at(1000ms));
  CHECK_FALSE(s.get("z", at(2s))); // lapsed: caps (nothing held) at 11 s
  test::reader r;
  CHECK_FALSE(r.read(s, "k", at(5s))); // loads
  auto loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  s.complete_load("k", loads[0].second, std::string{"v1"}, 1ms, at(5s));
  CHECK(left_of(s, "k", at(5s)) == 10s); // capped from the load's start
  test::reader late;
  CHECK_FALSE(late.read(s, "k", at(16s))); // expired by the cap: reloads
  loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  s.complete_load("k", loads[0].second, make_error(errc::store_failure, "down"), 1ms,
                  at(600s));
  CHECK(late.got == std::vector<std::string>{"error:store_failure"}); // before: v1
  test::reader missing;
  CHECK_FALSE(missing.read(s, "gone", at(601s)));
  loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  s.complete_load("gone", loads[0].second, make_error(errc::not_found, "no row"), 1ms,
                  at(601s));
  auto caps = s.stats().lease_caps;
  test::reader again;
  CHECK(again.read(s, "gone", at(602s))); // remembered, as long as the cap allows
  CHECK(again.got == std::vector<std::string>{"error:not_found"});
  test::reader later;
  CHECK_FALSE(later.read(s, "gone", at(611s))); // loads again; before: for an hour
  CHECK(s.stats().lease_caps == caps);          // and the lapse was not capped again
}

TEST_CASE("a lapse found late caps from when the lease ended", "[lease]") {
  // A frozen process, or a shard nobody read for a while: what it holds may
  // have changed unheard since the lease ended, not since it looked.
  auto lease = std::make_shared<read_lease>(10s);
  shard_state s{fed(lease)};
  REQUIRE_FALSE(s.put(val("a"), ttl::never(), t0));
  lease->extend_to(at(1000ms));
  CHECK_FALSE(s.get("a", at(600s))); // before: capped from now, and served
  CHECK(s.stats().lease_caps == 1);
  CHECK(s.stats().lease_clears == 0);
}

TEST_CASE("puts during a capping lapse neither cap again nor void a load in flight",
          "[lease]") {
  auto lease = std::make_shared<read_lease>(10s);
  auto cfg = fed_loading(lease);
  shard_state s{cfg};
  REQUIRE_FALSE(s.put(val("a"), ttl::never(), t0));
  lease->extend_to(at(1000ms));
  test::reader r;
  CHECK_FALSE(r.read(s, "k", at(2s))); // caps, then loads
  CHECK(s.stats().lease_caps == 1);
  REQUIRE_FALSE(s.put(val("b"), ttl::never(), at(3s))); // capped as it goes in
  CHECK(s.get("a", at(3s)));
  CHECK(s.stats().lease_caps == 1);
  auto loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  s.complete_load("k", loads[0].second, std::string{"v1"}, 1ms, at(4s));
  CHECK(r.got == std::vector<std::string>{"v1"});
  CHECK(s.get("k", at(4s))); // installed, not voided
}

TEST_CASE(
  "what goes in before a shard acts on a capping lapse keeps its cap from when it "
  "went in",
  "[lease]") {
  // The feed lapses its lease to the clock's epoch until it listens. Before, a
  // put then was capped from its own time, and capped again from the epoch by
  // the first read: every put made before that read expired early.
  auto feed = std::make_shared<read_lease>(10s);
  feed->limit_to(clock::time_point{});
  shard_state s{fed(feed)};
  REQUIRE_FALSE(s.put(val("a"), ttl::never(), at(5s)));
  CHECK(s.get("a", at(12s)));
  CHECK(left_of(s, "a", at(12s)) == 3s);
  CHECK_FALSE(s.get("a", at(15s)));
}

TEST_CASE("a load that ends in a capping lapse not yet acted on is not installed",
          "[lease]") {
  // It may have read what a missed change replaced; acting on the lapse as
  // the value went in (and capping it from then) would let it outlive the cap.
  auto lease = std::make_shared<read_lease>(10s);
  auto cfg = fed_loading(lease);
  shard_state s{cfg};
  lease->extend_to(at(1000ms));
  test::reader r;
  CHECK_FALSE(r.read(s, "k", at(500ms))); // loads while the lease holds
  auto loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  s.complete_load("k", loads[0].second, std::string{"v1"}, 1ms, at(20s));
  CHECK(r.got == std::vector<std::string>{"v1"}); // the caller still gets it
  CHECK_FALSE(s.contains("k", at(21s)));
  CHECK(s.stats().loads_voided == 1);
}

TEST_CASE("ttl_of and contains count a capping lapse not yet acted on even found late",
          "[lease]") {
  // Found late (a frozen process), the cap from the lease's end is past:
  // before, `contains` said yes and `ttl_of`'s time left wrapped around.
  auto lease = std::make_shared<read_lease>(10s);
  shard_state s{fed(lease)};
  REQUIRE_FALSE(s.put(val("a"), ttl::never(), t0));
  lease->extend_to(at(1000ms));
  CHECK_FALSE(s.contains("a", at(600s)));
  CHECK(s.ttl_of("a", at(600s)).state == remaining_ttl::missing);
  CHECK(s.stats().lease_caps == 0); // only looked
  CHECK(left_of(s, "a", at(5s)) == 6s);
}

TEST_CASE("a repair before a shard acts on a capping lapse does not hide it", "[lease]") {
  // The repair's cap (from now) would count as the lapse's (from the lease's
  // end): values the lapse let go stale would be served past its cap.
  auto lease = std::make_shared<read_lease>(10s);
  shard_state s{fed(lease)};
  REQUIRE_FALSE(s.put(val("a"), ttl::never(), t0));
  lease->extend_to(at(1000ms));
  s.cap_ttl(at(5s), 10s);
  CHECK_FALSE(s.get("a", at(12s)));
  CHECK(s.stats().lease_caps == 1);
}

TEST_CASE("under a capping lapse a load is capped from when it started", "[lease]") {
  // It read the store then: a change it missed since may go unheard. Before,
  // capped from when it ended, a slow load added its time to the staleness.
  auto lease = std::make_shared<read_lease>(10s);
  auto cfg = fed_loading(lease);
  shard_state s{cfg};
  lease->extend_to(at(1000ms));
  test::reader r;
  CHECK_FALSE(r.read(s, "k", at(3s))); // acts on the lapse, then loads
  auto loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  // The loader's own time leaves out the queue and the mailbox: not counted on.
  s.complete_load("k", loads[0].second, std::string{"v1"}, 1ms, at(8s));
  CHECK(left_of(s, "k", at(8s)) == 5s); // read at 3 s: until 13 s
  test::reader slow;
  CHECK_FALSE(slow.read(s, "j", at(8s)));
  loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  s.complete_load("j", loads[0].second, std::string{"v2"}, 1ms, at(30s));
  CHECK(slow.got == std::vector<std::string>{"v2"}); // the caller gets it
  CHECK_FALSE(s.contains("j", at(30s)));             // read at 8 s: past 18 s
  CHECK(s.stats().loads_voided == 1);                // so not installed at all
  CHECK(s.size() == 1);
}

TEST_CASE("an erase answers as contains under a lapse: cached while a cap serves it, not "
          "once past the cap nor while withheld",
          "[lease][rule7]") {
  auto erased_under = [](std::shared_ptr<read_lease> lease, write_mode mode,
                         clock::time_point when) {
    auto cfg = fed(nullptr);
    cfg.lease = lease;
    cfg.writes = mode;
    shard_state s{cfg};
    s.write(val("k"), ttl::never(), t0, [](caf::expected<bool>) {});
    s.writes_done(test::seqs_of(s.take_writes()), caf::none, t0);
    REQUIRE(s.contains("k", t0));
    lease->extend_to(at(1000ms));
    std::optional<caf::expected<bool>> answer;
    auto r = s.write_erase("k", when, [&](caf::expected<bool> a) { answer = a; });
    s.writes_done(test::seqs_of(s.take_writes()), caf::none, when); // write-through
    if (r) answer = *r;
    REQUIRE(answer);
    REQUIRE(*answer);
    CHECK_FALSE(s.contains("k", when)); // gone, whatever it answered
    return **answer;
  };
  for (auto mode : {write_mode::none, write_mode::write_through}) {
    // The change feed's under repair-ttl serves what it capped, until the cap.
    CHECK(erased_under(std::make_shared<read_lease>(10s), mode, at(5s)));
    CHECK_FALSE(erased_under(std::make_shared<read_lease>(10s), mode, at(12s)));
    auto cluster = std::make_shared<read_lease>(10s, lapsed_hits::withheld);
    CHECK_FALSE(erased_under(cluster, mode, at(5s))); // withheld from the lapse on
  }
}
