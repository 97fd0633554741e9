// Dependency-based invalidation: entries name the keys and tags they were
// computed from, and invalidating one of those removes them.
//
// This replays the guide's dependency demonstration with karlton. A user's
// profile depends on user_123; the user's posts and stats on user_123 and
// posts_by_user_123; a feed on user_123 and user_456. The dependency graph
// is printed as the guide prints it, then as Graphviz DOT and as JSON (what
// `runtime::dependencies_graph()` gives tools). Invalidating user_123
// (`runtime::invalidate_tag`, the guide's `cache.invalidate`) removes all
// four; the stats are the guide's (hits, misses, invalidations) plus why
// entries went and how many dependency links are indexed.
//
// Then three things the guide's cache does not do:
//   - cascade: an entry may depend on another entry's key. A badge computed
//     from user_stats_123 goes when user_123 takes user_stats_123 with it;
//     the guide's invalidate removes only direct dependents and would leave
//     the badge cached, stale;
//   - cycles: two entries that depend on each other are each removed once,
//     and the invalidation ends;
//   - index hygiene: a removed entry leaves no link and no name behind (the
//     guide's `dependents` keeps an empty set for every name ever used), so
//     after each invalidation the indexed links are exactly those of the live
//     entries, as the graph lists them.
//
// `invalidate_tag` returns once every dependent is gone from every shard, so
// what follows it reads a settled cache and every run prints the same.
//
// Run it: scripts/run dependency
#include <cstddef>
#include <cstdint>
#include <iostream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "examples/example_support.hpp"
#include <karlton/messages/events.hpp>
#include <karlton/messages/ttl.hpp>
#include <karlton/runtime/dependency_graph.hpp>
#include <karlton/runtime/runtime.hpp>

using examples::or_throw;

namespace {

// Puts `key` with the guide's `depends_on`; entries never expire, as there.
void put(const karlton::cache& c, const std::string& key, const std::string& bytes,
         std::vector<std::string> depends_on) {
  or_throw(c.put(key, bytes, karlton::ttl::never(),
                 karlton::dependencies{}.on_keys(std::move(depends_on))));
}

// Python's list notation, as the guide prints its graph.
std::string py_list(const std::vector<std::string>& xs) {
  std::string out = "[";
  for (size_t i = 0; i < xs.size(); ++i)
    out += (i > 0 ? ", '" : "'") + xs[i] + "'";
  return out + "]";
}

// The graph the guide's way, one line per entry (sorted by key).
void print_graph(const karlton::dependency_graph& g) {
  std::cout << "Dependency graph:\n";
  for (const auto& n : g.nodes)
    std::cout << "  " << n.key << " depends on: " << py_list(n.depends_on) << '\n';
}

void print_summary(const karlton::invalidation_summary& p) {
  std::cout << "invalidation_summary: {removed: " << p.removed << ", depth: " << p.depth
            << ", subscribers_called: " << p.subscribers_called << "}\n";
}

// Present or not, without counting a hit or a miss.
void print_remaining(const karlton::cache& c, const std::vector<std::string>& keys) {
  for (const auto& key : keys)
    std::cout << "  " << key << ": "
              << (or_throw(c.contains(key)) ? "CACHED" : "INVALIDATED") << '\n';
}

void print_stats(const karlton::cache_stats& s) {
  std::cout << "Cache stats: {hits: " << s.hits << ", misses: " << s.misses
            << ", invalidations: " << s.invalidations << "}\n"
            << "  of the invalidations: invalidated_by_tag " << s.invalidated_by_tag
            << ", invalidated_by_cascade " << s.invalidated_by_cascade << '\n';
}

// The links the index holds against the links the live entries declare.
// `dependency_names` counts each shard's distinct names, summed over shards.
void print_hygiene(karlton::runtime& rt, const karlton::cache& c) {
  auto s = or_throw(c.stats());
  uint64_t declared = 0;
  for (const auto& n : or_throw(rt.dependencies_graph()).nodes)
    declared += n.depends_on.size();
  std::cout << "Index: {entries: " << s.entries
            << ", dependency_links: " << s.dependency_links
            << ", dependency_names: " << s.dependency_names
            << "}; links the live entries declare: " << declared << '\n';
}

// The guide's demonstration.
void the_guide(karlton::runtime& rt, const karlton::cache& users) {
  std::cout << "=== Dependency-Based Cache Demonstration ===\n";
  put(users, "user_profile_123", R"({"name": "John", "email": "john@example.com"})",
      {"user_123"});
  put(users, "user_posts_123", R"(["Post 1", "Post 2"])",
      {"user_123", "posts_by_user_123"});
  put(users, "user_stats_123", R"({"post_count": 2, "total_likes": 150})",
      {"user_123", "posts_by_user_123"});
  put(users, "feed_for_456", R"(["Post from John", "Post from Jane"])",
      {"user_123", "user_456"});

  auto graph = or_throw(rt.dependencies_graph());
  print_graph(graph);
  std::cout << "\nAs DOT (dot -Tsvg graph.dot > graph.svg):\n"
            << graph.to_dot() << "As JSON:\n"
            << graph.to_json() << '\n';
  print_hygiene(rt, users);

  std::cout << "\nInvalidating user_123...\n";
  auto summary = or_throw(rt.invalidate_tag("user_123"));
  std::cout << "[CACHE] Invalidating " << summary.removed
            << " items due to dependency: user_123\n";
  print_summary(summary);

  // The guide checks with get, so its misses count these four reads.
  std::cout << "\nRemaining cache items:\n";
  for (auto key :
       {"user_profile_123", "user_posts_123", "user_stats_123", "feed_for_456"})
    std::cout << "  " << key << ": "
              << (or_throw(users.get(key)) ? "CACHED" : "INVALIDATED") << '\n';
  std::cout << '\n';
  print_stats(or_throw(users.stats()));
  print_hygiene(rt, users);
}

// An entry that depends on another entry's key goes when that entry goes.
void cascade(karlton::runtime& rt, const karlton::cache& users) {
  std::cout << "\n=== A transitive cascade ===\n";
  put(users, "user_profile_123", R"({"name": "John"})", {"user_123"});
  put(users, "user_stats_123", R"({"post_count": 2, "total_likes": 150})",
      {"user_123", "posts_by_user_123"});
  put(users, "badge_top_poster_123", R"({"badge": "top poster"})", {"user_stats_123"});
  put(users, "feed_for_456", R"(["Post from Jane"])", {"user_456"});
  print_graph(or_throw(rt.dependencies_graph()));
  print_hygiene(rt, users);

  std::cout << "\nInvalidating user_123...\n";
  auto summary = or_throw(rt.invalidate_tag("user_123"));
  std::cout << "[CACHE] Invalidating " << summary.removed
            << " items due to dependency: user_123 (transitively)\n";
  print_summary(summary);
  std::cout << "Remaining cache items:\n";
  print_remaining(users, {"user_profile_123", "user_stats_123", "badge_top_poster_123",
                          "feed_for_456"});
  std::cout << "badge_top_poster_123 depends on user_stats_123 only: the guide's "
               "cache would\nhave kept it, computed from stats that are gone.\n";
  print_stats(or_throw(users.stats()));
  print_hygiene(rt, users);
}

// Two entries that depend on each other: each is removed once.
void cycle(karlton::runtime& rt, const karlton::cache& users) {
  std::cout << "\n=== A cycle ends ===\n";
  put(users, "friends_of_123", R"(["456"])", {"friends_of_456"});
  put(users, "friends_of_456", R"(["123"])", {"friends_of_123"});
  print_graph(or_throw(rt.dependencies_graph()));

  std::cout << "\nInvalidating friends_of_123...\n";
  auto summary = or_throw(rt.invalidate_tag("friends_of_123"));
  std::cout << "[CACHE] Invalidating " << summary.removed
            << " items due to dependency: friends_of_123 (transitively)\n";
  print_summary(summary);
  std::cout << "Remaining cache items:\n";
  print_remaining(users, {"friends_of_123", "friends_of_456", "feed_for_456"});
  std::cout
    << "friends_of_456 went as a dependent of friends_of_123, friends_of_123 as "
       "one of\nfriends_of_456; then the names repeat and the invalidation stops.\n";
  print_stats(or_throw(users.stats()));
  print_hygiene(rt, users);
}

int run() {
  karlton::runtime rt;
  auto opts = rt.default_options("users");
  // A fixed shard count (not one per core) keeps the output the same on every
  // machine: which entries share a shard decides dependency_names.
  opts.shards = 4;
  auto users = or_throw(rt.create_cache(opts));
  the_guide(rt, users);
  cascade(rt, users);
  cycle(rt, users);
  return 0;
}

} // namespace

int main() {
  return examples::run_example("dependency", run);
}
