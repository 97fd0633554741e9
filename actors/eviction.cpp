#include "actors/eviction.hpp"

#include <algorithm>
#include <cmath>

namespace karlton {

const char* to_string(eviction_policy_kind x) noexcept {
  return x == eviction_policy_kind::lru ? "lru" : "tinylfu";
}

// -- frequency_sketch ---------------------------------------------------------

namespace {

uint64_t mix(uint64_t x) noexcept { // splitmix64 finalizer
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

} // namespace

frequency_sketch::frequency_sketch(uint64_t capacity) {
  table_.assign(16, 0);
  mask_ = 15;
  ensure_capacity(std::max<uint64_t>(capacity, 1));
}

void frequency_sketch::ensure_capacity(uint64_t capacity) {
  capacity = std::min(capacity, max_capacity);
  if (capacity <= capacity_) return;
  capacity_ = capacity;
  // Caffeine's sample size: counters saturate at 15, and halving after
  // 10 x capacity events keeps the estimate about the recent past.
  sample_size_ = 10 * std::max<uint64_t>(capacity, 16);
  // One word (16 counters) per entry, as Caffeine; bounded by max_capacity,
  // so the doubling cannot wrap.
  auto words = static_cast<uint64_t>(table_.size());
  while (words < capacity)
    words <<= 1;
  if (words == table_.size()) return;
  // A counter's word is `x & mask_`: with one more mask bit it lands in
  // the same word or the one `old` words further, and a copy of the table in
  // both halves keeps every estimate.
  auto old = table_.size();
  table_.resize(words);
  for (auto filled = old; filled < words; filled *= 2)
    std::copy_n(table_.begin(), filled, table_.begin() + static_cast<ptrdiff_t>(filled));
  mask_ = words - 1;
}

void frequency_sketch::increment(uint32_t hash) noexcept {
  bool added = false;
  for (uint64_t row = 0; row < 4; ++row) {
    auto x = mix(hash + row * 0x9e3779b97f4a7c15ull);
    auto& word = table_[x & mask_];
    auto shift = (x >> 60) << 2; // one of the word's 16 counters
    if (((word >> shift) & 0xf) < 15) {
      word += uint64_t{1} << shift;
      added = true;
    }
  }
  if (added && ++additions_ >= sample_size_) halve();
}

unsigned frequency_sketch::frequency(uint32_t hash) const noexcept {
  unsigned least = 15;
  for (uint64_t row = 0; row < 4; ++row) {
    auto x = mix(hash + row * 0x9e3779b97f4a7c15ull);
    auto count = static_cast<unsigned>((table_[x & mask_] >> ((x >> 60) << 2)) & 0xf);
    least = std::min(least, count);
  }
  return least;
}

void frequency_sketch::halve() noexcept {
  for (auto& word : table_)
    word = (word >> 1) & 0x7777777777777777ull;
  additions_ /= 2;
}

void frequency_sketch::clear() noexcept {
  std::fill(table_.begin(), table_.end(), 0);
  additions_ = 0;
}

// -- window_climber -------------------------------------------------------------

int64_t window_climber::record(bool hit, uint64_t sample_size) noexcept {
  hits_ += hit ? 1 : 0;
  if (++requests_ < std::max<uint64_t>(sample_size, 1)) return 0;
  auto ratio = static_cast<double>(hits_) / static_cast<double>(requests_);
  auto change = ratio - previous_ratio_;
  // Further the same way if that did not hurt, else back.
  auto amount = change >= 0 ? step_ : -step_;
  // A jump means a new workload: climb again from the first step's size.
  step_ = std::abs(change) >= restart_change
            ? (amount >= 0 ? initial_step : -initial_step)
            : step_decay * amount;
  previous_ratio_ = ratio;
  hits_ = requests_ = 0;
  return std::llround(amount * static_cast<double>(capacity_));
}

// -- lru ----------------------------------------------------------------------

namespace {

class lru_policy final : public eviction_policy {
public:
  explicit lru_policy(entry_table& t) : table_(t) {}
  void on_insert(entry_id id, uint64_t w) override { list_.push_front(table_, id, w); }
  void on_hit(entry_id id) override { list_.move_to_front(table_, id); }
  void on_update(entry_id id, uint64_t old_w, uint64_t new_w) override {
    list_.weight += new_w - old_w;
    list_.move_to_front(table_, id);
  }
  void on_remove(entry_id id, uint64_t w) override { list_.unlink(table_, id, w); }
  entry_id victim() override { return list_.tail; }
  void clear() override { list_.reset(); }

private:
  entry_table& table_;
  entry_list list_;
};

// -- W-TinyLFU ----------------------------------------------------------------

// Entries arrive in an LRU window and then compete for the main space, a
// segmented LRU (20 % probation, 80 % protected). A window overflow enters
// main only if the sketch has seen it more often than main's LRU victim.
//
// The window's share adapts by hill climbing (Caffeine's design): every
// sample of requests the hit ratio is compared with the previous sample's; if
// it rose, the window keeps moving the same way, else it turns. A large window
// is LRU (a hot set that moves: the sketch still remembers yesterday's keys);
// a small one is LFU (a skewed, stable popularity; a loop). It starts at 1 %.
class tiny_lfu_policy final : public eviction_policy {
public:
  tiny_lfu_policy(entry_table& t, uint64_t capacity, bool weigh_bytes)
    : table_(t), entry_cap_(weigh_bytes ? frequency_sketch::max_capacity
                                        : std::max<uint64_t>(capacity, 1)),
      sketch_(weigh_bytes ? initial_sketch : std::min(entry_cap_, eager_sketch)),
      by_bytes_(weigh_bytes), capacity_(std::max<uint64_t>(capacity, 2)),
      climber_(capacity_) {
    resize_window(std::max<uint64_t>(1, capacity_ / 100));
  }

  void on_insert(entry_id id, uint64_t w) override {
    // Sized by entries, not weights (bytes): 8 bytes of sketch per byte of
    // budget, aged every 10 x bytes accesses, froze hot keys at 15 forever.
    // Grown with the table beyond what was allocated up front (see
    // eager_sketch), so a huge max-entries costs nothing until entries come.
    if (table_.size() > sketch_.capacity() && sketch_.capacity() < entry_cap_)
      sketch_.ensure_capacity(
        std::min<uint64_t>(entry_cap_, 2 * uint64_t{table_.size()}));
    sketch_.increment(hash_of(id));
    lists_[window].push_front(table_, id, w);
    table_.at(id).set_list(window);
    // A new entry is a request the cache could not serve.
    sample(false);
  }

  void on_hit(entry_id id) override {
    touch(id);
    sample(true);
  }

  void on_update(entry_id id, uint64_t old_w, uint64_t new_w) override {
    lists_[table_.at(id).list()].weight += new_w - old_w;
    touch(id);
  }

  void on_remove(entry_id id, uint64_t w) override {
    lists_[table_.at(id).list()].unlink(table_, id, w);
  }

  entry_id victim() override {
    full_ = true;
    auto& win = lists_[window];
    // While main has room, window overflow moves in without a contest; a few
    // at a time, so a shrunk window drains over several calls.
    for (unsigned moved = 0;
         moved < max_moves && win.weight > window_cap_ && !win.empty() &&
         main_weight() + weight_of(win.tail) <= main_cap_;
         ++moved)
      move_to_probation(win.tail);
    if (win.weight > window_cap_ && !win.empty()) {
      auto candidate = win.tail;
      auto main_victim = main_lru();
      if (main_victim == no_entry) return candidate;
      // Admission: the newcomer must be seen more often than what it displaces.
      if (sketch_.frequency(hash_of(candidate)) <=
          sketch_.frequency(hash_of(main_victim)))
        return candidate;
      move_to_probation(candidate);
      return main_victim;
    }
    auto v = main_lru();
    return v != no_entry ? v : win.tail;
  }

  void clear() override {
    for (auto& l : lists_)
      l.reset();
    sketch_.clear();
    full_ = false;
  }

  size_t metadata_bytes() const noexcept override { return sketch_.bytes(); }
  uint64_t window_capacity() const noexcept override { return window_cap_; }

private:
  enum : uint8_t { window = 0, probation = 1, protect = 2 };
  // The sketch's first size in entries under max-bytes; it doubles as the
  // table grows.
  static constexpr uint64_t initial_sketch = 64;
  // Under max-entries the sketch is sized for the bound at once up to 2^20
  // entries (8 MiB), as before: grown from small, its early halvings cost
  // 0.003 of hit ratio at 100k entries (karlton-bench hit-ratio, zipf 10 %).
  // Larger bounds grow with the table, so 10^12 allocates nothing up front.
  static constexpr uint64_t eager_sketch = uint64_t{1} << 20;
  // Entries moved between lists beyond the one a hook is about, per call:
  // after the window or protected space shrank, the lists settle over a few
  // calls rather than in one long one (O(1) per access).
  static constexpr unsigned max_moves = 8;
  // Fewer requests than this measure the hit ratio too coarsely to compare.
  static constexpr uint64_t min_sample = 4096;

  uint32_t hash_of(entry_id id) const { return table_.at(id).val.table_hash(); }
  // Moves between lists need the weight the shard used in the hooks.
  uint64_t weight_of(entry_id id) const {
    return by_bytes_ ? table_.at(id).val.charge() : 1;
  }
  uint64_t main_weight() const {
    return lists_[probation].weight + lists_[protect].weight;
  }

  void touch(entry_id id) {
    sketch_.increment(hash_of(id));
    auto& e = table_.at(id);
    if (e.list() == probation) {
      // A second access promotes: scan entries never reach protected.
      auto w = weight_of(id);
      lists_[probation].unlink(table_, id, w);
      lists_[protect].push_front(table_, id, w);
      e.set_list(protect);
      demote_overflow();
    } else {
      lists_[e.list()].move_to_front(table_, id);
    }
  }

  void demote_overflow() {
    for (unsigned moved = 0;
         moved <= max_moves && lists_[protect].weight > protected_cap_ &&
         lists_[protect].count > 1;
         ++moved) {
      auto demoted = lists_[protect].tail;
      auto dw = weight_of(demoted);
      lists_[protect].unlink(table_, demoted, dw);
      lists_[probation].push_front(table_, demoted, dw);
      table_.at(demoted).set_list(probation);
    }
  }

  // Requests per climbing sample: as many as the cache holds entries (the
  // bound, or under max-bytes the entries it holds now), at least
  // `min_sample`. Caffeine samples 10 x as long; on karlton-bench's recency
  // trace that adapted too slowly at 100k entries (hit ratio 0.50 against
  // 0.58, LRU 0.61), while zipf lost no more than 0.003 with the shorter one.
  uint64_t sample_size() const {
    auto entries = by_bytes_ ? uint64_t{table_.size()} : capacity_;
    return std::max<uint64_t>(min_sample, entries);
  }

  void sample(bool hit) {
    // Only a full cache says anything about its split: before, every
    // request that misses is a cold start whatever the window.
    if (!full_) return;
    if (auto change = climber_.record(hit, sample_size()))
      resize_window(static_cast<int64_t>(window_cap_) + change);
  }

  // The lists follow lazily: a grown window fills from new entries while
  // main's victims go; a shrunk one drains into probation in `victim()`.
  void resize_window(int64_t target) {
    auto least = std::max<uint64_t>(1, capacity_ / 1000);
    auto most = capacity_ - least;
    window_cap_ = static_cast<uint64_t>(std::clamp<int64_t>(
      target, static_cast<int64_t>(least), static_cast<int64_t>(most)));
    main_cap_ = capacity_ - window_cap_;
    protected_cap_ = main_cap_ * 8 / 10;
    demote_overflow();
  }

  void move_to_probation(entry_id id) {
    auto w = weight_of(id);
    lists_[window].unlink(table_, id, w);
    lists_[probation].push_front(table_, id, w);
    table_.at(id).set_list(probation);
  }
  entry_id main_lru() const {
    if (!lists_[probation].empty()) return lists_[probation].tail;
    return lists_[protect].tail;
  }

  entry_table& table_;
  uint64_t entry_cap_; // entries the sketch grows to at most
  frequency_sketch sketch_;
  bool by_bytes_;
  uint64_t capacity_;
  window_climber climber_;
  bool full_ = false; // evicted at least once
  entry_list lists_[3];
  uint64_t window_cap_ = 0;
  uint64_t main_cap_ = 0;
  uint64_t protected_cap_ = 0;
};

} // namespace

std::unique_ptr<eviction_policy> eviction_policy::make(eviction_policy_kind kind,
                                                       entry_table& table,
                                                       uint64_t capacity,
                                                       bool weigh_bytes) {
  if (kind == eviction_policy_kind::lru) return std::make_unique<lru_policy>(table);
  return std::make_unique<tiny_lfu_policy>(table, capacity, weigh_bytes);
}

} // namespace karlton
