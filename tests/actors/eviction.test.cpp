// TinyLFU's pieces: the frequency sketch and the admission decision.
#include <catch2/catch.hpp>

#include "actors/eviction.hpp"

using namespace karlton;

TEST_CASE("the frequency sketch counts, saturates at 15 and ages", "[policy]") {
  frequency_sketch sketch{1000};
  for (int i = 0; i < 5; ++i)
    sketch.increment(7);
  CHECK(sketch.frequency(7) == 5);
  CHECK(sketch.frequency(8) == 0);
  for (int i = 0; i < 100; ++i)
    sketch.increment(9);
  CHECK(sketch.frequency(9) == 15);
  // 10 x capacity increments halve every counter.
  for (uint32_t i = 0; i < 10'000; ++i)
    sketch.increment(1'000'000 + i);
  CHECK(sketch.frequency(9) <= 8);
  CHECK(sketch.frequency(7) <= 4); // 5 halved, plus collisions of 10,000 other keys
}

TEST_CASE("TinyLFU keeps a popular entry against a stream of newcomers", "[policy]") {
  entry_table t;
  auto policy = eviction_policy::make(eviction_policy_kind::tiny_lfu, t, 10, false);
  std::vector<entry_id> live;
  auto add = [&](const std::string& k) {
    if (auto found = t.find(k, static_cast<uint32_t>(hash_key(k))); found != no_entry)
      return found;
    auto id = t.insert(value::make(k, ""));
    policy->on_insert(id, 1);
    if (t.size() > 10) {
      auto victim = policy->victim();
      policy->on_remove(victim, 1);
      t.remove(victim);
    }
    return id;
  };
  // Read once per 20 newcomers, twice the capacity: LRU would have evicted it
  // every time; TinyLFU sees it is more frequent than any newcomer.
  auto hot = add("hot");
  int kept = 0;
  for (int i = 0; i < 1000; ++i) {
    add("new" + std::to_string(i));
    if (i % 20 == 0 && t.find("hot", static_cast<uint32_t>(hash_key("hot"))) == hot) {
      ++kept;
      policy->on_hit(hot);
    } else if (i % 20 == 0) {
      policy->on_hit(add("hot")); // re-admitted after a miss, like a cache would
    }
  }
  CHECK(kept >= 45); // of 50 checks; only the first few may miss while it earns its count
  CHECK(t.size() == 10);
}
