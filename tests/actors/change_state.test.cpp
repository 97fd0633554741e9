// The change feed's decisions without actors (docs/plans/postgres.md §3-4):
// grouping by transaction, the fallbacks, own writes, repairs and the lease.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "actors/change_state.hpp"
#include "base/routing.hpp"
#include "support/change_feed.hpp"
#include <karlton/messages/value.hpp>

using namespace karlton;
using namespace karlton::test;
using namespace std::chrono_literals;

TEST_CASE("a transaction is applied once its end came and every row up to its count",
          "[changes]") {
  feed f;
  f.go_live();
  auto a = f.st.changes({row(10, 1, "a"), row(10, 2, "b")}, f.t0);
  CHECK(a.groups.empty()); // no end yet
  a = f.st.changes({end(10, 3)}, f.t0);
  CHECK(a.groups.empty()); // row 3 is missing
  CHECK(f.st.open_groups() == 1);
  a = f.st.changes({row(10, 3, "c")}, f.t0);
  CHECK(keys_in(a, "users") == strings{"a", "b", "c"});
  CHECK(keys_in(a, "users2") == strings{"a", "b", "c"});
  CHECK(f.st.open_groups() == 0);
  auto s = f.st.stats();
  CHECK(s.groups_applied == 1);
  CHECK(s.groups_incomplete == 0);
  CHECK(s.rows_applied == 6); // three rows, two caches
  CHECK(s.notifications_received == 4);
}

TEST_CASE("a transaction's keys go to the shard that owns each, one part per shard",
          "[changes]") {
  feed f;
  f.go_live();
  std::vector<pg_change> cs;
  for (uint64_t i = 1; i <= 40; ++i)
    cs.push_back(row(11, i, "k" + std::to_string(i)));
  cs.push_back(row(11, 41, "k1")); // the same key twice: invalidated once
  cs.push_back(end(11, 41));
  auto a = f.st.changes(cs, f.t0);
  REQUIRE(a.groups.size() == 1);
  std::vector<size_t> shards;
  size_t total = 0;
  for (auto& p : a.groups[0].parts) {
    if (p.cache != "users") continue;
    shards.push_back(p.shard);
    for (auto& k : p.keys)
      CHECK(shard_index(hash_key(k), 4) == p.shard);
    total += p.keys.size();
  }
  CHECK(total == 40);
  std::sort(shards.begin(), shards.end());
  CHECK(std::unique(shards.begin(), shards.end()) == shards.end()); // one per shard
  CHECK(a.groups[0].commit_us == 1'000'000);
}

TEST_CASE("a group still open when the next heartbeat is answered is applied incomplete",
          "[changes]") {
  feed f;
  f.go_live();
  auto a = f.st.changes({row(12, 1, "a"), end(12, 2)}, f.t0); // row 2 lost
  CHECK(a.groups.empty());
  a = f.st.changes({row(13, 1, "b")}, f.t0); // no end at all (forged, say)
  CHECK(a.groups.empty());
  a = f.st.heard(f.t0 + 10ms, 0, healthy, f.t0 + 10ms);
  CHECK(keys_in(a, "users") == strings{"a", "b"});
  auto s = f.st.stats();
  CHECK(s.groups_applied == 2);
  CHECK(s.groups_incomplete == 2);
  CHECK(f.st.open_groups() == 0);
}

// libpq parses what follows a heartbeat's answer in the same read, so the
// rows reported with the answer may have followed it: a transaction's first
// rows in one read, its last rows and end in the next. Seen under load as
// one UPDATE of 1,000 rows applied as two incomplete groups.
TEST_CASE("a group heard in the read that brought a heartbeat's answer waits for its end",
          "[changes]") {
  feed f;
  f.go_live();
  auto a = f.st.changes({row(11, 1, "x")}, f.t0); // an earlier read: no end will come
  a = f.st.changes({row(12, 1, "a")}, f.t0);      // the answer's read
  a = f.st.heard(f.t0 + 10ms, 0, healthy, f.t0 + 10ms, true);
  CHECK(keys_in(a, "users") == strings{"x"});
  CHECK(f.st.open_groups() == 1);
  a = f.st.changes({row(12, 2, "b"), end(12, 2)}, f.t0 + 11ms);
  CHECK(keys_in(a, "users") == strings{"a", "b"});
  auto s = f.st.stats();
  CHECK(s.groups_applied == 2);
  CHECK(s.groups_incomplete == 1); // x's only

  // One that never completes goes at the next answer all the same.
  a = f.st.changes({row(13, 1, "c")}, f.t0 + 12ms);
  a = f.st.heard(f.t0 + 20ms, 0, healthy, f.t0 + 20ms, true);
  CHECK(a.groups.empty());
  a = f.st.heard(f.t0 + 30ms, 0, healthy, f.t0 + 30ms, false);
  CHECK(keys_in(a, "users") == strings{"c"});
  CHECK(f.st.stats().groups_incomplete == 2);
  CHECK(f.st.open_groups() == 0);

  // Any role may NOTIFY: rows forged into each answer's read hold a group
  // open for one more answer, not for as long as they keep coming.
  a = f.st.changes({row(14, 1, "d")}, f.t0 + 31ms);
  a = f.st.heard(f.t0 + 40ms, 0, healthy, f.t0 + 40ms, true);
  CHECK(a.groups.empty());
  a = f.st.changes({row(14, 2, "e")}, f.t0 + 41ms);
  a = f.st.heard(f.t0 + 50ms, 0, healthy, f.t0 + 50ms, true);
  CHECK(keys_in(a, "users") == strings{"d", "e"});
  CHECK(f.st.open_groups() == 0);
}

TEST_CASE("beyond 10,000 open transactions the oldest is applied incomplete",
          "[changes]") {
  feed f;
  f.go_live();
  std::vector<pg_change> cs;
  for (uint64_t x = 1; x <= 10'000; ++x)
    cs.push_back(row(x, 1, "k" + std::to_string(x)));
  auto a = f.st.changes(cs, f.t0);
  CHECK(a.groups.empty());
  CHECK(f.st.open_groups() == 10'000);
  a = f.st.changes({row(10'001, 1, "newest")}, f.t0);
  CHECK(f.st.open_groups() == 10'000);
  CHECK(keys_in(a, "users") == strings{"k1"}); // the oldest went
  CHECK(f.st.stats().groups_incomplete == 1);
}

TEST_CASE("truncate, a DBA's repair and a long key repair that table's caches only",
          "[changes]") {
  feed f;
  f.go_live();
  auto before = f.st.stats().repairs; // the one on connecting
  auto a = f.st.changes({about(kind::truncate, "public.users")}, f.t0);
  CHECK(a.repairs == strings{"users", "users2"});
  // A change we know of clears, whatever repair-ttl says: a hit capped at
  // it would outlive sync_changes.
  CHECK(a.clears == a.repairs);
  CHECK(f.st.repairs_in_flight() == 6); // every shard of both
  a = f.st.changes({about(kind::repair, "public.orders")}, f.t0);
  CHECK(a.repairs == strings{"orders"});
  CHECK(a.clears == a.repairs);
  a = f.st.changes({about(kind::long_key, "public.orders", 20, 1),
                    row(20, 2, "x", "public.orders"), end(20, 2)},
                   f.t0);
  CHECK(a.repairs == strings{"orders"});
  CHECK(a.clears == a.repairs);
  CHECK(a.groups.empty());        // its caches were repaired: no keys held for them
  CHECK(f.st.open_groups() == 0); // and the group still closed
  a = f.st.changes({about(kind::truncate, "public.nobody")}, f.t0);
  CHECK(a.repairs.empty());
  auto s = f.st.stats();
  CHECK(s.truncates == 2);
  CHECK(s.long_keys == 1);
  CHECK(s.repairs - before == 3);
  CHECK(s.notifications_unknown_table == 1);
}

TEST_CASE("a transaction over max_group_keys in a table becomes a repair of its caches",
          "[changes]") {
  change_state::limits lim;
  lim.max_group_keys = 3;
  feed f{lim};
  f.go_live();
  auto a = f.st.changes(
    {row(30, 1, "a"), row(30, 2, "b"), row(30, 3, "c"), row(30, 4, "o", "public.orders")},
    f.t0);
  CHECK(a.repairs.empty()); // three keys are held
  a = f.st.changes({row(30, 5, "d")}, f.t0);
  CHECK(a.repairs.empty()); // not before the group is applied
  a = f.st.changes({row(30, 6, "e"), end(30, 6)}, f.t0);
  CHECK(a.repairs == strings{"users", "users2"});
  CHECK(keys_in(a, "users").empty()); // repaired, not invalidated key by key
  CHECK(keys_in(a, "orders") == strings{"o"});
  CHECK(f.st.stats().bulk_repairs == 1);
}

TEST_CASE("held key bytes are bounded like held keys: per table a repair, in all "
          "groups the oldest goes first",
          "[changes]") {
  change_state::limits lim;
  lim.max_group_bytes = 10;
  feed f{lim};
  f.go_live();
  auto a = f.st.changes({row(31, 1, "aaaa"), row(31, 2, "bbbb")}, f.t0);
  CHECK(a.repairs.empty()); // eight bytes are held
  a = f.st.changes({row(31, 3, "cccc"), row(31, 4, "dddd"), end(31, 4)}, f.t0);
  CHECK(a.repairs == strings{"users", "users2"});
  CHECK(keys_in(a, "users").empty());
  CHECK(f.st.stats().bulk_repairs == 1);

  a = f.st.changes({row(32, 1, "eeee"), row(33, 1, "ffff")}, f.t0);
  CHECK(a.groups.empty());
  a = f.st.changes({row(34, 1, "gggg")}, f.t0); // twelve bytes in three groups
  CHECK(keys_in(a, "users") == strings{"eeee"});
  CHECK(a.repairs.empty());
  CHECK(f.st.open_groups() == 2);
}

TEST_CASE("a forged long key for a transaction in progress cannot hide its real rows",
          "[changes]") {
  // Any role may NOTIFY: 'l 40 1 public.users' while transaction 40 runs.
  feed f;
  f.go_live();
  auto a = f.st.changes({about(kind::long_key, "public.users", 40, 1)}, f.t0);
  CHECK(a.repairs.empty()); // a repair now would precede 40's COMMIT
  // 40 commits; its real row and end arrive: the key goes, or the caches are
  // repaired now, after the COMMIT.
  a = f.st.changes({row(40, 1, "a"), end(40, 1)}, f.t0);
  bool covered = keys_in(a, "users") == strings{"a"} ||
                 std::count(a.repairs.begin(), a.repairs.end(), "users") == 1;
  CHECK(covered);
  // Forged again, then a heartbeat answer applies the group (a repair before
  // 41's COMMIT): 41's real rows open a new group and are invalidated.
  a = f.st.changes({about(kind::long_key, "public.users", 41, 1)}, f.t0);
  a = f.st.heard(f.t0 + 10ms, 0, healthy, f.t0 + 10ms);
  CHECK(a.repairs == strings{"users", "users2"});
  a = f.st.changes({row(41, 1, "b"), end(41, 1)}, f.t0 + 20ms);
  CHECK(keys_in(a, "users") == strings{"b"});
}

TEST_CASE("held keys of all open groups stay under max_group_keys: the oldest goes first",
          "[changes]") {
  change_state::limits lim;
  lim.max_group_keys = 3;
  feed f{lim};
  f.go_live();
  auto a = f.st.changes({row(1, 1, "a"), row(2, 1, "b"), row(3, 1, "c")}, f.t0);
  CHECK(a.groups.empty());
  a = f.st.changes({row(3, 2, "d")}, f.t0);
  CHECK(keys_in(a, "users") == strings{"a"});
  CHECK(a.repairs.empty());
}

TEST_CASE("a cache skips its store's own committed transaction, and only that cache",
          "[changes]") {
  feed f;
  f.go_live();
  f.users_own->expect(40, 1);
  f.users_own->resolve(40, true);
  auto a = f.st.changes({row(40, 1, "mine"), end(40, 1)}, f.t0);
  CHECK(keys_in(a, "users").empty());
  CHECK(keys_in(a, "users2") == strings{"mine"}); // another store: foreign to it
  auto s = f.st.stats();
  CHECK(s.rows_own == 1);
  CHECK(s.rows_applied == 1);
  // Taken once: the same xid again (forged) counts as foreign.
  a = f.st.changes({row(40, 2, "mine"), end(40, 2)}, f.t0);
  CHECK(keys_in(a, "users") == strings{"mine"});
}

TEST_CASE(
  "an own transaction in which another writer changed more rows invalidates them all",
  "[changes]") {
  feed f;
  f.go_live();
  f.users_own->expect(41, 1); // the store changed one row
  f.users_own->resolve(41, true);
  auto a = f.st.changes({row(41, 1, "mine"), row(41, 2, "derived"), end(41, 2)}, f.t0);
  CHECK(keys_in(a, "users") == strings{"derived", "mine"});
  CHECK(f.st.stats().rows_own == 0);
}

TEST_CASE("a group whose own COMMIT is pending is parked and decided when it resolves",
          "[changes]") {
  feed f;
  f.go_live();
  f.users_own->expect(50, 1);
  auto a = f.st.changes({row(50, 1, "k"), end(50, 1)}, f.t0);
  CHECK(keys_in(a, "users").empty());
  CHECK(a.retry_parked);
  CHECK(f.st.parked() == 1);
  a = f.st.retry_parked(f.t0 + 1ms);
  CHECK(a.groups.empty());
  CHECK(a.retry_parked); // still pending
  f.users_own->resolve(50, true);
  a = f.st.retry_parked(f.t0 + 2ms);
  CHECK(a.groups.empty());
  CHECK_FALSE(a.retry_parked);
  CHECK(f.st.stats().rows_own == 1);

  f.users_own->expect(51, 1);
  f.st.changes({row(51, 1, "k"), end(51, 1)}, f.t0);
  f.users_own->resolve(51, false); // rolled back or unknown: foreign
  a = f.st.retry_parked(f.t0 + 1ms);
  CHECK(keys_in(a, "users") == strings{"k"});
}

TEST_CASE("a group pending for 100 ms counts as foreign", "[changes]") {
  feed f;
  f.go_live();
  f.users_own->expect(60, 1);
  f.st.changes({row(60, 1, "k"), end(60, 1, 5)}, f.t0);
  auto a = f.st.retry_parked(f.t0 + 99ms);
  CHECK(a.groups.empty());
  a = f.st.retry_parked(f.t0 + 100ms);
  CHECK(keys_in(a, "users") == strings{"k"});
  REQUIRE(a.groups.size() == 1);
  CHECK(a.groups[0].commit_us == 5);
  CHECK_FALSE(a.retry_parked);
  CHECK(f.st.parked() == 0);
}

TEST_CASE("the lease grows from a heartbeat's send time, never from when it was heard",
          "[changes][lease]") {
  change_state::limits lim;
  lim.lease = 1s;
  feed f{lim};
  f.st.up(f.t0);
  while (f.st.repairs_in_flight() > 0)
    f.st.repair_answered();
  // Sent at t0, read 5 s later (the process was frozen): it proves nothing
  // past t0 + lease, which is already over.
  auto a = f.st.heard(f.t0, 0, healthy, f.t0 + 5s);
  REQUIRE(a.extend_lease);
  CHECK(*a.extend_lease == f.t0 + 1s);
  a = f.st.heard(f.t0 + 6s, 0, healthy, f.t0 + 6s + 1ms);
  REQUIRE(a.extend_lease);
  CHECK(*a.extend_lease == f.t0 + 7s);
}

TEST_CASE("a lapsed lease is counted once per lapse", "[changes][lease]") {
  feed f;
  f.go_live(); // until t0 + 1 s
  f.st.note_time(f.t0 + 1s);
  CHECK(f.st.stats().lease_lapses == 0);
  f.st.down(f.t0 + 1s);
  f.st.note_time(f.t0 + 1s + 1ms);
  f.st.note_time(f.t0 + 3s);
  CHECK(f.st.stats().lease_lapses == 1);
}

TEST_CASE("a reconnect forgets own writes and open groups: the repair covers them",
          "[changes]") {
  feed f;
  f.go_live();
  f.users_own->expect(70, 1);
  f.users_own->resolve(70, true);
  f.st.changes({row(71, 1, "open")}, f.t0);
  f.users_own->expect(72, 1);
  f.st.changes({row(72, 1, "parked"), end(72, 1)}, f.t0);
  CHECK(f.st.parked() == 1);
  f.st.down(f.t0);
  auto a = f.st.up(f.t0 + 1s);
  CHECK(a.repairs.size() == 3);
  CHECK(f.st.open_groups() == 0);
  CHECK(f.st.parked() == 0);
  CHECK(f.users_own->take(70, 1) == own_commits::verdict::foreign);
  auto s = f.st.stats();
  CHECK(s.connects == 2);
  CHECK(s.drops == 1);
  CHECK(s.listening == 1);
}

TEST_CASE("a second end closes the rows after the first (SET CONSTRAINTS ALL IMMEDIATE)",
          "[changes]") {
  feed f;
  f.go_live();
  auto a = f.st.changes({row(80, 1, "a"), end(80, 1), row(80, 2, "b")}, f.t0);
  CHECK(keys_in(a, "users") == strings{"a"});
  a = f.st.changes({end(80, 2)}, f.t0);
  CHECK(keys_in(a, "users") == strings{"b"}); // not held until a heartbeat
  CHECK(f.st.stats().groups_incomplete == 0);
}

TEST_CASE(
  "the commit-to-invalidation delay is measured from the end marker's commit time",
  "[changes]") {
  feed f;
  f.go_live();
  auto a = f.st.changes({row(90, 1, "a"), end(90, 1, 1'000'000)}, f.t0);
  REQUIRE(a.groups.size() == 1);
  f.st.invalidated(a.groups[0].commit_us, 1'002'500);
  f.st.invalidated(0, 5'000'000); // no end marker: no delay to measure
  CHECK(f.st.stats().recent_delays_us == std::vector<uint32_t>{2'500});
  for (uint32_t i = 0; i < change_delay_samples + 2; ++i)
    f.st.invalidated(1, 1 + i);
  auto d = f.st.stats().recent_delays_us;
  REQUIRE(d.size() == change_delay_samples);
  CHECK(d.front() == 2); // oldest first, the oldest three gone
  CHECK(d.back() == change_delay_samples + 1);
}

TEST_CASE("malformed and unknown-table notifications are counted, nothing applied",
          "[changes]") {
  feed f;
  f.go_live();
  auto a = f.st.changes({row(95, 1, "k", "public.nobody"), end(95, 1)}, f.t0);
  CHECK(a.groups.empty());
  CHECK(a.repairs.empty());
  a = f.st.changes({}, f.t0, 3);
  auto s = f.st.stats();
  CHECK(s.notifications_malformed == 3);
  CHECK(s.notifications_unknown_table == 1);
  CHECK(s.groups_applied == 1);
}

TEST_CASE("a malformed notification repairs every cache the feed keeps", "[changes]") {
  // It may be a row whose key went unheard: a writer that set the triggers'
  // counter below zero numbered its rows 0, which the parser refuses, and
  // sent no end (a review of 8 Dec); nothing was invalidated.
  feed f;
  f.go_live();
  auto before = f.st.stats().repairs;
  auto a = f.st.changes({}, f.t0, 1);
  CHECK(a.repairs == strings{"orders", "users", "users2"});
  CHECK(f.st.stats().repairs == before + 1);
}
