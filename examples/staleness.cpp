// The staleness problem: a cached copy outlives an update of its source.
//
// This replays the guide's first demonstration with karlton, on a real
// SQLite table. The program reads cache-aside: it asks the cache, and on a
// miss queries the table and puts the row into the cache. Then the row is
// updated in the database, behind the cache's back, and the next read is a
// hit on the old row: the problem. Two ways out follow, each with the same
// update of the same row:
//   (a) write-through: the update goes through the cache, which writes the
//       store first and then itself, so the next read is fresh;
//   (b) invalidation: after the update, `erase` drops the cached copy, and
//       the next `get_or_load` loads the new row from the store;
//   (c) the database tells the cache: over PostgreSQL, a trigger NOTIFYs
//       every committed change, whoever made it (here psql, as a person or
//       another service would), and the runtime's change feed invalidates
//       the key. The update never mentions the cache. It needs PostgreSQL
//       (`scripts/setup postgresql`); the program starts a private server in
//       a temporary folder, and without one it says how to get it and skips
//       (c).
// The stats show what a cache can measure about staleness: not whether a
// value is stale (it cannot see the update), but how old the values it
// serves are. A TTL bounds that age (see the ttl example).
//
// "[DB]" lines are printed by the store as it is called. Time is a manual
// clock moved by hand ("[clock] +1s"), so every run prints the same.
//
// Run it: scripts/run staleness
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "examples/example_support.hpp"
#include "tests/support/pg_server.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>
#include <karlton/stores/postgres_store.hpp>
#include <karlton/stores/sqlite_store.hpp>

using namespace std::chrono_literals;
using examples::logged_store;
using examples::or_throw;
using examples::shown;
using examples::temp_dir;

namespace {

constexpr std::string_view john = R"({"name": "John", "email": "john@example.com"})";
constexpr std::string_view john_smith =
  R"({"name": "John Smith", "email": "john.smith@example.com"})";

void advance(karlton::manual_clock& clk, std::chrono::seconds d) {
  clk.advance(d);
  std::cout << "[clock] +" << d.count() << "s\n";
}

// What a part ends with, for the summary table.
struct outcome {
  const char* way;
  std::string last_read;
  karlton::cache_stats stats;
};

void print_stats(const karlton::cache_stats& s) {
  std::cout << "Stats: {hits: " << s.hits << ", misses: " << s.misses
            << ", loads: " << s.loads << ", hit_rate: " << std::fixed
            << std::setprecision(2) << s.hit_rate() << "}; age of the values served: p50 "
            << s.age_p50_ms() << " ms, p99 " << s.age_p99_ms() << " ms\n";
}

// The guide's first two reads of user_123, a second apart. `read` prints
// what it does, so each line is printed after its read returned.
template <class Read>
void first_two_reads(Read read, karlton::manual_clock& clk) {
  auto first = read("user_123");
  std::cout << "First read: " << first << '\n';
  advance(clk, 1s);
  auto second = read("user_123");
  std::cout << "Second read: " << second << '\n';
  advance(clk, 1s);
}

// A read of the ways out: the cache loads a miss from the store itself.
auto read_through(karlton::cache& users) {
  return
    [&users](const std::string& key) { return shown(or_throw(users.get_or_load(key))); };
}

// The guide's demonstration. The cache knows nothing of the database: the
// program fills it (cache-aside).
outcome the_problem(karlton::runtime& rt, karlton::manual_clock& clk,
                    karlton::sqlite_store& table, karlton::store& db) {
  auto users = or_throw(rt.create_cache("users-aside"));
  auto read = [&](const std::string& key) {
    auto cached = or_throw(users.get(key));
    if (cached) {
      std::cout << "[CACHE] Cache hit for user " << key << '\n';
      return cached.str();
    }
    std::cout << "[CACHE] Cache miss for user " << key << '\n';
    auto row = or_throw(db.load(key));
    if (row) or_throw(users.put(key, *row));
    return row.value_or("None");
  };

  std::cout << "=== Cache Staleness Demonstration ===\n"
               "(cache-aside: on a miss the program queries SQLite and puts the row\n"
               " into the cache; time moves by hand on a manual clock)\n";
  first_two_reads(read, clk);
  std::cout << "[DB] Updating user user_123 in database\n";
  or_throw(table.write_batch({{"user_123", std::string{john_smith}}}));
  auto third = read("user_123");
  std::cout << "Third read (stale): " << third << '\n';
  auto row = or_throw(db.load("user_123")).value_or("None");
  std::cout << "Database has: " << row << '\n';
  auto st = or_throw(users.stats());
  print_stats(st);
  std::cout << "The problem: the cache served John after the database said John Smith.\n"
               "It cannot know: the update did not pass through it. Its stats look\n"
               "healthy, and the only trace is the age of the values it served.\n\n";
  return {"cache-aside", third, st};
}

// (a) The update goes through the cache: store first, then cache.
outcome write_through(karlton::runtime& rt, karlton::manual_clock& clk,
                      karlton::sqlite_store& table, std::shared_ptr<karlton::store> db) {
  auto opts = rt.default_options("users-wt");
  opts.backing_store = db;
  opts.writes = karlton::write_mode::write_through;
  auto users = or_throw(rt.create_cache(opts));

  std::cout << "=== Way out (a): update through a write-through cache ===\n"
               "(the row is John again; reads are get_or_load, which loads a miss\n"
               " from the store)\n";
  or_throw(table.write_batch({{"user_123", std::string{john}}}));
  first_two_reads(read_through(users), clk);
  std::cout << "[APP] Updating user user_123 through the cache\n";
  or_throw(users.put("user_123", john_smith));
  std::cout << "[CACHE] user_123 replaced (after the store took it; then put returned)\n";
  auto third = shown(or_throw(users.get_or_load("user_123")));
  std::cout << "Third read (fresh): " << third << '\n';
  std::cout << "Database has: " << or_throw(table.load("user_123")).value_or("None")
            << '\n';
  auto st = or_throw(users.stats());
  print_stats(st);
  std::cout << "The store is written first, so the cache never holds a value the\n"
               "database refused; once put returns, both have John Smith.\n\n";
  return {"write-through", third, st};
}

// (b) The update bypasses the cache, and whoever made it invalidates the key.
outcome invalidation(karlton::runtime& rt, karlton::manual_clock& clk,
                     karlton::sqlite_store& table, std::shared_ptr<karlton::store> db) {
  auto opts = rt.default_options("users-ri");
  opts.backing_store = db; // read-through only: writes stay out of the store
  auto users = or_throw(rt.create_cache(opts));

  std::cout << "=== Way out (b): invalidate after the update ===\n"
               "(the row is John again; a read-through cache over the same table)\n";
  or_throw(table.write_batch({{"user_123", std::string{john}}}));
  first_two_reads(read_through(users), clk);
  std::cout << "[DB] Updating user user_123 in database\n";
  or_throw(table.write_batch({{"user_123", std::string{john_smith}}}));
  bool was_cached = or_throw(users.erase("user_123"));
  std::cout << "[CACHE] Invalidated user_123 (erase: " << (was_cached ? "was" : "was not")
            << " cached; the database keeps its row)\n";
  auto third = shown(or_throw(users.get_or_load("user_123")));
  std::cout << "Third read (fresh): " << third << '\n';
  auto st = or_throw(users.stats());
  print_stats(st);
  std::cout << "The miss after the erase loads the new row. If a load of the old\n"
               "row had been in flight, the erase would have voided it (loads_voided\n"
               "counts those), so it could not put John back.\n\n";
  return {"invalidation", third, st};
}

// (c) The update bypasses the cache, and the database tells it. Returns
// nothing without PostgreSQL.
std::optional<outcome> database_tells(karlton::runtime& rt, karlton::manual_clock& clk) {
  std::cout << "=== Way out (c): the database tells the cache ===\n";
  if (!karlton::testing::pg_server::find_bindir()) {
    std::cout << "(c) needs PostgreSQL: scripts/setup postgresql, then scripts/run "
                 "staleness\n\n";
    return std::nullopt;
  }
  karlton::testing::pg_server srv{"staleness"};
  if (!srv.ready()) {
    std::cout << "(c) skipped: the private PostgreSQL server did not start: "
              << srv.error() << "\n\n";
    return std::nullopt;
  }
  karlton::postgres_options p;
  p.uri = srv.uri();
  // The lease is read on this program's manual clock, which only moves by
  // hand: an hour of it is never used up here.
  p.lease = std::chrono::hours{1};
  auto table = or_throw(karlton::postgres_store::open(p, "users"));
  or_throw(table->write_batch({{"user_123", std::string{john}}}));
  or_throw(rt.start_change_feed(p));
  auto opts = rt.default_options("users-db");
  opts.backing_store =
    std::make_shared<logged_store>(table, "[DB] Querying PostgreSQL for user ");
  opts.store_changes = true;
  opts.on_removal = [](const karlton::value& v, karlton::removal_cause why) {
    // The feed removes a changed row's entry as an invalidation does.
    if (why == karlton::removal_cause::explicit_erase)
      std::cout << "[CACHE] " << v.key() << " invalidated: PostgreSQL said it changed\n";
    else
      std::cout << "[CACHE] " << v.key() << " removed: " << karlton::to_string(why)
                << '\n';
  };
  auto users = or_throw(rt.create_cache(opts));
  or_throw(rt.sync_changes()); // the feed listens, and hits are served

  std::cout << "(a private PostgreSQL server in a temporary folder; its table 'users'\n"
               " has karlton's change triggers; user_123 is John)\n";
  first_two_reads(read_through(users), clk);
  std::cout << "[DB] psql: UPDATE users SET value = '<John Smith>' WHERE key = "
               "'user_123'\n";
  srv.psql("UPDATE users SET value = convert_to('" + std::string{john_smith} +
           "', 'UTF8') WHERE key = 'user_123'");
  if (!srv.last_psql_ok()) throw std::runtime_error{"psql failed: " + srv.log_text()};
  // Returns once the notification reached the cache: the demo does not
  // race it. A service just reads; the delay is a few milliseconds.
  or_throw(rt.sync_changes());
  auto third = shown(or_throw(users.get_or_load("user_123")));
  std::cout << "Third read (fresh): " << third << '\n';
  auto st = or_throw(users.stats());
  print_stats(st);
  std::cout << "Nobody told the cache: the UPDATE came from another connection,\n"
               "and the trigger's NOTIFY did. (Not shown here, as this cache only\n"
               "reads: a write-through cache's own writes are recognised by their\n"
               "transaction ids and keep their values.)\n\n";
  return outcome{"db tells", third, st};
}

int run() {
  temp_dir dir{
    "staleness"}; // first in, last out: the stores and caches go before the file
  auto table = or_throw(karlton::sqlite_store::open(dir.file("karlton.db"), "users"));
  auto db = std::make_shared<logged_store>(table, "[DB] Querying database for user ");
  or_throw(table->write_batch({{"user_123", std::string{john}}}));
  std::cout << "(SQLite table 'users' in a fresh temporary folder; user_123 is John)\n\n";

  auto clk = std::make_shared<karlton::manual_clock>();
  karlton::runtime rt{clk};
  std::vector<outcome> results;
  results.push_back(the_problem(rt, *clk, *table, *db));
  results.push_back(write_through(rt, *clk, *table, db));
  results.push_back(invalidation(rt, *clk, *table, db));
  if (auto told = database_tells(rt, *clk)) results.push_back(std::move(*told));

  std::cout << "=== Summary: the same update, " << results.size() << " ways ===\n"
            << std::left << std::setw(15) << "" << std::setw(14) << "third read"
            << std::setw(6) << "hits" << std::setw(8) << "misses" << std::setw(7)
            << "loads"
            << "age p50/p99 of values served\n";
  for (const auto& r : results) {
    bool fresh = r.last_read == john_smith;
    std::cout << std::setw(15) << r.way << std::setw(14)
              << (fresh ? "John Smith" : "John (stale)") << std::setw(6) << r.stats.hits
              << std::setw(8) << r.stats.misses << std::setw(7) << r.stats.loads
              << r.stats.age_p50_ms() << " / " << r.stats.age_p99_ms() << " ms\n";
  }
  std::cout << "(ages are bucketed: within 12.5 %. loads counts only the cache's own\n"
               " loads: cache-aside queried the database itself)\n";
  return 0;
}

} // namespace

int main() {
  return examples::run_example("staleness", run);
}
