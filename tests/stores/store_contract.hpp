// The `store` contract: checks every store must pass, run on memory_store and
// sqlite_store (store.test.cpp) and on postgres_store
// (postgres_store.test.cpp). Each takes a store that is empty.
#pragma once

#include <catch2/catch.hpp>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <karlton/messages/errors.hpp>
#include <karlton/stores/store.hpp>

namespace karlton::testing::contract {

inline store_write put(std::string key, std::string bytes) {
  return {std::move(key), std::move(bytes)};
}

inline store_write del(std::string key) {
  return {std::move(key), std::nullopt};
}

inline std::optional<std::string> get(store& s, std::string_view key) {
  auto v = s.load(key);
  if (!v) FAIL(describe(v.error()));
  return *v;
}

inline void check_round_trip(store& s) {
  const std::string binary{"\0k\xff", 3};
  REQUIRE_FALSE(s.write_batch({put("a", "1"), put("empty", ""), put("", "empty key"),
                               put(binary, std::string{"\0v", 2})}));
  CHECK(get(s, "a") == "1");
  CHECK(get(s, "empty") == "");
  CHECK(get(s, "") == "empty key");
  CHECK(get(s, binary) == std::string{"\0v", 2});
  CHECK(get(s, "never") == std::nullopt);
  REQUIRE_FALSE(s.write_batch({put("a", "2")}));
  CHECK(get(s, "a") == "2");
  REQUIRE_FALSE(s.erase("a"));
  CHECK(get(s, "a") == std::nullopt);
  CHECK_FALSE(s.erase("never"));
  CHECK_FALSE(s.write_batch({}));
}

inline void check_load_many(store& s) {
  REQUIRE_FALSE(s.write_batch({put("a", "1"), put("c", "3")}));
  auto v = s.load_many({"c", "missing", "a", "c"});
  REQUIRE(v);
  CHECK(*v == std::vector<std::optional<std::string>>{"3", std::nullopt, "1", "3"});
  auto none = s.load_many({});
  REQUIRE(none);
  CHECK(none->empty());
}

inline void check_later_change_wins(store& s) {
  REQUIRE_FALSE(
    s.write_batch({put("k", "a"), put("j", "x"), put("k", "b"), del("j"), put("j", "y"),
                   del("k"), put("k", "c"), put("gone", "1"), del("gone")}));
  CHECK(get(s, "k") == "c");
  CHECK(get(s, "j") == "y");
  CHECK(get(s, "gone") == std::nullopt);
}

/// After `poison()` makes the store refuse key "bad" (a trigger raising
/// "poisoned key"), a batch that reaches it fails as a whole: the changes
/// before it are undone, the store's connection is out of the failed
/// transaction, and the next batch commits. Returns the error's text.
inline std::string
check_failed_batch_leaves_nothing(store& s, const std::function<void()>& poison) {
  REQUIRE_FALSE(s.write_batch({put("kept", "old")}));
  poison();
  auto err = s.write_batch({put("a", "1"), del("kept"), put("bad", "x"), put("c", "3")});
  REQUIRE(err == errc::store_refused); // the same batch would fail again
  auto text = describe(err);
  CHECK(text.find("poisoned key") != std::string::npos);
  CHECK(get(s, "a") == std::nullopt);
  CHECK(get(s, "kept") == "old");
  CHECK(get(s, "c") == std::nullopt);
  REQUIRE_FALSE(s.write_batch({put("a", "1")}));
  CHECK(get(s, "a") == "1");
  return text;
}

} // namespace karlton::testing::contract
