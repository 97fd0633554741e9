// How many cores this process may use: its CPU affinity mask and any CFS
// bandwidth quota of its cgroups (docker --cpus, Kubernetes CPU limits,
// systemd's CPUQuota). The quota parsing is here, apart from `usable_cores`,
// so that tests can give it cgroup trees of their own. Internal.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace karlton::detail {

/// The cores a quota of `quota` µs per `period` µs allows: rounded up, at
/// least 1. nullopt unless both are positive.
std::optional<size_t> cores_of_quota(long long quota, long long period);

/// cgroup v2's `cpu.max`: "max 100000" (no quota) or "150000 100000".
/// nullopt for no quota or text that is not one of those.
std::optional<size_t> cores_of_cpu_max(std::string_view text);

/// cgroup v1's `cpu.cfs_quota_us` ("-1": no quota) and `cpu.cfs_period_us`.
std::optional<size_t> cores_of_cfs(std::string_view quota, std::string_view period);

/// The fewest cores a quota allows on the way from the process's cgroups up
/// to the top of what is mounted (a parent's quota binds its children), for
/// cgroup v2 (`cpu.max`) and v1's cpu controller (`cpu.cfs_quota_us`).
/// `self_cgroup` is the text of /proc/self/cgroup (the cgroups' paths) and
/// `mountinfo` that of /proc/self/mountinfo (where each hierarchy is mounted,
/// and which of its cgroups the mount shows: a container without its own
/// cgroup namespace sees its own cgroup at the mount point, under the host's
/// path). Only folders under those mount points are read. nullopt: no quota.
std::optional<size_t> cgroup_cpu_limit(std::string_view self_cgroup,
                                       std::string_view mountinfo);

/// `karlton::usable_cores` with the two files read from elsewhere (tests).
size_t usable_cores(const char* self_cgroup_file, const char* mountinfo_file) noexcept;

} // namespace karlton::detail
