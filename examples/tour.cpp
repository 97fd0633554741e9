// A tour of karlton: runs every example program in order, each under a heading.
//
// The examples live next to this program (build/examples/); each shows one
// idea and can also be run on its own, e.g. `scripts/run ttl`. The tour exits
// non-zero if any example fails.
//
// Run it: scripts/run (or scripts/run tour)
#include <filesystem>
#include <iostream>
#include <string>

#include <spawn.h>
#include <sys/wait.h>

extern char** environ;

namespace {

struct example {
  const char* name;
  const char* shows;
};

// Every example in examples/, in the order a newcomer should read them. Keep in
// sync with examples/CMakeLists.txt.
constexpr example examples[] = {
  {"ttl", "time-to-live: entries expire a fixed time after they were written"},
  {"staleness", "the staleness problem, and three ways out: write-through, invalidation, "
                "the database tells the cache"},
  {"write_through", "write-through: the store first, then the cache, or an error"},
  {"write_back", "write-back: acknowledged at once, stored in batches; the journal"},
  {"event_driven",
   "event-driven invalidation: an emit invalidates its dependents everywhere"},
  {"dependency", "dependencies on keys and tags: cascades, cycles, the graph"},
  {"probabilistic", "early expiration: the guide's naive mode beside XFetch"},
  {"distributed", "three nodes over loopback TCP: one erase, every copy gone"},
};

// Runs the program at `path` with our stdout and stderr; true if it exits with 0.
bool run_program(const std::filesystem::path& path) {
  std::string file = path.string();
  char* argv[] = {file.data(), nullptr};
  pid_t pid = 0;
  if (posix_spawn(&pid, file.c_str(), nullptr, nullptr, argv, environ) != 0) {
    std::cerr << "tour: cannot start " << file << '\n';
    return false;
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

} // namespace

int main() {
  auto dir = std::filesystem::read_symlink("/proc/self/exe").parent_path();
  int step = 0;
  int failed = 0;
  for (const auto& ex : examples) {
    std::cout << "\n##### " << ++step << ". " << ex.name << ": " << ex.shows << '\n'
              << "##### (on its own: scripts/run " << ex.name << ")\n\n"
              << std::flush; // the example writes to the same stdout
    if (!run_program(dir / ex.name)) {
      std::cout << "\n!!!!! " << ex.name << " failed\n";
      ++failed;
    }
  }
  std::cout << "\nTour done: " << step - failed << " of " << step
            << " examples ran cleanly.\n";
  return failed == 0 ? 0 : 1;
}
