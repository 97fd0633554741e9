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
#include <utility>

#include <karlton/messages/value.hpp>

#include "runtime/server/resp_session.hpp"
#include "runtime/server/resp_writer.hpp"

namespace karlton::server {

namespace {

constexpr std::string_view channel = "__redis__:invalidate";

// db (4 bytes) + key: a key of one database.
void make_tracked_key(std::string& out, uint32_t db, std::string_view key) {
  out.resize(sizeof db);
  std::memcpy(out.data(), &db, sizeof db);
  out.append(key.data(), key.size());
}

bool starts_with(std::string_view s, std::string_view prefix) noexcept {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

// An invalidation of `keys` (null: every key) as client `protocol` reads it:
// a RESP3 push, or in RESP2 a message of the __redis__:invalidate channel.
std::string invalidation(int protocol, const std::vector<std::string>* keys) {
  std::string out;
  reply_writer w{out, protocol};
  if (protocol >= 3) {
    w.push(2);
    w.bulk("invalidate");
  } else {
    w.push(3);
    w.bulk("message");
    w.bulk(channel);
  }
  if (keys == nullptr) {
    w.null();
  } else {
    w.array(keys->size());
    for (const auto& k : *keys)
      w.bulk(k);
  }
  return out;
}

} // namespace

std::string invalidation_for(std::string_view msg, int protocol) {
  // Both spellings are a head, then the keys' array (the same bytes in both
  // protocols) or the protocol's null.
  struct spelling {
    std::string head, null;
  };
  static const std::array<spelling, 2> forms = [] {
    std::array<spelling, 2> out;
    for (int p : {2, 3}) {
      auto& f = out[p - 2];
      reply_writer w{f.null, p};
      w.null();
      f.head = invalidation(p, nullptr);
      f.head.resize(f.head.size() - f.null.size());
    }
    return out;
  }();
  for (const auto& from : forms) {
    if (!starts_with(msg, from.head)) continue;
    auto body = msg.substr(from.head.size());
    if (body == from.null) return invalidation(protocol, nullptr);
    if (body.empty() || body[0] != '*') return {};
    return forms[protocol >= 3 ? 1 : 0].head + std::string{body};
  }
  return {};
}

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

struct tracking_table::client {
  std::weak_ptr<session> conn;
  int protocol = 2;
  bool subscribed = false;
  bool tracking = false;
  tracking_mode mode;
};

struct tracking_table::outbox {
  std::unordered_map<uint64_t, std::vector<std::string>> keys;
  std::vector<uint64_t> everything; // these get a null: drop every key
  bool empty() const noexcept { return keys.empty() && everything.empty(); }
};

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

std::string tracking_table::enable(uint64_t id, const tracking_mode& mode) {
  std::unique_lock<std::shared_mutex> guard{clients_mtx_};
  auto i = clients_.find(id);
  if (i == clients_.end()) return "no such client";
  auto& c = *i->second;
  if (mode.redirect != 0 && clients_.count(mode.redirect) == 0)
    return "The client ID you want redirect to does not exist";
  if (c.tracking && c.mode.bcast != mode.bcast)
    return "You can't switch BCAST mode on/off before disabling tracking for this "
           "client, and then re-enabling it with a different mode.";
  std::vector<std::string> added;
  if (mode.bcast) {
    const auto& given = mode.prefixes;
    // Before the pairwise check below, which is quadratic in the count.
    if (given.size() > max_prefixes_per_client) return too_many_prefixes();
    for (const auto& p : given)
      if (p.size() > max_prefix_bytes)
        return "prefix of " + std::to_string(p.size()) + " bytes: at most " +
               std::to_string(max_prefix_bytes);
    for (size_t a = 0; a < given.size(); ++a)
      for (size_t b = a + 1; b < given.size(); ++b)
        if (starts_with(given[a], given[b]) || starts_with(given[b], given[a]))
          return "Prefix '" + given[a] + "' overlaps with another provided prefix '" +
                 given[b] + "'. Prefixes for a single client must not overlap.";
    std::vector<std::string> wanted = given;
    if (wanted.empty()) wanted.emplace_back(); // BCAST alone: every key
    for (const auto& p : wanted) {
      auto& have = c.mode.prefixes;
      if (std::find(have.begin(), have.end(), p) != have.end()) continue;
      for (const auto& old : have)
        if (starts_with(p, old) || starts_with(old, p))
          return "Prefix '" + p + "' overlaps with an existing prefix '" + old +
                 "'. Prefixes for a single client must not overlap.";
      added.push_back(p);
    }
    if (c.mode.prefixes.size() + added.size() > max_prefixes_per_client)
      return too_many_prefixes();
    // Read under the clients' lock, which every writer of them holds.
    if (prefixes_.entries + added.size() > max_prefixes_total)
      return "too many prefixes: at most " + std::to_string(max_prefixes_total) +
             " over all clients";
    size_t bytes = prefixes_.bytes;
    for (const auto& p : added)
      bytes += p.size();
    if (bytes > max_prefix_bytes_total)
      return "too many prefix bytes: at most " + std::to_string(max_prefix_bytes_total) +
             " over all clients";
  }
  c.mode.bcast = mode.bcast;
  c.mode.redirect = mode.redirect;
  c.mode.prefixes.insert(c.mode.prefixes.end(), added.begin(), added.end());
  if (!c.tracking) {
    c.tracking = true;
    tracking_clients_.fetch_add(1, std::memory_order_seq_cst);
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  if (!added.empty()) add_prefixes(id, added);
  return {};
}

void tracking_table::disable(uint64_t id) {
  std::unique_lock<std::shared_mutex> guard{clients_mtx_};
  auto i = clients_.find(id);
  if (i == clients_.end() || !i->second->tracking) return;
  auto& c = *i->second;
  if (c.mode.bcast) drop_prefixes(id, c.mode.prefixes);
  c.tracking = false;
  c.mode = tracking_mode{};
  tracking_clients_.fetch_sub(1, std::memory_order_seq_cst);
}

void tracking_table::add_prefixes(uint64_t id, const std::vector<std::string>& add) {
  std::unique_lock<std::shared_mutex> guard{prefixes_mtx_};
  auto& px = prefixes_;
  for (const auto& p : add) {
    auto [at, fresh] = px.clients.try_emplace(p);
    if (fresh) ++px.lengths[p.size()];
    at->second.push_back(id);
    ++px.entries;
    px.bytes += p.size();
  }
  any_prefixes_.store(px.entries > 0, std::memory_order_relaxed);
}

void tracking_table::drop_prefixes(uint64_t id, const std::vector<std::string>& had) {
  std::unique_lock<std::shared_mutex> guard{prefixes_mtx_};
  auto& px = prefixes_;
  for (const auto& p : had) {
    auto at = px.clients.find(p);
    if (at == px.clients.end()) continue;
    auto& ids = at->second;
    auto mine = std::find(ids.begin(), ids.end(), id);
    if (mine == ids.end()) continue;
    ids.erase(mine);
    --px.entries;
    px.bytes -= p.size();
    if (!ids.empty()) continue;
    px.clients.erase(at);
    auto len = px.lengths.find(p.size());
    if (--len->second == 0) px.lengths.erase(len);
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

// One lookup per distinct prefix length up to the key's, not a scan of every
// client's prefixes. A client's prefixes do not overlap, so it matches a key once.
void tracking_table::match_prefixes(const key_batch& keys, outbox& out) const {
  std::shared_lock<std::shared_mutex> guard{prefixes_mtx_};
  const auto& px = prefixes_;
  keys.for_each([&](std::string_view key) {
    for (const auto& [len, count] : px.lengths) {
      if (len > key.size()) break;
      auto at = px.clients.find(key.substr(0, len));
      if (at == px.clients.end()) continue;
      for (auto id : at->second) {
        auto& to = out.keys[id];
        if (to.empty() || to.back() != key) to.emplace_back(key);
      }
    }
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

// Routes each client's message: to itself (RESP3), or to its REDIRECT target
// (RESP3, or RESP2 subscribed to the channel). The pushes happen outside the
// lock: a session may die with its last reference here, and its destructor
// detaches from this table.
void tracking_table::send(const outbox& out) {
  struct delivery {
    std::shared_ptr<session> to;
    std::string message;
    std::weak_ptr<session> target; // REDIRECT: `to` hands it on in its order
    bool redirected = false;
  };
  std::vector<delivery> deliveries;
  {
    std::shared_lock<std::shared_mutex> guard{clients_mtx_};
    auto route = [&](uint64_t id, const std::vector<std::string>* keys) {
      auto i = clients_.find(id);
      if (i == clients_.end() || !i->second->tracking) return; // dead or OFF: dropped
      const auto& c = *i->second;
      if (c.mode.redirect == 0) {
        if (c.protocol < 3) return; // RESP2 has no pushes on the same connection
        if (auto s = c.conn.lock())
          deliveries.push_back({s, invalidation(3, keys), {}, false});
        return;
      }
      auto t = clients_.find(c.mode.redirect);
      if (t == clients_.end()) {
        if (c.protocol < 3) return;
        std::string broken;
        reply_writer w{broken, 3};
        w.push(2);
        w.bulk("tracking-redir-broken");
        w.integer(static_cast<int64_t>(c.mode.redirect));
        if (auto s = c.conn.lock())
          deliveries.push_back({s, std::move(broken), {}, false});
        return;
      }
      const auto& target = *t->second;
      if (target.protocol < 3 && !target.subscribed) return;
      // Through the reader, after its replies (a GET's value still waiting
      // behind a slow command), as its own pushes go; straight to the target
      // if the reader is gone.
      if (auto reader = c.conn.lock())
        deliveries.push_back(
          {reader, invalidation(target.protocol, keys), target.conn, true});
      else if (auto s = target.conn.lock())
        deliveries.push_back({s, invalidation(target.protocol, keys), {}, false});
    };
    for (const auto& [id, keys] : out.keys)
      route(id, &keys);
    for (auto id : out.everything)
      route(id, nullptr);
  }
  for (auto& d : deliveries) {
    if (d.redirected)
      d.to->push_for(std::move(d.message), std::move(d.target));
    else
      d.to->push(std::move(d.message));
  }
}

} // namespace karlton::server
