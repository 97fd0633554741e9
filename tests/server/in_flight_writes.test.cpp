// The read-your-writes table of a connection: against a map and a queue
// under random writes and drained replies. At half load linear probing makes
// runs that wrap, so removals shift entries back; a wrong shift loses an
// entry the map still has, a wrong ring loses the order.
#include <catch2/catch.hpp>

#include <cstdint>
#include <deque>
#include <map>
#include <random>
#include <vector>

#include "runtime/server/in_flight_writes.hpp"

using karlton::server::in_flight_writes;
using karlton::server::write_path;

TEST_CASE("in-flight writes count per hash and keep the first write's way",
          "[resp][ryw]") {
  in_flight_writes t;
  CHECK(t.empty());
  CHECK(t.find(7) == nullptr);
  t.add(7, write_path::compute);
  t.add(9, write_path::ttl);
  t.add(7, write_path::put);
  REQUIRE(t.find(7) != nullptr);
  CHECK(t.find(7)->count == 2);
  CHECK(t.find(7)->path == write_path::compute);
  CHECK(t.size() == 2);
  t.remove_oldest(1); // the first 7
  CHECK(t.find(7)->count == 1);
  t.remove_oldest(1); // 9
  CHECK(t.find(9) == nullptr);
  CHECK(t.find(7)->count == 1);
  t.remove_oldest(5); // the second 7; nothing more is in flight
  CHECK(t.find(7) == nullptr);
  CHECK(t.empty());
}

TEST_CASE("in-flight writes agree with a map under random writes and replies",
          "[resp][ryw]") {
  std::mt19937_64 rng{42};
  for (uint64_t spread : {8u, 64u, 100000u}) {
    INFO("distinct hashes " << spread);
    std::vector<uint64_t> pool(spread);
    for (auto& h : pool)
      h = rng();
    in_flight_writes t;
    struct in_flight {
      uint32_t count = 0;
      write_path path = write_path::put;
    };
    std::map<uint64_t, in_flight> ref;
    std::deque<uint64_t> order;
    for (int op = 0; op < 200000; ++op) {
      // Keep a few hundred in flight, as a deep pipeline would, crossing
      // the ring's and the table's growth points on the way up.
      bool add = order.empty() || rng() % 100 < (order.size() < 300 ? 60 : 40);
      if (add) {
        size_t keys = 1 + rng() % 3; // a command may write several keys
        auto path = static_cast<write_path>(rng() % 4);
        for (size_t k = 0; k < keys; ++k) {
          uint64_t h = pool[rng() % spread];
          t.add(h, path);
          auto& r = ref[h];
          if (r.count++ == 0) r.path = path; // the first write's way stays
          order.push_back(h);
        }
      } else {
        size_t n = 1 + rng() % 3;
        t.remove_oldest(n);
        for (size_t k = 0; k < n && !order.empty(); ++k) {
          if (--ref[order.front()].count == 0) ref.erase(order.front());
          order.pop_front();
        }
      }
      if (op % 97 == 0 || spread <= 64) {
        REQUIRE(t.size() == ref.size());
        for (auto& [h, r] : ref) {
          auto* w = t.find(h);
          REQUIRE(w != nullptr);
          REQUIRE(w->count == r.count);
          REQUIRE(w->path == r.path);
        }
      }
    }
    t.remove_oldest(order.size());
    CHECK(t.empty());
  }
}

TEST_CASE("in-flight writes give their memory back once a huge write is done",
          "[resp][ryw]") {
  in_flight_writes t;
  for (uint64_t h = 1; h <= 100000; ++h) // one MSET of 100k keys
    t.add(h * 0x9e3779b97f4a7c15ULL, write_path::put);
  CHECK(t.memory() > 1'000'000);
  t.remove_oldest(99999);
  CHECK(t.memory() > 1'000'000); // one still in flight: the table stays
  t.remove_oldest(1);
  CHECK(t.empty());
  // Kept for the connection's life before.
  CHECK(t.memory() <= in_flight_writes::keep_slots * 16 + 16 * 8);
  t.add(5, write_path::put); // and it works again from empty
  REQUIRE(t.find(5) != nullptr);
  CHECK(t.find(5)->count == 1);
}
