// Time-to-live: entries expire a fixed time after they were written.
//
// This replays the guide's TTL demonstration with karlton. A cache whose
// default TTL is 2 s holds two users; user_123 is a hit at once and after 1 s,
// and has expired after 3 s. The stats are the guide's (size, hits, misses,
// expired, hit rate) plus the age of the values served: how stale reads were.
// Then three things the guide's cache has but does not show: a TTL per entry,
// the remaining TTL of a key (`ttl_of`) and reclaiming expired entries
// (`remove_expired`).
//
// The guide sleeps; this program runs on a `karlton::manual_clock` and moves
// time by hand ("[clock] +1s"), so it finishes at once with the same story.
//
// Run it: scripts/run ttl
#include <chrono>
#include <iomanip>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include "examples/example_support.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>

using namespace std::chrono_literals;
using examples::or_throw;

namespace {

using examples::shown; // beside the overload for remaining_ttl below

std::string shown(const karlton::remaining_ttl& t) {
  using std::chrono::milliseconds;
  if (t.state == karlton::remaining_ttl::never_expires) return "never expires";
  if (t.state == karlton::remaining_ttl::expires)
    return std::to_string(std::chrono::duration_cast<milliseconds>(t.left).count()) +
           " ms left";
  return "not cached (missing or expired)";
}

void advance(karlton::manual_clock& clk, std::chrono::seconds d) {
  clk.advance(d);
  std::cout << "[clock] +" << d.count() << "s\n";
}

void print_stats(const karlton::cache_stats& s) {
  std::cout << "Stats: {size: " << s.entries << ", hits: " << s.hits
            << ", misses: " << s.misses << ", expired: " << s.expired
            << ", hit_rate: " << std::fixed << std::setprecision(2) << s.hit_rate()
            << "}\n"
            << "Age of the values served: p50 " << s.age_p50_ms() << " ms, p99 "
            << s.age_p99_ms() << " ms (bucketed: within 12.5 %)\n";
}

int run() {
  auto clk = std::make_shared<karlton::manual_clock>();
  karlton::runtime rt{clk};
  auto opts = rt.default_options("users");
  opts.default_ttl = karlton::ttl::after(2s);
  auto users = or_throw(rt.create_cache(opts));

  std::cout << "=== TTL Cache Demonstration ===\n"
               "(default TTL 2 s; time moves by hand on a manual clock, no sleeping)\n";
  or_throw(users.put("user_123", R"({"name": "John", "email": "john@example.com"})"));
  or_throw(users.put("user_456", R"({"name": "Jane", "email": "jane@example.com"})"));
  std::cout << "put user_123 and user_456\n";

  std::cout << "Immediate retrieval: " << shown(or_throw(users.get("user_123"))) << '\n';
  advance(*clk, 1s);
  std::cout << "After 1 second: " << shown(or_throw(users.get("user_123"))) << '\n';
  advance(*clk, 2s);
  std::cout << "After 3 seconds total: " << shown(or_throw(users.get("user_123")))
            << '\n';
  print_stats(or_throw(users.stats()));
  std::cout << "(size still counts user_456: it has expired too, but nobody read it.\n"
               " Expired entries go when read, when the shard's expiry timer fires,\n"
               " or on remove_expired(); this run ends before any timer fires.)\n\n";

  std::cout << "=== Per-entry TTL, remaining TTL, cleanup ===\n";
  or_throw(users.put("session_42", "cart=3 items", karlton::ttl::after(30s)));
  std::cout << "put session_42    with ttl::after(30s): overrides the cache's 2 s\n";
  or_throw(users.put("feature_flags", "dark_mode=on", karlton::ttl::never()));
  std::cout << "put feature_flags with ttl::never()\n";
  or_throw(users.put("user_789", R"({"name": "Ada", "email": "ada@example.com"})"));
  std::cout << "put user_789      with the cache's default TTL\n";
  for (auto key : {"session_42", "feature_flags", "user_789"})
    std::cout << "ttl_of(" << key << "): " << shown(or_throw(users.ttl_of(key))) << '\n';
  advance(*clk, 5s);
  for (auto key : {"session_42", "user_789"})
    std::cout << "ttl_of(" << key << "): " << shown(or_throw(users.ttl_of(key))) << '\n';
  std::cout << "remove_expired(): reclaimed " << or_throw(users.remove_expired())
            << " expired entries (user_456 and user_789)\n";
  print_stats(or_throw(users.stats()));
  return 0;
}

} // namespace

int main() {
  return examples::run_example("ttl", run);
}
