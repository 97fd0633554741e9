// 8 plain threads mixing every call style on one cache, each checked against
// its own model: a thread always reads back its own last acknowledged write.
#include <catch2/catch.hpp>

#include <array>
#include <atomic>
#include <thread>

#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>

using namespace karlton;
using namespace std::chrono_literals;

namespace {

constexpr int threads = 8;
constexpr int keys_per_thread = 64;
constexpr int max_ops = 40'000;                    // per thread: bounds the run...
constexpr auto max_time = std::chrono::seconds{3}; // ...and so does the clock,
constexpr int min_ops = 100; // once each thread did this much real work
// A loaded machine (ASan, `stress --cpu 2`) may need longer for min_ops;
// past this it fails instead of hanging.
constexpr auto hard_limit = std::chrono::seconds{60};

struct worker_result {
  int ops = 0;
  int mismatches = 0;
  int errors = 0;
  std::string first_problem;
};

void note(worker_result& r, std::string what) {
  if (r.first_problem.empty()) r.first_problem = std::move(what);
}

// Waits for a callback's result without a condition variable per call.
template <class T>
caf::expected<T>
via_callback(const std::function<void(std::function<void(caf::expected<T>)>)>& start) {
  std::atomic<bool> done{false};
  std::optional<caf::expected<T>> out;
  start([&](caf::expected<T> r) {
    out.emplace(std::move(r));
    done.store(true, std::memory_order_release);
  });
  while (!done.load(std::memory_order_acquire))
    std::this_thread::yield();
  return std::move(*out);
}

worker_result run_worker(const cache& c, int id,
                         std::chrono::steady_clock::time_point stop) {
  worker_result r;
  std::array<std::string, keys_per_thread> model; // "" = not cached
  auto key = [id](int k) { return "t" + std::to_string(id) + "-" + std::to_string(k); };
  uint64_t x = 0x9e3779b97f4a7c15ull * (id + 1);
  auto next = [&] { return x = x * 6364136223846793005ull + 1442695040888963407ull; };
  auto limit = std::chrono::steady_clock::now() + hard_limit;
  for (; r.ops < max_ops; ++r.ops) {
    auto now = std::chrono::steady_clock::now();
    if ((now >= stop && r.ops >= min_ops) || now >= limit) break;
    int k = static_cast<int>((next() >> 33) % keys_per_thread);
    auto fresh = "v" + std::to_string(r.ops) + "-" + std::to_string(id);
    auto style = (next() >> 40) % 8;
    caf::error err;
    switch (style) {
    case 0:
      err = c.put(key(k), fresh);
      break;
    case 1: {
      auto f = c.put_async(key(k), fresh);
      auto res = f.get();
      if (!res) err = res.error();
      break;
    }
    case 2: {
      auto res = via_callback<caf::unit_t>(
        [&](auto done) { c.put_async(key(k), fresh, ttl::cache_default(), done); });
      if (!res) err = res.error();
      break;
    }
    case 3: {
      auto res = c.erase(key(k));
      if (!res) err = res.error();
      fresh.clear();
      break;
    }
    case 4: { // a batch write of this key and its neighbour
      int k2 = (k + 1) % keys_per_thread;
      auto fresh2 = fresh + "b";
      err = c.put_many({{key(k), fresh}, {key(k2), fresh2}});
      if (!err) model[k2] = fresh2;
      break;
    }
    default:
      fresh = model[k];
      break; // read only
    }
    if (err) {
      ++r.errors;
      note(r, "write: " + describe(err));
      continue;
    }
    model[k] = fresh;
    // Read it back in a style chosen independently of the write's.
    caf::expected<value> got = value{};
    switch ((next() >> 20) % 4) {
    case 0:
      got = c.get(key(k));
      break;
    case 1:
      got = c.get_async(key(k)).get();
      break;
    case 2:
      got = via_callback<value>([&](auto done) { c.get_async(key(k), done); });
      break;
    default: {
      auto many = c.get_many({key(k), key((k + 1) % keys_per_thread)});
      if (many)
        got = (*many)[0];
      else
        got = many.error();
    }
    }
    if (!got) {
      ++r.errors;
      note(r, "read: " + describe(got.error()));
    } else if (std::string{got->bytes()} != model[k]) {
      ++r.mismatches;
      note(r, key(k) + ": read '" + std::string{got->bytes()} + "', wrote '" + model[k] +
                "'");
    }
    // Everyone also reads a shared hot key, racing with the others' writes.
    if (r.ops % 16 == 0) {
      auto shared = c.get("shared");
      if (!shared)
        ++r.errors;
      else if (shared->bytes().empty() && *shared)
        ++r.mismatches;
      if (c.put("shared", fresh.empty() ? "x" : fresh)) ++r.errors;
    }
  }
  return r;
}

} // namespace

TEST_CASE("8 threads mixing every call style each read their own last write",
          "[runtime][stress]") {
  runtime rt;
  cache_options o;
  o.name = "stress";
  o.shards = 4;
  auto c = rt.create_cache(o);
  REQUIRE(c);
  auto stop = std::chrono::steady_clock::now() + max_time;
  std::array<worker_result, threads> results;
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i)
    pool.emplace_back([&, i] { results[i] = run_worker(*c, i, stop); });
  for (auto& t : pool)
    t.join();
  int total = 0;
  for (auto& r : results) {
    INFO(r.first_problem);
    CHECK(r.mismatches == 0);
    CHECK(r.errors == 0);
    total += r.ops;
  }
  INFO("operations: " << total);
  CHECK(total >= threads * min_ops); // it did real work
}
