// Write-back (write-behind): a put is acknowledged at once, stored later in
// batches.
//
// This replays the guide's write-back demonstration with karlton, on a real
// SQLite file: with a batch size of 3, the third dirty key sends a batch to
// the store, and force_flush() stores the rest. Then what batching buys: ten
// rapid updates of one counter and three other keys are acknowledged while
// the table still has the old rows; one force_flush() stores them as one
// transaction of four rows, the counter's ten writes coalesced into one.
// Last, the weakness the guide lists, "risk of data loss", and how karlton
// removes it: with `journal_path` set, a put is acknowledged only once its
// record is durable in an append-only journal, and the journal is replayed
// into the store when the cache is created again. To show it without a crash,
// the store is down (a faulty_store that refuses every write) until the
// runtime shuts down: without a journal the writes are lost, with one they
// are stored at the next start. (The crash test kills a writer with -9.)
//
// Every flush interval here is 1 h, so only a full batch or force_flush()
// writes, and every run prints the same. "[DB]" lines are printed by the store.
//
// Run it: scripts/run write_back
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "examples/example_support.hpp"
#include "stores/faulty_store.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>
#include <karlton/stores/sqlite_store.hpp>

using namespace std::chrono_literals;
using examples::logged_store;
using examples::or_throw;
using examples::shown;
using examples::temp_dir;

namespace {

// Longer than the program runs: no timer flushes, so the output is the same
// on every run.
constexpr auto never_by_timer = std::chrono::hours{1};

std::shared_ptr<karlton::sqlite_store> open_table(const temp_dir& dir,
                                                  const std::string& table) {
  return or_throw(karlton::sqlite_store::open(dir.file("karlton.db"), table));
}

std::string in_table(karlton::sqlite_store& table, const std::string& key) {
  return or_throw(table.load(key)).value_or("None");
}

karlton::cache_options write_back(karlton::runtime& rt, std::string name,
                                  std::shared_ptr<karlton::store> db) {
  auto opts = rt.default_options(std::move(name));
  opts.backing_store = std::move(db);
  opts.writes = karlton::write_mode::write_back;
  opts.flush_interval = never_by_timer;
  return opts;
}

// A full batch is written by the flusher on its own, soon after the put that
// filled it; wait (boundedly) until the store has it.
void wait_until_stored(const karlton::cache& c) {
  for (int i = 0; i < 5000 && or_throw(c.dirty_count()) > 0; ++i)
    std::this_thread::sleep_for(1ms);
}

void print_flush_stats(const karlton::write_stats& s) {
  std::cout << "Flush stats: {writes: " << s.writes << ", batches: " << s.batches
            << ", entries_flushed: " << s.entries_flushed
            << ", writes_coalesced: " << s.writes_coalesced << ", dirty: " << s.dirty
            << "}\n";
}

void guide_demo(karlton::runtime& rt, const temp_dir& dir) {
  auto table = open_table(dir, "users");
  auto opts =
    write_back(rt, "users", std::make_shared<logged_store>(table, "[DB] Reading ", true));
  opts.batch_size = 3;
  auto cache = or_throw(rt.create_cache(opts));

  std::cout << "=== Write-Back Cache Demonstration ===\n"
               "(batch size 3; SQLite table 'users' in a fresh temporary folder)\n";
  or_throw(cache.put("user_1", R"({"name": "Alice"})"));
  or_throw(cache.put("user_2", R"({"name": "Bob"})"));
  std::cout << "Dirty keys: " << or_throw(cache.dirty_count()) << '\n';
  or_throw(cache.put("user_3", R"({"name": "Charlie"})")); // fills the batch
  wait_until_stored(cache);
  std::cout << "Dirty keys after batch: " << or_throw(cache.dirty_count()) << '\n';
  or_throw(cache.put("user_4", R"({"name": "Dave"})"));
  or_throw(cache.put("user_5", R"({"name": "Eve"})"));
  std::cout << "Dirty keys: " << or_throw(cache.dirty_count()) << '\n';
  or_throw(cache.force_flush());
  std::cout << "Dirty keys after force flush: " << or_throw(cache.dirty_count()) << '\n';
  auto st = or_throw(cache.stats());
  auto fs = or_throw(cache.flush_stats());
  std::cout << "Cache stats: {hits: " << st.hits << ", misses: " << st.misses
            << ", writes: " << st.puts << ", flushes: " << fs.batches << "}\n"
            << "Rows in the table: " << or_throw(table->count()) << "\n\n";
}

void batching(karlton::runtime& rt, const temp_dir& dir) {
  auto table = open_table(dir, "counters");
  or_throw(table->write_batch({{"page_views", std::string{"0"}}}));
  auto cache = or_throw(rt.create_cache(write_back(
    rt, "counters", std::make_shared<logged_store>(table, "[DB] Reading ", true))));

  std::cout << "=== Ten updates of a counter, one row written ===\n"
               "(table 'counters' has page_views = 0; batch size 1000)\n";
  for (int i = 1; i <= 10; ++i)
    or_throw(cache.put("page_views", std::to_string(i)));
  for (auto key : {"session_a", "session_b", "session_c"})
    or_throw(cache.put(key, "cart=1 item"));
  std::cout << "13 puts acknowledged: page_views = 1, 2, ..., 10, then session_a,\n"
               "session_b and session_c\n";
  std::cout << "Read your writes: page_views = "
            << or_throw(cache.get("page_views")).str() << " (from the cache)\n"
            << "The table still has: page_views = " << in_table(*table, "page_views")
            << ", rows: " << or_throw(table->count()) << '\n'
            << "Dirty keys: " << or_throw(cache.dirty_count())
            << " (a key's newer write replaces its older one while it waits)\n";
  or_throw(cache.force_flush());
  std::cout << "After force_flush: page_views = " << in_table(*table, "page_views")
            << ", rows: " << or_throw(table->count()) << '\n';
  print_flush_stats(or_throw(cache.flush_stats()));
  std::cout << "13 writes cost the database one transaction of 4 rows. The price:\n"
               "until then the table was behind the cache (eventual consistency),\n"
               "and the acknowledged writes lived only in memory.\n\n";
}

// Writes three orders into a write-back cache whose store refuses every write.
void three_orders(const karlton::cache& c) {
  for (int i = 1; i <= 3; ++i)
    or_throw(c.put("order_" + std::to_string(i), "paid"));
}

void data_loss(const temp_dir& dir) {
  auto journal = dir.file("orders.journal");
  auto plain_table = open_table(dir, "orders_plain");
  auto journaled_table = open_table(dir, "orders_journaled");
  std::cout << "=== The guide's weakness: risk of data loss ===\n"
               "Two write-back caches of orders, each on its own table, both behind a\n"
               "store that is down (it refuses every write) until the program stops:\n"
               "'orders-plain' without a journal, 'orders-journaled' with one. With\n"
               "the journal, a put is acknowledged only once its record is durable\n"
               "(appended and fsynced; concurrent puts share one fsync).\n";
  {
    karlton::runtime rt;
    auto down = [](std::shared_ptr<karlton::sqlite_store> t) {
      return std::make_shared<karlton::faulty_store>(
        std::make_shared<logged_store>(t, "[DB] Reading ", true), 1.0, 7);
    };
    auto plain =
      or_throw(rt.create_cache(write_back(rt, "orders-plain", down(plain_table))));
    auto jopts = write_back(rt, "orders-journaled", down(journaled_table));
    jopts.journal_path = journal;
    auto journaled = or_throw(rt.create_cache(jopts));
    three_orders(plain);
    three_orders(journaled);
    auto js = or_throw(journaled.flush_stats());
    std::cout << "3 puts acknowledged by each; the journal holds " << js.journal_records
              << " records (" << js.journal_appends << " appends, one fsync each)\n"
              << "Shutdown, with 300 ms to store what is dirty (karlton says what it\n"
              << "could not store on stderr too):\n"
              << std::flush; // stderr is not buffered; keep the two in order
    auto report = rt.shutdown(300ms);
    for (const auto& [name, count] : report.unstored)
      std::cout << "  report: " << count << " writes of '" << name << "' not stored\n";
  }
  std::cout << "Rows: orders_plain " << or_throw(plain_table->count())
            << ", orders_journaled " << or_throw(journaled_table->count()) << '\n';

  std::cout << "Restart, the store back up: both caches are created again.\n";
  {
    karlton::runtime rt;
    or_throw(rt.create_cache(
      write_back(rt, "orders-plain",
                 std::make_shared<logged_store>(plain_table, "[DB] Reading ", true))));
    std::cout << "orders-plain: nothing to replay\n"
                 "orders-journaled: its journal is replayed into the store before the\n"
                 "cache takes a call:\n";
    auto jopts =
      write_back(rt, "orders-journaled",
                 std::make_shared<logged_store>(journaled_table, "[DB] Reading ", true));
    jopts.journal_path = journal;
    or_throw(rt.create_cache(jopts));
  }
  std::cout
    << "Rows: orders_plain " << or_throw(plain_table->count())
    << " (3 acknowledged orders lost), orders_journaled "
    << or_throw(journaled_table->count()) << " (none lost)\n"
    << "order_2 in orders_journaled: " << in_table(*journaled_table, "order_2") << '\n'
    << "A crash (kill -9) between the acknowledgement and the batch is the same\n"
       "story: the journal's records survive it (tests/runtime/crash.test.cpp).\n";
}

int run() {
  temp_dir dir{
    "write-back"}; // first in, last out: the stores and caches go before the files
  {
    karlton::runtime rt;
    guide_demo(rt, dir);
    batching(rt, dir);
  }
  data_loss(dir);
  return 0;
}

} // namespace

int main() {
  return examples::run_example("write_back", run);
}
