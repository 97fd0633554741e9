// The shard's hash index and arena, checked against std::unordered_map.
#include <catch2/catch.hpp>

#include <stdexcept>
#include <string>
#include <unordered_map>

#include "actors/entry_table.hpp"

using namespace karlton;

TEST_CASE("the entry table agrees with a map under random inserts and removes",
          "[table]") {
  entry_table t;
  std::unordered_map<std::string, entry_id> model;
  uint64_t x = 42;
  auto next = [&] { return x = x * 6364136223846793005ull + 1442695040888963407ull; };
  for (int i = 0; i < 200'000; ++i) {
    auto key = "k" + std::to_string((next() >> 33) % 5000);
    auto h = static_cast<uint32_t>(hash_key(key));
    auto found = t.find(key, h);
    auto m = model.find(key);
    REQUIRE((found != no_entry) == (m != model.end()));
    if (m != model.end()) REQUIRE(found == m->second);
    if (found == no_entry) {
      model[key] = t.insert(value::make(key, "v"));
    } else if (next() % 2 == 0) {
      auto v = t.remove(found);
      REQUIRE(v.key() == key);
      model.erase(key);
    }
    REQUIRE(t.size() == model.size());
  }
  for (auto& [key, id] : model) {
    CHECK(t.find(key, static_cast<uint32_t>(hash_key(key))) == id);
    CHECK(t.at(id).val.key() == key);
  }
}

TEST_CASE("removal keeps colliding keys reachable", "[table]") {
  // Many keys with the same table hash share one probe cluster; removing from
  // its middle must not cut off the keys behind it (backward-shift deletion).
  entry_table t;
  std::vector<entry_id> ids;
  for (int i = 0; i < 50; ++i)
    ids.push_back(t.insert(value::make("c" + std::to_string(i), "")));
  for (int i = 0; i < 50; i += 3)
    t.remove(ids[i]);
  for (int i = 0; i < 50; ++i) {
    auto key = "c" + std::to_string(i);
    auto id = t.find(key, static_cast<uint32_t>(hash_key(key)));
    CHECK((id != no_entry) == (i % 3 != 0));
  }
}

TEST_CASE("dead entries are reused before the arena grows", "[table]") {
  entry_table t;
  auto a = t.insert(value::make("a", ""));
  t.insert(value::make("b", ""));
  t.remove(a);
  auto c = t.insert(value::make("c", ""));
  CHECK(c == a);
  CHECK(t.id_limit() == 2);
}

TEST_CASE("entry lists keep order and weights", "[table]") {
  entry_table t;
  entry_list l;
  auto a = t.insert(value::make("a", ""));
  auto b = t.insert(value::make("b", ""));
  auto c = t.insert(value::make("c", ""));
  l.push_front(t, a, 1);
  l.push_front(t, b, 2);
  l.push_front(t, c, 3);
  CHECK(l.tail == a);
  l.move_to_front(t, a);
  CHECK(l.head == a);
  CHECK(l.tail == b);
  l.unlink(t, c, 3);
  CHECK(l.weight == 3);
  CHECK(l.count == 2);
  CHECK(t.at(a).next == b);
  CHECK(t.at(b).prev == a);
}

TEST_CASE("a full entry table refuses another entry instead of handing out no_entry",
          "[table]") {
  // 2^32 - 1 live entries per shard; checked here at a limit of 3.
  STATIC_REQUIRE(entry_table::max_entries == uint64_t{UINT32_MAX});
  entry_table t{3};
  for (auto k : {"a", "b", "c"})
    CHECK(t.insert(value::make(k, "")) != no_entry);
  CHECK(t.full());
  CHECK_THROWS_AS(t.insert(value::make("d", "")), std::length_error);
  CHECK(t.size() == 3);
  t.remove(t.find("b", static_cast<uint32_t>(hash_key("b"))));
  CHECK_FALSE(t.full());
  CHECK(t.insert(value::make("d", "")) == 1); // b's id, reused
}
