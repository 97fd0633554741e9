// The shard ops of the atomic read-modify-write family and set_ttl (the
// style of actors/shard_ops.hpp: run by the shard actor for requests and by
// plain threads' jobs). increment, compare_and_set and merge are computes
// whose function and answer are fixed here.
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "actors/shard_ops.hpp"
#include <karlton/messages/compute.hpp>
#include <karlton/messages/errors.hpp>

namespace karlton::shard_ops {

/// The base-10 int64 of `bytes` if it is written canonically (no sign but
/// '-', no leading zeros or spaces), as Redis's INCR reads it.
inline std::optional<int64_t> parse_int64(std::string_view bytes) {
  int64_t n = 0;
  auto end = bytes.data() + bytes.size();
  auto [ptr, ec] = std::from_chars(bytes.data(), end, n);
  if (ec != std::errc{} || ptr != end || bytes.empty()) return std::nullopt;
  if (std::to_string(n) != bytes) return std::nullopt; // "007", "-0"
  return n;
}

/// Runs `s.compute(key, fn)` and answers `convert(computed)` now or later.
template <class R, class Later, class Convert>
std::optional<caf::expected<R>> compute_as(shard_state& s, std::string_view key,
                                           time_point now, compute_function fn,
                                           Later later, Convert convert) {
  auto to_r = [convert](caf::expected<computed> r) -> caf::expected<R> {
    if (!r) return std::move(r.error());
    return convert(*r);
  };
  auto w = [later, to_r](caf::expected<computed> r) mutable {
    later(to_r(std::move(r)));
  };
  if (auto r = s.compute(key, now, std::move(fn), std::move(w)))
    return to_r(std::move(*r));
  return std::nullopt;
}

template <class Key>
struct compute {
  Key key;
  compute_function fn;
  template <class Later>
  std::optional<caf::expected<computed>> operator()(shard_state& s, time_point now,
                                                    Later later) {
    return s.compute(key_view(key), now, std::move(fn), std::move(later));
  }
};

template <class Key>
struct increment {
  Key key;
  int64_t delta;
  ttl new_entry;
  template <class Later>
  std::optional<caf::expected<int64_t>> operator()(shard_state& s, time_point now,
                                                   Later later) {
    auto fn = [delta = delta, t = new_entry](const value& current) {
      int64_t n = 0;
      if (current) {
        auto parsed = parse_int64(current.bytes());
        if (!parsed)
          throw compute_refusal{make_error(errc::not_an_integer,
                                           "the value is not a base-10 64-bit integer")};
        n = *parsed;
      }
      int64_t sum = 0;
      if (__builtin_add_overflow(n, delta, &sum))
        throw compute_refusal{
          make_error(errc::not_an_integer, "increment or decrement would overflow")};
      // An existing entry keeps its expiry; a new one gets `new_entry`.
      return compute_result::put(std::to_string(sum),
                                 current ? std::nullopt : std::optional<ttl>{t});
    };
    return compute_as<int64_t>(
      s, key_view(key), now, std::move(fn), std::move(later),
      [](const computed& c) { return parse_int64(c.after.bytes()).value_or(0); });
  }
};

/// Whether `current` is what compare_and_set expects (nullopt: absent).
inline bool matches(const value& current, const std::optional<std::string>& expected) {
  return expected ? current && current.bytes() == *expected : !current;
}

template <class Key>
struct compare_and_set {
  Key key;
  std::optional<std::string> expected;
  std::optional<std::string> desired; ///< nullopt: erase
  ttl lifetime;
  template <class Later>
  std::optional<caf::expected<bool>> operator()(shard_state& s, time_point now,
                                                Later later) {
    auto fn = [expected = expected, desired = desired,
               t = lifetime](const value& current) {
      if (!matches(current, expected)) return compute_result::keep();
      if (!desired) return current ? compute_result::erase() : compute_result::keep();
      return compute_result::put(*desired, t);
    };
    return compute_as<bool>(
      s, key_view(key), now, std::move(fn), std::move(later),
      [expected = expected](const computed& c) { return matches(c.before, expected); });
  }
};

template <class Key>
struct merge {
  Key key;
  std::string given;
  merge_function fn;
  ttl lifetime; ///< for a new entry
  template <class Later>
  std::optional<caf::expected<computed>> operator()(shard_state& s, time_point now,
                                                    Later later) {
    auto step = [given = std::move(given), fn = std::move(fn),
                 t = lifetime](const value& current) {
      if (!current) return compute_result::put(given, t);
      auto merged = fn(current.bytes(), given);
      if (!merged) return compute_result::erase();
      return compute_result::put(std::move(*merged));
    };
    return s.compute(key_view(key), now, std::move(step), std::move(later));
  }
};

template <class Key>
struct set_ttl {
  Key key;
  std::optional<caf::timespan> left;
  template <class Later>
  std::optional<caf::expected<remaining_ttl>> operator()(shard_state& s, time_point now,
                                                         Later later) {
    return s.set_ttl(key_view(key), left, now, std::move(later));
  }
};

} // namespace karlton::shard_ops
