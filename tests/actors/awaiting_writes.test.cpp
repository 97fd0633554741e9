// The writes a shard handed to the store or the flusher: taken by number in
// any order, each once, and the ones still waiting visited in order.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "actors/pending_write.hpp"

using namespace karlton;

namespace {

pending_write write_of(const std::string& key) {
  pending_write op;
  op.key = key;
  return op;
}

std::vector<std::string> waiting_keys(awaiting_writes& a) {
  std::vector<std::string> out;
  a.for_each([&](pending_write& op) { out.push_back(op.key); });
  return out;
}

} // namespace

TEST_CASE("a handed write is taken by its number, once", "[awaiting_writes]") {
  awaiting_writes a;
  CHECK(a.empty());
  a.add(3, write_of("a"));
  a.add(7, write_of("b"));
  CHECK_FALSE(a.empty());
  CHECK_FALSE(a.take(5)); // never added
  auto b = a.take(7);     // out of order: "a" still waits before it
  REQUIRE(b);
  CHECK(b->key == "b");
  CHECK_FALSE(a.take(7)); // answered already
  CHECK(waiting_keys(a) == std::vector<std::string>{"a"});
  CHECK(a.held() == 2); // "b" is a hole behind "a"
  auto x = a.take(3);
  REQUIRE(x);
  CHECK(x->key == "a");
  CHECK(a.empty());
  CHECK(a.held() == 0);
  CHECK_FALSE(a.take(3));
  CHECK(waiting_keys(a).empty());
}

TEST_CASE("writes answered out of order leave the others waiting in order",
          "[awaiting_writes]") {
  awaiting_writes a;
  for (uint64_t seq = 1; seq <= 100; ++seq)
    a.add(seq, write_of(std::to_string(seq)));
  // Every odd one answered, from the back: each leaves a hole behind a write
  // that still waits, until the first is taken.
  for (uint64_t seq = 99; seq >= 3; seq -= 2)
    REQUIRE(a.take(seq));
  auto keys = waiting_keys(a);
  REQUIRE(keys.size() == 51);
  CHECK(a.held() == 100); // holes and all
  CHECK(keys.front() == "1");
  CHECK(keys[1] == "2");
  CHECK(keys[2] == "4");
  CHECK(keys.back() == "100");
  REQUIRE(a.take(1));
  for (uint64_t seq = 2; seq <= 100; seq += 2)
    REQUIRE(a.take(seq));
  CHECK(a.empty());
  CHECK(a.held() == 0); // all answered: nothing kept
  // Numbers go on after the holes are gone.
  a.add(101, write_of("101"));
  CHECK(a.held() == 1);
  CHECK(waiting_keys(a) == std::vector<std::string>{"101"});
  CHECK(a.take(101));
}

TEST_CASE("answered writes at the front make room for new ones, the waiting kept",
          "[awaiting_writes]") {
  awaiting_writes a;
  for (uint64_t seq = 1; seq <= 200; ++seq)
    a.add(seq, write_of(std::to_string(seq)));
  for (uint64_t seq = 1; seq <= 150; ++seq)
    REQUIRE(a.take(seq));
  CHECK(a.held() == 200);      // the answered ones stay in front until the next add
  a.add(201, write_of("201")); // more than half answered: moved to the front
  CHECK(a.held() == 51);
  auto keys = waiting_keys(a);
  REQUIRE(keys.size() == 51);
  CHECK(keys.front() == "151");
  CHECK(keys.back() == "201");
  CHECK_FALSE(a.take(150));
  for (uint64_t seq = 151; seq <= 201; ++seq) {
    auto op = a.take(seq);
    REQUIRE(op);
    CHECK(op->key == std::to_string(seq));
  }
  CHECK(a.empty());
}

TEST_CASE("a write numbered out of order still goes into its place",
          "[awaiting_writes]") {
  awaiting_writes a;
  a.add(5, write_of("5"));
  a.add(9, write_of("9"));
  a.add(7, write_of("7"));
  CHECK(waiting_keys(a) == std::vector<std::string>{"5", "7", "9"});
  auto seven = a.take(7);
  REQUIRE(seven);
  CHECK(seven->key == "7");
  REQUIRE(a.take(5));
  a.add(6, write_of("6")); // below the first still waiting
  CHECK(waiting_keys(a) == std::vector<std::string>{"6", "9"});
  REQUIRE(a.take(6));
  REQUIRE(a.take(9));
  CHECK(a.empty());
}

TEST_CASE("a write numbered out of order goes into its place behind a compacted front",
          "[awaiting_writes]") {
  awaiting_writes a;
  for (uint64_t seq = 1; seq <= 200; ++seq)
    if (seq != 180) a.add(seq, write_of(std::to_string(seq)));
  for (uint64_t seq = 1; seq <= 150; ++seq)
    REQUIRE(a.take(seq));
  a.add(180, write_of("180")); // the answered front goes first
  CHECK(a.held() == 50);
  auto keys = waiting_keys(a);
  REQUIRE(keys.size() == 50);
  for (size_t i = 0; i < keys.size(); ++i)
    CHECK(keys[i] == std::to_string(151 + i));
  REQUIRE(a.take(180));
  CHECK(a.held() == 50); // a hole
}

TEST_CASE("emptied, the writes keep their room up to a bound", "[awaiting_writes]") {
  awaiting_writes a;
  auto fill_and_empty = [&a](uint64_t first, uint64_t n) {
    for (uint64_t seq = first; seq < first + n; ++seq)
      a.add(seq, write_of("k"));
    for (uint64_t seq = first; seq < first + n; ++seq)
      REQUIRE(a.take(seq));
    CHECK(a.held() == 0);
  };
  fill_and_empty(1, 100); // the usual: the room stays for the next writes
  CHECK(a.room() >= 100);
  fill_and_empty(101, 4 * awaiting_writes::kept_room); // a burst: most of it goes
  CHECK(a.room() == awaiting_writes::kept_room);
}
