#include "actors/entry_table.hpp"

#include <algorithm>
#include <cassert>
#include <new>
#include <stdexcept>
#include <string>

#include "base/rcu.hpp"
#include "messages/value_slot.hpp"

namespace karlton {

namespace {

// Grow the index at 80 % load, by 1.5x: linear probing stays short (about 3
// probes on a miss at 0.8) and the index costs 5-7.5 bytes per entry.
constexpr size_t min_slots = 64;
bool over_load(size_t size, size_t slots) {
  return size * 5 >= slots * 4;
}

// Bits a reader compares between its two loads of a word: all but the
// policy list's, which the shard moves on hits and which readers ignore.
constexpr uint64_t reader_bits = ~(uint64_t{3} << 40);

// Values kept for retirement before the table retires them itself: a user
// that never calls `retire_unlinked` (a benchmark replaying a trace on a
// plain shard_state) holds at most this many removed values.
constexpr size_t retire_at = 4096;

} // namespace

// The slots in one allocation: a reader loads the pointer once per lookup.
struct entry_table::index {
  size_t size;
  std::atomic<entry_id>* slots() noexcept {
    return reinterpret_cast<std::atomic<entry_id>*>(this + 1);
  }
  static index* make(size_t n) {
    auto mem = ::operator new(sizeof(index) + n * sizeof(std::atomic<entry_id>));
    auto ix = new (mem) index{n};
    for (size_t i = 0; i < n; ++i)
      new (&ix->slots()[i]) std::atomic<entry_id>(no_entry);
    return ix;
  }
  struct deleter {
    void operator()(index* ix) const noexcept { ::operator delete(ix); }
  };
};

// The chunk pointers: replaced by a copy twice its capacity when full.
struct entry_table::directory {
  size_t capacity;
  std::atomic<entry*>* chunks() noexcept {
    return reinterpret_cast<std::atomic<entry*>*>(this + 1);
  }
  static directory* make(size_t n) {
    auto mem = ::operator new(sizeof(directory) + n * sizeof(std::atomic<entry*>));
    auto d = new (mem) directory{n};
    for (size_t i = 0; i < n; ++i)
      new (&d->chunks()[i]) std::atomic<entry*>(nullptr);
    return d;
  }
  struct deleter {
    void operator()(directory* d) const noexcept { ::operator delete(d); }
  };
};

// What changes unlinked since the last `retire_unlinked`, freed in one piece
// a grace period later. Values go before the chunks that held them.
struct entry_table::unlinked : rcu::garbage {
  std::vector<value> values;
  std::vector<std::unique_ptr<entry[]>> chunks;
  std::vector<std::unique_ptr<index, index::deleter>> indexes;
  std::vector<std::unique_ptr<directory, directory::deleter>> directories;

  ~unlinked() override {
    // A grace period after the shard let go of them the values are cold:
    // releasing them one by one waited for a cache miss each. Asking for a
    // few ahead lets the misses overlap.
    constexpr size_t ahead = 8;
    for (size_t i = 0; i < values.size(); ++i) {
      if (i + ahead < values.size()) value_slot::prefetch_to_release(values[i + ahead]);
      values[i] = value{};
    }
  }
};

entry_table::entry_table(uint64_t limit)
  : index_(index::make(min_slots)), dir_(directory::make(16)),
    limit_(std::min(limit, max_entries)) {}

entry_table::~entry_table() {
  auto d = dir_.load(std::memory_order_relaxed);
  for (size_t c = 0; c < chunks_; ++c)
    delete[] d->chunks()[c].load(std::memory_order_relaxed);
  directory::deleter{}(d);
  index::deleter{}(index_.load(std::memory_order_relaxed));
}

entry* entry_table::chunk(entry_id id) const noexcept {
  return dir_.load(std::memory_order_acquire)
    ->chunks()[id >> chunk_bits]
    .load(std::memory_order_acquire);
}

entry_table::unlinked& entry_table::to_retire() {
  if (!unlinked_) {
    unlinked_ = std::make_unique<unlinked>();
    // A doorbell's turn of overwrites usually retires a few values: one
    // block for up to 16, not one per doubling.
    unlinked_->values.reserve(16);
  }
  return *unlinked_;
}

void entry_table::retire_unlinked() {
  if (unlinked_) rcu::retire(std::move(unlinked_));
}

void entry_table::retire_value(const value& v) {
  // Everything in the list is unlinked already, so it may go at any time.
  auto& bin = to_retire();
  bin.values.push_back(v);
  if (bin.values.size() >= retire_at) retire_unlinked();
}

entry_id entry_table::find(std::string_view key, uint32_t hash) const noexcept {
  auto ix = index_.load(std::memory_order_relaxed);
  auto tag = entry::tag_of(hash);
  for (auto i = home_of_tag(tag, ix->size);; i = next_slot(i, ix->size)) {
    auto id = ix->slots()[i].load(std::memory_order_relaxed);
    if (id == no_entry) return no_entry;
    const auto& e = at(id);
    if (e.tag() == tag && e.val.table_hash() == hash && e.val.key() == key) return id;
  }
}

std::atomic<void (*)(int step)> entry_table::read_pause_{nullptr};

void entry_table::set_read_pause_for_testing(void (*pause)(int step)) noexcept {
  read_pause_.store(pause, std::memory_order_relaxed);
}

entry_table::found entry_table::read(std::string_view key, uint32_t hash) const noexcept {
  auto ix = index_.load(std::memory_order_acquire);
  auto tag = entry::tag_of(hash);
  auto i = home_of_tag(tag, ix->size);
  // Bounded: a writer shifting the cluster may keep a reader from meeting
  // an empty slot; after a full round it is a miss, asked of the shard.
  for (size_t probes = 0; probes < ix->size; ++probes, i = next_slot(i, ix->size)) {
    auto id = ix->slots()[i].load(std::memory_order_acquire);
    if (id == no_entry) return {};
    auto c = chunk(id);
    if (!c) return {}; // cleared since we loaded the index
    const auto& e = c[id & chunk_mask];
    auto w1 = e.word_acquire();
    if (!entry::live_of(w1) || entry::tag_in(w1) != tag) continue;
    if (auto pause = read_pause_.load(std::memory_order_relaxed)) pause(1);
    auto v = value_slot::load(e.val);
    if (!v || v.table_hash() != hash || v.key() != key) continue;
    if (auto pause = read_pause_.load(std::memory_order_relaxed)) pause(2);
    // The word again, then the value. The value still there, it was there
    // all along since we loaded it (a buffer we hold is never installed
    // again: `install` copies a shared one), so the word read between is its
    // own or, mid-replace, an earlier expiry (see `replace`). The word alone
    // is not enough: a replace and a replace back, or a removal and a put
    // that reuses the id, restore it while another value sat there between.
    // Either changed, the shard is changing this entry right now: it answers.
    if (((w1 ^ e.word_acquire()) & reader_bits) != 0 || !value_slot::holds(e.val, v))
      return {};
    return {std::move(v), entry::expiry_of(w1), id};
  }
  return {};
}

void entry_table::prefetch(uint32_t hash, int step) const noexcept {
  auto ix = index_.load(std::memory_order_acquire);
  auto i = home_of_tag(entry::tag_of(hash), ix->size);
  if (step == 0) return __builtin_prefetch(&ix->slots()[i]);
  auto id = ix->slots()[i].load(std::memory_order_acquire);
  if (id == no_entry) return;
  auto c = chunk(id);
  if (!c) return;
  if (step == 1) return __builtin_prefetch(&c[id & chunk_mask]);
  value_slot::prefetch(c[id & chunk_mask].val); // the shard may be storing it
}

void entry_table::place(index* ix, entry_id id) {
  auto i = home_of_tag(at(id).tag(), ix->size);
  while (ix->slots()[i].load(std::memory_order_relaxed) != no_entry)
    i = next_slot(i, ix->size);
  // Release: a reader that finds the id sees the entry it names, filled.
  ix->slots()[i].store(id, std::memory_order_release);
}

void entry_table::grow_index() {
  auto old = index_.load(std::memory_order_relaxed);
  auto grown = index::make(old->size + old->size / 2);
  for (size_t i = 0; i < old->size; ++i)
    if (auto id = old->slots()[i].load(std::memory_order_relaxed); id != no_entry)
      place(grown, id);
  // Published filled; readers that loaded the old one finish on it.
  index_.store(grown, std::memory_order_release);
  to_retire().indexes.emplace_back(old);
}

void entry_table::add_chunk() {
  auto d = dir_.load(std::memory_order_relaxed);
  if (chunks_ == d->capacity) {
    auto bigger = directory::make(2 * d->capacity);
    for (size_t c = 0; c < chunks_; ++c)
      bigger->chunks()[c].store(d->chunks()[c].load(std::memory_order_relaxed),
                                std::memory_order_relaxed);
    dir_.store(bigger, std::memory_order_release);
    to_retire().directories.emplace_back(d);
    d = bigger;
  }
  d->chunks()[chunks_++].store(new entry[size_t{1} << chunk_bits],
                               std::memory_order_release);
}

entry_id entry_table::insert(value v, uint64_t expiry_ms) {
  if (full())
    throw std::length_error("entry_table: " + std::to_string(limit_) +
                            " live entries, the most 32-bit entry ids allow");
  if (over_load(size_ + 1, index_.load(std::memory_order_relaxed)->size)) grow_index();
  entry_id id;
  if (free_head_ != no_entry) {
    id = free_head_;
    free_head_ = at(id).next;
  } else {
    id = next_fresh_++;
    if ((id >> chunk_bits) == chunks_) add_chunk();
  }
  auto& e = at(id);
  e.prev = e.next = no_entry;
  // Past 2^40 ms (34.8 years) is never; the word's 40 bits would wrap it.
  e.set_word(entry::make_word(std::min(expiry_ms, entry::never), 0, true,
                              entry::tag_of(v.table_hash())));
  value_slot::exchange(e.val, std::move(v)); // a dead entry holds no value
  place(index_.load(std::memory_order_relaxed), id);
  ++size_;
  return id;
}

value entry_table::replace(entry_id id, value v, uint64_t expiry_ms) {
  auto& e = at(id);
  auto w = e.word();
  auto nw = (w & ~entry::never) | std::min(expiry_ms, entry::never);
  // A reader loads the word, the value, the word again, and trusts the value
  // only if both words agree and the value is still there. Storing the earlier expiry
  // first makes every pair it can trust have the expiry of its value or an earlier one.
  value old;
  if (entry::expiry_of(nw) < entry::expiry_of(w)) {
    e.set_word(nw);
    old = value_slot::exchange(e.val, std::move(v));
  } else {
    old = value_slot::exchange(e.val, std::move(v));
    e.set_word(nw);
  }
  retire_value(old);
  return old;
}

void entry_table::set_expiry(entry_id id, uint64_t expiry_ms) noexcept {
  auto& e = at(id);
  e.set_word((e.word() & ~entry::never) | std::min(expiry_ms, entry::never));
}

value entry_table::remove(entry_id id) {
  auto& e = at(id);
  assert(e.live());
  // Find the slot, then close the gap by shifting later members of the
  // cluster back (no tombstones, so misses never slow down with churn).
  auto ix = index_.load(std::memory_order_relaxed);
  auto slots = ix->slots();
  auto n = ix->size;
  auto i = home_of_tag(e.tag(), n);
  while (slots[i].load(std::memory_order_relaxed) != id)
    i = next_slot(i, n);
  for (auto j = next_slot(i, n);; j = next_slot(j, n)) {
    auto other = slots[j].load(std::memory_order_relaxed);
    if (other == no_entry) break;
    auto home = home_of_tag(at(other).tag(), n);
    // `other` may move to i only if i lies cyclically in [home, j).
    bool movable = i <= j ? (home <= i || home > j) : (home <= i && home > j);
    if (movable) {
      slots[i].store(other, std::memory_order_release);
      i = j;
    }
  }
  slots[i].store(no_entry, std::memory_order_release);
  // Dead before the value goes: a reader that loads the value afterwards
  // finds the word changed, one that loaded it before may return it (the
  // removal had not finished), and none trusts a dead entry.
  e.set_word(entry::make_word(entry::never, 0, false, 0));
  value out = value_slot::exchange(e.val, value{});
  retire_value(out);
  e.prev = no_entry;
  e.next = free_head_;
  free_head_ = id;
  --size_;
  return out;
}

void entry_table::clear() {
  auto& bin = to_retire();
  bin.indexes.emplace_back(index_.load(std::memory_order_relaxed));
  index_.store(index::make(min_slots), std::memory_order_release);
  // The directory stays (it only ever grows), so an id a reader took from an
  // old index is always within it; its chunk is gone, or a new one whose
  // entry the reader checks like any other.
  auto d = dir_.load(std::memory_order_relaxed);
  for (size_t c = 0; c < chunks_; ++c)
    bin.chunks.emplace_back(d->chunks()[c].exchange(nullptr, std::memory_order_acq_rel));
  chunks_ = 0;
  free_head_ = no_entry;
  next_fresh_ = 0;
  size_ = 0;
}

size_t entry_table::metadata_bytes() const noexcept {
  return chunks_ * (sizeof(entry) << chunk_bits) +
         index_.load(std::memory_order_relaxed)->size * sizeof(entry_id) +
         dir_.load(std::memory_order_relaxed)->capacity * sizeof(entry*);
}

void entry_list::push_front(entry_table& t, entry_id id, uint64_t w) noexcept {
  auto& e = t.at(id);
  e.prev = no_entry;
  e.next = head;
  if (head != no_entry) t.at(head).prev = id;
  head = id;
  if (tail == no_entry) tail = id;
  weight += w;
  ++count;
}

void entry_list::unlink(entry_table& t, entry_id id, uint64_t w) noexcept {
  auto& e = t.at(id);
  if (e.prev != no_entry)
    t.at(e.prev).next = e.next;
  else
    head = e.next;
  if (e.next != no_entry)
    t.at(e.next).prev = e.prev;
  else
    tail = e.prev;
  e.prev = e.next = no_entry;
  weight -= w;
  --count;
}

void entry_list::move_to_front(entry_table& t, entry_id id) noexcept {
  if (head == id) return;
  auto& e = t.at(id);
  // Unlink without touching the totals, then relink at the front.
  t.at(e.prev).next = e.next; // e is not the head, so prev exists
  if (e.next != no_entry)
    t.at(e.next).prev = e.prev;
  else
    tail = e.prev;
  e.prev = no_entry;
  e.next = head;
  t.at(head).prev = id;
  head = id;
}

} // namespace karlton
