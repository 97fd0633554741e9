// Rule 1 under load: a writer updates a backing store and invalidates; readers
// go through get_or_load. No read that starts after an invalidation returned
// may see a version older than the write before it. 1M operations, of which
// at least 20,000 invalidations (hits on the direct path are so much cheaper
// than a blocking erase that 1M operations alone had a few thousand, and
// voided 13-184 loads), bounded in time as well (20 s), so a slow (sanitized)
// build still ends.
#include <catch2/catch.hpp>

#include <array>
#include <atomic>
#include <mutex>
#include <thread>

#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>

using namespace karlton;

namespace {

constexpr int keys = 64;
constexpr int readers = 3;
constexpr uint64_t total_ops = 1'000'000;
constexpr uint64_t total_invalidations = 20'000;
constexpr auto max_time = std::chrono::seconds{20};

std::string key_of(int i) {
  return "k" + std::to_string(i);
}

} // namespace

TEST_CASE("no read after an invalidation returned sees an older version",
          "[loading][rule1][stress]") {
  std::mutex db_mtx;
  std::array<uint64_t, keys> db{};                       // the source of truth
  std::array<std::atomic<uint64_t>, keys> invalidated{}; // version at invalidation return
  runtime rt;
  cache_options o;
  o.name = "versions";
  o.shards = 2;
  o.loader = [&](const std::string& k) -> caf::expected<std::string> {
    std::string read;
    {
      std::lock_guard<std::mutex> guard{db_mtx};
      read = std::to_string(db[std::stoi(k.substr(1))]);
    }
    // The race rule 1 is about, made wider: an invalidation between this
    // read and the install must void the load.
    std::this_thread::yield();
    return read;
  };
  auto c = rt.create_cache(o);
  REQUIRE(c);
  std::atomic<uint64_t> ops{0};
  std::atomic<uint64_t> invalidations{0};
  std::atomic<uint64_t> stale{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<bool> stop{false};
  auto deadline = std::chrono::steady_clock::now() + max_time;
  auto done = [&] {
    return stop.load() ||
           (ops.load(std::memory_order_relaxed) >= total_ops &&
            invalidations.load(std::memory_order_relaxed) >= total_invalidations) ||
           std::chrono::steady_clock::now() >= deadline;
  };
  std::thread writer{[&] {
    uint64_t x = 7;
    while (!done()) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      int k = static_cast<int>((x >> 33) % keys);
      uint64_t version;
      {
        std::lock_guard<std::mutex> guard{db_mtx};
        version = ++db[k];
      }
      if (auto r = c->erase(key_of(k)); !r) ++errors;
      invalidated[k].store(version); // the invalidation has returned
      ++ops;
      ++invalidations;
    }
  }};
  std::vector<std::thread> pool;
  for (int r = 0; r < readers; ++r)
    pool.emplace_back([&, r] {
      uint64_t x = 1000 + r;
      while (!done()) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int k = static_cast<int>((x >> 33) % keys);
        auto floor = invalidated[k].load(); // read starts after this returned
        auto v = c->get_or_load(key_of(k));
        ++ops;
        if (!v) {
          ++errors;
          continue;
        }
        if (std::stoull(v->str()) < floor) ++stale;
      }
    });
  for (auto& t : pool)
    t.join();
  stop = true;
  writer.join();
  auto st = c->stats();
  REQUIRE(st);
  INFO("ops " << ops << ", invalidations " << invalidations << ", loads " << st->loads
              << ", voided " << st->loads_voided << ", coalesced " << st->coalesced
              << ", stale " << stale);
  CHECK(stale == 0);
  CHECK(errors == 0);
  CHECK(ops >= 10'000); // it really ran
  CHECK(st->loads > 0);
  CHECK(st->loads_voided > 0); // and raced
}
