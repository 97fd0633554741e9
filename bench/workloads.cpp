// Workload generators (see workloads.hpp). The Zipfian code follows YCSB's
// ZipfianGenerator and ScrambledZipfianGenerator line by line, so "ycsb-b"
// here draws the same key distribution YCSB's workload B does.
#include "bench/workloads.hpp"

#include <cassert>
#include <cmath>

namespace karlton::bench {

namespace {

// YCSB's ScrambledZipfianGenerator draws from 10^10 items (ITEM_COUNT) and,
// for theta 0.99, uses this precomputed zeta(10^10, 0.99) (ZETAN) instead of
// summing ten billion terms.
constexpr uint64_t ycsb_item_count = 10'000'000'000ull;
constexpr double ycsb_zetan = 26.46902820178302;

} // namespace

// -- zipf_generator -------------------------------------------------------------

double zipf_generator::zeta(uint64_t n, double theta) {
  double sum = 0;
  for (uint64_t i = 0; i < n; ++i)
    sum += 1.0 / std::pow(static_cast<double>(i + 1), theta);
  return sum;
}

zipf_generator::zipf_generator(uint64_t items, double theta)
  : zipf_generator(items, theta, zeta(items, theta)) {}

zipf_generator::zipf_generator(uint64_t items, double theta, double zetan)
  : items_(items), theta_(theta), zetan_(zetan), alpha_(1.0 / (1.0 - theta)),
    half_pow_theta_(1.0 + std::pow(0.5, theta)) {
  auto zeta2 = zeta(2, theta);
  eta_ =
    (1 - std::pow(2.0 / static_cast<double>(items), 1 - theta)) / (1 - zeta2 / zetan_);
}

uint64_t zipf_generator::next(rng& r) const noexcept {
  double u = r.uniform();
  double uz = u * zetan_;
  if (uz < 1.0) return 0;
  if (uz < half_pow_theta_) return 1;
  auto x = static_cast<uint64_t>(static_cast<double>(items_) *
                                 std::pow(eta_ * u - eta_ + 1, alpha_));
  // Rounding can land on `items_` when u is within an ulp of 1.
  return x < items_ ? x : items_ - 1;
}

// -- scrambled_zipf -------------------------------------------------------------

uint64_t fnv_hash64(uint64_t x) noexcept {
  constexpr uint64_t offset_basis = 0xCBF29CE484222325ull;
  constexpr uint64_t prime = 1099511628211ull;
  uint64_t h = offset_basis;
  for (int i = 0; i < 8; ++i) {
    h ^= x & 0xff;
    x >>= 8;
    h *= prime;
  }
  // Java's Math.abs on the signed result.
  auto s = static_cast<int64_t>(h);
  return s < 0 ? static_cast<uint64_t>(-(s + 1)) + 1 : static_cast<uint64_t>(s);
}

scrambled_zipf::scrambled_zipf(uint64_t items)
  : items_(items), base_(ycsb_item_count + 1, zipf_theta, ycsb_zetan) {}

uint64_t scrambled_zipf::next(rng& r) const noexcept {
  return fnv_hash64(base_.next(r)) % items_;
}

// -- keys and values --------------------------------------------------------------

void format_key(uint64_t i, char* out) noexcept {
  out[0] = 'u';
  out[1] = 's';
  out[2] = 'e';
  out[3] = 'r';
  for (size_t pos = key_bytes; pos > 4; --pos) {
    out[pos - 1] = static_cast<char>('0' + i % 10);
    i /= 10;
  }
}

std::string make_key(uint64_t i) {
  std::string out(key_bytes, '\0');
  format_key(i, out.data());
  return out;
}

std::string make_value(uint64_t i) {
  std::string out(value_bytes, '\0');
  rng r{i};
  for (auto& c : out)
    c = static_cast<char>('a' + r.next() % 26);
  return out;
}

std::vector<std::string> make_keys(uint64_t n) {
  std::vector<std::string> out;
  out.reserve(n);
  for (uint64_t i = 0; i < n; ++i)
    out.push_back(make_key(i));
  return out;
}

// -- streams and traces -------------------------------------------------------------

std::vector<op> make_op_stream(uint64_t items, size_t count, double put_fraction,
                               uint64_t seed) {
  scrambled_zipf keys{items};
  rng r{seed};
  std::vector<op> out(count);
  for (auto& o : out) {
    o.item = static_cast<uint32_t>(keys.next(r));
    o.is_put = r.uniform() < put_fraction ? 1 : 0;
  }
  return out;
}

std::vector<uint32_t> make_zipf_trace(uint64_t items, size_t count, uint64_t seed) {
  zipf_generator keys{items, zipf_theta};
  rng r{seed};
  std::vector<uint32_t> out(count);
  for (auto& x : out)
    x = static_cast<uint32_t>(keys.next(r));
  return out;
}

std::vector<uint32_t> make_scan_trace(uint64_t hot_items, uint64_t cold_items,
                                      unsigned scan_period, uint64_t seed) {
  zipf_generator hot{hot_items, zipf_theta};
  rng r{seed};
  std::vector<uint32_t> out(cold_items * scan_period);
  uint64_t next_cold = hot_items;
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<uint32_t>(i % scan_period == scan_period - 1 ? next_cold++
                                                                      : hot.next(r));
  return out;
}

std::vector<uint32_t> make_recency_trace(uint64_t live_items, unsigned period,
                                         size_t count, uint64_t seed) {
  assert(live_items > 0 && period > 0);
  zipf_generator age{live_items, zipf_theta};
  rng r{seed};
  std::vector<uint32_t> out(count);
  // `newest` is the item of rank 0; items below it by `age` ranks are older.
  uint64_t newest = live_items - 1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (i > 0 && i % period == 0) ++newest;
    out[i] = static_cast<uint32_t>(newest - age.next(r));
  }
  return out;
}

std::vector<uint32_t> make_loop_trace(uint64_t loop_items, size_t count) {
  assert(loop_items > 0);
  std::vector<uint32_t> out(count);
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<uint32_t>(i % loop_items);
  return out;
}

} // namespace karlton::bench
