#include "actors/entry_table.hpp"

#include <algorithm>
#include <cassert>
#include <stdexcept>
#include <string>

namespace karlton {

namespace {

// Grow the index at 80 % load, by 1.5x: linear probing stays short (about 3
// probes on a miss at 0.8) and the index costs 5-7.5 bytes per entry.
constexpr size_t min_slots = 64;
bool over_load(size_t size, size_t slots) {
  return size * 5 >= slots * 4;
}

} // namespace

entry_table::entry_table(uint64_t limit)
  : slots_(min_slots, no_entry), limit_(std::min(limit, max_entries)) {}

entry_id entry_table::find(std::string_view key, uint32_t hash) const noexcept {
  auto tag = entry::tag_of(hash);
  for (auto i = home_of(hash);; i = next_slot(i)) {
    auto id = slots_[i];
    if (id == no_entry) return no_entry;
    const auto& e = at(id);
    if (e.tag == tag && e.val.table_hash() == hash && e.val.key() == key) return id;
  }
}

void entry_table::place(entry_id id) {
  auto i = home_of_tag(at(id).tag);
  while (slots_[i] != no_entry)
    i = next_slot(i);
  slots_[i] = id;
}

void entry_table::grow_index() {
  std::vector<entry_id> old(slots_.size() + slots_.size() / 2, no_entry);
  old.swap(slots_);
  for (auto id : old)
    if (id != no_entry) place(id);
}

entry_id entry_table::insert(value v) {
  if (full())
    throw std::length_error("entry_table: " + std::to_string(limit_) +
                            " live entries, the most 32-bit entry ids allow");
  if (over_load(size_ + 1, slots_.size())) grow_index();
  entry_id id;
  if (free_head_ != no_entry) {
    id = free_head_;
    free_head_ = at(id).next;
  } else {
    id = next_fresh_++;
    if ((id >> chunk_bits) == chunks_.size())
      chunks_.emplace_back(new entry[size_t{1} << chunk_bits]);
  }
  auto& e = at(id);
  e = entry{};
  e.tag = entry::tag_of(v.table_hash());
  e.val = std::move(v);
  e.live = 1;
  place(id);
  ++size_;
  return id;
}

value entry_table::remove(entry_id id) {
  auto& e = at(id);
  assert(e.live);
  // Find the slot, then close the gap by shifting later members of the
  // cluster back (no tombstones, so misses never slow down with churn).
  auto i = home_of_tag(e.tag);
  while (slots_[i] != id)
    i = next_slot(i);
  for (auto j = next_slot(i);; j = next_slot(j)) {
    auto other = slots_[j];
    if (other == no_entry) break;
    auto home = home_of_tag(at(other).tag);
    // `other` may move to i only if i lies cyclically in [home, j).
    bool movable = i <= j ? (home <= i || home > j) : (home <= i && home > j);
    if (movable) {
      slots_[i] = other;
      i = j;
    }
  }
  slots_[i] = no_entry;
  value out = std::move(e.val);
  e = entry{};
  e.next = free_head_;
  free_head_ = id;
  --size_;
  return out;
}

void entry_table::clear() {
  chunks_.clear();
  slots_.assign(min_slots, no_entry);
  free_head_ = no_entry;
  next_fresh_ = 0;
  size_ = 0;
}

size_t entry_table::metadata_bytes() const noexcept {
  return chunks_.size() * (sizeof(entry) << chunk_bits) +
         slots_.size() * sizeof(entry_id);
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
