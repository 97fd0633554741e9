// The radix tree of BCAST prefixes: matches as a check of every prefix would,
// stays compressed through adds and removes, and walks a key once.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "runtime/server/prefix_tree.hpp"
#include "support/small_words.hpp"

using karlton::server::prefix_tree;

namespace {

// (prefix, id) pairs each prefix of `key` holds, shortest first, as `tree`
// reports them.
std::vector<std::pair<size_t, uint64_t>> matches(const prefix_tree& tree,
                                                 std::string_view key) {
  std::vector<std::pair<size_t, uint64_t>> out;
  size_t order = 0;
  tree.for_each_match(key, [&](const std::vector<uint64_t>& ids) {
    for (auto id : ids)
      out.emplace_back(order, id);
    ++order;
  });
  return out;
}

} // namespace

TEST_CASE("prefix tree: matches, adds and removes as a plain list would, on random "
          "prefixes",
          "[tracking]") {
  // A small alphabet, so that prefixes nest, split each other's edges and
  // merge back as they go.
  karlton::test::small_words word{20261208};
  auto& rng = word.rng();
  for (int round = 0; round < 50; ++round) {
    prefix_tree tree;
    std::map<std::string, std::vector<uint64_t>> plain;
    for (int step = 0; step < 400; ++step) {
      auto p = word(6);
      uint64_t id = std::uniform_int_distribution<uint64_t>{1, 3}(rng);
      auto& ids = plain[p];
      auto had = std::find(ids.begin(), ids.end(), id);
      if (had == ids.end() && rng() % 2 == 0) {
        tree.add(p, id);
        ids.push_back(id);
      } else {
        CHECK(tree.remove(p, id) == (had != ids.end()));
        if (had != ids.end()) ids.erase(had);
      }
      if (ids.empty()) plain.erase(p);
      REQUIRE(tree.size() == plain.size());
      // A node that ends no prefix splits two ways: at most twice as many.
      REQUIRE(tree.nodes() <= 2 * plain.size() + 1);
    }
    for (int i = 0; i < 50; ++i) {
      auto key = word(8);
      std::vector<std::pair<size_t, uint64_t>> expected;
      size_t order = 0;
      for (auto& [p, ids] : plain) // sorted, so a prefix comes before longer ones
        if (key.compare(0, p.size(), p) == 0) {
          for (auto id : ids)
            expected.emplace_back(order, id);
          ++order;
        }
      INFO("round " << round << ", key " << key);
      CHECK(matches(tree, key) == expected);
    }
    for (auto& [p, ids] : plain)
      for (auto id : ids)
        CHECK(tree.remove(p, id));
    CHECK(tree.size() == 0);
    CHECK(tree.nodes() == 1);
  }
}

TEST_CASE("prefix tree: a key is walked once, however nearly the prefixes match it",
          "[tracking]") {
  // The review's prefixes: Z…ZA of every length below a key Z…Z. Each
  // change of that key took a search of the sorted prefixes per length.
  prefix_tree tree;
  const size_t n = 1024;
  for (size_t len = 0; len < n; ++len)
    tree.add(std::string(len, 'Z') + 'A', len % 4);
  std::string key(n, 'Z');
  size_t found = 0;
  auto steps = tree.for_each_match(key, [&](const std::vector<uint64_t>&) { ++found; });
  CHECK(found == 0);
  CHECK(steps <= key.size() + 1); // a node per byte of the key at most
  CHECK(tree.for_each_match("Y" + key, [&](const std::vector<uint64_t>&) { ++found; }) ==
        1);
  // A key that one of them matches: found in one walk too.
  steps = tree.for_each_match(std::string(n - 1, 'Z') + 'A',
                              [&](const std::vector<uint64_t>&) { ++found; });
  CHECK(found == 1);
  CHECK(steps <= n + 1);
}

TEST_CASE("prefix tree: children are found by their first byte as unsigned",
          "[tracking]") {
  // Bytes from 0x80 up sort after the ASCII ones; a signed comparison in one
  // place and not the other would lose them.
  prefix_tree tree;
  const std::vector<std::string> prefixes{"\x01z", "\xff", "a", "\x80\x01", "\x7f"};
  for (uint64_t id = 0; id < prefixes.size(); ++id)
    tree.add(prefixes[id], id);
  for (uint64_t id = 0; id < prefixes.size(); ++id) {
    INFO("prefix " << id);
    CHECK(matches(tree, prefixes[id] + "tail") ==
          std::vector<std::pair<size_t, uint64_t>>{{0, id}});
  }
  CHECK(matches(tree, "\x80\x02").empty());
  for (uint64_t id = 0; id < prefixes.size(); ++id)
    CHECK(tree.remove(prefixes[id], id));
  CHECK(tree.nodes() == 1);
}

TEST_CASE("prefix tree: the empty prefix matches every key, and a shared prefix stays "
          "until its last client goes",
          "[tracking]") {
  prefix_tree tree;
  tree.add("", 7);
  tree.add("ab", 1);
  tree.add("ab", 2);
  CHECK(matches(tree, "abc") ==
        std::vector<std::pair<size_t, uint64_t>>{{0, 7}, {1, 1}, {1, 2}});
  CHECK(matches(tree, "") == std::vector<std::pair<size_t, uint64_t>>{{0, 7}});
  CHECK(tree.remove("ab", 1));
  CHECK_FALSE(tree.remove("ab", 1));
  CHECK_FALSE(tree.remove("a", 2));
  CHECK(matches(tree, "abc") == std::vector<std::pair<size_t, uint64_t>>{{0, 7}, {1, 2}});
  CHECK(tree.remove("", 7));
  CHECK(tree.remove("ab", 2));
  CHECK(matches(tree, "abc").empty());
  CHECK(tree.size() == 0);
}
