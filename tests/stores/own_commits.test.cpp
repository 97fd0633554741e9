// own_commits: the registry of a store's own transactions that lets the change
// feed skip the notifications of karlton's own writes (docs/plans/postgres.md
// §2). No server: the store's and the feed's calls are made directly.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include <karlton/stores/own_commits.hpp>

using namespace karlton;
using verdict = own_commits::verdict;

TEST_CASE("an xid is pending between expect and resolve, then own exactly once",
          "[own-commits]") {
  own_commits own;
  CHECK(own.take(7, 1) == verdict::foreign);
  own.expect(7, 1);
  CHECK(own.take(7, 1) == verdict::pending);
  CHECK(own.take(7, 1) == verdict::pending); // pending is not consumed
  own.resolve(7, true);
  CHECK(own.take(8, 1) == verdict::foreign);
  CHECK(own.take(7, 1) == verdict::own);
  CHECK(own.take(7, 1) == verdict::foreign); // own is forgotten as it is returned
}

TEST_CASE("an own xid whose group has other rows than the store changed is foreign",
          "[own-commits]") {
  own_commits own;
  own.expect(9, 2);
  own.resolve(9, true);
  CHECK(own.take(9, 3) == verdict::foreign); // a user's trigger changed one more row
  CHECK(own.take(9, 2) == verdict::foreign); // and it is forgotten
  own.expect(10, 2);
  own.resolve(10, true);
  CHECK(own.take(10, 1) == verdict::foreign); // a part of the group only
  own.expect(11, 1);
  CHECK(own.take(11, own_commits::incomplete_group) == verdict::foreign); // even pending
  own.resolve(11, true);
  CHECK(own.take(11, 1) == verdict::foreign); // its other parts too
}

TEST_CASE("resolve(false) makes an xid foreign: a rollback or an unknown COMMIT "
          "outcome must invalidate",
          "[own-commits]") {
  own_commits own;
  own.expect(1, 1);
  own.expect(2, 1);
  own.resolve(1, false);
  own.resolve(2, true);
  CHECK(own.take(1, 1) == verdict::foreign);
  CHECK(own.take(2, 1) == verdict::own);
  // A resolve of an xid never expected (or already dropped) adds nothing.
  own.resolve(3, true);
  CHECK(own.take(3, 1) == verdict::foreign);
}

TEST_CASE("forget_all makes every xid foreign, pending or committed", "[own-commits]") {
  own_commits own;
  own.expect(1, 1);
  own.expect(2, 1);
  own.resolve(2, true);
  own.forget_all();
  CHECK(own.take(1, 1) == verdict::foreign);
  CHECK(own.take(2, 1) == verdict::foreign);
  // The store's resolve after the feed's forget_all does not bring it back.
  own.resolve(1, true);
  CHECK(own.take(1, 1) == verdict::foreign);
  // And the registry still works afterwards.
  own.expect(3, 1);
  own.resolve(3, true);
  CHECK(own.take(3, 1) == verdict::own);
}

TEST_CASE("own_commits remembers at most capacity xids, dropping the oldest first",
          "[own-commits]") {
  own_commits own;
  const uint64_t n = own_commits::capacity;
  for (uint64_t xid = 1; xid <= n + 2; ++xid) {
    own.expect(xid, 1);
    own.resolve(xid, true);
  }
  // The two oldest are gone (they count as foreign: an extra invalidation).
  CHECK(own.take(1, 1) == verdict::foreign);
  CHECK(own.take(2, 1) == verdict::foreign);
  CHECK(own.take(3, 1) == verdict::own);
  CHECK(own.take(n + 2, 1) == verdict::own);

  // Taken and rolled-back xids free their places: after removing some, as
  // many new ones fit without dropping anything older.
  own.forget_all();
  for (uint64_t xid = 1; xid <= n; ++xid)
    own.expect(xid, 1);
  own.resolve(10, false);
  own.resolve(11, true);
  CHECK(own.take(11, 1) == verdict::own);
  own.expect(n + 1, 1);
  own.expect(n + 2, 1);
  CHECK(own.take(1, 1) == verdict::pending); // still there: two places were free
  own.expect(n + 3, 1);                      // full now: the oldest (1) goes
  CHECK(own.take(1, 1) == verdict::foreign);
  CHECK(own.take(2, 1) == verdict::pending);
  CHECK(own.take(n + 3, 1) == verdict::pending);
}

TEST_CASE("an xid expected again becomes pending and the youngest", "[own-commits]") {
  own_commits own;
  own.expect(1, 1);
  own.expect(2, 1);
  own.resolve(1, true);
  own.expect(1, 1); // a retry under the same xid: 2 is now the oldest
  CHECK(own.take(1, 1) == verdict::pending);
  for (uint64_t xid = 3; xid <= own_commits::capacity; ++xid)
    own.expect(xid, 1);
  own.expect(own_commits::capacity + 1, 1); // full: drops 2, not 1
  CHECK(own.take(2, 1) == verdict::foreign);
  CHECK(own.take(1, 1) == verdict::pending);
}

TEST_CASE("writers and takers on several threads: every committed xid is own "
          "exactly once, never one rolled back",
          "[own-commits]") {
  own_commits own;
  constexpr uint64_t per_writer = 5'000;
  constexpr int writers = 4, takers = 3;
  // Writer w owns xids w*per_writer+1 ..; odd ones roll back.
  auto committed = [](uint64_t xid) { return xid % 2 == 0; };
  const uint64_t total = per_writer * writers;
  std::vector<std::atomic<int>> owns(total + 1);
  std::atomic<int> writers_done{0};
  std::atomic<bool> rolled_back_own{false};

  auto sweep = [&] {
    for (uint64_t xid = 1; xid <= total; ++xid)
      if (own.take(xid, 1) == verdict::own) {
        owns[xid].fetch_add(1);
        if (!committed(xid)) rolled_back_own = true;
      }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < takers; ++t)
    threads.emplace_back([&] {
      // Sweeps while the writers run, and once more after they finished.
      while (writers_done.load() < writers)
        sweep();
      sweep();
    });
  for (int w = 0; w < writers; ++w)
    threads.emplace_back([&, w] {
      for (uint64_t i = 1; i <= per_writer; ++i) {
        uint64_t xid = w * per_writer + i;
        own.expect(xid, 1);
        own.resolve(xid, committed(xid));
      }
      writers_done.fetch_add(1);
    });
  for (auto& t : threads)
    t.join();

  CHECK_FALSE(rolled_back_own.load());
  int wrong = 0;
  for (uint64_t xid = 1; xid <= total; ++xid)
    if (owns[xid].load() != (committed(xid) ? 1 : 0)) ++wrong;
  CHECK(wrong == 0);
}
