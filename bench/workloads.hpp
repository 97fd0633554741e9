// Workload generators for karlton-bench: random numbers, YCSB's (scrambled)
// Zipfian key chooser, 16-byte keys, 100-byte values, and the op streams and
// traces the workloads replay. Everything here runs before a timer starts, so
// generator cost never shows up in a measured number (libcuckoo's rule).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace karlton::bench {

/// Key count of the YCSB-style workloads: 1M, as in DESIGN.md's measurements
/// and the spec, so numbers compare with the mutex-LRU figure there.
constexpr uint64_t default_keys = 1'000'000;

/// Key size: 16 bytes, a typical short id ("user" + 12 digits).
constexpr size_t key_bytes = 16;

/// Value size: 100 bytes, YCSB's field size, as in DESIGN.md's prototype.
constexpr size_t value_bytes = 100;

/// Zipf skew: 0.99 is YCSB's default `zipfianconstant`.
constexpr double zipf_theta = 0.99;

/// splitmix64: tiny, fast and good enough to drive workload choices.
class rng {
public:
  explicit rng(uint64_t seed) noexcept : state_(seed) {}
  uint64_t next() noexcept {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, 1), 53 bits.
  double uniform() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

private:
  uint64_t state_;
};

/// YCSB's `ZipfianGenerator` (Gray et al., "Quickly generating billion-record
/// synthetic databases", SIGMOD 1994): item 0 is the most popular, item i has
/// probability proportional to 1 / (i + 1)^theta.
class zipf_generator {
public:
  /// Computes zeta(n, theta) by summation: O(n), ~5 ms for 1M items.
  zipf_generator(uint64_t items, double theta);
  /// For a known zeta(n, theta), as YCSB does for its 10^10-item generator.
  zipf_generator(uint64_t items, double theta, double zetan);

  uint64_t next(rng& r) const noexcept;
  uint64_t items() const noexcept { return items_; }

  static double zeta(uint64_t n, double theta);

private:
  uint64_t items_;
  double theta_, zetan_, alpha_, eta_, half_pow_theta_;
};

/// YCSB's `ScrambledZipfianGenerator`: a Zipfian over 10^10 items (with YCSB's
/// precomputed zeta for theta 0.99), each drawn item FNV-1a-hashed and taken
/// modulo `items`. Popular keys are thus spread over the key space, not
/// clustered at its start. Like YCSB, the long tail beyond `items` folds back
/// uniformly, so the result is flatter than a true Zipf over `items`.
class scrambled_zipf {
public:
  explicit scrambled_zipf(uint64_t items);
  uint64_t next(rng& r) const noexcept;

private:
  uint64_t items_;
  zipf_generator base_;
};

/// YCSB's `Utils.fnvhash64`: FNV-1a over the 8 bytes of `x`, made non-negative.
uint64_t fnv_hash64(uint64_t x) noexcept;

/// Writes the 16-byte key of item `i` ("user" + 12 zero-padded digits) into `out`.
void format_key(uint64_t i, char* out) noexcept;
std::string make_key(uint64_t i);

/// The 100-byte value stored for item `i` (deterministic, no zeros in it).
std::string make_value(uint64_t i);

/// All keys 0..n-1 as strings, for callers whose API takes `std::string`.
std::vector<std::string> make_keys(uint64_t n);

/// One operation of an op stream: an item index and whether it is a put.
/// Packed into 4 bytes so 2M-op streams stay in 8 MB.
struct op {
  uint32_t item : 31;
  uint32_t is_put : 1;
};
static_assert(sizeof(op) == 4);

/// `count` ops over `items` keys: item by `scrambled_zipf`, a put with
/// probability `put_fraction`, else a get. Deterministic for a given seed.
std::vector<op> make_op_stream(uint64_t items, size_t count, double put_fraction,
                               uint64_t seed);

/// `count` item indexes from a true Zipf(theta) over `items` (item 0 hottest).
std::vector<uint32_t> make_zipf_trace(uint64_t items, size_t count, uint64_t seed);

/// A hot set under Zipf mixed with one sequential pass over cold items: every
/// `scan_period`-th request is the next cold item (`hot_items + k`), the rest
/// are Zipf(theta) over `hot_items`. Ends when the scan has visited all
/// `cold_items`, so its length is `cold_items * scan_period`.
std::vector<uint32_t> make_scan_trace(uint64_t hot_items, uint64_t cold_items,
                                      unsigned scan_period, uint64_t seed);

/// A hot set that moves: Zipf(theta) over the `live_items` most recently
/// introduced items, the newest the hottest, and one new item introduced every
/// `period` requests. An item is hot when it arrives and cools as newer ones
/// push it down the ranks, so what was read recently is what will be read
/// next, while what was read most often is old: the trace LRU is made for.
std::vector<uint32_t> make_recency_trace(uint64_t live_items, unsigned period,
                                         size_t count, uint64_t seed);

/// A cyclic scan: items 0, 1, ..., `loop_items` - 1, 0, 1, ... for `count`
/// requests. With a cache smaller than the loop, LRU always evicts the item
/// needed next and hits never; the best any cache can do is keep a fixed
/// subset, a hit ratio of cache / `loop_items`.
std::vector<uint32_t> make_loop_trace(uint64_t loop_items, size_t count);

} // namespace karlton::bench
