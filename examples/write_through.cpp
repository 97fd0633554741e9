// Write-through: a put goes to the store first, then into the cache.
//
// This replays the guide's write-through demonstration with karlton, on a
// real SQLite table: a user is written and read, updated and read again, and
// every write reaches the database before the put returns. Then two things
// the guide's cache gets wrong or leaves out:
//   - a store failure reaches the caller, and the cache is left unchanged
//     (the guide's put would have raised, but a cache that wrote itself first
//     would now hold a value the database does not have). Here a second cache
//     sees the same table through a `faulty_store` that refuses every write;
//   - a delete is the same order: the store first, then the cache; a miss
//     afterwards finds nothing in the store (`not_found`).
//
// "[DB]" lines are printed by the store as it is called; the caller waits
// for each call, so every run prints the same.
//
// Run it: scripts/run write_through
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "examples/example_support.hpp"
#include "stores/faulty_store.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>
#include <karlton/stores/sqlite_store.hpp>

using examples::logged_store;
using examples::or_throw;
using examples::shown;
using examples::temp_dir;

namespace {

std::string in_table(karlton::sqlite_store& table, const std::string& key) {
  return or_throw(table.load(key)).value_or("None");
}

// `writes` is the guide's name; karlton counts them as `puts` (values put
// into the cache, loaded ones too).
void print_stats(const char* label, const karlton::cache_stats& s) {
  std::cout << label << ": {hits: " << s.hits << ", misses: " << s.misses
            << ", writes: " << s.puts << ", loads: " << s.loads
            << ", invalidations: " << s.invalidations << ", entries: " << s.entries
            << "}\n";
}

int run() {
  temp_dir dir{
    "write-through"}; // first in, last out: the stores and caches go before the file
  auto table = or_throw(karlton::sqlite_store::open(dir.file("karlton.db"), "users"));
  auto db = std::make_shared<logged_store>(table, "[DB] Reading ");
  karlton::runtime rt;
  auto opts = rt.default_options("users");
  opts.backing_store = db;
  opts.writes = karlton::write_mode::write_through;
  auto cache = or_throw(rt.create_cache(opts));

  std::cout << "=== Write-Through Cache Demonstration ===\n"
               "(SQLite table 'users' in a fresh temporary folder)\n";
  or_throw(cache.put("user_123", R"({"name": "John", "email": "john@example.com"})"));
  std::cout << "Read from cache: " << shown(or_throw(cache.get("user_123"))) << '\n';
  or_throw(cache.put("user_123",
                     R"({"name": "John Smith", "email": "john.smith@example.com"})"));
  std::cout << "Read updated data: " << shown(or_throw(cache.get("user_123"))) << '\n';
  std::cout << "Database has: " << in_table(*table, "user_123") << '\n';
  print_stats("Cache stats", or_throw(cache.stats()));
  std::cout << "Each put returned after SQLite committed it and the cache took it:\n"
               "the cache and the database agree at every return.\n\n";

  std::cout << "=== A store failure reaches the caller ===\n"
               "(a second cache, 'users-down', on the same table through a faulty_store\n"
               " that refuses every write; reads pass)\n";
  auto down_opts = rt.default_options("users-down");
  auto refusing = std::make_shared<karlton::faulty_store>(db, 1.0, 7);
  down_opts.backing_store = refusing;
  down_opts.writes = karlton::write_mode::write_through;
  auto down = or_throw(rt.create_cache(down_opts));
  auto loaded = shown(or_throw(down.get_or_load("user_123"))); // the load prints too
  std::cout << "Read (loaded): " << loaded << '\n';
  auto err =
    down.put("user_123", R"({"name": "Mallory", "email": "mallory@example.com"})");
  std::cout << "put user_123 = Mallory: "
            << (err ? "failed: " + karlton::describe(err) : std::string{"ok?!"}) << '\n';
  std::cout << "Read from cache: " << shown(or_throw(down.get("user_123")))
            << " (unchanged)\n";
  std::cout << "Database has: " << in_table(*table, "user_123") << '\n';
  auto erase_err = down.erase("user_123");
  std::cout << "erase user_123: "
            << (erase_err ? std::string{"ok?!"}
                          : "failed: " + karlton::describe(erase_err.error()))
            << '\n';
  std::cout << "Still cached: " << std::boolalpha << or_throw(down.contains("user_123"))
            << '\n';
  auto ds = or_throw(down.stats());
  std::cout << "Cache stats (users-down): {hits: " << ds.hits << ", misses: " << ds.misses
            << ", loads: " << ds.loads << ", entries: " << ds.entries
            << "}; batches the store refused: " << refusing->failed_batches() << '\n';
  std::cout << "The error is the caller's to handle (retry, report); nothing was\n"
               "cached that the store does not have, so no reader sees Mallory.\n\n";

  std::cout << "=== Delete: the store first, then the cache ===\n";
  bool was_cached = or_throw(cache.erase("user_123"));
  std::cout << "[CACHE] Removed user_123 (it " << (was_cached ? "was" : "was not")
            << " cached)\n";
  std::cout << "Cached: " << std::boolalpha << or_throw(cache.contains("user_123"))
            << '\n';
  std::cout << "Database has: " << in_table(*table, "user_123") << '\n';
  auto gone = cache.get_or_load("user_123");
  std::cout << "get_or_load user_123: "
            << (gone ? shown(*gone) : "error: " + karlton::describe(gone.error()))
            << '\n';
  print_stats("Cache stats", or_throw(cache.stats()));
  return 0;
}

} // namespace

int main() {
  return examples::run_example("write_through", run);
}
