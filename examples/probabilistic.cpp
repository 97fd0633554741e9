// Probabilistic early expiration: the guide's naive mode beside XFetch.
//
// The guide's demonstration reads one key every 0.5 s from a cache with a
// 10 s TTL and beta 2, where an entry of age a expires early, as a miss, with
// probability 1 - exp(-beta * a / ttl): the reader then waits for a reload.
// XFetch (Vattani et al., VLDB 2015) instead refreshes in the background when
// now - delta * beta * ln(U) >= expiry, where delta is how long the last load
// took: readers keep getting the cached value while the reload runs, and it
// happens close to expiry: how often before it depends on how many reads come
// near it (here, at 2 reads a second, about every other TTL; the entry expires
// and a reader waits otherwise). Both run here on read-through caches
// whose loader (a simulated 500 ms query) counts its calls, for 30 s of reads.
//
// Time is a manual clock moved by hand (the loader moves it by its 500 ms),
// and the random numbers come from fixed seeds, so every run prints the same.
//
// Run it: scripts/run probabilistic
#include <chrono>
#include <iomanip>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include "examples/example_support.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>

using namespace std::chrono_literals;

namespace {

constexpr auto read_every = 500ms;
constexpr auto run_for = 30s;
constexpr auto query_time = 500ms;

// One side of the comparison: a runtime on its own manual clock, so the two
// timelines do not disturb each other.
struct side {
  const char* label;
  std::shared_ptr<karlton::manual_clock> clk = std::make_shared<karlton::manual_clock>();
  std::unique_ptr<karlton::runtime> rt = std::make_unique<karlton::runtime>(clk);
  karlton::cache c;
  int queries = 0;

  side(const char* name, karlton::early_refresh_mode mode, double beta) : label(name) {
    auto o = rt->default_options(name);
    o.shards = 1;
    o.default_ttl = karlton::ttl::after(10s);
    o.early_refresh = mode;
    o.beta = beta;
    o.seed = 42;
    o.loader = [this](const std::string& key) -> caf::expected<std::string> {
      ++queries;
      clk->advance(query_time); // the query takes its time: XFetch's delta
      return "value of " + key + " #" + std::to_string(queries);
    };
    auto made = rt->create_cache(o);
    if (!made) throw std::runtime_error(karlton::describe(made.error()));
    c = *made;
  }

  // Reads once; says "HIT", "HIT + refresh" (served, reload in the
  // background) or why the reader had to wait for a query.
  std::string read() {
    auto before = *c.stats();
    auto v = c.get_or_load("test_key");
    if (!v) return "error: " + karlton::describe(v.error());
    // Let a background refresh finish before time moves on, so each run
    // prints the same lines (a bounded wait: the loader never blocks).
    for (int i = 0; i < 10000; ++i) {
      auto now = *c.stats();
      if (now.loads_finished == now.loads) break;
      std::this_thread::yield();
    }
    auto after = *c.stats();
    if (after.early_expirations > before.early_expirations) return "MISS (early)";
    if (after.misses > before.misses)
      return before.hits + before.misses == 0 ? "MISS (cold)" : "MISS (expired)";
    if (after.early_refreshes > before.early_refreshes) return "HIT + refresh";
    return "HIT";
  }
};

void print_totals(side& s) {
  auto st = *s.c.stats();
  std::cout << std::left << std::setw(8) << s.label << " hits " << std::setw(4) << st.hits
            << " misses " << std::setw(3) << st.misses << " queries " << std::setw(3)
            << s.queries << " early refreshes " << std::setw(3) << st.early_refreshes
            << " early expirations " << st.early_expirations << " hit rate " << std::fixed
            << std::setprecision(2) << st.hit_rate() << '\n';
}

int run() {
  side naive{"naive", karlton::early_refresh_mode::naive, 2.0};
  side xfetch{"xfetch", karlton::early_refresh_mode::xfetch, 1.0};
  std::cout
    << "=== Probabilistic early expiration: the guide's naive mode vs XFetch ===\n"
       "TTL 10 s; a read every 0.5 s for 30 s; each query takes 0.5 s\n"
       "naive: beta 2 (the guide's); xfetch: beta 1\n\n"
    << std::left << std::setw(8) << "read" << std::setw(18) << "naive"
    << "xfetch\n";
  auto reads = run_for / read_every;
  for (int i = 0; i < reads; ++i) {
    auto a = naive.read();
    auto b = xfetch.read();
    // Print the first reads and every one that was not a plain hit.
    if (i < 3 || a != "HIT" || b != "HIT")
      std::cout << std::left << std::setw(8) << ("#" + std::to_string(i + 1))
                << std::setw(18) << a << b << '\n';
    naive.clk->advance(read_every);
    xfetch.clk->advance(read_every);
  }
  std::cout << "(all other reads were hits on both sides)\n\n";
  print_totals(naive);
  print_totals(xfetch);
  std::cout
    << "\nThe naive mode turns early expirations into misses: the reader waits\n"
       "for a query, often long before the TTL is up. XFetch serves the cached\n"
       "value and refreshes in the background as expiry nears; with beta 1\n"
       "and a 0.5 s query it sometimes draws no refresh in time and the entry\n"
       "expires (a larger beta refreshes earlier, at the cost of more queries).\n";
  return 0;
}

} // namespace

int main() {
  return examples::run_example("probabilistic", run);
}
