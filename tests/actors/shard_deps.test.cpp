// What a shard accepts as an entry's dependencies: bounded in number and
// bytes, and counted against max-bytes with the entry, since the names come
// from callers (a client's KARLTON.PUT ... ON n ...).
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "actors/shard_state.hpp"
#include "support/times.hpp"
#include <karlton/messages/errors.hpp>

using namespace karlton;
using karlton::test::at;
using karlton::test::t0;

namespace {

std::vector<std::string> names(size_t n, size_t bytes, char fill = 'n') {
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) {
    auto name = std::to_string(i);
    name.resize(bytes, fill);
    out.push_back(name);
  }
  return out;
}

caf::error put_with(shard_state& s, const std::string& key, dependencies deps) {
  return s.put(value::make(key, "v"), ttl::never(), t0, deps);
}

} // namespace

TEST_CASE("an entry's dependencies are bounded in number, size and bytes in all",
          "[events][limits]") {
  shard_options cfg;
  cfg.max_key_bytes = 300;
  shard_state s{cfg};
  auto err = put_with(s, "many", dependencies{}.on_keys(names(max_dependencies + 1, 4)));
  CHECK(err == errc::invalid_option);
  err = put_with(s, "long", dependencies{}.on_events(names(1, 301)));
  CHECK(err == errc::key_too_large);
  // 256 names of 300 bytes: each within max-key-bytes, 76,800 bytes in all.
  err = put_with(s, "heavy", dependencies{}.on_keys(names(max_dependencies, 300)));
  CHECK(err == errc::invalid_option);
  CHECK(s.size() == 0); // nothing stored for any of them
  CHECK(s.stats().rejected == 3);
  // At the limits: accepted.
  CHECK_FALSE(put_with(s, "full", dependencies{}.on_keys(names(max_dependencies, 200))));
  CHECK(s.size() == 1);
}

TEST_CASE("dependency names count against max-bytes with their entry",
          "[events][limits]") {
  shard_options cfg;
  cfg.max_bytes = 20'000;
  cfg.policy = eviction_policy_kind::lru;
  shard_state s{cfg};
  const uint64_t entry = 2 + 1;                                 // key "k0" and "v"
  const uint64_t deps = 50 * (2 + 100 + dependency_link_bytes); // "n\x1f" + name
  REQUIRE_FALSE(put_with(s, "k0", dependencies{}.on_keys(names(50, 100))));
  CHECK(s.stats().bytes == entry + deps);
  // Before, bytes stayed at 3 whatever the names: a client could pin any
  // amount of index memory under a small max-bytes.
  REQUIRE_FALSE(put_with(s, "k1", dependencies{}.on_keys(names(50, 100, 'm'))));
  REQUIRE_FALSE(put_with(s, "k2", dependencies{}.on_keys(names(50, 100, 'o'))));
  CHECK(s.stats().bytes <= cfg.max_bytes);
  CHECK(s.stats().evictions == 1); // the oldest went, with its names
  CHECK(s.stats().bytes == 2 * (entry + deps));
  // Replaced without dependencies: its names' charge goes with them.
  REQUIRE_FALSE(s.put(value::make("k2", "v"), ttl::never(), t0));
  CHECK(s.stats().bytes == 2 * entry + deps);
  // And a replacement with fewer names charges only those.
  REQUIRE_FALSE(put_with(s, "k1", dependencies{}.on_events(names(1, 10))));
  CHECK(s.stats().bytes == 2 * entry + (2 + 10 + dependency_link_bytes));
  CHECK(s.clear() == 2);
  CHECK(s.stats().bytes == 0);
}

TEST_CASE("an invalidation releases the names' charge with the entries it removes",
          "[events][limits]") {
  shard_options cfg;
  cfg.max_bytes = 100'000;
  cfg.policy = eviction_policy_kind::lru;
  shard_state s{cfg};
  for (int i = 0; i < 10; ++i)
    REQUIRE_FALSE(put_with(s, "k" + std::to_string(i),
                           dependencies{}.on_events({"e" + std::to_string(i % 2)})));
  REQUIRE(s.stats().bytes > 10 * 3);
  CHECK(s.invalidate_dependents({"e0"}, invalidation_cause::event, t0).removed == 5);
  CHECK(s.invalidate_dependents({"e1"}, invalidation_cause::event, t0).removed == 5);
  // Before, the invalidation unlinked the names first and the removal then
  // skipped their charge: the bytes stayed, and the bound shrank for good.
  CHECK(s.size() == 0);
  CHECK(s.stats().bytes == 0);
}

TEST_CASE("an entry whose names alone exceed a shard's max-bytes is refused",
          "[events][limits]") {
  shard_options cfg;
  cfg.max_bytes = 2'000;
  cfg.policy = eviction_policy_kind::lru;
  shard_state s{cfg};
  REQUIRE_FALSE(s.put(value::make("kept", "v"), ttl::never(), t0));
  auto err = put_with(s, "k", dependencies{}.on_keys(names(20, 100)));
  CHECK(err == errc::value_too_large);
  // Before, it was stored, evicted every other entry, then itself, and
  // answered OK.
  CHECK(s.get("kept", t0));
  CHECK_FALSE(s.get("k", t0));
  CHECK(s.stats().evictions == 0);
}

TEST_CASE("an invalidation counts a dependent already past its expiry as expired",
          "[events][stats]") {
  using namespace std::chrono_literals;
  shard_options cfg;
  cfg.stale_if_error = 5s; // kept past its expiry, as stale-if-error keeps it
  cfg.depended = std::make_shared<depended_names>(); // cascades within the shard
  shard_state s{cfg};
  REQUIRE_FALSE(
    s.put(value::make("old", "v"), ttl::after(1s), t0, dependencies{}.on_keys({"tag"})));
  REQUIRE_FALSE(
    s.put(value::make("live", "v"), ttl::never(), t0, dependencies{}.on_keys({"tag"})));
  REQUIRE_FALSE(
    s.put(value::make("child", "v"), ttl::never(), t0, dependencies{}.on_keys({"old"})));
  auto r = s.invalidate_dependents({"tag"}, invalidation_cause::tag, at(2s));
  // Before, "old" counted as invalidated by the tag, in the emit's summary
  // and in the stats, though nobody could read it any more.
  CHECK(r.removed == 2); // "live", and "child" by the cascade
  CHECK(s.stats().expired == 1);
  CHECK(s.stats().invalidated_by_tag == 1);
  CHECK(s.stats().invalidated_by_cascade == 1);
  CHECK(s.stats().invalidations == 2);
  CHECK(s.size() == 0); // what depended on the expired entry went all the same
}
