// Helpers of the compute tests on the plain shard state: an op's answer, at
// once or later, and what the table or the store writes hold.
#pragma once

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "actors/compute_ops.hpp"
#include "actors/shard_state.hpp"
#include <karlton/messages/errors.hpp>

namespace karlton::test {

/// What an op answered, at once or later.
template <class R>
struct answer {
  std::optional<caf::expected<R>> got;
  auto later() {
    return [this](caf::expected<R> r) { got.emplace(std::move(r)); };
  }
  template <class Op>
  answer& run(shard_state& s, time_point now, Op op) {
    if (auto r = op(s, now, later())) got.emplace(std::move(*r));
    return *this;
  }
  bool ok() const { return got && *got; }
  const R& operator*() const { return **got; }
};

using key_op = std::string;

inline shard_ops::increment<key_op> inc(int64_t delta = 1, ttl t = ttl::cache_default()) {
  return {"k", delta, t};
}

inline std::string bytes_of(shard_state& s, time_point now,
                            const std::string& key = "k") {
  return std::string{s.get(key, now).bytes()};
}

inline std::vector<uint64_t> seqs_of(const std::vector<shard_write>& items) {
  std::vector<uint64_t> out;
  for (auto& i : items)
    out.push_back(i.seq);
  return out;
}

/// The answers of writes, in the order they came: each is its name, or "error".
struct write_answers {
  std::vector<std::string> got;
  shard_state::write_waiter note(std::string what) {
    return [this, what](caf::expected<bool> r) { got.push_back(r ? what : "error"); };
  }
};

/// Fails the one load the shard wants started for `key` with `code`.
inline void fail_the_load(shard_state& s, const std::string& key, errc code,
                          time_point now) {
  auto loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  s.complete_load(key, loads[0].second,
                  caf::expected<std::string>{make_error(code, "failed")},
                  std::chrono::milliseconds{1}, now);
}

} // namespace karlton::test
