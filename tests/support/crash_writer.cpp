// The child of the crash test (tests/runtime/crash.test.cpp): makes write-back
// puts into an SQLite store, optionally with a journal, and prints the number
// of each write once it is acknowledged. The parent kills it with SIGKILL
// mid-stream and checks what the store holds after a restart.
//
// Usage: karlton-crash-writer DB JOURNAL|- KEYS MAX_DIRTY
// Write i puts value i under key "k<i % KEYS>", forever (until killed).
#include <cstdio>
#include <cstdlib>
#include <string>

#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>
#include <karlton/stores/sqlite_store.hpp>

int main(int argc, char** argv) {
  using namespace karlton;
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s DB JOURNAL|- KEYS MAX_DIRTY\n", argv[0]);
    return 2;
  }
  auto db = sqlite_store::open(argv[1], "crash");
  if (!db) {
    std::fprintf(stderr, "%s\n", describe(db.error()).c_str());
    return 1;
  }
  runtime rt;
  cache_options o;
  o.name = "crash";
  o.backing_store = *db;
  o.writes = write_mode::write_back;
  o.journal_path = std::string{argv[2]} == "-" ? "" : argv[2];
  o.max_dirty = std::strtoull(argv[4], nullptr, 10);
  o.batch_size = 100;
  o.flush_interval = std::chrono::milliseconds{200};
  auto c = rt.create_cache(o);
  if (!c) {
    std::fprintf(stderr, "%s\n", describe(c.error()).c_str());
    return 1;
  }
  auto keys = std::strtoull(argv[3], nullptr, 10);
  for (uint64_t i = 0;; ++i) {
    if (auto err = c->put("k" + std::to_string(i % keys), std::to_string(i))) {
      std::fprintf(stderr, "put %llu: %s\n", static_cast<unsigned long long>(i),
                   describe(err).c_str());
      return 1;
    }
    std::printf("%llu\n", static_cast<unsigned long long>(i)); // acknowledged
    std::fflush(stdout);
  }
}
