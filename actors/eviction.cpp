#include "actors/eviction.hpp"

#include <algorithm>

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

// -- ghost_filter -------------------------------------------------------------

namespace {

// Slots per entry of horizon: with 2, a hash survives the other adds of its
// horizon with probability about exp(-1/2).
constexpr uint64_t ghost_slots_per_horizon = 2;

uint32_t ghost_mark(uint32_t hash) noexcept {
  return hash != 0 ? hash : 1;
}

} // namespace

ghost_filter::ghost_filter(uint64_t horizon)
  : slots_(std::max<uint64_t>(horizon * ghost_slots_per_horizon, 1)),
    // Sequence numbers wrap at 2^32: a hash left untouched for 2^32 adds may
    // count once more, which only nudges the window.
    horizon_(static_cast<uint32_t>(std::min<uint64_t>(horizon, UINT32_MAX / 2))) {}

size_t ghost_filter::slot_of(uint32_t hash) const noexcept {
  // A mix independent of the sketch's and the table's use of the hash.
  auto x = splitmix64(hash ^ 0x5851f42d4c957f2dull);
  return static_cast<size_t>((static_cast<__uint128_t>(x) * slots_.size()) >> 64);
}

void ghost_filter::add(uint32_t hash) noexcept {
  slots_[slot_of(hash)] = {ghost_mark(hash), added_++};
}

bool ghost_filter::take(uint32_t hash) noexcept {
  auto& s = slots_[slot_of(hash)];
  if (s.hash != ghost_mark(hash)) return false;
  s.hash = 0;
  return static_cast<uint32_t>(added_ - s.seq) <= horizon_;
}

void ghost_filter::clear() noexcept {
  std::fill(slots_.begin(), slots_.end(), slot{});
  added_ = 0;
}

// -- window_climber -----------------------------------------------------------

namespace {

// `percent` % of `x`, rounded down, without the overflow of `x * percent`
// (capacities under max-bytes are byte counts: up to 2^48 from the options,
// and the policy takes any).
uint64_t percent_of(uint64_t x, uint64_t percent) {
  return x / 100 * percent + x % 100 * percent / 100;
}

// The window stays between 0.2 % and 99 % of the capacity: 0.2 % keeps a
// newcomer in the window for a few hundred requests even in a small cache,
// 99 % leaves main room for what the sketch knows to be hot.
uint64_t min_window(uint64_t capacity) {
  return std::max<uint64_t>(1, capacity / 500);
}
uint64_t max_window(uint64_t capacity) {
  return std::max<uint64_t>(1, percent_of(capacity, 99));
}
// Steps run from 1/100,000 of the capacity (fine enough for the balance of a
// skewed trace at 10 % of its keys) to 1 %, or to half the window once that is
// more. Small windows (skewed traces) thus take small steps (Caffeine's first
// step is 6.25 %; steps up to 5 % let the scan trace's window overshoot:
// -0.003 at 10 %), while a window that must grow to nearly the whole cache (a
// hot set that moves) grows by half each decision: it got there in about 17
// decisions instead of 104 at 1 % of 1M keys, and the moving hot set went from
// 0.004-0.012 below LRU to 0.0013 below - 0.0013 above, the skewed traces and
// the loop unchanged (karlton-bench hit-ratio; docs/benchmarks.md). A turn
// halves the step, so a window that sat at 99 % and turns gives back about a
// quarter of the cache at once.
uint64_t min_step(uint64_t capacity) {
  return std::max<uint64_t>(1, capacity / 100'000);
}
uint64_t max_step(uint64_t capacity, uint64_t window) {
  return std::max<uint64_t>({1, capacity / 100, window / 2});
}
// The vote: of `period` findings, at least 22 must be the window's for it to
// grow (two standard deviations of a fair coin above half), at least 18 main's
// for it to shrink. Growing costs entries the sketch chose and shrinking gives them back,
// so the window must make its case; with equal margins of 6, a skewed trace
// whose sides find about as often lost 0.001-0.002 at 10 % to the wandering
// (karlton-bench hit-ratio, docs/benchmarks.md).
constexpr int grow_margin = 10;
constexpr int shrink_margin = 2;

} // namespace

window_climber::window_climber(uint64_t capacity)
  : capacity_(std::max<uint64_t>(capacity, 1)) {
  reset();
}

void window_climber::reset() noexcept {
  window_ = std::max<uint64_t>(1, capacity_ / 100);
  step_ = min_step(capacity_);
  score_ = votes_ = last_direction_ = 0;
}

void window_climber::vote(int side) noexcept {
  score_ += side;
  if (++votes_ < period) return;
  int direction = score_ > grow_margin ? 1 : score_ < -shrink_margin ? -1 : 0;
  score_ = votes_ = 0;
  if (direction == 0) return;
  step_ = direction == last_direction_ ? std::min(max_step(capacity_, window_), step_ * 2)
                                       : std::max(min_step(capacity_), step_ / 2);
  last_direction_ = direction;
  auto low = min_window(capacity_);
  auto high = max_window(capacity_);
  if (direction > 0) // never past `high` (it starts below), never overflowing
    window_ += std::min(step_, high - window_);
  else
    window_ = window_ > low + step_ ? window_ - step_ : low;
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
// that grew large may stay large when a skewed workload follows: main's
// ghosts, 1 % of the cache, do not outvote the window's (docs/benchmarks.md).
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
  }

  void on_hit(entry_id id) override {
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

  void on_update(entry_id id, uint64_t old_w, uint64_t new_w) override {
    lists_[table_.at(id).list()].weight += new_w - old_w;
    on_hit(id);
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
