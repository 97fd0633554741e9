// Which names the entries of one cache may depend on through
// `dependencies::on` (keys and tags): a Bloom filter its shards share. A
// purge reports a removed key for cascading only if something may depend on
// it, so purging 100k entries nothing depends on costs one round, not two
// (karlton-bench tag-purge: 376 ms p50 without it).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>

#include "messages/value.hpp"

namespace karlton {

/// Bits are only ever set, by a put before it is acknowledged, so a purge
/// that starts after the put returned sees them: no cascade is missed. False
/// positives only cost a cascade round that finds nothing; with n distinct
/// names the rate is about (1 - exp(-3n / 2^20))^3: 0.03 % at 10k names,
/// 5 % at 100k. A lock-free bit array, not a lock: nobody ever waits.
/// @threadsafe
class depended_names {
public:
  depended_names() : words_(new std::atomic<uint64_t>[word_count]) {
    for (size_t i = 0; i < word_count; ++i)
      words_[i].store(0, std::memory_order_relaxed);
  }

  void add(std::string_view name) noexcept {
    auto [h1, h2] = hashes(name);
    for (uint64_t i = 0; i < probes; ++i) {
      auto bit = (h1 + i * h2) & (bit_count - 1);
      words_[bit / 64].fetch_or(uint64_t{1} << (bit % 64), std::memory_order_release);
    }
  }

  bool may_contain(std::string_view name) const noexcept {
    auto [h1, h2] = hashes(name);
    for (uint64_t i = 0; i < probes; ++i) {
      auto bit = (h1 + i * h2) & (bit_count - 1);
      if ((words_[bit / 64].load(std::memory_order_acquire) &
           (uint64_t{1} << (bit % 64))) == 0)
        return false;
    }
    return true;
  }

private:
  static constexpr uint64_t bit_count = uint64_t{1} << 20; // 128 KiB per cache
  static constexpr size_t word_count = bit_count / 64;
  static constexpr uint64_t probes = 3;

  static std::pair<uint64_t, uint64_t> hashes(std::string_view name) noexcept {
    auto h = hash_key(name);
    return {h, (h >> 33) | 1}; // double hashing with an odd step
  }

  std::unique_ptr<std::atomic<uint64_t>[]> words_;
};

} // namespace karlton
