// The tracking table's BCAST prefixes: every key under a prefix, whatever
// their lengths and however they nest, shared prefixes, and the bounds.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "server/tracking_fixture.hpp"
#include "support/small_words.hpp"

using namespace karlton;
using namespace karlton::server;
using namespace karlton::testing::tracking;

TEST_CASE("tracking: BCAST tells every key under a prefix, read or not", "[tracking]") {
  fixture f;
  auto& users = f.add(1, 3);
  auto& all = f.add(2, 3);
  REQUIRE(f.table->enable(1, bcast({"user:", "cart:"})).empty());
  REQUIRE(f.table->enable(2, bcast({})).empty());
  CHECK(f.table->prefixes() == 3); // "user:", "cart:", ""
  CHECK(f.table->enable(1, bcast({"user:1"})) ==
        "Prefix 'user:1' overlaps with an existing prefix 'user:'. Prefixes for a single "
        "client must not overlap.");
  // Each against its neighbours among the client's prefixes, in sorted order.
  CHECK(f.table->enable(1, bcast({"c"})) ==
        "Prefix 'c' overlaps with an existing prefix 'cart:'. Prefixes for a single "
        "client must not overlap.");
  CHECK(f.table->enable(1, bcast({"d", "us"})).rfind("Prefix 'us' overlaps", 0) == 0);
  CHECK(f.table->enable(1, bcast({})).rfind("Prefix '' overlaps", 0) == 0);
  CHECK(f.table->prefixes() == 3); // nothing of a refused ON went in
  CHECK(f.table->enable(1, tracking_mode{}).rfind("You can't switch BCAST mode", 0) == 0);
  fixture g;
  g.add(1, 3);
  CHECK(g.table->enable(1, bcast({"a", "ab"})) ==
        "Prefix 'a' overlaps with another provided prefix 'ab'. Prefixes for a single "
        "client must not overlap.");
  CHECK(g.table->enable(1, bcast({"x", "b", "x"})).rfind("Prefix 'x' overlaps", 0) == 0);
  CHECK(g.table->enable(1, bcast({"ab", "b", "a"})).rfind("Prefix 'a' overlaps", 0) == 0);
  f.change(0, {"user:7", "cart:1", "other"});
  f.change(3, {"user:8"}); // any database
  REQUIRE(users.messages().size() == 2);
  CHECK(users.messages()[0].keys == std::vector<std::string>{"user:7", "cart:1"});
  CHECK(users.messages()[1].keys == std::vector<std::string>{"user:8"});
  CHECK(all.keys() == std::vector<std::string>{"user:7", "cart:1", "other", "user:8"});
  // More prefixes later; OFF drops the client's prefixes only.
  REQUIRE(f.table->enable(1, bcast({"order:"})).empty());
  CHECK(f.table->prefixes() == 4);
  f.table->disable(2);
  CHECK(f.table->prefixes() == 3);
  f.change(0, {"order:1", "x"});
  CHECK(users.messages().back().keys == std::vector<std::string>{"order:1"});
  CHECK(all.messages().size() == 2);
}

TEST_CASE("tracking: BCAST finds every client's prefix of a key, whatever their lengths",
          "[tracking]") {
  fixture f;
  auto& a = f.add(1, 3);
  auto& b = f.add(2, 3);
  auto& c = f.add(3, 3);
  REQUIRE(f.table->enable(1, bcast({"a", "bc"})).empty());
  REQUIRE(f.table->enable(2, bcast({"ab", "b"})).empty());
  REQUIRE(f.table->enable(3, bcast({"abc", "abd"})).empty());
  f.change(0, {"abc", "bcd", "ab", "c", "abcd", "b", ""});
  CHECK(a.keys() == std::vector<std::string>{"abc", "bcd", "ab", "abcd"});
  CHECK(b.keys() == std::vector<std::string>{"abc", "bcd", "ab", "abcd", "b"});
  CHECK(c.keys() == std::vector<std::string>{"abc", "abcd"});
}

TEST_CASE("tracking: BCAST matches as a check of every prefix would, on random "
          "prefixes and keys",
          "[tracking]") {
  // The radix tree's walk, through the table, against the plain definition, on a small
  // alphabet so that prefixes nest, share heads and sit next to the keys in every way.
  karlton::test::small_words word{20261207};
  for (int round = 0; round < 200; ++round) {
    fixture f;
    std::vector<std::vector<std::string>> held(6);
    for (uint64_t id = 1; id <= held.size(); ++id) {
      auto& client = f.add(id, 3);
      (void)client;
      std::vector<std::string> want;
      for (int i = 0; i < 4; ++i)
        want.push_back(word(4));
      // A client's prefixes may not overlap: those refused are left out.
      if (f.table->enable(id, bcast(want)).empty()) held[id - 1] = want;
    }
    std::vector<std::string> keys; // distinct: a key twice in a batch is told once
    for (int i = 0; i < 30; ++i)
      if (auto k = word(6); std::find(keys.begin(), keys.end(), k) == keys.end())
        keys.push_back(k);
    f.change(0, keys);
    for (size_t c = 0; c < held.size(); ++c) {
      std::vector<std::string> expected;
      for (auto& k : keys)
        for (auto& p : held[c])
          if (k.compare(0, p.size(), p) == 0) {
            expected.push_back(k);
            break;
          }
      INFO("round " << round << ", client " << c + 1);
      CHECK(f.sessions[c]->keys() == expected);
    }
  }
}

TEST_CASE("tracking: a prefix clients share stays until the last of them turns OFF",
          "[tracking]") {
  // ON and OFF change the shared index in place (they used to copy it whole).
  fixture f;
  auto& a = f.add(1, 3);
  auto& b = f.add(2, 3);
  REQUIRE(f.table->enable(1, bcast({"ab"})).empty());
  REQUIRE(f.table->enable(2, bcast({"ab", "x"})).empty());
  CHECK(f.table->prefixes() == 2);
  f.table->disable(1);
  CHECK(f.table->prefixes() == 2);
  f.change(0, {"abc", "xy"});
  CHECK(a.keys().empty());
  CHECK(b.keys() == std::vector<std::string>{"abc", "xy"});
  REQUIRE(f.table->enable(1, bcast({"abc"})).empty()); // again, another length
  f.table->disable(2);
  CHECK(f.table->prefixes() == 1);
  f.change(0, {"abcd", "ab", "xy"});
  CHECK(a.keys() == std::vector<std::string>{"abcd"});
  CHECK(b.keys().size() == 2);
  f.table->disable(1);
  CHECK(f.table->prefixes() == 0);
}

TEST_CASE("tracking: BCAST prefixes are bounded in count and length before any work",
          "[tracking]") {
  fixture f;
  f.add(1, 3);
  // Distinct, non-overlapping prefixes: the overlap check, quadratic in the
  // count, ran over all of them before the count was checked.
  std::vector<std::string> many;
  for (size_t i = 0; i <= tracking_table::max_prefixes_per_client; ++i)
    many.push_back(std::to_string(1000 + i));
  CHECK(f.table->enable(1, bcast(many)) == "too many prefixes: at most 256 per client");
  CHECK(f.table->enable(1, bcast({std::string(1025, 'p')})) ==
        "prefix of 1025 bytes: at most 1024");
  CHECK(f.table->prefixes() == 0);
  // Over all clients: 256 clients of 256 prefixes fill the table.
  for (uint64_t id = 2; id < 2 + tracking_table::max_prefixes_total / 256; ++id) {
    f.add(id, 3);
    std::vector<std::string> own;
    for (int i = 0; i < 256; ++i)
      own.push_back(std::to_string(id) + ":" + std::to_string(i) + ":");
    REQUIRE(f.table->enable(id, bcast(own)).empty());
  }
  CHECK(f.table->prefixes() == tracking_table::max_prefixes_total);
  CHECK(f.table->enable(1, bcast({"x"})) ==
        "too many prefixes: at most 65536 over all clients");
  f.table->disable(2);
  CHECK(f.table->enable(1, bcast({"x"})).empty());
  // 64 KiB of prefixes per client, given at once or added later.
  fixture g;
  g.add(1, 3);
  auto long_ones = [](uint64_t id, int from, int count) {
    std::vector<std::string> own; // 1 KiB each
    for (int i = from; i < from + count; ++i) {
      auto head = std::to_string(id) + ":" + std::to_string(i) + ":";
      own.push_back(head + std::string(1024 - head.size(), 'p'));
    }
    return own;
  };
  CHECK(g.table->enable(1, bcast(long_ones(1, 0, 65))) ==
        "too many prefix bytes: at most 65536 per client");
  CHECK(g.table->enable(1, bcast(long_ones(1, 0, 64))).empty());
  CHECK(g.table->enable(1, bcast(long_ones(1, 64, 1))) ==
        "too many prefix bytes: at most 65536 per client");
  // And 16 MiB over all clients: 256 of them at 64 KiB each fill it, as
  // 256 of 256 prefixes fill the count.
  for (uint64_t id = 2; id <= 256; ++id) {
    g.add(id, 3);
    REQUIRE(g.table->enable(id, bcast(long_ones(id, 0, 64))).empty());
  }
  g.add(257, 3);
  CHECK(g.table->enable(257, bcast({"x"})) ==
        "too many prefix bytes: at most 16777216 over all clients");
  g.table->disable(9);
  CHECK(g.table->enable(257, bcast({"x"})).empty());
}
