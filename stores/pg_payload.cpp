#include "stores/pg_payload.hpp"

#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "stores/pg_connection.hpp"
#include <karlton/messages/errors.hpp>

namespace karlton {

namespace {

// The most tokens any form has; one more is enough to tell "too many".
constexpr size_t max_tokens = 5;

// At most this many bytes of an untrusted payload go into an error message.
constexpr size_t shown_bytes = 32;

std::string shown(std::string_view payload) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : payload.substr(0, shown_bytes)) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xf];
    }
  }
  if (payload.size() > shown_bytes) out += "...";
  return out;
}

caf::error refuse(std::string_view payload, const std::string& why) {
  return make_error(errc::invalid_option, "postgres notification '" + shown(payload) +
                                            "' (" + std::to_string(payload.size()) +
                                            " bytes): " + why);
}

// Splits on single spaces; empty tokens are kept (the empty key is one).
// Stops after max_tokens + 1 tokens: the caller refuses that many anyway.
std::vector<std::string_view> split(std::string_view s) {
  std::vector<std::string_view> out;
  for (;;) {
    auto space = s.find(' ');
    out.push_back(s.substr(0, space));
    if (space == std::string_view::npos || out.size() > max_tokens) return out;
    s.remove_prefix(space + 1);
  }
}

// Decimal without sign or leading zero, 1 .. 2^64-1.
std::optional<uint64_t> positive(std::string_view s) {
  if (s.empty() || s.size() > 20 || s[0] == '0') return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    uint64_t digit = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - digit) / 10) return std::nullopt;
    v = v * 10 + digit;
  }
  return v;
}

// Decimal int64 without leading zero ("0" itself allowed), optionally negative.
std::optional<int64_t> signed_decimal(std::string_view s) {
  bool negative = !s.empty() && s[0] == '-';
  if (negative) s.remove_prefix(1);
  if (s == "0") return negative ? std::nullopt : std::optional<int64_t>{0};
  auto magnitude = positive(s);
  if (!magnitude) return std::nullopt;
  constexpr auto max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (!negative) {
    if (*magnitude > max) return std::nullopt;
    return static_cast<int64_t>(*magnitude);
  }
  if (*magnitude > max + 1) return std::nullopt;
  return static_cast<int64_t>(~(*magnitude - 1)); // -magnitude without overflow
}

bool valid_table(std::string_view s) {
  auto dot = s.find('.');
  if (dot == std::string_view::npos) return false;
  auto schema = s.substr(0, dot), table = s.substr(dot + 1);
  return pg::valid_identifier(schema) && pg::valid_identifier(table) &&
         schema.substr(0, 3) != "pg_";
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

std::optional<std::string> decode_hex(std::string_view s) {
  if (s.size() % 2 != 0 || s.size() > max_key_hex) return std::nullopt;
  std::string out;
  out.reserve(s.size() / 2);
  for (size_t i = 0; i < s.size(); i += 2) {
    int hi = hex_digit(s[i]), lo = hex_digit(s[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi << 4 | lo);
  }
  return out;
}

struct form {
  char letter;
  pg_change::kind what;
  size_t tokens;
};

constexpr form forms[] = {
  {'r', pg_change::kind::row, 5},    {'l', pg_change::kind::long_key, 4},
  {'e', pg_change::kind::end, 4},    {'t', pg_change::kind::truncate, 3},
  {'R', pg_change::kind::repair, 2},
};

} // namespace

caf::expected<pg_change> parse_payload(std::string_view payload) {
  if (payload.size() > max_payload_bytes)
    return refuse(payload, "longer than " + std::to_string(max_payload_bytes) + " bytes");
  auto tokens = split(payload);
  const form* f = nullptr;
  for (auto& candidate : forms)
    if (tokens[0].size() == 1 && tokens[0][0] == candidate.letter) f = &candidate;
  if (!f) return refuse(payload, "unknown kind (not r, l, e, t or R)");
  if (tokens.size() != f->tokens)
    return refuse(payload, "a '" + std::string{tokens[0]} + "' notification has " +
                             std::to_string(f->tokens) + " space-separated tokens");
  pg_change c;
  c.what = f->what;
  size_t next = 1;
  if (c.what != pg_change::kind::repair) {
    auto xid = positive(tokens[next++]);
    if (!xid) return refuse(payload, "the xid is not a decimal in 1..2^64-1");
    c.xid = *xid;
  }
  if (c.what == pg_change::kind::row || c.what == pg_change::kind::long_key ||
      c.what == pg_change::kind::end) {
    auto seq = positive(tokens[next++]);
    if (!seq) return refuse(payload, "the sequence number is not a decimal in 1..2^64-1");
    c.seq = *seq;
  }
  if (c.what == pg_change::kind::end) {
    auto us = signed_decimal(tokens[next++]);
    if (!us) return refuse(payload, "the commit time is not a decimal int64");
    c.commit_us = *us;
    return c;
  }
  if (!valid_table(tokens[next]))
    return refuse(payload, "the table is not schema.table of [a-z_][a-z0-9_]{0,62} each "
                           "(schema not pg_*)");
  c.table = std::string{tokens[next++]};
  if (c.what == pg_change::kind::row) {
    auto key = decode_hex(tokens[next]);
    if (!key)
      return refuse(payload, "the key is not an even number of lower-case hex digits, "
                             "at most " +
                               std::to_string(max_key_hex));
    c.key = std::move(*key);
  }
  return c;
}

std::string format_payload(const pg_change& change) {
  static constexpr char hex[] = "0123456789abcdef";
  auto xid = std::to_string(change.xid);
  auto seq = std::to_string(change.seq);
  switch (change.what) {
  case pg_change::kind::row: {
    std::string out = "r " + xid + " " + seq + " " + change.table + " ";
    for (unsigned char b : change.key) {
      out += hex[b >> 4];
      out += hex[b & 0xf];
    }
    return out;
  }
  case pg_change::kind::long_key:
    return "l " + xid + " " + seq + " " + change.table;
  case pg_change::kind::end:
    return "e " + xid + " " + seq + " " + std::to_string(change.commit_us);
  case pg_change::kind::truncate:
    return "t " + xid + " " + change.table;
  case pg_change::kind::repair:
    return "R " + change.table;
  }
  return {};
}

} // namespace karlton
