// Client-side caching (plan §6.2): which connection tracks which keys, and
// the invalidation messages the caches' key changes turn into. One table per
// node; each cache's `change_listener` is `listener_for(its db index)`.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <karlton/base/key_changes.hpp>
#include <karlton/messages/value.hpp>

#include "runtime/server/prefix_tree.hpp"

namespace karlton::server {

class session;

/// How one client tracks (CLIENT TRACKING ON's options).
struct tracking_mode {
  /// BCAST: every key under `prefixes` (none: every key), read or not.
  bool bcast = false;
  /// Messages go to this client (subscribed to __redis__:invalidate, or
  /// RESP3); 0: to the tracking client itself, which must speak RESP3.
  uint64_t redirect = 0;
  std::vector<std::string> prefixes;
};

/// An invalidation message as the table spells them (a RESP3 `invalidate`
/// push, or a RESP2 message of __redis__:invalidate), spelt for a client of
/// `protocol`; empty if `msg` is not one. For a client whose HELLO changed
/// its protocol after the message was spelt.
std::string invalidation_for(std::string_view msg, int protocol);

/// @threadsafe: I/O threads register and read, shard threads report changes.
class tracking_table : public std::enable_shared_from_this<tracking_table> {
public:
  /// Redis's `tracking-table-max-keys` default.
  static constexpr size_t default_max_keys = 1'000'000;
  /// At most this many prefixes per client,
  static constexpr size_t max_prefixes_per_client = 256;
  /// this many over all clients,
  static constexpr size_t max_prefixes_total = 65536;
  /// this long each (a changed key's walk goes no deeper),
  static constexpr size_t max_prefix_bytes = 1024;
  /// this many bytes per client,
  static constexpr size_t max_prefix_bytes_per_client = size_t{64} << 10;
  /// and this many bytes over all: as many clients as fill the count (256)
  /// fill the bytes, where four of 256 prefixes of 1 KiB filled 1 MiB.
  static constexpr size_t max_prefix_bytes_total = size_t{16} << 20;
  /// What a reader on a key's list counts against `max_bytes`.
  static constexpr size_t id_bytes = sizeof(uint64_t);
  /// Bytes of tracked keys (each key's, 4 for its database and `id_bytes`
  /// per reader on its list) beyond which keys are forgotten too, whatever
  /// `max_keys` says.
  static constexpr size_t default_max_bytes = size_t{256} << 20;

  /// Beyond `max_keys` tracked keys or `max_bytes` of them (0: no bound),
  /// the oldest-found keys are forgotten, each with an invalidation message
  /// (the client drops its copy).
  explicit tracking_table(size_t max_keys = default_max_keys,
                          size_t max_bytes = default_max_bytes);
  ~tracking_table();
  tracking_table(const tracking_table&) = delete;
  tracking_table& operator=(const tracking_table&) = delete;

  /// The change listener of database `db` (SELECT's number).
  std::shared_ptr<key_change_listener> listener_for(uint32_t db);

  // -- connections (any thread) ------------------------------------------------

  /// Every connection is known by its id, so REDIRECT can name it.
  void attach(uint64_t id, std::weak_ptr<session> s);
  /// The connection is gone: its tracking ends, redirects to it break.
  void detach(uint64_t id);
  /// Its protocol (HELLO), which decides how messages to it are spelled.
  void set_protocol(uint64_t id, int protocol);
  /// Whether it is subscribed to __redis__:invalidate (RESP2 redirect target).
  void set_subscribed(uint64_t id, bool on);
  bool known(uint64_t id) const;

  /// CLIENT TRACKING ON: empty, or the error text for the client.
  std::string enable(uint64_t id, const tracking_mode& mode);
  /// The error text for more than `max_prefixes_per_client` prefixes: enable
  /// gives it, and so does CLIENT TRACKING's parser, which stops there
  /// before it holds more.
  static std::string too_many_prefixes();
  /// CLIENT TRACKING OFF.
  void disable(uint64_t id);

  /// Default mode: client `id` is about to read `key` of `db`; call before
  /// the read starts, so that a change after it is reported.
  void will_read(uint64_t id, uint32_t db, std::string_view key);

  // -- the listener's side (shard threads) ---------------------------------------

  void keys_changed(uint32_t db, const key_batch& keys);
  void all_changed(uint32_t db);

  // -- INFO ------------------------------------------------------------------------

  /// Clients with tracking on.
  size_t clients() const noexcept { return tracking_clients_.load(); }
  /// Keys (of any db) that some default-mode client tracks.
  size_t keys() const noexcept { return total_keys_.load(); }
  /// What they count against `max_bytes`.
  size_t bytes() const noexcept { return total_bytes_.load(); }
  /// BCAST prefixes, over all clients.
  size_t prefixes() const;

private:
  struct client {
    std::weak_ptr<session> conn;
    int protocol = 2;
    bool subscribed = false;
    bool tracking = false;
    tracking_mode mode;
  };
  /// Every client's BCAST prefixes, changed in place: ON and OFF cost the
  /// client's own prefixes, not every client's (a copy of the whole list per
  /// toggle let 800 toggles a second stall other clients for 0.5 s).
  struct prefix_index {
    prefix_tree clients; ///< prefix -> the clients tracking it
    size_t entries = 0;  ///< (prefix, client) pairs
    size_t bytes = 0;    ///< of every pair's prefix
  };
  /// db (4 bytes) + key -> the clients that read it since its last message.
  using stripe_map = std::unordered_map<std::string, std::vector<uint64_t>, key_hasher>;
  struct stripe {
    std::mutex mtx;
    stripe_map keys;
  };
  /// Messages of one batch: client id -> keys; `everything` get a null
  /// (drop every key).
  struct outbox {
    std::unordered_map<uint64_t, std::vector<std::string>> keys;
    std::vector<uint64_t> everything;
    bool empty() const noexcept { return keys.empty() && everything.empty(); }
  };

  stripe& stripe_of(const std::string& tracked_key) noexcept;
  bool over_bound() const noexcept;
  void evict_over_bound();
  /// Erases `i` from `st` (whose lock the caller holds) and its counts.
  void forget(stripe& st, stripe_map::iterator i);
  void send(const outbox& out); // tracking_messages.cpp
  /// Client `id`'s prefixes in or out of `prefixes_`; under `index_write_mtx_`.
  void add_prefixes(uint64_t id, const std::vector<std::string>& add);
  void drop_prefixes(uint64_t id, const std::vector<std::string>& had);
  /// BCAST: the clients of each key's matching prefixes, into `out`.
  void match_prefixes(const key_batch& keys, outbox& out) const;

  const size_t max_keys_;
  const size_t max_bytes_;
  std::array<stripe, 64> stripes_;
  std::atomic<size_t> total_keys_{0};
  std::atomic<size_t> total_bytes_{0}; ///< of the tracked keys, db included
  /// Clients with tracking on; shards skip all work while it is 0.
  std::atomic<size_t> tracking_clients_{0};
  std::atomic<size_t> evict_cursor_{0};

  /// Shards read it under a shared lock, and let writers in after about
  /// `lookups_per_hold` steps; writers hold `index_write_mtx_`, under which
  /// `enable` reads its counts.
  prefix_index prefixes_;
  mutable std::shared_mutex prefixes_mtx_;
  std::mutex index_write_mtx_; // taken before clients_mtx_
  static constexpr size_t lookups_per_hold = 4096;
  /// Whether `prefixes_` has any: shards skip the lock while it has none.
  std::atomic<bool> any_prefixes_{false};

  mutable std::shared_mutex clients_mtx_;
  std::unordered_map<uint64_t, std::unique_ptr<client>> clients_; // by clients_mtx_
};

} // namespace karlton::server
