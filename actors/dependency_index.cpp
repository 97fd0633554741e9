#include "actors/dependency_index.hpp"

#include <algorithm>
#include <cassert>
#include <functional>
#include <utility>

namespace karlton {

namespace {

/// The name index grows at 80 % load and shrinks below 20 %, by 2x: linear
/// probing stays short (about 3 probes on a miss at 0.8; see entry_table),
/// and at 8 bytes a slot the index costs 10-40 bytes per name.
constexpr size_t min_index = 64;
bool over_load(size_t size, size_t slots) {
  return size * 5 >= slots * 4;
}
bool under_load(size_t size, size_t slots) {
  return size * 5 < slots;
}

/// Bytes glibc's malloc takes for a request of `n`: 8 bytes of header,
/// rounded up to 16, at least 32.
size_t chunk(size_t n) {
  if (n == 0) return 0;
  return std::max<size_t>(32, (n + 8 + 15) & ~size_t{15});
}

template <class T>
size_t heap_bytes(const std::vector<T>& xs) {
  return chunk(xs.capacity() * sizeof(T));
}

/// Gives back all memory of `x`. (`x = {}` would assign an empty initializer
/// list, which keeps a vector's capacity and a map's buckets.)
template <class T>
void reset(T& x) {
  T{}.swap(x);
}

/// Vectors never give back capacity on their own: a name that had 100k
/// dependents would keep 400 KB for its last one. Shrinking at 1/4 (growth
/// doubles) costs O(size) once per 3/4 of the elements gone, O(1) each.
template <class T>
void shrink(std::vector<T>& xs) {
  if (xs.capacity() > 64 && xs.size() < xs.capacity() / 4) xs.shrink_to_fit();
}

} // namespace

// -- link lists ---------------------------------------------------------------

dependency_index::link_list::link_list(uint32_t capacity) {
  if (capacity <= 1) return; // empty, room for one link inline
  auto data = new link[size_t{capacity} + 1];
  data[0] = link{0, capacity};
  word_ = reinterpret_cast<uintptr_t>(data);
  assert(!is_inline()); // new[] aligns to at least 8
}

uint32_t dependency_index::link_list::size() const noexcept {
  if (word_ == 0) return 0;
  return is_inline() ? 1 : array()[0].name;
}

uint32_t dependency_index::link_list::capacity() const noexcept {
  return is_inline() || word_ == 0 ? 1 : array()[0].pos;
}

dependency_index::link dependency_index::link_list::at(uint32_t i) const noexcept {
  assert(i < size());
  if (is_inline())
    return link{static_cast<name_id>(word_ >> 1) & ~(name_id{1} << 31),
                static_cast<uint32_t>(word_ >> 32)};
  return array()[1 + i];
}

void dependency_index::link_list::push_back(link l) noexcept {
  assert(l.name < (name_id{1} << 31) && size() < capacity());
  if (word_ == 0) {
    word_ = inline_word(l);
    return;
  }
  auto data = array();
  data[1 + data[0].name++] = l;
}

void dependency_index::link_list::erase(name_id n) noexcept {
  if (is_inline()) {
    assert(at(0).name == n);
    word_ = 0;
    return;
  }
  auto data = array();
  auto first = data + 1, last = first + data[0].name;
  auto i = std::find_if(first, last, [n](const link& l) { return l.name == n; });
  assert(i != last);
  std::copy(i + 1, last, i);
  --data[0].name;
}

void dependency_index::link_list::set_pos(name_id n, uint32_t pos) noexcept {
  if (is_inline()) {
    assert(at(0).name == n);
    word_ = inline_word(link{n, pos});
    return;
  }
  auto data = array();
  auto first = data + 1, last = first + data[0].name;
  auto i = std::find_if(first, last, [n](const link& l) { return l.name == n; });
  assert(i != last);
  i->pos = pos;
}

// -- links --------------------------------------------------------------------

void dependency_index::set(entry_id id, const std::vector<std::string>& names) {
  if (names.empty()) return forget(id);
  assert(names.size() < UINT32_MAX);
  if (by_entry_.size() <= id) by_entry_.resize(size_t{id} + 1);
  // Unlink the old names but keep them until the new ones are in: a name
  // that stays would otherwise be freed and interned again.
  auto old = std::move(by_entry_[id]);
  if (old.size() == 0) ++entries_;
  for (uint32_t i = 0; i < old.size(); ++i)
    unlink(id, old.at(i));
  link_list links{static_cast<uint32_t>(names.size())};
  for (const auto& name : names) {
    auto n = intern(name);
    auto& deps = slots_[n].dependents;
    // Every link of `id` was removed above, so `id` is among the dependents
    // only if this loop added it, as the last one.
    if (!deps.empty() && deps.back() == id) continue;
    links.push_back(link{n, static_cast<uint32_t>(deps.size())});
    deps.push_back(id);
  }
  links_ += links.size();
  by_entry_[id] = std::move(links);
  for (uint32_t i = 0; i < old.size(); ++i)
    if (auto n = old.at(i).name; slots_[n].dependents.empty()) release(n);
}

void dependency_index::forget(entry_id id) {
  if (!has(id)) return;
  const auto& links = by_entry_[id];
  for (uint32_t i = 0; i < links.size(); ++i) {
    auto l = links.at(i);
    unlink(id, l);
    if (slots_[l.name].dependents.empty()) release(l.name);
  }
  drop(id);
}

std::vector<entry_id> dependency_index::take_dependents(std::string_view name) {
  auto n = find(name, hash_of(name));
  if (n == no_name) return {};
  auto deps = std::move(slots_[n].dependents); // leaves it empty
  links_ -= deps.size();
  for (auto id : deps) {
    auto& links = by_entry_[id];
    links.erase(n);
    if (links.size() == 0) drop(id);
  }
  release(n);
  return deps;
}

void dependency_index::unlink(entry_id id, const link& l) {
  auto& deps = slots_[l.name].dependents;
  assert(l.pos < deps.size() && deps[l.pos] == id);
  auto last = deps.back();
  if (last != id) {
    deps[l.pos] = last;
    by_entry_[last].set_pos(l.name, l.pos);
  }
  deps.pop_back();
  --links_;
  shrink(deps);
}

void dependency_index::drop(entry_id id) {
  by_entry_[id] = link_list{};
  --entries_;
  while (!by_entry_.empty() && by_entry_.back().size() == 0)
    by_entry_.pop_back();
  if (by_entry_.empty())
    reset(by_entry_);
  else
    shrink(by_entry_);
}

// -- names --------------------------------------------------------------------

uint32_t dependency_index::hash_of(std::string_view name) noexcept {
  // Keyed (hash_key): tag and event names come from clients too.
  return static_cast<uint32_t>(hash_key(name));
}

dependency_index::name_id dependency_index::find(std::string_view name,
                                                 uint32_t hash) const noexcept {
  if (index_.empty()) return no_name;
  for (auto i = home_of(hash);; i = next_slot(i)) {
    auto s = index_[i];
    if (s.name == no_name) return no_name;
    if (s.hash == hash && slots_[s.name].text == name) return s.name;
  }
}

void dependency_index::place(index_slot s) {
  auto i = home_of(s.hash);
  while (index_[i].name != no_name)
    i = next_slot(i);
  index_[i] = s;
}

void dependency_index::resize_index(size_t slots) {
  std::vector<index_slot> old(slots);
  old.swap(index_);
  for (auto s : old)
    if (s.name != no_name) place(s);
}

dependency_index::name_id dependency_index::intern(const std::string& name) {
  auto hash = hash_of(name);
  if (auto n = find(name, hash); n != no_name) return n;
  if (over_load(names_ + 1, index_.size()))
    resize_index(std::max(min_index, index_.size() * 2));
  name_id n;
  if (free_.empty()) {
    assert(slots_.size() < (size_t{1} << 31)); // see link_list
    n = static_cast<name_id>(slots_.size());
    slots_.emplace_back();
  } else {
    n = free_.back();
    free_.pop_back();
  }
  slots_[n].text = name;
  place(index_slot{n, hash});
  ++names_;
  if (hook_) hook_(name, true);
  return n;
}

void dependency_index::release(name_id n) {
  assert(slots_[n].dependents.empty());
  if (hook_) hook_(slots_[n].text, false);
  auto hash = hash_of(slots_[n].text);
  // Find the index slot, then close the gap by shifting later members of the
  // cluster back, as entry_table::remove does (no tombstones).
  auto i = home_of(hash);
  while (index_[i].name != n)
    i = next_slot(i);
  for (auto j = next_slot(i);; j = next_slot(j)) {
    auto other = index_[j];
    if (other.name == no_name) break;
    auto home = home_of(other.hash);
    // `other` may move to i only if i lies cyclically in [home, j).
    bool movable = i <= j ? (home <= i || home > j) : (home <= i && home > j);
    if (movable) {
      index_[i] = other;
      i = j;
    }
  }
  index_[i] = index_slot{};
  slots_[n] = name_slot{};
  if (--names_ == 0) {
    // The slots and the free list keep their peak size until now.
    reset(slots_);
    reset(free_);
    reset(index_);
    return;
  }
  free_.push_back(n);
  if (index_.size() > min_index && under_load(names_, index_.size()))
    resize_index(index_.size() / 2);
}

// -- the whole index ----------------------------------------------------------

size_t dependency_index::memory_bytes() const {
  size_t n =
    heap_bytes(slots_) + heap_bytes(free_) + heap_bytes(index_) + heap_bytes(by_entry_);
  for (const auto& slot : slots_) {
    if (slot.text.capacity() > std::string{}.capacity())
      n += chunk(slot.text.capacity() + 1);
    n += heap_bytes(slot.dependents);
  }
  for (const auto& links : by_entry_)
    if (links.capacity() > 1) n += chunk((links.capacity() + 1) * sizeof(link));
  return n;
}

void dependency_index::clear() {
  if (hook_)
    for (const auto& slot : slots_)
      if (!slot.dependents.empty()) hook_(slot.text, false);
  reset(slots_);
  reset(free_);
  reset(index_);
  reset(by_entry_);
  names_ = 0;
  entries_ = 0;
  links_ = 0;
}

} // namespace karlton
