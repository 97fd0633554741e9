// The command table (plan §5): every family registers its commands, and the
// table is sorted once so that lookups are a binary search.
#include <algorithm>
#include <limits>

#include "runtime/server/session_impl.hpp"

namespace karlton::server {

namespace {

// a < b, ASCII case-insensitive.
bool iless(std::string_view a, std::string_view b) noexcept {
  return std::lexicographical_compare(
    a.begin(), a.end(), b.begin(), b.end(),
    [](char x, char y) { return ascii_lower(x) < ascii_lower(y); });
}

std::vector<command_spec> make_table() {
  std::vector<command_spec> table;
  commands_conn(table);
  commands_keys(table);
  commands_compute(table);
  commands_karlton(table);
  commands_tracking(table);
  std::sort(table.begin(), table.end(), [](const command_spec& a, const command_spec& b) {
    return iless(a.name, b.name);
  });
  return table;
}

} // namespace

const std::vector<command_spec>& command_table() {
  static const std::vector<command_spec> table = make_table();
  return table;
}

const command_spec* find_command(std::string_view name) {
  const auto& table = command_table();
  auto i = std::lower_bound(
    table.begin(), table.end(), name,
    [](const command_spec& s, std::string_view n) { return iless(s.name, n); });
  if (i == table.end() || !iequals(i->name, name)) return nullptr;
  return &*i;
}

bool parse_int64(std::string_view s, int64_t& out) noexcept {
  if (s.empty() || s.size() > 20) return false;
  size_t i = 0;
  bool negative = false;
  if (s[0] == '-') {
    negative = true;
    i = 1;
    if (s.size() == 1) return false;
  }
  if (s[i] == '0' && s.size() > i + 1) return false; // no leading zeros
  if (negative && s[i] == '0') return false;         // no "-0"
  uint64_t v = 0;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (c < '0' || c > '9') return false;
    auto d = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) return false;
    v = v * 10 + d;
  }
  constexpr auto max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (negative) {
    if (v > max + 1) return false;
    out = v == max + 1 ? std::numeric_limits<int64_t>::min() : -static_cast<int64_t>(v);
  } else {
    if (v > max) return false;
    out = static_cast<int64_t>(v);
  }
  return true;
}

} // namespace karlton::server
