// The per-shard dependency index: links set, replaced and forgotten; invalidations
// by name; names and memory gone with their last dependent; a model check
// over random operations.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "actors/depended_names.hpp"
#include "actors/dependency_index.hpp"
#include "actors/shard_state.hpp"
#include "support/times.hpp"

using namespace karlton;

namespace {

using model = std::map<entry_id, std::set<std::string>>;

/// The index's links as a model, to compare whole states.
model contents(const dependency_index& idx) {
  model out;
  idx.for_each([&](entry_id id, const std::vector<std::string_view>& names) {
    auto& set = out[id];
    for (auto name : names) {
      CHECK(set.emplace(name).second); // no name twice
    }
  });
  return out;
}

std::vector<std::string_view> names_of(const dependency_index& idx, entry_id id) {
  std::vector<std::string_view> out;
  idx.for_each([&](entry_id e, const std::vector<std::string_view>& names) {
    if (e == id) out = names;
  });
  return out;
}

std::vector<entry_id> sorted(std::vector<entry_id> xs) {
  std::sort(xs.begin(), xs.end());
  return xs;
}

/// After everything is gone the index holds only empty tables.
constexpr size_t empty_bytes = 64;

} // namespace

TEST_CASE("an entry's dependencies are set and forgotten", "[dependency_index]") {
  dependency_index idx;
  idx.set(7, {"event:login", "tag:users"});
  CHECK(idx.has(7));
  CHECK_FALSE(idx.has(8));
  CHECK(idx.entries() == 1);
  CHECK(idx.names() == 2);
  CHECK(idx.links() == 2);
  CHECK(names_of(idx, 7) == std::vector<std::string_view>{"event:login", "tag:users"});
  idx.forget(7);
  CHECK_FALSE(idx.has(7));
  CHECK(idx.entries() == 0);
  CHECK(idx.names() == 0);
  CHECK(idx.links() == 0);
  idx.forget(7); // already gone
  idx.forget(8); // never there
  CHECK(idx.memory_bytes() < empty_bytes);
}

TEST_CASE("an overwrite replaces the links of the entry", "[dependency_index]") {
  dependency_index idx;
  idx.set(1, {"a", "b"});
  idx.set(2, {"b"});
  idx.set(1, {"b", "c"});
  CHECK(idx.names() == 2); // "a" had no other dependent
  CHECK(idx.links() == 3);
  CHECK(names_of(idx, 1) == std::vector<std::string_view>{"b", "c"});
  CHECK(idx.take_dependents("a").empty());
  CHECK(sorted(idx.take_dependents("b")) == std::vector<entry_id>{1, 2});
  CHECK(idx.entries() == 1); // 2 has no links left, 1 still depends on "c"
  CHECK_FALSE(idx.has(2));
  idx.set(1, {}); // overwritten without dependencies
  CHECK_FALSE(idx.has(1));
  CHECK(idx.names() == 0);
}

TEST_CASE("a name declared twice by one entry is linked once", "[dependency_index]") {
  dependency_index idx;
  idx.set(1, {"a", "a", "b", "a"});
  CHECK(idx.links() == 2);
  CHECK(names_of(idx, 1) == std::vector<std::string_view>{"a", "b"});
  idx.set(1, {"b", "b"});
  CHECK(idx.links() == 1);
  CHECK(idx.names() == 1);
  CHECK(idx.take_dependents("b") == std::vector<entry_id>{1});
  CHECK(idx.entries() == 0);
}

TEST_CASE("taking the dependents of a name leaves nothing once they are forgotten",
          "[dependency_index]") {
  dependency_index idx;
  idx.set(1, {"x"});
  idx.set(2, {"y", "x"});
  idx.set(3, {"x"});
  auto taken = idx.take_dependents("x");
  CHECK(sorted(taken) == std::vector<entry_id>{1, 2, 3});
  CHECK(idx.names() == 1);
  CHECK(idx.links() == 1);
  CHECK_FALSE(idx.has(1));
  CHECK(idx.has(2)); // still on "y" until the shard forgets it
  CHECK(names_of(idx, 2) == std::vector<std::string_view>{"y"});
  CHECK(idx.take_dependents("x").empty()); // a cycle coming back ends here
  for (auto id : taken)
    idx.forget(id);
  CHECK(idx.entries() == 0);
  CHECK(idx.names() == 0);
  CHECK(idx.links() == 0);
  CHECK(idx.memory_bytes() < empty_bytes);
}

TEST_CASE("a name vanishes with its last dependent", "[dependency_index]") {
  dependency_index idx;
  idx.set(1, {"shared", "only-1"});
  idx.set(2, {"shared"});
  idx.forget(1);
  CHECK(idx.names() == 1);
  CHECK(idx.take_dependents("only-1").empty());
  idx.forget(2);
  CHECK(idx.names() == 0);
  // The freed name ids are reused.
  idx.set(3, {"new"});
  CHECK(idx.names() == 1);
  CHECK(idx.take_dependents("new") == std::vector<entry_id>{3});
}

TEST_CASE("an invalidation of 100k dependents gives back their memory",
          "[dependency_index]") {
  dependency_index idx;
  constexpr entry_id n = 100'000;
  for (entry_id id = 0; id < n; ++id)
    idx.set(id, {"tag:everything", "user:" + std::to_string(id % 1000)});
  CHECK(idx.names() == 1001);
  CHECK(idx.links() == 2 * n);
  auto full = idx.memory_bytes();
  auto taken = idx.take_dependents("tag:everything");
  CHECK(taken.size() == n);
  CHECK(idx.memory_bytes() < full);
  // The shard removes half of them now, and the rest expire one by one.
  for (entry_id id = 0; id < n; id += 2)
    idx.forget(id);
  CHECK(idx.entries() == n / 2);
  CHECK(idx.memory_bytes() < full * 6 / 10); // the id table stays: odd ids live
  for (entry_id id = 1; id < n; id += 2)
    idx.forget(id);
  CHECK(idx.names() == 0);
  CHECK(idx.memory_bytes() < empty_bytes);
}

TEST_CASE("names released one by one give back their memory", "[dependency_index]") {
  dependency_index idx;
  constexpr entry_id n = 100'000;
  for (entry_id id = 0; id < n; ++id)
    idx.set(id, {"a-long-name-outside-the-string-for-" + std::to_string(id)});
  CHECK(idx.names() == n);
  for (entry_id id = 0; id < n; ++id)
    idx.forget(id);
  CHECK(idx.names() == 0);
  CHECK(idx.memory_bytes() < empty_bytes);
}

TEST_CASE("the index agrees with a simple model over random operations",
          "[dependency_index]") {
  std::mt19937 rng{42};
  auto uniform = [&](uint32_t n) {
    return std::uniform_int_distribution<uint32_t>{0, n - 1}(rng);
  };
  // Short names stay inside std::string, long ones do not; a few are popular.
  std::vector<std::string> pool;
  for (int i = 0; i < 300; ++i)
    pool.push_back(i % 3 == 0 ? "t" + std::to_string(i)
                              : "a-rather-long-dependency-name-" + std::to_string(i));
  auto random_name = [&]() -> const std::string& {
    return pool[uniform(4) == 0 ? uniform(5) : uniform(pool.size())];
  };
  constexpr uint32_t max_entries = 2000;
  dependency_index idx;
  model m;
  std::map<std::string, size_t> dependents; // per name, in the model
  size_t links = 0;
  auto link = [&](entry_id id, const std::string& name) {
    if (m[id].insert(name).second) ++dependents[name], ++links;
  };
  auto unlink = [&](const std::string& name) {
    if (--dependents[name] == 0) dependents.erase(name);
    --links;
  };
  auto forget = [&](entry_id id) {
    if (auto i = m.find(id); i != m.end()) {
      for (const auto& name : i->second)
        unlink(name);
      m.erase(i);
    }
  };
  auto take = [&](const std::string& name) {
    std::vector<entry_id> out;
    for (auto i = m.begin(); i != m.end();) {
      if (i->second.erase(name) > 0) out.push_back(i->first), unlink(name);
      i = i->second.empty() ? m.erase(i) : std::next(i);
    }
    return out;
  };
  for (int op = 0; op < 200'000; ++op) {
    auto id = uniform(max_entries);
    switch (uniform(10)) {
    case 0:
    case 1:
    case 2:
    case 3:
    case 4: { // a put with 0 to 4 names, maybe repeated
      std::vector<std::string> names;
      for (auto k = uniform(5); k > 0; --k)
        names.push_back(random_name());
      idx.set(id, names);
      forget(id);
      for (const auto& name : names)
        link(id, name);
      break;
    }
    case 5:
    case 6:
    case 7: // expired, evicted or erased
      idx.forget(id);
      forget(id);
      break;
    case 8: { // an invalidation: the shard removes every dependent
      const auto& name = random_name();
      auto taken = sorted(idx.take_dependents(name));
      REQUIRE(taken == take(name));
      for (auto e : taken) {
        idx.forget(e);
        forget(e);
      }
      break;
    }
    default: { // an invalidation whose dependents are not removed yet
      const auto& name = random_name();
      REQUIRE(sorted(idx.take_dependents(name)) == take(name));
      break;
    }
    }
    REQUIRE(idx.entries() == m.size());
    REQUIRE(idx.links() == links);
    REQUIRE(idx.names() == dependents.size());
    REQUIRE(idx.has(id) == (m.count(id) > 0));
    if (op % 1000 == 0) REQUIRE(contents(idx) == m);
  }
  CHECK(contents(idx) == m);
  for (entry_id id = 0; id < max_entries; ++id)
    idx.forget(id);
  CHECK(idx.entries() == 0);
  CHECK(idx.names() == 0);
  CHECK(idx.links() == 0);
  CHECK(idx.memory_bytes() < empty_bytes);
}

// -- cascades by name, and the filter of depended names ------------------------

namespace {

using namespace std::chrono_literals;
using karlton::test::at;

shard_options with_filter(std::shared_ptr<depended_names> f) {
  shard_options cfg;
  cfg.depended = std::move(f);
  return cfg;
}

value val(const std::string& k) {
  return value::make(k, "v");
}

} // namespace

TEST_CASE("an erase cascades to the dependents of a key that is not cached or expired",
          "[cascade]") {
  auto filter = std::make_shared<depended_names>();
  shard_state s{with_filter(filter)};
  dependencies on_k;
  on_k.on = {"k"};
  REQUIRE_FALSE(s.put(val("d"), ttl::never(), at(0ms), on_k));
  // Never cached: the cascade used to need the key cached and live.
  CHECK(s.erase("k", at(0ms)) == false);
  CHECK(s.take_cascades() == std::vector<std::string>{"k"});
  // Expired.
  REQUIRE_FALSE(s.put(val("k"), ttl::after(1s), at(0ms)));
  CHECK(s.erase("k", at(2000ms)) == false);
  CHECK(s.take_cascades() == std::vector<std::string>{"k"});
  // Other nodes' erases (invalidate) follow the same rule; their puts, like a
  // put here, do not cascade.
  CHECK(s.invalidate({"k"}, at(0ms)) == 0);
  CHECK(s.take_cascades() == std::vector<std::string>{"k"});
  CHECK(s.invalidate({"k"}, at(0ms), false) == 0);
  REQUIRE_FALSE(s.put(val("k"), ttl::never(), at(0ms)));
  CHECK(s.take_cascades().empty());
  // Nothing depends on "x": no cascade round for it.
  s.erase("x", at(0ms));
  CHECK(s.take_cascades().empty());
}

TEST_CASE("write-through: a change of a key that a put at the store links to cascades "
          "and voids the put",
          "[cascade][rule1]") {
  // Nothing depended on "b" yet: the put's links go into the index only when
  // the store answers. Before, the change of "b" (the change feed's, or an
  // erase) ran no cascade, and "a", derived from the old "b", went in after it.
  auto filter = std::make_shared<depended_names>();
  auto cfg = with_filter(filter);
  cfg.writes = write_mode::write_through;
  shard_state s{cfg};
  std::optional<caf::expected<bool>> stored;
  dependencies on_b;
  on_b.on = {"b"};
  s.write(value::make("a", "from the old b"), ttl::never(), at(0ms), on_b,
          [&](caf::expected<bool> r) { stored = std::move(r); });
  auto items = s.take_writes();
  REQUIRE(items.size() == 1);
  CHECK(s.invalidate({"b"}, at(1ms)) == 0);
  REQUIRE(s.take_cascades() == std::vector<std::string>{"b"});
  // The bus's round, here in the same shard.
  s.invalidate_dependents({"b"}, invalidation_cause::cascade, at(1ms));
  s.writes_done({items[0].seq}, caf::none, at(2ms));
  REQUIRE(stored);
  CHECK(*stored); // the store took it: the caller hears success
  CHECK_FALSE(s.contains("a", at(2ms)));
  CHECK_FALSE(filter->may_contain("b")); // held only while the store had it

  // Not changed meanwhile: installed with its link, which the filter then counts.
  s.write(value::make("a", "from b"), ttl::never(), at(3ms), on_b,
          [&](caf::expected<bool> r) { stored = std::move(r); });
  items = s.take_writes();
  s.writes_done({items.at(0).seq}, caf::none, at(4ms));
  CHECK(s.contains("a", at(4ms)));
  CHECK(filter->may_contain("b"));

  // Held once per shard however many puts hold a name, until the last goes.
  auto held = std::make_shared<held_links>(filter);
  auto first = std::make_unique<held_names>(held, std::vector<std::string>{"h"});
  auto second = std::make_unique<held_names>(held, std::vector<std::string>{"h"});
  first.reset();
  CHECK(filter->may_contain("h"));
  second.reset();
  CHECK_FALSE(filter->may_contain("h"));
}

TEST_CASE("a middle link of a chain that expires or is evicted takes its dependents "
          "with it",
          "[cascade]") {
  // A depends on key b, b on event e. Before, b's expiry or eviction took its
  // link to e along, and emit(e) no longer reached A, which stayed for good.
  dependencies on_e, on_b;
  on_e.events = {"e"};
  on_b.on = {"b"};
  auto chain = [&](shard_state& s, ttl b_lifetime) {
    REQUIRE_FALSE(s.put(val("b"), b_lifetime, at(0ms), on_e));
    REQUIRE_FALSE(s.put(val("A"), ttl::never(), at(0ms), on_b));
  };
  auto filter = std::make_shared<depended_names>();
  SECTION("expired") {
    shard_state s{with_filter(filter)};
    chain(s, ttl::after(10ms));
    CHECK(s.remove_expired(at(20ms)) == 1);
    REQUIRE(s.take_cascades() == std::vector<std::string>{"b"});
    CHECK(s.invalidate_dependents({"b"}, invalidation_cause::cascade, at(20ms)).removed ==
          1); // the bus's round
    CHECK_FALSE(s.contains("A", at(20ms)));
  }
  SECTION("evicted") {
    auto cfg = with_filter(filter);
    cfg.max_entries = 2;
    cfg.policy = eviction_policy_kind::lru;
    shard_state s{cfg};
    chain(s, ttl::never());
    REQUIRE(s.get("A", at(1ms))); // b is the least recent
    REQUIRE_FALSE(s.put(val("c"), ttl::never(), at(2ms)));
    REQUIRE_FALSE(s.contains("b", at(2ms)));
    REQUIRE(s.take_cascades() == std::vector<std::string>{"b"});
    s.invalidate_dependents({"b"}, invalidation_cause::cascade, at(2ms));
    CHECK_FALSE(s.contains("A", at(2ms)));
  }
  SECTION("expired, and put over before the timer came") {
    shard_state s{with_filter(filter)};
    chain(s, ttl::after(10ms));
    REQUIRE_FALSE(s.put(val("b"), ttl::never(), at(20ms))); // its links go
    CHECK(s.take_cascades() == std::vector<std::string>{"b"});
  }
  SECTION("an entry that links on nothing passes no cascade through") {
    shard_state s{with_filter(filter)};
    REQUIRE_FALSE(s.put(val("b"), ttl::after(10ms), at(0ms)));
    REQUIRE_FALSE(s.put(val("A"), ttl::never(), at(0ms), on_b));
    CHECK(s.remove_expired(at(20ms)) == 1);
    CHECK(s.take_cascades().empty()); // an erase of b still reaches A, by name
  }
}

TEST_CASE("a distributed shard tells other nodes puts apart from erases", "[cascade]") {
  shard_options cfg;
  cfg.distributed = true;
  shard_state s{cfg};
  REQUIRE_FALSE(s.put(val("a"), ttl::never(), at(0ms)));
  s.erase("b", at(0ms));
  auto changes = s.take_changes();
  REQUIRE(changes.size() == 2);
  CHECK((changes[0].key == "a" && !changes[0].erased));
  CHECK((changes[1].key == "b" && changes[1].erased));
}

TEST_CASE("the filter of depended names forgets names without dependents",
          "[cascade][filter]") {
  // 1M names churned through a shard (each the dependency of one entry,
  // evicted soon after) while 1000 long-lived entries keep theirs: no false
  // negative for the live names, and false positives as for live names only.
  // A filter that never forgot measured 84 % after 1M names.
  auto filter = std::make_shared<depended_names>();
  auto cfg = with_filter(filter);
  cfg.max_entries = 2000;
  cfg.policy = eviction_policy_kind::lru;
  shard_state s{cfg};
  dependencies deps;
  for (int i = 0; i < 1000; ++i) {
    deps.on = {"live" + std::to_string(i)};
    REQUIRE_FALSE(s.put(val("keeper" + std::to_string(i)), ttl::never(), at(0ms), deps));
  }
  for (int i = 0; i < 1'000'000; ++i) {
    deps.on = {"churn" + std::to_string(i)};
    REQUIRE_FALSE(
      s.put(val("c" + std::to_string(i % 5000)), ttl::never(), at(0ms), deps));
    if (i % 1000 == 0) // the keepers stay recent under LRU
      for (int k = 0; k < 1000; ++k)
        REQUIRE(s.get("keeper" + std::to_string(k), at(0ms)));
  }
  CHECK(s.size() == 2000);
  for (int i = 0; i < 1000; ++i)
    CHECK(filter->may_contain("live" + std::to_string(i)));
  int positives = 0;
  for (int i = 0; i < 100'000; ++i)
    positives += filter->may_contain("never" + std::to_string(i)) ? 1 : 0;
  // 2000 live names: about 2e-7 expected; allow 0.1 %.
  CHECK(positives < 100);
  // Every churned name that left is gone, those of live entries are not.
  int churned = 0;
  for (int i = 0; i < 990'000; ++i)
    churned += filter->may_contain("churn" + std::to_string(i)) ? 1 : 0;
  CHECK(churned < 1000);
  s.clear();
  CHECK_FALSE(filter->may_contain("live0"));
}

TEST_CASE("a counting filter never loses a name another shard still depends on",
          "[cascade][filter]") {
  depended_names f;
  CHECK(f.bytes() == 0); // nothing allocated before the first name
  f.add("a");            // shard 1
  f.add("a");            // shard 2
  f.remove("a");         // shard 1 lost its last dependent of a
  CHECK(f.may_contain("a"));
  f.remove("a");
  CHECK_FALSE(f.may_contain("a"));
  // Names sharing counters: removing one leaves the others.
  for (int i = 0; i < 300'000; ++i)
    f.add("n" + std::to_string(i));
  for (int i = 0; i < 300'000; i += 2)
    f.remove("n" + std::to_string(i));
  for (int i = 1; i < 300'000; i += 2)
    REQUIRE(f.may_contain("n" + std::to_string(i)));
}
