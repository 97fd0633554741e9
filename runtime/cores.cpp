#include "runtime/cores.hpp"

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <thread>
#include <vector>

#include <karlton/runtime/options.hpp>

namespace karlton {

namespace detail {

namespace {

// Kernel files, read as any outside text, with limits: a quota file holds a
// few bytes, /proc/self/cgroup a line per hierarchy, mountinfo a line per
// mount (hundreds in a busy container). A cgroup path is at most PATH_MAX.
constexpr size_t max_quota_file = 4096;
constexpr size_t max_list_file = 1 << 20;
constexpr size_t max_path = 4096;

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  return s;
}

// The whole of `s` as a decimal integer, or nullopt.
std::optional<long long> parse_integer(std::string_view s) {
  s = trimmed(s);
  long long out = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  if (ec != std::errc{} || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return out;
}

// At most `limit` bytes of the file; nullopt if it cannot be opened.
std::optional<std::string> read_small(const std::string& path, size_t limit) {
  std::ifstream in{path, std::ios::binary};
  if (!in) return std::nullopt;
  std::string out;
  char buf[4096];
  while (out.size() < limit && in.read(buf, sizeof buf).gcount() > 0)
    out.append(buf, std::min(static_cast<size_t>(in.gcount()), limit - out.size()));
  return out;
}

// Splits off the next line of `text`.
std::string_view next_line(std::string_view& text) {
  auto eol = text.find('\n');
  auto line = text.substr(0, eol);
  text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
  return line;
}

// Splits off the next space-separated field of `line`.
std::string_view next_field(std::string_view& line) {
  auto sp = line.find(' ');
  auto field = line.substr(0, sp);
  line = sp == std::string_view::npos ? std::string_view{} : line.substr(sp + 1);
  return field;
}

bool has_item(std::string_view list, std::string_view item) {
  while (!list.empty()) {
    auto comma = list.find(',');
    if (list.substr(0, comma) == item) return true;
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
  }
  return false;
}

// An absolute path of at most max_path bytes with no ".." segment: safe to
// append to a mount point.
bool safe_path(std::string_view p) {
  if (p.empty() || p.front() != '/' || p.size() > max_path) return false;
  return p != "/.." && p.find("/../") == std::string_view::npos &&
         p.substr(p.size() < 3 ? 0 : p.size() - 3) != "/..";
}

// Keeps in `best` the fewer cores of the two.
void take_fewer(std::optional<size_t>& best, std::optional<size_t> found) {
  if (found && (!best || *found < *best)) best = found;
}

// One cgroup hierarchy as mounted: the cgroup the mount point shows (`root`).
struct mount {
  std::string_view root;
  std::string_view point;
};

// The mounts of cgroup v2 (`v2`) or of v1's cpu controller in mountinfo:
// "id parent dev root point options [tags] - fstype source superoptions".
std::vector<mount> cgroup_mounts(std::string_view mountinfo, bool v2) {
  std::vector<mount> out;
  while (!mountinfo.empty()) {
    auto line = next_line(mountinfo);
    next_field(line); // id
    next_field(line); // parent
    next_field(line); // device
    mount m{next_field(line), next_field(line)};
    auto dash = line.find(" - ");
    if (dash == std::string_view::npos) continue;
    auto tail = line.substr(dash + 3);
    auto fstype = next_field(tail);
    next_field(tail); // source
    auto options = next_field(tail);
    bool wanted =
      v2 ? fstype == "cgroup2" : fstype == "cgroup" && has_item(options, "cpu");
    if (wanted && safe_path(m.root) && safe_path(m.point)) out.push_back(m);
  }
  return out;
}

// The tightest quota `read_level` finds in `path`'s folder under `m` and
// each folder above it up to the mount point. A path outside what the mount
// shows is read at the mount point alone.
template <class ReadLevel>
std::optional<size_t> tightest(const mount& m, std::string_view path,
                               ReadLevel read_level) {
  std::string_view rel;
  if (m.root == "/")
    rel = path;
  else if (path.substr(0, m.root.size()) == m.root &&
           (path.size() == m.root.size() || path[m.root.size()] == '/'))
    rel = path.substr(m.root.size());
  while (!rel.empty() && rel.back() == '/')
    rel.remove_suffix(1);
  std::optional<size_t> best;
  for (;;) {
    take_fewer(best, read_level(std::string{m.point} + std::string{rel}));
    if (rel.empty()) return best;
    rel = rel.substr(0, rel.rfind('/'));
  }
}

} // namespace

std::optional<size_t> cores_of_quota(long long quota, long long period) {
  if (quota <= 0 || period <= 0) return std::nullopt;
  auto whole = quota / period + (quota % period != 0 ? 1 : 0);
  return static_cast<size_t>(std::max<long long>(1, whole));
}

std::optional<size_t> cores_of_cpu_max(std::string_view text) {
  text = trimmed(text);
  auto space = text.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  auto quota = parse_integer(text.substr(0, space));
  auto period = parse_integer(text.substr(space + 1));
  if (!quota || !period) return std::nullopt; // "max" among them
  return cores_of_quota(*quota, *period);
}

std::optional<size_t> cores_of_cfs(std::string_view quota, std::string_view period) {
  auto q = parse_integer(quota);
  auto p = parse_integer(period);
  if (!q || !p) return std::nullopt;
  return cores_of_quota(*q, *p);
}

std::optional<size_t> cgroup_cpu_limit(std::string_view self_cgroup,
                                       std::string_view mountinfo) {
  auto v2_level = [](const std::string& dir) -> std::optional<size_t> {
    auto text = read_small(dir + "/cpu.max", max_quota_file);
    return text ? cores_of_cpu_max(*text) : std::nullopt;
  };
  auto v1_level = [](const std::string& dir) -> std::optional<size_t> {
    auto quota = read_small(dir + "/cpu.cfs_quota_us", max_quota_file);
    auto period = read_small(dir + "/cpu.cfs_period_us", max_quota_file);
    return quota && period ? cores_of_cfs(*quota, *period) : std::nullopt;
  };
  std::optional<size_t> best;
  // Lines "hierarchy-id:controllers:path"; v2's is "0::path".
  while (!self_cgroup.empty()) {
    auto line = next_line(self_cgroup);
    auto first = line.find(':');
    auto second = first == std::string_view::npos ? first : line.find(':', first + 1);
    if (second == std::string_view::npos) continue;
    auto controllers = line.substr(first + 1, second - first - 1);
    auto path = line.substr(second + 1);
    if (!safe_path(path)) continue;
    bool v2 = line.substr(0, first) == "0" && controllers.empty();
    if (!v2 && !has_item(controllers, "cpu")) continue;
    for (const auto& m : cgroup_mounts(mountinfo, v2))
      take_fewer(best, v2 ? tightest(m, path, v2_level) : tightest(m, path, v1_level));
  }
  return best;
}

size_t usable_cores(const char* self_cgroup_file, const char* mountinfo_file) noexcept {
  size_t cores = std::max(1u, std::thread::hardware_concurrency());
  cpu_set_t allowed;
  if (::sched_getaffinity(0, sizeof allowed, &allowed) == 0)
    cores = static_cast<size_t>(std::max(1, CPU_COUNT(&allowed)));
  try {
    auto self = read_small(self_cgroup_file, max_list_file);
    auto mounts = read_small(mountinfo_file, max_list_file);
    if (self && mounts)
      if (auto limit = cgroup_cpu_limit(*self, *mounts)) cores = std::min(cores, *limit);
  } catch (...) {
    // Out of memory reading a few lines: the affinity mask alone decides.
  }
  return cores;
}

} // namespace detail

size_t usable_cores() noexcept {
  return detail::usable_cores("/proc/self/cgroup", "/proc/self/mountinfo");
}

} // namespace karlton
