// The tracking table (plan §6.2). Why no change is lost in default mode: a
// reader registers its key under the stripe lock *before* it reads; a shard
// publishes its change first, then locks the same stripe. Either the shard's
// lock comes after the registration (the message goes out) or before it, and
// then the publication happens before the read, which sees the change. While
// nobody tracks, the shard only pays one seq_cst fence per batch: it pairs
// with the seq_cst increment of CLIENT TRACKING ON (Dekker's pattern).
#include "runtime/server/tracking_table.hpp"

#include <algorithm>
#include <cstring>
#include <functional>
#include <iterator>
#include <optional>
#include <utility>

#include <karlton/messages/value.hpp>

#include "runtime/server/resp_session.hpp"

namespace karlton::server {

namespace {

// db (4 bytes) + key: a key of one database.
void make_tracked_key(std::string& out, uint32_t db, std::string_view key) {
  out.resize(sizeof db);
  std::memcpy(out.data(), &db, sizeof db);
  out.append(key.data(), key.size());
}

bool starts_with(std::string_view s, std::string_view prefix) noexcept {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

} // namespace

namespace {

// Listens to one cache on behalf of the table.
class db_listener final : public key_change_listener {
public:
  db_listener(std::shared_ptr<tracking_table> table, uint32_t db)
    : table_(std::move(table)), db_(db) {}
  void keys_changed(const key_batch& keys) override { table_->keys_changed(db_, keys); }
  void all_changed() override { table_->all_changed(db_); }

private:
  std::shared_ptr<tracking_table> table_;
  uint32_t db_;
};

} // namespace

tracking_table::tracking_table(size_t max_keys, size_t max_bytes)
  : max_keys_(max_keys), max_bytes_(max_bytes) {}

tracking_table::~tracking_table() = default;

std::shared_ptr<key_change_listener> tracking_table::listener_for(uint32_t db) {
  return std::make_shared<db_listener>(shared_from_this(), db);
}

// -- connections -------------------------------------------------------------------

void tracking_table::attach(uint64_t id, std::weak_ptr<session> s) {
  auto c = std::make_unique<client>();
  c->conn = std::move(s);
  std::unique_lock<std::shared_mutex> guard{clients_mtx_};
  clients_[id] = std::move(c);
}

void tracking_table::detach(uint64_t id) {
  disable(id);
  std::unique_lock<std::shared_mutex> guard{clients_mtx_};
  clients_.erase(id);
}

void tracking_table::set_protocol(uint64_t id, int protocol) {
  std::unique_lock<std::shared_mutex> guard{clients_mtx_};
  if (auto i = clients_.find(id); i != clients_.end()) i->second->protocol = protocol;
}

void tracking_table::set_subscribed(uint64_t id, bool on) {
  std::unique_lock<std::shared_mutex> guard{clients_mtx_};
  if (auto i = clients_.find(id); i != clients_.end()) i->second->subscribed = on;
}

bool tracking_table::known(uint64_t id) const {
  std::shared_lock<std::shared_mutex> guard{clients_mtx_};
  return clients_.count(id) > 0;
}

std::string tracking_table::too_many_prefixes() {
  return "too many prefixes: at most " + std::to_string(max_prefixes_per_client) +
         " per client";
}

namespace {

// The first two of `sorted` that overlap (one starts with the other), if any:
// a prefix of another sorts right before the strings that start with it, so
// neighbours suffice (n log n, where each pair was up to 256^2 1-KiB compares).
std::optional<std::pair<std::string, std::string>>
overlap_in(const std::vector<std::string>& sorted) {
  for (size_t i = 1; i < sorted.size(); ++i)
    if (starts_with(sorted[i], sorted[i - 1]))
      return std::make_pair(sorted[i - 1], sorted[i]);
  return std::nullopt;
}

std::string overlap_error(const std::string& p, const char* with, const std::string& q) {
  return "Prefix '" + p + "' overlaps with " + with + " prefix '" + q +
         "'. Prefixes for a single client must not overlap.";
}

} // namespace

std::string tracking_table::enable(uint64_t id, const tracking_mode& mode) {
  std::vector<std::string> wanted;
  if (mode.bcast) { // what needs no lock is checked first
    const auto& given = mode.prefixes;
    if (given.size() > max_prefixes_per_client) return too_many_prefixes();
    for (const auto& p : given)
      if (p.size() > max_prefix_bytes)
        return "prefix of " + std::to_string(p.size()) + " bytes: at most " +
               std::to_string(max_prefix_bytes);
    wanted = given;
    std::sort(wanted.begin(), wanted.end());
    if (auto o = overlap_in(wanted))
      return overlap_error(o->first, "another provided", o->second);
    if (wanted.empty()) wanted.emplace_back(); // BCAST alone: every key
  }
  // Writers of the index one at a time, and it is changed after the clients'
  // lock is released: a shard matching a long batch holds the index (shared),
  // and the clients' lock, which every shard's `send` takes, must not wait
  // for it (a review measured 0.4 s stalls in a debug build).
  std::lock_guard<std::mutex> writing{index_write_mtx_};
  std::vector<std::string> added;
  {
    std::unique_lock<std::shared_mutex> guard{clients_mtx_};
    auto i = clients_.find(id);
    if (i == clients_.end()) return "no such client";
    auto& c = *i->second;
    if (mode.redirect != 0 && clients_.count(mode.redirect) == 0)
      return "The client ID you want redirect to does not exist";
    if (c.tracking && c.mode.bcast != mode.bcast)
      return "You can't switch BCAST mode on/off before disabling tracking for this "
             "client, and then re-enabling it with a different mode.";
    if (mode.bcast) {
      const auto& have = c.mode.prefixes; // sorted, none overlapping
      for (const auto& p : wanted) {
        auto next = std::lower_bound(have.begin(), have.end(), p);
        if (next != have.end() && *next == p) continue; // had it
        if (next != have.end() && starts_with(*next, p))
          return overlap_error(p, "an existing", *next);
        if (next != have.begin() && starts_with(p, *std::prev(next)))
          return overlap_error(p, "an existing", *std::prev(next));
        added.push_back(p);
      }
      if (have.size() + added.size() > max_prefixes_per_client)
        return too_many_prefixes();
      size_t added_bytes = 0;
      for (const auto& p : added)
        added_bytes += p.size();
      size_t own = added_bytes;
      for (const auto& p : have)
        own += p.size();
      if (own > max_prefix_bytes_per_client)
        return "too many prefix bytes: at most " +
               std::to_string(max_prefix_bytes_per_client) + " per client";
      // The index's counts change only under `index_write_mtx_`, held here.
      if (prefixes_.entries + added.size() > max_prefixes_total)
        return "too many prefixes: at most " + std::to_string(max_prefixes_total) +
               " over all clients";
      if (prefixes_.bytes + added_bytes > max_prefix_bytes_total)
        return "too many prefix bytes: at most " +
               std::to_string(max_prefix_bytes_total) + " over all clients";
    }
    c.mode.bcast = mode.bcast;
    c.mode.redirect = mode.redirect;
    auto& have = c.mode.prefixes;
    have.insert(have.end(), added.begin(), added.end());
    std::sort(have.begin(), have.end());
    if (!c.tracking) {
      c.tracking = true;
      tracking_clients_.fetch_add(1, std::memory_order_seq_cst);
      std::atomic_thread_fence(std::memory_order_seq_cst);
    }
  }
  // Before ON returns, so before the client's next command reads anything.
  if (!added.empty()) add_prefixes(id, added);
  return {};
}

void tracking_table::disable(uint64_t id) {
  std::lock_guard<std::mutex> writing{index_write_mtx_};
  std::vector<std::string> had;
  {
    std::unique_lock<std::shared_mutex> guard{clients_mtx_};
    auto i = clients_.find(id);
    if (i == clients_.end() || !i->second->tracking) return;
    auto& c = *i->second;
    if (c.mode.bcast) had = std::move(c.mode.prefixes);
    c.tracking = false;
    c.mode = tracking_mode{};
    tracking_clients_.fetch_sub(1, std::memory_order_seq_cst);
  }
  // Messages for it meanwhile find it OFF and are dropped (`send`).
  if (!had.empty()) drop_prefixes(id, had);
}

void tracking_table::add_prefixes(uint64_t id, const std::vector<std::string>& add) {
  std::unique_lock<std::shared_mutex> guard{prefixes_mtx_};
  auto& px = prefixes_;
  for (const auto& p : add) {
    px.clients.add(p, id);
    ++px.entries;
    px.bytes += p.size();
  }
  any_prefixes_.store(px.entries > 0, std::memory_order_relaxed);
}

void tracking_table::drop_prefixes(uint64_t id, const std::vector<std::string>& had) {
  std::unique_lock<std::shared_mutex> guard{prefixes_mtx_};
  auto& px = prefixes_;
  for (const auto& p : had) {
    if (!px.clients.remove(p, id)) continue;
    --px.entries;
    px.bytes -= p.size();
  }
  any_prefixes_.store(px.entries > 0, std::memory_order_relaxed);
}

size_t tracking_table::prefixes() const {
  std::shared_lock<std::shared_mutex> guard{prefixes_mtx_};
  return prefixes_.clients.size();
}

// -- default mode ------------------------------------------------------------------

tracking_table::stripe&
tracking_table::stripe_of(const std::string& tracked_key) noexcept {
  return stripes_[hash_key(tracked_key) % stripes_.size()]; // keyed: see hash_key
}

void tracking_table::will_read(uint64_t id, uint32_t db, std::string_view key) {
  std::string tk;
  make_tracked_key(tk, db, key);
  auto& st = stripe_of(tk);
  {
    std::lock_guard<std::mutex> guard{st.mtx};
    auto size = tk.size();
    auto [i, fresh] = st.keys.try_emplace(std::move(tk));
    if (fresh) {
      total_keys_.fetch_add(1, std::memory_order_relaxed);
      total_bytes_.fetch_add(size, std::memory_order_relaxed);
    }
    auto& ids = i->second;
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) {
      // Readers that left stay on the list until the key changes: at each
      // doubling from 64, those no longer tracking go, so a key read by
      // millions of short connections (and never written) keeps a list as
      // long as its live readers, not every reader it ever had.
      if (ids.size() >= 64 && (ids.size() & (ids.size() - 1)) == 0) {
        std::shared_lock<std::shared_mutex> clients{clients_mtx_}; // after a stripe's
        auto gone = std::remove_if(ids.begin(), ids.end(), [&](uint64_t x) {
          auto c = clients_.find(x);
          return c == clients_.end() || !c->second->tracking;
        });
        total_bytes_.fetch_sub(id_bytes * static_cast<size_t>(ids.end() - gone),
                               std::memory_order_relaxed);
        ids.erase(gone, ids.end());
      }
      ids.push_back(id);
      total_bytes_.fetch_add(id_bytes, std::memory_order_relaxed);
    }
  }
  if (over_bound()) evict_over_bound();
}

bool tracking_table::over_bound() const noexcept {
  return (max_keys_ != 0 && total_keys_.load(std::memory_order_relaxed) > max_keys_) ||
         (max_bytes_ != 0 && total_bytes_.load(std::memory_order_relaxed) > max_bytes_);
}

void tracking_table::forget(stripe& st, stripe_map::iterator i) {
  total_keys_.fetch_sub(1, std::memory_order_relaxed);
  total_bytes_.fetch_sub(i->first.size() + id_bytes * i->second.size(),
                         std::memory_order_relaxed);
  st.keys.erase(i);
}

// Forgets keys, stripe after stripe, until the bound holds; their clients get
// an invalidation, so they drop copies nobody would tell them about.
void tracking_table::evict_over_bound() {
  outbox out;
  size_t empty_seen = 0;
  while (over_bound() && empty_seen < stripes_.size()) {
    auto& st = stripes_[evict_cursor_.fetch_add(1) % stripes_.size()];
    std::lock_guard<std::mutex> guard{st.mtx};
    if (st.keys.empty()) {
      ++empty_seen;
      continue;
    }
    auto i = st.keys.begin();
    auto key = i->first.substr(sizeof(uint32_t));
    for (auto id : i->second)
      out.keys[id].push_back(key);
    forget(st, i);
  }
  if (!out.empty()) send(out);
}

// -- the listener's side -------------------------------------------------------------

void tracking_table::keys_changed(uint32_t db, const key_batch& keys) {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (tracking_clients_.load(std::memory_order_relaxed) == 0) return;
  outbox out;
  std::string tk;
  std::vector<uint64_t> ids;
  keys.for_each([&](std::string_view key) {
    make_tracked_key(tk, db, key);
    auto& st = stripe_of(tk);
    ids.clear();
    {
      std::lock_guard<std::mutex> guard{st.mtx};
      if (auto i = st.keys.find(tk); i != st.keys.end()) {
        ids.swap(i->second); // its list now empty, as `forget` counts it
        total_bytes_.fetch_sub(id_bytes * ids.size(), std::memory_order_relaxed);
        forget(st, i); // once its message goes out
      }
    }
    for (auto id : ids)
      out.keys[id].emplace_back(key);
  });
  // Relaxed, as `tracking_clients_`: the fence above and the one a BCAST
  // session makes before each command order it (Dekker's pattern again).
  if (any_prefixes_.load(std::memory_order_relaxed)) match_prefixes(keys, out);
  if (!out.empty()) send(out);
}

// A client's prefixes do not overlap, so it matches a key once.
void tracking_table::match_prefixes(const key_batch& keys, outbox& out) const {
  std::shared_lock<std::shared_mutex> guard{prefixes_mtx_};
  size_t steps = 0;
  keys.for_each([&](std::string_view key) {
    // A long batch of long keys lets a waiting ON or OFF in now and then.
    if (steps >= lookups_per_hold) {
      guard.unlock();
      guard.lock();
      steps = 0;
    }
    steps += prefixes_.clients.for_each_match(key, [&](const std::vector<uint64_t>& ids) {
      for (auto id : ids) {
        auto& to = out.keys[id];
        if (to.empty() || to.back() != key) to.emplace_back(key);
      }
    });
  });
}

void tracking_table::all_changed(uint32_t db) {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (tracking_clients_.load(std::memory_order_relaxed) == 0) return;
  for (auto& st : stripes_) {
    std::lock_guard<std::mutex> guard{st.mtx};
    for (auto i = st.keys.begin(); i != st.keys.end();) {
      uint32_t key_db = 0;
      std::memcpy(&key_db, i->first.data(), sizeof key_db);
      if (key_db == db) {
        forget(st, i++);
      } else {
        ++i;
      }
    }
  }
  outbox out;
  {
    std::shared_lock<std::shared_mutex> guard{clients_mtx_};
    for (const auto& [id, c] : clients_)
      if (c->tracking) out.everything.push_back(id);
  }
  if (!out.empty()) send(out);
}

} // namespace karlton::server
