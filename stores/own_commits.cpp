#include <karlton/stores/own_commits.hpp>

#include <list>
#include <mutex>
#include <unordered_map>

namespace karlton {

// One mutex over a map and an age list: a store calls expect and resolve once
// per batch (a transaction, milliseconds), the feed take once per group, so a
// lock is never contended long enough to matter.
struct own_commits::impl {
  struct entry {
    bool committed;                    // false: COMMIT not yet returned
    uint64_t rows;                     // the rows of its table it changed
    std::list<uint64_t>::iterator age; // its place in `oldest_first`
  };

  std::mutex mtx;
  std::unordered_map<uint64_t, entry> entries; // guarded by mtx
  std::list<uint64_t> oldest_first;            // guarded by mtx

  void erase(std::unordered_map<uint64_t, entry>::iterator it) {
    oldest_first.erase(it->second.age);
    entries.erase(it);
  }
};

own_commits::own_commits() : impl_(new impl) {}

own_commits::~own_commits() {
  delete impl_;
}

void own_commits::expect(uint64_t xid, uint64_t rows) {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  if (auto it = impl_->entries.find(xid); it != impl_->entries.end()) impl_->erase(it);
  // Dropping the oldest only turns its notification into an invalidation.
  while (impl_->entries.size() >= capacity)
    impl_->erase(impl_->entries.find(impl_->oldest_first.front()));
  auto age = impl_->oldest_first.insert(impl_->oldest_first.end(), xid);
  impl_->entries.emplace(xid, impl::entry{false, rows, age});
}

void own_commits::resolve(uint64_t xid, bool committed) {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  auto it = impl_->entries.find(xid);
  if (it == impl_->entries.end()) return; // dropped or forgotten: foreign, safe
  if (committed)
    it->second.committed = true;
  else
    impl_->erase(it);
}

own_commits::verdict own_commits::take(uint64_t xid, uint64_t rows) {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  auto it = impl_->entries.find(xid);
  if (it == impl_->entries.end()) return verdict::foreign;
  if (rows != incomplete_group && !it->second.committed) return verdict::pending;
  // More rows than ours: another writer (a trigger, a rule, a cascade) changed
  // rows in our transaction, which the cache never installed. Fewer: a part
  // of the group we have not seen. Either way, invalidate all of them.
  bool own = rows == it->second.rows;
  impl_->erase(it);
  return own ? verdict::own : verdict::foreign;
}

void own_commits::forget_all() {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  impl_->entries.clear();
  impl_->oldest_first.clear();
}

} // namespace karlton
