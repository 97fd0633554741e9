// The cores karlton sizes its scheduler by: the affinity mask, and the CFS
// quota of the process's cgroups read from cgroup trees made in a temporary
// folder (cgroup v2's cpu.max, v1's cpu.cfs_quota_us / cpu.cfs_period_us).
#include <catch2/catch.hpp>

#include <sched.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "runtime/cores.hpp"
#include "support/temp_dir.hpp"
#include <karlton/runtime/options.hpp>

using namespace karlton;
using karlton::detail::cgroup_cpu_limit;
using karlton::detail::cores_of_cfs;
using karlton::detail::cores_of_cpu_max;

namespace {

// Writes `text` to `root`/`file`, making the folders on the way.
void put_file(const testing::temp_dir& root, const std::string& file,
              const std::string& text) {
  auto path = root.path() / file;
  std::filesystem::create_directories(path.parent_path());
  std::ofstream{path} << text;
}

} // namespace

TEST_CASE("a CFS quota allows its cores rounded up, at least one", "[cores]") {
  CHECK(cores_of_cpu_max("200000 100000\n") == 2u);
  CHECK(cores_of_cpu_max("150000 100000\n") == 2u); // docker --cpus=1.5
  CHECK(cores_of_cpu_max("50000 100000") == 1u);
  CHECK(cores_of_cpu_max("1 100000") == 1u);
  CHECK(cores_of_cfs("250000\n", "100000\n") == 3u);
  // No quota.
  CHECK_FALSE(cores_of_cpu_max("max 100000\n"));
  CHECK_FALSE(cores_of_cfs("-1\n", "100000\n"));
}

TEST_CASE("text that is not a quota is no quota", "[cores][errors]") {
  for (auto text : {"", "\n", "150000", "0 100000", "-5 100000", "150000 0", "150000 -1",
                    "abc def", "150000 100000 7", "99999999999999999999 100000",
                    "0x10 100000", "1.5 1", "+150000 100000"})
    CHECK_FALSE(cores_of_cpu_max(text));
  CHECK_FALSE(cores_of_cfs("", "100000"));
  CHECK_FALSE(cores_of_cfs("150000", "max"));
  CHECK_FALSE(cores_of_cfs("150000", "0"));
}

namespace {

// mountinfo's line for a cgroup hierarchy mounted at `point`, showing the
// cgroup `root`: v2, or v1 with `options` ("rw,cpu,cpuacct").
std::string mounted(const std::string& root, const std::string& point,
                    const std::string& options = "") {
  if (options.empty())
    return "40 30 0:37 " + root + " " + point + " rw,relatime - cgroup2 cgroup2 rw\n";
  return "31 30 0:28 " + root + " " + point + " rw,relatime shared:9 - cgroup cgroup " +
         options + "\n";
}

} // namespace

TEST_CASE("cgroup v2: the tightest quota from the process's cgroup up to the mount",
          "[cores]") {
  testing::temp_dir root{"cgroup"};
  const auto r = root.path().string();
  const auto mounts =
    "30 22 0:27 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n" + mounted("/", r);
  put_file(root, "a/b/cpu.max", "max 100000\n");
  put_file(root, "a/cpu.max", "300000 100000\n");
  CHECK(cgroup_cpu_limit("0::/a/b\n", mounts) ==
        3u); // the parent's quota binds the child
  put_file(root, "a/b/cpu.max", "150000 100000\n");
  CHECK(cgroup_cpu_limit("0::/a/b\n", mounts) == 2u);
  put_file(root, "cpu.max", "100000 100000\n");
  CHECK(cgroup_cpu_limit("0::/a/b\n", mounts) == 1u);
  CHECK_FALSE(cgroup_cpu_limit("0::/a/b\n", "")); // nothing mounted, nothing read
}

TEST_CASE(
  "a container without its own cgroup namespace reads its own cgroup, not a namesake "
  "below it",
  "[cores]") {
  // The host's path is /kubepods/pod1/c2; the mount shows that cgroup at the
  // mount point, and a child the container made happens to be named kubepods.
  testing::temp_dir root{"cgroup"};
  const auto r = root.path().string();
  const auto mounts = mounted("/kubepods/pod1/c2", r);
  put_file(root, "cpu.max", "400000 100000\n");
  put_file(root, "kubepods/cpu.max", "50000 100000\n");
  put_file(root, "kubepods/pod1/c2/cpu.max", "50000 100000\n");
  CHECK(cgroup_cpu_limit("0::/kubepods/pod1/c2\n", mounts) == 4u);
  // A process in a child of the container's cgroup: that child and up.
  put_file(root, "worker/cpu.max", "200000 100000\n");
  CHECK(cgroup_cpu_limit("0::/kubepods/pod1/c2/worker\n", mounts) == 2u);
  // A path outside what the mount shows: the mount point alone.
  CHECK(cgroup_cpu_limit("0::/elsewhere/kubepods\n", mounts) == 4u);
}

TEST_CASE("cgroup v1: the cpu controller's cfs quota, wherever it is mounted",
          "[cores]") {
  testing::temp_dir root{"cgroup"};
  const auto r = root.path().string();
  const std::string self = "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n";
  const auto mounts = mounted("/", r + "/cpu,cpuacct", "rw,cpu,cpuacct") +
                      mounted("/", r + "/memory", "rw,memory");
  put_file(root, "cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
  put_file(root, "cpu,cpuacct/cpu.cfs_period_us", "100000\n");
  CHECK_FALSE(cgroup_cpu_limit(self, mounts));
  put_file(root, "cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "150000\n");
  put_file(root, "cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
  CHECK(cgroup_cpu_limit(self, mounts) == 2u);
  // A parent's tighter quota binds; a level without its period is skipped.
  put_file(root, "cpu,cpuacct/docker/cpu.cfs_quota_us", "100000\n");
  CHECK(cgroup_cpu_limit(self, mounts) == 2u);
  put_file(root, "cpu,cpuacct/docker/cpu.cfs_period_us", "100000\n");
  CHECK(cgroup_cpu_limit(self, mounts) == 1u);
  // Only the cpu controller's line and mount count.
  CHECK_FALSE(cgroup_cpu_limit("4:cpuacct:/docker/abc\n", mounts));
  CHECK_FALSE(cgroup_cpu_limit(self, mounted("/", r + "/cpu,cpuacct", "rw,cpuacct")));
}

TEST_CASE("no quota, or files that name nothing usable, leave the cores alone",
          "[cores][errors]") {
  testing::temp_dir root{"cgroup"};
  const auto r = root.path().string();
  put_file(root, "inner/cpu.max", "max 100000\n");
  const auto mounts = mounted("/", r + "/inner");
  CHECK_FALSE(cgroup_cpu_limit("0::/\n", mounts)); // no quota at all
  put_file(root, "cpu.max", "100000 100000\n");    // beside the mount: never read
  for (auto self :
       {"0::relative\n", "0::/..\n", "0::/a/../..\n", "garbage\n", "0:\n", ""})
    CHECK_FALSE(cgroup_cpu_limit(self, mounts));
  for (const auto& bad : {mounted("/", "inner"), mounted("/..", r + "/inner"),
                          mounted("/", r + "/inner/.."), std::string{"40 30 0:37 / " + r},
                          std::string{"garbage\n"}})
    CHECK_FALSE(cgroup_cpu_limit("0::/\n", bad));
  put_file(root, "inner/cpu.max", "100000 100000\n");
  CHECK(cgroup_cpu_limit("garbage\n0::/\n", "garbage\n" + mounts) == 1u);
  // A path longer than PATH_MAX is not followed.
  CHECK_FALSE(cgroup_cpu_limit("0::/" + std::string(5000, 'a') + "\n", mounts));
}

TEST_CASE(
  "usable_cores takes the fewer of the affinity mask's CPUs and the quota's cores",
  "[cores][options]") {
  cpu_set_t all;
  REQUIRE(::sched_getaffinity(0, sizeof all, &all) == 0);
  const auto mask = static_cast<size_t>(CPU_COUNT(&all));
  testing::temp_dir root{"cgroup"};
  const auto r = root.path().string();
  put_file(root, "self", "0::/service\n");
  put_file(root, "mountinfo", mounted("/", r + "/fs"));
  const auto self = root.file("self");
  const auto mounts = root.file("mountinfo");
  // No quota: the mask decides; missing files too.
  CHECK(detail::usable_cores(self.c_str(), mounts.c_str()) == mask);
  CHECK(detail::usable_cores(root.file("missing").c_str(), mounts.c_str()) == mask);
  // A quota of one core (half of one, rounded up).
  put_file(root, "fs/service/cpu.max", "50000 100000\n");
  CHECK(detail::usable_cores(self.c_str(), mounts.c_str()) == 1);
  CHECK(detail::usable_cores(self.c_str(), root.file("missing").c_str()) == mask);
  // A quota above the mask leaves the mask's count.
  put_file(root, "fs/service/cpu.max", std::to_string(100000 * (mask + 3)) + " 100000\n");
  CHECK(detail::usable_cores(self.c_str(), mounts.c_str()) == mask);
}
