// The tracking table (plan §6.2): no change after a registration goes
// unreported however reads and changes interleave, the key bound, flushes,
// and where messages go (RESP3 itself, RESP2 REDIRECT). BCAST prefixes:
// tracking_bcast.test.cpp.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "server/tracking_fixture.hpp"

using namespace karlton;
using namespace karlton::server;
using namespace karlton::testing::tracking;

TEST_CASE("tracking: no change after a registration goes unreported, 2 readers "
          "against 2 writers",
          "[tracking]") {
  constexpr size_t keys = 16;
  constexpr int rounds = 20000;
  fixture f;
  std::array<std::atomic<uint64_t>, keys> version{}; // the cache: published changes
  auto name = [](size_t k) { return "k" + std::to_string(k); };
  // Per reader and key: messages received so far (null counts for every key).
  std::array<std::array<std::atomic<uint64_t>, keys>, 2> told{};
  for (uint64_t c = 0; c < 2; ++c) {
    auto& s = f.add(c + 1, 3);
    s.on_message = [&told, c](const message& m) {
      for (size_t k = 0; k < keys; ++k)
        if (m.everything || std::find(m.keys.begin(), m.keys.end(),
                                      "k" + std::to_string(k)) != m.keys.end())
          told[c][k].fetch_add(1);
    };
    REQUIRE(f.table->enable(c + 1, tracking_mode{}).empty());
  }
  // What each reader's own cache holds: the version it read and how many
  // messages it had seen when it registered.
  struct copy {
    bool held = false;
    uint64_t value = 0;
    uint64_t told_before = 0;
  };
  std::array<std::array<copy, keys>, 2> copies{};
  std::atomic<int> writers_done{0};
  std::vector<std::thread> threads;
  for (uint64_t c = 0; c < 2; ++c)
    threads.emplace_back([&, c] {
      std::mt19937 rng{static_cast<unsigned>(c)};
      // Reads as long as the writers write, so the last read of a key comes
      // before or after its last change, as the threads happen to run.
      while (writers_done.load() < 2) {
        auto k = rng() % keys;
        auto before = told[c][k].load();
        f.table->will_read(c + 1, 0, name(k)); // register, then read
        copies[c][k] = {true, version[k].load(), before};
      }
    });
  for (int w = 0; w < 2; ++w)
    threads.emplace_back([&, w] {
      std::mt19937 rng{static_cast<unsigned>(100 + w)};
      for (int i = 0; i < rounds; ++i) {
        auto k = rng() % keys;
        version[k].fetch_add(1); // publish, then tell
        f.change(0, {name(k)});
      }
      writers_done.fetch_add(1);
    });
  for (auto& t : threads)
    t.join();
  // A copy nobody invalidated since its registration must be current: a
  // change after the registration that went unreported leaves it stale.
  size_t held = 0;
  for (size_t c = 0; c < 2; ++c)
    for (size_t k = 0; k < keys; ++k) {
      const auto& cp = copies[c][k];
      if (!cp.held) continue;
      ++held;
      if (told[c][k].load() != cp.told_before) continue;
      INFO("reader " << c << " key " << k);
      CHECK(cp.value == version[k].load());
    }
  CHECK(held == 2 * keys);
  // Each message took its key out of the table, so the held ones remain.
  CHECK(f.table->keys() <= keys);
}

TEST_CASE("tracking: default mode reports a key once per read, only to readers of it",
          "[tracking]") {
  fixture f;
  auto& a = f.add(1, 3);
  auto& b = f.add(2, 3);
  REQUIRE(f.table->enable(1, {}).empty());
  REQUIRE(f.table->enable(2, {}).empty());
  f.table->will_read(1, 0, "x");
  f.table->will_read(1, 0, "x");
  f.table->will_read(2, 1, "x"); // another database
  CHECK(f.table->keys() == 2);
  f.change(0, {"x", "y"});
  f.change(0, {"x"}); // forgotten once told: no second message
  CHECK(a.keys() == std::vector<std::string>{"x"});
  CHECK(b.messages().empty());
  f.change(1, {"x"});
  CHECK(b.keys() == std::vector<std::string>{"x"});
  CHECK(f.table->keys() == 0);
  // OFF: nothing more, and no work for the shards.
  f.table->will_read(1, 0, "z");
  f.table->disable(1);
  f.table->disable(2);
  CHECK(f.table->clients() == 0);
  f.change(0, {"z"});
  CHECK(a.messages().size() == 1);
}

TEST_CASE("tracking: past the key bound, keys are forgotten with a message",
          "[tracking]") {
  fixture f{3};
  auto& a = f.add(1, 3);
  REQUIRE(f.table->enable(1, {}).empty());
  std::vector<std::string> read = {"k1", "k2", "k3", "k4", "k5"};
  for (auto& k : read)
    f.table->will_read(1, 0, k);
  CHECK(f.table->keys() == 3);
  auto evicted = a.keys();
  CHECK(evicted.size() == 2);
  // Every key read is told exactly once: evicted now, or when it changes.
  f.change(0, read);
  auto told = a.keys();
  std::multiset<std::string> each(told.begin(), told.end());
  CHECK(told.size() == read.size());
  for (auto& k : read)
    CHECK(each.count(k) == 1);
  CHECK(f.table->keys() == 0);
}

TEST_CASE("tracking: past the byte bound, long keys are forgotten with a message",
          "[tracking]") {
  // Each tracked key costs its bytes, 4 for the database and 8 for its one
  // reader: three keys of 96 bytes fill 324, the fourth passes it.
  fixture f{0, 324}; // no bound on the count
  auto& a = f.add(1, 3);
  REQUIRE(f.table->enable(1, {}).empty());
  for (char c : std::string{"abcd"})
    f.table->will_read(1, 0, std::string(96, c));
  CHECK(f.table->keys() == 3);
  REQUIRE(a.keys().size() == 1); // the one forgotten, told at once
  f.change(0, {std::string(96, 'a'), std::string(96, 'b'), std::string(96, 'c'),
               std::string(96, 'd')});
  CHECK(a.keys().size() == 4); // each told once
  CHECK(f.table->keys() == 0);
}

TEST_CASE("tracking: readers count against the byte bound and those gone leave a key's "
          "list",
          "[tracking]") {
  // A key nobody writes, read once by each of 100,000 short connections:
  // before, every id stayed on its list (and outside the bound), and the
  // next change of the key walked all of them on a shard's thread.
  fixture f{0, 1 << 20};
  size_t refused = 0;
  for (uint64_t id = 1; id <= 100'000; ++id) {
    f.table->attach(id, std::weak_ptr<session>{});
    refused += !f.table->enable(id, {}).empty();
    f.table->will_read(id, 0, "hot");
    f.table->detach(id);
  }
  REQUIRE(refused == 0);
  auto& a = f.add(200'000, 3);
  REQUIRE(f.table->enable(200'000, {}).empty());
  f.table->will_read(200'000, 0, "hot");
  CHECK(f.table->keys() == 1);
  CHECK(f.table->bytes() <=
        4 + 3 + 129 * tracking_table::id_bytes); // at most one doubling
  CHECK(f.table->bytes() >= 4 + 3 + tracking_table::id_bytes);
  f.change(0, {"hot"});
  CHECK(a.keys() == std::vector<std::string>{"hot"});
  CHECK(f.table->bytes() == 0);
}

TEST_CASE("tracking: a flush tells every tracking client 'everything' and forgets that "
          "database's keys",
          "[tracking]") {
  fixture f;
  auto& a = f.add(1, 3);
  auto& b = f.add(2, 3);
  f.add(3, 3); // not tracking: nothing
  REQUIRE(f.table->enable(1, {}).empty());
  REQUIRE(f.table->enable(2, bcast({"p"})).empty());
  f.table->will_read(1, 0, "x");
  f.table->will_read(1, 1, "y");
  f.table->listener_for(0)->all_changed();
  REQUIRE(a.messages().size() == 1);
  CHECK(a.messages()[0].everything);
  REQUIRE(b.messages().size() == 1);
  CHECK(b.messages()[0].everything);
  CHECK(f.sessions[2]->messages().empty());
  CHECK(f.table->keys() == 1); // db 1's "y" stays
}

TEST_CASE("tracking: messages go to the REDIRECT target, in its protocol", "[tracking]") {
  fixture f;
  auto& tracker2 = f.add(1, 2);
  auto& target2 = f.add(2, 2);
  auto& target3 = f.add(3, 3);
  auto& tracker3 = f.add(4, 3);
  tracking_mode to2;
  to2.redirect = 2;
  tracking_mode to3;
  to3.redirect = 3;
  CHECK(f.table->enable(1, [] {
    tracking_mode m;
    m.redirect = 99;
    return m;
  }()) == "The client ID you want redirect to does not exist");
  REQUIRE(f.table->enable(1, to2).empty());
  f.table->will_read(1, 0, "a");
  f.change(0, {"a"}); // target not subscribed (RESP2): nothing
  CHECK(target2.messages().empty());
  f.table->set_subscribed(2, true);
  f.table->will_read(1, 0, "a");
  f.change(0, {"a"});
  REQUIRE(target2.messages().size() == 1);
  CHECK(target2.messages()[0].pubsub_form);
  CHECK(target2.messages()[0].keys == std::vector<std::string>{"a"});
  CHECK(tracker2.messages().empty());
  CHECK(tracker2.handed_on == 1); // through the reader, in its reply order
  // A RESP3 target gets the push form, subscribed or not.
  REQUIRE(f.table->enable(4, to3).empty());
  f.table->will_read(4, 0, "b");
  f.change(0, {"b"});
  REQUIRE(target3.messages().size() == 1);
  CHECK_FALSE(target3.messages()[0].pubsub_form);
  // The target goes away: a RESP3 tracker hears that its redirect broke.
  f.table->detach(3);
  f.table->will_read(4, 0, "b");
  f.change(0, {"b"});
  REQUIRE(tracker3.messages().size() == 1);
  CHECK(tracker3.messages()[0].redirect_broken);
  // RESP2 without REDIRECT: accepted, as Redis does, but it cannot be told.
  f.table->disable(1);
  REQUIRE(f.table->enable(1, {}).empty());
  f.table->will_read(1, 0, "c");
  f.change(0, {"c"});
  CHECK(tracker2.messages().empty());
}
