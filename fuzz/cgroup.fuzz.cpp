// Fuzzes the cgroup parsers of runtime/cores.cpp, which bound the scheduler's
// threads by files the process reads at start (/proc/self/cgroup,
// /proc/self/mountinfo, cpu.max, cpu.cfs_quota_us): read as any outside text
// (DESIGN.md rule 9). The input is each file's text in turn.
//
// Checked beyond "no crash, no sanitizer report, bounded time": the quota
// parsers agree (cpu.max's "quota period" means what v1's two files do), and
// paths from /proc/self/cgroup stay under the mounts: with the hierarchies
// mounted at a folder that does not exist, no quota is ever found.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "runtime/cores.hpp"

namespace {

[[noreturn]] void report(const char* what) {
  std::fprintf(stderr, "cgroup fuzzer: %s\n", what);
  std::abort();
}

constexpr std::string_view nowhere =
  "40 30 0:37 / /nonexistent/karlton-fuzz rw - cgroup2 cgroup2 rw\n"
  "31 30 0:28 / /nonexistent/karlton-fuzz/cpu rw - cgroup cgroup rw,cpu,cpuacct\n";

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text{reinterpret_cast<const char*>(data), size};
  using namespace karlton::detail;
  // cpu.max against the v1 pair: the same numbers, the same cores.
  auto cores = cores_of_cpu_max(text);
  auto sp = text.find(' ');
  bool plain = !text.empty() && text[0] >= '0' && text[0] <= '9' &&
               text.find(' ', sp + 1) == std::string_view::npos &&
               text.find_first_not_of("0123456789 \n") == std::string_view::npos;
  if (cores && sp != std::string_view::npos && plain &&
      cores != cores_of_cfs(text.substr(0, sp), text.substr(sp + 1)))
    report("cpu.max and cfs_quota_us disagree on the same numbers");
  // The text as /proc/self/cgroup: nothing under a mount that does not exist.
  if (cgroup_cpu_limit(text, nowhere)) report("a quota found outside the mounts");
  // The text as mountinfo: parsed, whatever it mounts.
  (void)cgroup_cpu_limit("0::/\n4:cpu,cpuacct:/\n", text);
  return 0;
}
