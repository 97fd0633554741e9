// The per-shard state of dependency-based invalidation: which entries depend
// on which names (events, tags, keys), and back. No actors here: the shard
// translates puts, removals and invalidations into these calls, and tests drive it
// directly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "actors/entry_table.hpp"

namespace karlton {

/// The entries of one shard that declared dependencies, the names they depend
/// on, and for each name its dependents. Names are opaque strings: the shard
/// decides how events, tags and keys are spelled. Entry ids are the shard's
/// `entry_table` ids, which are dense and reused.
///
/// Why eager indexes rather than lazy tag versions (Symfony's approach: an
/// invalidation bumps the tag's version, every read compares the versions its entry
/// recorded). Measured with -O2 on 2 cores shared with other builds, p50 of
/// 20 runs:
/// - `take_dependents` of a tag with 100k dependents, then `forget` of each:
///   2.3 ms if the tag is their only dependency, 4.9 ms if each also depends
///   on two shared names (of 1000 and 10), 16 ms if one of those is its own
///   (100k names released, ~120 ns each). The shard's removals come on top;
///   the target for the whole invalidation, spread over all shards, is 20 ms.
/// - Memory, 1M links with 3 names per entry: 29 bytes per link with 11k
///   distinct names, 69 with one name per entry its own (334k names, ~120
///   bytes each); malloc's own count agrees with `memory_bytes` within 1 %.
/// Lazy versions make an invalidation O(1) and would store ~12 bytes per link (name
/// id and version), but they keep dead entries in memory, counted against
/// the size bound and pushing live ones out, until a read finds them or
/// eviction reaches them; they add a version check per dependency to every
/// read, hit or miss; they cannot call the removal callback at invalidation time;
/// and a transitive cascade (A depends on key B depends on C) becomes a chain
/// of checks on every read of A. An eager index makes a synchronous invalidation
/// final: when it returns the entries are gone and their memory is
/// reclaimed. An invalidation this fast does not need O(1), so the per-read and
/// per-byte costs decide.
///
/// Representation: names are interned to 32-bit ids (one copy of each name),
/// found through a linear-probing index of (id, hash). Each name has a vector
/// of its dependents; each entry a list of links (name id, position of the
/// entry in that name's vector), so unlinking is a swap with the name's last
/// dependent, O(1), whose link is found in its short list. Entries are found
/// by id in a vector: 8 bytes per id up to the highest with links, whether
/// it has links or not; an entry's only link is kept there too (no
/// allocation: 8 instead of 40 bytes for such an entry). A hash map from
/// entry to links measured 38 instead of 29 bytes per link and invalidations of a
/// lone tag 2-3x slower (a lookup is 2-3 cache misses), and entry ids are
/// dense.
///
/// Hygiene: a name, link list or vector left empty is freed at once; the
/// name index and the dependents vectors shrink as they empty, the entry
/// vector to the highest id with links. Like the entry table's arena, the
/// name slots (56 bytes) keep their peak number, reused first, until no name
/// is left.
///
/// Only the owning shard may call it.
class dependency_index {
public:
  dependency_index() = default;
  dependency_index(const dependency_index&) = delete;
  dependency_index& operator=(const dependency_index&) = delete;

  /// Entry `id` now depends on exactly `names` (duplicates are ignored),
  /// replacing what it depended on before. No names: same as `forget`.
  void set(entry_id id, const std::vector<std::string>& names);

  /// Removes every link of entry `id` (it expired, was evicted, erased, or
  /// overwritten without dependencies); names left without dependents are
  /// removed. Does nothing for an entry without links.
  void forget(entry_id id);

  /// Removes `name` and returns its dependents, in no particular order. Their
  /// links to it are gone; their other links stay until the shard, removing
  /// each entry, calls `forget` for it.
  ///
  /// Taking rather than reading the dependents keeps an invalidation simple: the shard
  /// iterates a list it owns while its removals call `forget`, and a cascade
  /// that comes back to `name` (a cycle) finds nothing left and ends.
  std::vector<entry_id> take_dependents(std::string_view name);

  /// Whether entry `id` has any link.
  bool has(entry_id id) const noexcept {
    return id < by_entry_.size() && by_entry_[id].size() > 0;
  }

  /// Names with at least one dependent.
  size_t names() const noexcept { return names_; }
  /// Pairs (entry, name) linked.
  size_t links() const noexcept { return links_; }
  /// Entries with at least one link.
  size_t entries() const noexcept { return entries_; }

  /// Approximate heap bytes held, allocator overhead included. Walks every
  /// name and entry: for tests, stats and the README, not for hot paths.
  size_t memory_bytes() const;

  /// Drops every link.
  void clear();

  /// Told each name as it gets its first dependent (true) and as it loses
  /// its last one or the index is cleared (false): the shard keeps the
  /// cache's `depended_names` filter to the names depended on now.
  void on_names(std::function<void(std::string_view, bool)> hook) {
    hook_ = std::move(hook);
  }

  /// Calls `f(entry_id, const std::vector<std::string_view>& names)` for each
  /// entry with links, by increasing id; the names in the order they were
  /// declared. `f` must not change the index.
  template <class F>
  void for_each(F f) const {
    std::vector<std::string_view> names;
    for (entry_id id = 0; id < by_entry_.size(); ++id) {
      if (!has(id)) continue;
      names.clear();
      const auto& links = by_entry_[id];
      for (uint32_t i = 0; i < links.size(); ++i)
        names.emplace_back(slots_[links.at(i).name].text);
      const auto& out = names;
      f(id, out);
    }
  }

private:
  using name_id = uint32_t;
  static constexpr name_id no_name = UINT32_MAX;

  /// One dependency of an entry.
  struct link {
    name_id name;
    uint32_t pos; // of the entry in `slots_[name].dependents`
  };

  /// The links of one entry in one 8-byte word: none (0), one link inline,
  /// or a pointer to an array whose first element is a header {size,
  /// capacity}. An entry that depends on a single name, the common case,
  /// costs no allocation: an invalidation of a tag with 100k such dependents frees
  /// no link arrays (karlton-bench tag-purge). An inline link is tagged by
  /// its low bit, which a pointer to an array never has, so name ids stay
  /// below 2^31. Links are only added by `set`, all at once.
  class link_list {
  public:
    explicit link_list(uint32_t capacity = 0);
    link_list(link_list&& other) noexcept : word_(std::exchange(other.word_, 0)) {}
    link_list& operator=(link_list&& other) noexcept {
      std::swap(word_, other.word_);
      return *this;
    }
    ~link_list() { delete[] array(); }

    uint32_t size() const noexcept;
    uint32_t capacity() const noexcept;
    /// The `i`-th link, in the order `push_back` added them.
    link at(uint32_t i) const noexcept;
    void push_back(link l) noexcept;
    /// Removes the link to `n`, keeping the order of the others.
    void erase(name_id n) noexcept;
    /// Sets the position of the link to `n`, which must be there.
    void set_pos(name_id n, uint32_t pos) noexcept;

  private:
    static constexpr uint64_t inline_bit = 1;
    bool is_inline() const noexcept { return (word_ & inline_bit) != 0; }
    link* array() const noexcept {
      return is_inline() ? nullptr
                         : reinterpret_cast<link*>(static_cast<uintptr_t>(word_));
    }
    static uint64_t inline_word(link l) noexcept {
      return uint64_t{l.pos} << 32 | uint64_t{l.name} << 1 | inline_bit;
    }

    uint64_t word_ = 0;
  };

  /// One interned name; free slots have no text and no dependents.
  struct name_slot {
    std::string text;
    std::vector<entry_id> dependents;
  };

  /// A slot of the name index; `name == no_name` marks an empty one. The
  /// hash spares probes a cache miss on every other name's slot.
  struct index_slot {
    name_id name = no_name;
    uint32_t hash = 0;
  };

  static uint32_t hash_of(std::string_view name) noexcept;
  size_t home_of(uint32_t hash) const noexcept {
    return static_cast<size_t>((uint64_t{hash} * index_.size()) >> 32);
  }
  size_t next_slot(size_t i) const noexcept { return i + 1 == index_.size() ? 0 : i + 1; }
  name_id find(std::string_view name, uint32_t hash) const noexcept;
  void place(index_slot s);
  void resize_index(size_t slots);
  name_id intern(const std::string& name);
  /// Frees name `n`, which has no dependents left.
  void release(name_id n);
  /// Removes `id` from the dependents of `l.name`, leaving the name in place.
  void unlink(entry_id id, const link& l);
  /// Frees the links of `id`, which must have none left, and trims the table.
  void drop(entry_id id);

  std::vector<name_slot> slots_; // indexed by name id
  std::vector<name_id> free_;    // ids of free slots, reused first
  std::vector<index_slot> index_;
  std::vector<link_list> by_entry_; // indexed by entry id
  size_t names_ = 0;
  size_t entries_ = 0;
  size_t links_ = 0;
  std::function<void(std::string_view, bool)> hook_;
};

} // namespace karlton
