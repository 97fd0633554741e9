#include "actors/eviction.hpp"

#include <algorithm>

#include "actors/adaptive_window.hpp"
#include "messages/hash.hpp"

namespace karlton {

const char* to_string(eviction_policy_kind x) noexcept {
  return x == eviction_policy_kind::lru ? "lru" : "tinylfu";
}

// -- frequency_sketch ---------------------------------------------------------

namespace {

using hashing::splitmix64;

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
    auto x = splitmix64(hash + row * 0x9e3779b97f4a7c15ull);
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
    auto x = splitmix64(hash + row * 0x9e3779b97f4a7c15ull);
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
// segmented LRU (3 % probation, 97 % protected). A window overflow enters
// main only if the sketch has seen it more often than main's LRU victim, and
// more often than `admission_floor`. The window starts at 1 % of the capacity
// (Caffeine's default) and adapts between 0.2 % and 99 % (window_climber),
// from ghosts of what each side evicted lately: on a hot set that moves, the
// window grows until the policy is LRU but for the climb (at 1 %: 0.244 ->
// 0.4307, LRU 0.4319); on skewed traces and loops it stays small. A window
// held large starts over when the hit rate changes (window_climber), since a
// skewed workload that follows a moving hot set does not show in the ghosts.
// Caffeine's hill climbing on the sampled hit rate was built first and lost the loop
// (docs/benchmarks.md): a loop's hit rate swings with its phase, while its
// ghosts find nothing, since no key returns within their horizon.
class tiny_lfu_policy final : public eviction_policy {
public:
  tiny_lfu_policy(entry_table& t, uint64_t capacity, bool weigh_bytes)
    : table_(t), entry_cap_(weigh_bytes ? frequency_sketch::max_capacity
                                        : std::max<uint64_t>(capacity, 1)),
      sketch_(weigh_bytes ? initial_sketch : std::min(entry_cap_, eager_sketch)),
      by_bytes_(weigh_bytes), capacity_(std::max<uint64_t>(capacity, 1)),
      climber_(capacity_), window_ghost_(ghost_horizon()), main_ghost_(ghost_horizon()) {
    set_window(climber_.window());
  }

  void on_insert(entry_id id, uint64_t w) override {
    // Sized by entries, not weights (bytes): 8 bytes of sketch per byte of
    // budget, aged every 10 x bytes accesses, froze hot keys at 15 forever.
    // Grown with the table beyond what was allocated up front (see
    // eager_sketch), so a huge max-entries costs nothing until entries come.
    if (table_.size() > sketch_.capacity() && sketch_.capacity() < entry_cap_) {
      sketch_.ensure_capacity(
        std::min<uint64_t>(entry_cap_, 2 * uint64_t{table_.size()}));
      window_ghost_ = ghost_filter{ghost_horizon()};
      main_ghost_ = ghost_filter{ghost_horizon()};
    }
    auto h = hash_of(id);
    sketch_.increment(h);
    adapt_window(h);
    lists_[window].push_front(table_, id, w);
    table_.at(id).set_list(window);
    count_request(false);
  }

  void on_hit(entry_id id) override {
    touch(id);
    count_request(true);
  }

  // A write is no read: it moves the entry as a hit does but is left out of
  // the hit rate, so that a change in the mix of writes cannot pass for a
  // change of the workload (window_climber::end_sample).
  void on_update(entry_id id, uint64_t old_w, uint64_t new_w) override {
    lists_[table_.at(id).list()].weight += new_w - old_w;
    touch(id);
  }

  void on_remove(entry_id id, uint64_t w) override {
    lists_[table_.at(id).list()].unlink(table_, id, w);
  }

  entry_id victim() override {
    auto& win = lists_[window];
    // While main has room, window overflow moves in without a contest. Once
    // the cache has been full, that room comes from a window that shrank or
    // an entry that left, and goes only to an overflow the sketch has seen
    // twice; one seen once is the victim, and the window keeps the room
    // meanwhile. Moves in for nothing had let 37k keys read once into main on
    // the scan trace at 10 % (0.7842 -> 0.7863; docs/benchmarks.md).
    while (win.weight > window_cap_ && !win.empty() &&
           main_weight() + weight_of(win.tail) <= main_cap_) {
      // The window's only entry is the one just put: kept for its first read,
      // as below.
      if (filled_ && win.count > 1 && sketch_.frequency(hash_of(win.tail)) < 2) {
        window_ghost_.add(hash_of(win.tail));
        return win.tail;
      }
      move_to_probation(win.tail);
    }
    filled_ = true; // asked for a victim: the cache is full
    // The window's only entry is the one just put (heavier than the window
    // under max-bytes): it is never contested, or it would leave before its
    // first read.
    if (win.weight > window_cap_ && win.count > 1) {
      auto candidate = win.tail;
      auto main_victim = main_lru();
      if (main_victim == no_entry) return candidate;
      if (!admit(candidate, main_victim)) {
        window_ghost_.add(hash_of(candidate));
        return candidate;
      }
      move_to_probation(candidate);
      main_ghost_.add(hash_of(main_victim));
      return main_victim;
    }
    auto v = main_lru();
    if (v != no_entry) {
      main_ghost_.add(hash_of(v));
      return v;
    }
    window_ghost_.add(hash_of(win.tail));
    return win.tail;
  }

  void clear() override {
    filled_ = false;
    for (auto& l : lists_)
      l.reset();
    sketch_.clear();
    window_ghost_.clear();
    main_ghost_.clear();
    climber_.reset();
    sample_hits_ = sample_requests_ = 0;
    set_window(climber_.window());
  }

  size_t metadata_bytes() const noexcept override {
    return sketch_.bytes() + window_ghost_.bytes() + main_ghost_.bytes();
  }

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
  // A newcomer the sketch counts 2 or less never displaces a main entry. Such
  // low counts say little: a count-min estimate of a key seen once is often 1-2
  // from collisions, and right after the sketch halves, every main entry reads
  // 0 while a newcomer just counted reads 1. Without the floor, on a loop
  // longer than the sketch's memory every newcomer won and main churned like
  // LRU (hit ratio 0 at 1 %, karlton-bench hit-ratio --trace loop); with it,
  // main keeps a fixed subset (0.0465; the most any cache gets is 0.048).
  // Skewed traces gain at small sizes (zipf 1 % 0.6511 -> 0.6569, scan 1 %
  // 0.6270 -> 0.6340) and lose a little at 10-20 % (zipf -0.0016) and on a
  // moving hot set (-0.003); floors of 1 and 3 did worse (docs/benchmarks.md).
  static constexpr unsigned admission_floor = 2;
  // One in this many newcomers stopped only by the floor is admitted. The
  // floor alone kept a dead hot set against a loop of 20 x the cache that
  // came after it (0.06 of a fixed subset's hits after 8 passes; 0.38 with
  // the escapes, 0.91 after 20); the loop itself loses little (1 %: 0.0465,
  // 0.0473 without; one in 64: 0.0447).
  static constexpr uint64_t floor_escape = 256;
  // Main's share kept for entries read twice (the protected segment); the
  // rest (probation) holds the newcomers main admitted until their second
  // read. Caffeine keeps 80 %. Before the window adapted, a larger share cost
  // the moving hot set dearly (95 %: 0.2440 -> 0.1836 at 1 %); now the window
  // grows there instead, and 97 % gains on the skewed traces (zipf 1 %
  // 0.6573 -> 0.6592, scan 1 % 0.6344 -> 0.6380) for 0.001 of the moving hot
  // set at 1 % (karlton-bench hit-ratio; docs/benchmarks.md).
  static constexpr uint64_t protected_percent = 97;

  // Admission: the newcomer must be seen more often than what it displaces,
  // and more often than the floor; one in `floor_escape` of the newcomers
  // stopped only by the floor gets in anyway, so that a main full of keys
  // nobody reads any more (the workload moved on to keys read once or twice
  // per sketch period) still drains.
  bool admit(entry_id candidate, entry_id main_victim) {
    auto ours = sketch_.frequency(hash_of(candidate));
    if (ours <= sketch_.frequency(hash_of(main_victim))) return false;
    if (ours > admission_floor) return true;
    escape_ = escape_ * 6364136223846793005ull + 1442695040888963407ull; // an LCG
    return (escape_ >> 33) % floor_escape == 0;
  }

  // Evictions each ghost remembers: 2 % of the entries the sketch is sized
  // for, about two of a small window's largest steps: reuse further off says
  // little about the next step. 1 % left the moving hot set 0.01 further
  // below LRU, 4 % cost the scan trace 0.002 at 10 % (karlton-bench
  // hit-ratio; both measured with steps of at most 1 %).
  uint64_t ghost_horizon() const {
    return std::max<uint64_t>(1, sketch_.capacity() / 50);
  }

  // A newcomer either ghost remembers is a vote on the window's size.
  void adapt_window(uint32_t h) {
    if (window_ghost_.take(h))
      climber_.window_would_have_hit();
    else if (main_ghost_.take(h))
      climber_.main_would_have_hit();
    else
      return;
    if (climber_.window() != window_cap_) set_window(climber_.window());
  }

  // Counts the access and moves the entry up its list.
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

  // Requests per sample of the hit rate (window_climber::end_sample): 5 for
  // each entry the sketch is sized for, half its aging period, and at least
  // `min_sample`. On karlton-bench's shift trace samples of 10 x (Caffeine's)
  // restarted later (at 10 % of the keys +0.0057 over LRU, against +0.0108),
  // and samples of 1-2 x restarted at 20 % too, where the new climb did not
  // pay (-0.0008 to -0.0028; docs/benchmarks.md).
  static constexpr uint64_t sample_per_entry = 5;
  static constexpr uint64_t min_sample = 5000;
  void count_request(bool hit) {
    sample_hits_ += hit ? 1 : 0;
    auto length = std::max(min_sample, sample_per_entry * sketch_.capacity());
    if (++sample_requests_ < length) return;
    climber_.end_sample(sample_hits_, sample_requests_);
    sample_hits_ = sample_requests_ = 0;
    if (climber_.window() != window_cap_) set_window(climber_.window());
  }

  // A smaller main than it holds sheds its overflow as victims (`victim`);
  // a smaller window moves its overflow into main while main has room.
  void set_window(uint64_t w) {
    window_cap_ = w;
    main_cap_ = capacity_ > window_cap_ ? capacity_ - window_cap_ : 1;
    protected_cap_ = percent_of(main_cap_, protected_percent);
    demote_overflow();
  }

  void demote_overflow() {
    while (lists_[protect].weight > protected_cap_ && lists_[protect].count > 1) {
      auto demoted = lists_[protect].tail;
      auto dw = weight_of(demoted);
      lists_[protect].unlink(table_, demoted, dw);
      lists_[probation].push_front(table_, demoted, dw);
      table_.at(demoted).set_list(probation);
    }
  }

  uint32_t hash_of(entry_id id) const { return table_.at(id).val.table_hash(); }
  // Moves between lists need the weight the shard used in the hooks.
  uint64_t weight_of(entry_id id) const {
    return by_bytes_ ? table_.at(id).val.charge() : 1;
  }
  uint64_t main_weight() const {
    return lists_[probation].weight + lists_[protect].weight;
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
  entry_list lists_[3];
  uint64_t escape_ = 0; // the floor's escapes: a fixed sequence, so replays repeat
  uint64_t capacity_;
  window_climber climber_;
  ghost_filter window_ghost_; // the window's rejected newcomers
  ghost_filter main_ghost_;   // main's victims
  bool filled_ = false;       // asked for a victim since the start or a clear
  uint64_t sample_hits_ = 0;  // of this sample's requests
  uint64_t sample_requests_ = 0;
  uint64_t window_cap_ = 1;
  uint64_t main_cap_ = 1;
  uint64_t protected_cap_ = 1;
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
