// What the shard's loading tests share: a read-through shard's options and a
// caller of get_or_load that records what it was told.
#pragma once

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "actors/shard_state.hpp"
#include "support/times.hpp"
#include <karlton/messages/errors.hpp>

namespace karlton::test {

inline shard_options loading(caf::timespan ttl_value = std::chrono::seconds{10}) {
  shard_options cfg;
  cfg.read_through = true;
  cfg.default_ttl = ttl::after(ttl_value);
  return cfg;
}

// A caller of get_or_load: what it was told, now or later. Its log outlives
// it, since a shard destroyed later still answers its pending waiters.
struct reader {
  std::shared_ptr<std::vector<std::string>> log =
    std::make_shared<std::vector<std::string>>();
  std::vector<std::string>& got = *log; // value bytes, "<miss>" or "error:<code>"
  static void record(std::vector<std::string>& out, const caf::expected<value>& r) {
    if (!r)
      out.push_back(std::string{"error:"} +
                    to_string(static_cast<errc>(r.error().code())));
    else
      out.push_back(*r ? std::string{r->bytes()} : "<miss>");
  }
  void record(const caf::expected<value>& r) { record(got, r); }
  load_waiter waiter() {
    return [log = log](caf::expected<value> r) { record(*log, r); };
  }
  // Calls get_or_load and records an immediate answer; true if it answered now.
  bool read(shard_state& s, const std::string& key, time_point now) {
    auto answer = s.get_or_load(key, table_hash(key), now, waiter());
    if (answer) record(*answer);
    return answer.has_value();
  }
};

// Completes the one load the shard wants started, of `key`, with `result`.
inline void finish_the_load(shard_state& s, const std::string& key,
                            caf::expected<std::string> result, time_point now) {
  auto loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  s.complete_load(key, loads[0].second, std::move(result), std::chrono::milliseconds{1},
                  now);
}

// TTL 10 s; a read of a value older than `d` starts a background reload.
inline shard_options refreshing_after(caf::timespan d) {
  auto cfg = loading(std::chrono::seconds{10});
  cfg.refresh_after = d;
  return cfg;
}

// A hit on `key` at `now` that starts its one reload: the reload's number.
inline uint64_t hit_starting_reload(shard_state& s, reader& r, const std::string& key,
                                    time_point now) {
  REQUIRE(r.read(s, key, now));
  auto loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  return loads[0].second;
}

// Reads `key` once, so it is loaded, and completes that load with `bytes`
// taking `took`: the starting point of the refresh tests.
inline void fill(shard_state& s, reader& r, const std::string& key,
                 const std::string& bytes, caf::timespan took) {
  r.read(s, key, t0);
  s.complete_load(key, s.take_loads_to_start().at(0).second, bytes, took, t0);
}

} // namespace karlton::test
