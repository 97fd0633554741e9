// What the shard's loading tests share: a read-through shard's options and a
// caller of get_or_load that records what it was told.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "actors/shard_state.hpp"
#include "messages/errors.hpp"
#include "support/times.hpp"

namespace karlton::test {

inline shard_config loading(caf::timespan ttl_value = std::chrono::seconds{10}) {
  shard_config cfg;
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

} // namespace karlton::test
