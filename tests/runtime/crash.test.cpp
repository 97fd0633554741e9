// Rule 5 under kill -9: a write-back writer is killed mid-stream; after a
// restart (which replays the journal) every acknowledged write is stored.
// Without the journal, the test measures how many were lost.
#include <catch2/catch.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "support/temp_dir.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>
#include <karlton/stores/sqlite_store.hpp>

using namespace karlton;

namespace {

constexpr uint64_t keys = 1000;

// Runs the writer until it has acknowledged `acked` writes, then SIGKILLs
// it. Returns the number of the last write it acknowledged.
uint64_t run_and_kill(const std::string& db, const std::string& journal, uint64_t acked,
                      uint64_t max_dirty) {
  // Made before fork: the child may only make async-signal-safe calls
  // (tests/support/run_command.hpp says why).
  auto key_count = std::to_string(keys);
  auto dirty = std::to_string(max_dirty);
  int out[2];
  REQUIRE(pipe(out) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    close(out[1]);
    execl(KARLTON_CRASH_WRITER, KARLTON_CRASH_WRITER, db.c_str(), journal.c_str(),
          key_count.c_str(), dirty.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  FILE* in = fdopen(out[0], "r");
  REQUIRE(in != nullptr);
  uint64_t last = 0, count = 0;
  unsigned long long n = 0;
  while (count < acked && std::fscanf(in, "%llu", &n) == 1) {
    last = n;
    ++count;
  }
  kill(pid, SIGKILL); // mid-stream: it is writing the next ones right now
  int status = 0;
  waitpid(pid, &status, 0);
  std::fclose(in);
  REQUIRE(count == acked); // the child ran; it did not die on its own
  CHECK(WIFSIGNALED(status));
  return last;
}

// Opens the store again through a cache (replaying the journal, if any) and
// counts the keys whose stored value is older than their last acknowledged
// write. Write i put value i under key i % keys.
uint64_t lost_after_restart(const std::string& db, const std::string& journal,
                            uint64_t last) {
  auto store = sqlite_store::open(db, "crash");
  REQUIRE(store);
  {
    runtime rt;
    cache_options o;
    o.name = "crash";
    o.backing_store = *store;
    o.writes = write_mode::write_back;
    o.journal_path = journal == "-" ? "" : journal;
    auto c = rt.create_cache(o);
    if (!c) FAIL(describe(c.error()));
  }
  uint64_t lost = 0;
  for (uint64_t k = 0; k < keys && k <= last; ++k) {
    // The last acknowledged write of key k.
    uint64_t expected = last - ((last - k) % keys);
    auto got = (*store)->load("k" + std::to_string(k));
    REQUIRE(got);
    if (!*got || std::stoull(**got) < expected) ++lost;
  }
  return lost;
}

} // namespace

TEST_CASE("with the journal, kill -9 loses no acknowledged write", "[crash]") {
  testing::temp_dir dir{"crash"};
  auto db = dir.file("store.db");
  auto journal = dir.file("writes.journal");
  for (uint64_t acked : {2'000, 10'000}) {
    auto last = run_and_kill(db, journal, acked, 100'000);
    CHECK(lost_after_restart(db, journal, last) == 0);
  }
}

TEST_CASE("without the journal, kill -9 loses at most max-dirty writes", "[crash]") {
  testing::temp_dir dir{"crash"};
  auto db = dir.file("store.db");
  constexpr uint64_t max_dirty = 300;
  auto last = run_and_kill(db, "-", 20'000, max_dirty);
  auto lost = lost_after_restart(db, "-", last);
  // Only writes not yet stored can be lost, and max-dirty bounds those.
  CHECK(lost <= max_dirty);
  // Printed for the README's bound (`ctest -R crash -V`).
  std::printf("journal off: %llu of %llu keys lost their last acknowledged write "
              "(max-dirty %llu)\n",
              static_cast<unsigned long long>(lost),
              static_cast<unsigned long long>(keys),
              static_cast<unsigned long long>(max_dirty));
}
