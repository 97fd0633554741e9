// The plain state of one cache shard: entries, TTL, size bound, stats.
// No actors here: the shard actor translates messages into these calls, and
// tests drive it directly with explicit times.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <memory_resource>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <caf/error.hpp>

#include "actors/depended_names.hpp"
#include "actors/dependency_index.hpp"
#include "actors/dirty_budget.hpp"
#include "actors/entry_table.hpp"
#include "actors/eviction.hpp"
#include "actors/load_table.hpp"
#include "actors/negative_cache.hpp"
#include "actors/pending_write.hpp"
#include "actors/read_lease.hpp"
#include "actors/read_side.hpp"
#include "actors/shard_effects.hpp"
#include "actors/shard_options.hpp"
#include "actors/write_line.hpp"
#include <karlton/base/key_changes.hpp>
#include <karlton/base/policies.hpp>
#include <karlton/messages/compute.hpp>
#include <karlton/messages/events.hpp>
#include <karlton/messages/stats.hpp>
#include <karlton/messages/ttl.hpp>
#include <karlton/messages/value.hpp>
#include <karlton/messages/writes.hpp>

namespace karlton {

/// One shard's cache. Only the owning shard actor may call it.
class shard_state {
public:
  explicit shard_state(shard_options cfg);
  /// Fails the waiters of loads still in flight with `shut_down`.
  ~shard_state();
  shard_state(const shard_state&) = delete;
  shard_state& operator=(const shard_state&) = delete;

  /// The value cached under `key`, or an empty value. A hit records the value's
  /// age; an expired entry is removed, counted as expired, and misses.
  value get(std::string_view key, uint32_t hash, time_point now);
  value get(std::string_view key, time_point now);

  /// A key of a batch lookup, with its `value::table_hash`.
  struct key_ref {
    std::string_view key;
    uint32_t hash;
  };

  /// One step (0, 1, 2) of loading what a lookup of `hash` touches
  /// (`entry_table::prefetch`).
  void prefetch(uint32_t hash, int step) const noexcept { table_.prefetch(hash, step); }

  /// `get` for each key, in order, with their memory accesses overlapped: on a table
  /// much larger than the CPU caches, cheaper per key than gets.
  template <class Keys, class Out>
  void get_many(const Keys& keys, time_point now, Out&& out) {
    for (int step = 0; step < 3; ++step)
      for (const key_ref& k : keys)
        table_.prefetch(k.hash, step);
    auto leases = act_on_leases(now);
    for (const key_ref& k : keys)
      out(get(k.key, k.hash, now, leases));
  }

  /// Stores `v`, then evicts to the bound. Errors: too large (nothing stored), bad ttl.
  caf::error put(value v, ttl t, time_point now);

  // -- read-through loading (shard_loading.cpp) ------------------------------

  /// The value of `key` if cached; otherwise the result of a load, told to `w` later.
  /// Returns the answer if there is one now (a hit, an error), or nothing if `w` will be
  /// called. A miss joins the load in flight for the key, or starts one (see
  /// `take_loads_to_start`). A hit may also start a background reload (`refresh_after`,
  /// XFetch) and is answered at once. A miss on a key whose load failed less than
  /// `negative_ttl` ago is answered with that error (or, within the stale-if-error
  /// window, the old value). A miss that would start a load while `max_loads_out` are out
  /// and `max_loads_queued` wait is answered `overloaded` (a refresh is skipped). Unless
  /// `trust_cached`, no cached value or remembered not_found answers: it loads (a compute
  /// under a lapse that caps, when what the cache holds may be stale). Unless
  /// `counted`, no miss is counted (a compute's, as for Redis's INCR).
  std::optional<caf::expected<value>> get_or_load(std::string_view key, uint32_t hash,
                                                  time_point now, load_waiter w,
                                                  bool trust_cached = true,
                                                  bool counted = true);

  /// Loads to hand out now, as (key, load number), oldest first: the shard actor hands
  /// each to a loader worker. Due after each call that may start, finish or time out a
  /// load: fewer than `max_loads_out` are out then, or none waits.
  std::vector<std::pair<std::string, uint64_t>> take_loads_to_start() {
    return loads_.take_ready();
  }

  /// A loader's answer for load `id` of `key`: installs the value unless the load was
  /// voided, tells every waiter, and counts. A failed reload leaves the old value served
  /// until it expires; a failed load of an expired entry gives the waiters the old value
  /// within `stale_if_error`; a failure not voided is remembered for `negative_ttl`.
  void complete_load(const std::string& key, uint64_t id,
                     caf::expected<std::string> result, caf::timespan took,
                     time_point now);

  // -- write-through and write-back (shard_writes.cpp) -------------------------

  using write_waiter = karlton::write_waiter; // actors/pending_write.hpp

  /// A put under the cache's write mode. Without one it is `put`, answered at once.
  /// Write-through: the write goes to the store first (see `take_writes`) and is cached
  /// when the store took it. Write-back: it is cached and marked dirty now, and
  /// acknowledged once the flusher took it; if `max-dirty` writes are pending it waits
  /// for room, up to `room_wait`. Returns the answer if there is one now, else `w` will
  /// be called. `from_compute`: a compute's own write, which keeps the entry's
  /// dependencies and never waits behind the key's computes; `kept_expiry_ms` (not 0):
  /// the expiry it keeps, however long the store takes; `links` (not null): the
  /// dependencies the value goes in with, replacing the entry's (checked: `check_links`).
  std::optional<caf::expected<bool>> write(value v, ttl t, time_point now, write_waiter w,
                                           bool from_compute = false,
                                           uint64_t kept_expiry_ms = 0,
                                           const dependencies* links = nullptr);

  /// An erase under the cache's write mode (store first, then cache).
  std::optional<caf::expected<bool>> write_erase(std::string_view key, time_point now,
                                                 write_waiter w,
                                                 bool from_compute = false);

  /// Writes to hand to the store writer or flusher, in order.
  std::vector<shard_write> take_writes() { return std::exchange(outbox_, {}); }
  /// For shutdown's settle: writes the store or flusher has yet to answer, or that wait
  /// for room, for a compute or behind one (each bounded by its own wait).
  bool writes_pending() const noexcept; // shard_writes.cpp
  /// The store or flusher took the writes numbered `seqs`, or failed (`err`).
  void writes_done(const std::vector<uint64_t>& seqs, const caf::error& err,
                   time_point now);

  /// The flusher stored these: each entry is clean (evictable) unless written since.
  void mark_stored(const stored_writes& writes);

  /// Tries parked write-back writes again; those parked past `room_wait` fail.
  void retry_parked(time_point now);
  /// When the oldest parked write times out, if any is parked.
  std::optional<time_point> next_parked_deadline() const;
  /// Once, after a parked compute's unit went back while shards may wait: wake them.
  bool take_room_returned() { return std::exchange(room_returned_, false); }
  /// The flusher is gone: write-back writes fail with `why` from now on, those parked
  /// now (parked computes run: one that writes fails with it). What it took is lost.
  void writer_lost(caf::error why, time_point now);

  // -- atomic read-modify-write (shard_compute.cpp) ----------------------------

  using compute_waiter = std::function<void(caf::expected<computed>)>;
  /// Applies `fn` to the live value of `key` in one step: after the key's writes awaiting
  /// the store (write-through) or parked writes (write-back), and after loading a miss
  /// (or, in a write mode under a lapse that caps, a cached key) in a read-through cache;
  /// then its put or erase goes through `write`/`write_erase`. `fn` runs exactly once; a
  /// throw fails it with `compute_failed` (a `compute_refusal`: its error), changing
  /// nothing. The answer now, or later to `w`.
  std::optional<caf::expected<computed>> compute(std::string_view key, time_point now,
                                                 compute_function fn, compute_waiter w);
  using ttl_waiter = std::function<void(caf::expected<remaining_ttl>)>;
  /// A new lifetime from now for `key`'s entry (nullopt: never expires; <= 0: removed, an
  /// invalidation), in this cache only, in the key's turn: after its writes and computes that
  /// wait. The remaining ttl before, now or through `w`.
  std::optional<caf::expected<remaining_ttl>> set_ttl(std::string_view key,
                                                      std::optional<caf::timespan> left,
                                                      time_point now, ttl_waiter w);

  // -- dependencies (shard_deps.cpp) ----------------------------------------

  /// `put` without a write mode, recording what the entry depends on (replacing what it
  /// did); past `check_links`' limits an error. Names count against `max-bytes`.
  caf::error put(value v, ttl t, time_point now, const dependencies& deps);
  /// That put as a write: behind a compute of the key that loads; in a write mode the
  /// links go in with the value (write-through: unless invalidated while stored).
  std::optional<caf::expected<bool>> write(value v, ttl t, time_point now,
                                           const dependencies& deps, write_waiter w);

  /// Removes every entry that depends on one of `names` (events when `cause` is `event`,
  /// else keys or tags) and, in this shard, what depends on the keys it removed,
  /// transitively (those expired by `now` count as expired). Reports the keys (entries of
  /// other shards may depend on them) and cascade levels, `level` for the direct ones.
  invalidation_result invalidate_dependents(const std::vector<std::string>& names,
                                            invalidation_cause cause, time_point now,
                                            uint32_t level = 0);

  /// Hands what the changes removed from the table to RCU, which frees it on its own
  /// thread once no reader sees it (Redis's lazyfree). Due after a change (`unlinked`).
  void retire_unlinked() { table_.retire_unlinked(); }

  /// Teaches the policy the hits callers served themselves (`read_side`'s buffer) and
  /// records the ages they served (each as of its hit). True while readers hit: the
  /// shard drains again after `read_side::drain_spacing`.
  bool learn_direct_hits();
  /// The same for the stats, however few the hits, leaving the drains' schedule alone.
  bool take_direct_hits();

  /// Keys erased since the last call whose dependents must be invalidated (once the cache
  /// uses dependencies): the shard actor hands them to the bus.
  std::vector<std::string> take_cascades() { return std::exchange(cascades_out_, {}); }

  /// Each entry with dependencies: its key and what it depends on.
  graph_edges dependency_edges() const;
  /// Links of the dependency index (entry -> name), for hygiene checks.
  size_t dependency_links() const noexcept { return deps_.links(); }
  size_t dependency_names() const noexcept { return deps_.names(); }

  /// Entries whose newest write the store does not have yet.
  size_t dirty_entries() const noexcept { return dirty_.size(); }

  /// Removes `key` (an explicit invalidation), and forgets a remembered load failure of
  /// it. True if it was cached and served, as `contains` would have said (not one a lapse
  /// withholds, though it goes too). Cached or not, live or expired, what depends on the
  /// key is invalidated (`take_cascades`): entries depend on the key's name, and one that
  /// outlived the key (evicted, expired, never cached here) would otherwise stay forever.
  bool erase(std::string_view key, time_point now);

  /// `erase` for invalidations from other nodes: the same removals and cascades, nothing
  /// told; not `cascade`: put on their origin, where a put does not cascade (nor here).
  uint64_t invalidate(const std::vector<std::string>& keys, time_point now,
                      bool cascade = true);
  /// `clear` here only (a repair, a lapsed read lease, another node's clear): nothing
  /// told; puts the store holds (write-through) are voided, as older than that (rule 1).
  uint64_t clear_here();
  /// Gentler repair: all expire within `limit` (sooner keep theirs), loads voided; count.
  uint64_t cap_ttl(time_point now, caf::timespan limit);

  /// Distributed caches: keys put or erased since the last call (other nodes must drop
  /// their copies), and whether the cache was cleared.
  struct key_change {
    std::string key;
    bool erased; ///< erased (its dependents are invalidated) rather than put
  };
  std::vector<key_change> take_changes() { return std::exchange(changed_out_, {}); }
  bool take_cleared() { return std::exchange(cleared_out_, false); }

  /// What the changes left to do (nothing taken): a check per outbox, after each message.
  shard_effects pending_effects() const noexcept {
    return {!outbox_.empty(),
            loads_.has_ready(),
            !cascades_out_.empty(),
            !changed_out_.empty() || cleared_out_,
            !line_.empty(),
            table_.has_unlinked(),
            all_changed_ || !key_changes_.empty(),
            room_returned_};
  }

  /// Tells the change listener the keys changed since the last call (or
  /// that all may have), then forgets them. Called last in the shard's
  /// after-change step, when direct readers already see the changes.
  void notify_changes();

  /// True if `key` is cached and not expired. Counts neither hit nor miss.
  bool contains(std::string_view key, time_point now) const;
  remaining_ttl ttl_of(std::string_view key, time_point now) const;

  /// Removes every entry; returns how many. What waits in a key's line then (writes and
  /// computes called before the clear) goes in and is then removed, in the key's turn;
  /// a compute parked for room in a cache without a loader finds the key absent.
  uint64_t clear();

  /// Removes entries whose TTL (and stale-if-error window) ran out, and load failures
  /// whose `negative_ttl` did, fails loads past `load_timeout` (`timeout`), looking at no
  /// more than `max_work` of each (one call never stalls the shard); returns how many
  /// entries it removed. Also clears the shard if its read lease lapsed, and tells the
  /// change listener of entries expired but kept for stale-if-error, when it happens.
  uint64_t remove_expired(time_point now, uint64_t max_work = UINT64_MAX);

  /// The earliest expiry still pending, of an entry, a remembered load failure, a load's
  /// timeout or the read lease, if any (it may belong to an entry that was since
  /// overwritten, or to a lease since renewed; the timer then finds nothing and re-arms).
  std::optional<time_point> next_expiry() const;

  cache_stats stats() const;
  /// set_ttl calls and a clear's drops in the write-back line (not in `writes_parked`).
  size_t turns_parked() const noexcept { return line_.turns(); }
  /// The actor's counts: a doorbell answered, queued jobs run.
  void count_doorbell() noexcept { ++stats_.doorbells; }
  void count_jobs(size_t n) noexcept { stats_.ingress_jobs += n; }
  const shard_options& config() const noexcept { return cfg_; }
  size_t size() const noexcept { return table_.size(); }

  /// Bytes of metadata (entries, index, expiry heap, sketch), for the benchmark.
  size_t metadata_bytes() const noexcept;

private:
  friend struct shard_state_test_access;

  using deadline = std::pair<uint64_t, entry_id>; // (expiry ms, entry)

  uint64_t weight_of(const value& v) const noexcept {
    return weigh_bytes_ ? v.charge() : 1;
  }
  /// Milliseconds since the entry's value was stored; births are kept modulo
  /// 2^32 ms, so ages are exact up to 49 days.
  static uint32_t age_ms(const entry& e, uint64_t now_ms) noexcept {
    return static_cast<uint32_t>(now_ms) - e.val.born_ms();
  }
  bool expired(const entry& e, uint64_t now_ms) const noexcept {
    return e.expires() && now_ms >= e.expiry_ms();
  }
  /// Counts an entry's expiry (set in the table) and schedules its removal.
  void track_expiry(entry_id id, bool had_expiry);
  void push_deadlines(const entry& e, entry_id id);
  size_t deadlines_per_entry() const noexcept { return stale_window_ms_ > 0 ? 2 : 1; }
  /// One that links on names while something may depend on it cascades (its links go
  /// with it), unless `cascaded`: the caller decided by the key's name.
  void remove(entry_id id, removal_cause cause, bool cascaded = false);
  void cascade_through(entry_id id); // a linked entry that goes: see `remove`
  /// As `remove`, counted as expired if it was, else as an invalidation; true if live.
  bool remove_changed(entry_id id, uint64_t now_ms, bool cascaded = false);
  /// Told to nobody. `leases`: the call's look at them (a lapse that caps is acted on
  /// here, one that clears by the next read). `read_at`: when the value was read or sent
  /// to the store, if before now (a load's, a write-through put's): a cap counts from it.
  caf::error admit(value v, ttl t, time_point now, const read_leases::look& leases,
                   bool keep_links = false,
                   std::optional<time_point> read_at = std::nullopt);
  /// Distributed and fed caches: one look at the leases, a lapse acted on (it clears,
  /// or under its `repair_ttl` caps every TTL). A call looks once and passes the look
  /// down, so what it decides follows one verdict; the calls it makes look anew.
  read_leases::look act_on_leases(time_point now);
  /// `cap_ttl` counted from `from` (a lapse's start), if earlier than now.
  uint64_t cap_from(time_point from, time_point now, caf::timespan limit);
  /// Acts on the lapse `leases` found: tells tracking clients of a new one that
  /// withholds hits; caps (if due) under its `repair_ttl`, else clears.
  void lease_lapsed(time_point now, const read_leases::look& leases);
  /// The expiry `expiry_ms` of what goes in now, read at `read_at`: capped from then if
  /// `leases` caps (the lapse acted on first). Else notes that the next cap is due.
  uint64_t lapse_capped(uint64_t expiry_ms, time_point now, time_point read_at,
                        const read_leases::look& leases);
  /// The ms the entry is served until under `leases`: its expiry, or the cap a lapse
  /// not yet acted on makes; at most `now_ms`: not served.
  uint64_t served_until(const entry& e, time_point now, uint64_t now_ms,
                        const read_leases::look& leases) const;
  // `get`, `contains`, `ttl_of` and `erase` under the call's look at the leases.
  value get(std::string_view key, uint32_t hash, time_point now,
            const read_leases::look& leases);
  bool contains(std::string_view key, time_point now,
                const read_leases::look& leases) const;
  remaining_ttl ttl_of(std::string_view key, time_point now,
                       const read_leases::look& leases) const;
  bool erase(std::string_view key, time_point now, const read_leases::look& leases);
  /// When the timer must look at the lease (ms, rounded up): its end, if not looked at.
  std::optional<uint64_t> lease_deadline_ms() const noexcept;
  // Erase here only, told to nobody; `cascade`: to the bus if something may depend on it.
  bool erase_here(std::string_view key, time_point now, bool cascade = true);
  void watch_depended_names(); // shard_deps.cpp
  void note_changed(std::string_view key, bool erased) {
    if (cfg_.distributed) changed_out_.push_back(key_change{std::string{key}, erased});
  }
  // For the change listener, only if there is one (no cost otherwise).
  template <class Key>
  void collect_change(Key&& key) {
    if (cfg_.change_listener) key_changes_.add(std::forward<Key>(key));
  }
  void enforce_bound();
  void compact_deadlines();
  double uniform();
  bool expires_early(const entry& e, uint64_t now_ms);
  void maybe_refresh(std::string_view key, entry_id id, const entry& e, time_point now);
  /// False (counted, `w` untold) if the load table is full.
  bool start_load(std::string_view key, std::optional<load_waiter>& w, bool refresh,
                  time_point now);
  /// Fails the waiters of loads past `load_timeout` and forgets the loads.
  void expire_loads(time_point now, uint64_t max_work);
  void forget_load_facts(entry_id id);
  /// Past its expiry but kept for stale-if-error until expiry + window.
  bool retained(const entry& e, uint64_t now_ms) const noexcept;
  /// When the expiry timer removes the entry: at expiry, or after stale-if-error.
  uint64_t reclaim_ms(const entry& e) const noexcept;
  /// The value of `key` kept for stale-if-error, if any (the caller counts it).
  std::optional<value> stale_fallback(std::string_view key, uint64_t now_ms);

  using compute_job = shard_detail::compute_job;
  using compute_ptr = shard_detail::compute_ptr;
  using compute_answer = std::optional<caf::expected<computed>>; // now, or none: later
  compute_answer run_compute(const compute_ptr& job, time_point now, bool from_queue);
  compute_answer apply_compute(const compute_ptr& job, time_point now, entry_id id);
  void run_waiting_computes(const std::string& key, time_point now);
  void wait_parked_behind(const std::string& key); // a compute of `key` loads
  /// True if a put or erase of `key` must wait behind its computes (loading, waiting).
  bool behind_computes(std::string_view key) const; // shard_compute.cpp
  void release_key(const std::string& key);         // a compute's load ended
  // Whether ops of `key` wait (a store write, a compute, the write-back line); then
  // `wait_turn` queues a set_ttl behind them and `drop_in_turn` a clear's drop.
  bool key_ops_wait(std::string_view key) const;
  caf::error wait_turn(const std::string& key, std::function<void(time_point)> run,
                       std::function<void(const caf::error&)> failed, time_point now);
  compute_ptr make_turn(const std::string& key, std::function<void(time_point)> run,
                        std::function<void(const caf::error&)> failed, bool drop = false);
  void drop_in_turn();
  remaining_ttl retime(std::string_view key, uint64_t expiry_ms, time_point now);
  static void fail_compute(const compute_ptr& job, const caf::error& why);
  // Runs `job` again after a wait, answering through its waiter.
  void resume(const compute_ptr& job, time_point now, bool from_queue = false);

  /// Puts `op` behind the key's computes, as one that ignores what it finds (op's links).
  void queue_behind_computes(pending_write op);
  // Write-through: an invalidation from elsewhere (another node, the database's change
  // feed, a repair) came while the store had the put: the value it would install may be
  // older than the change the invalidation stands for (rule 1, as for loads).
  void void_pending_puts(std::string_view key);
  void void_all_pending_puts();
  uint64_t clear_entries(); // every entry and what refers to one, here only
  std::optional<caf::expected<bool>> submit_write(pending_write op, time_point now,
                                                  bool at_front = false);
  // Into the write-back line, to fail with `overloaded` after the room wait.
  void join_line(pending_write op, time_point now, bool front = false);
  bool line_full() const noexcept;  // writes: at most `max_parked` (shard_writes.cpp)
  bool turns_full() const noexcept; // set_ttl calls: as many; drops may pass it
  static pending_write in_line(const compute_ptr& job);
  void accept_dirty(pending_write op, time_point now);
  entry_id install(value v, ttl t, time_point now, const read_leases::look& leases,
                   bool keep_links = false,
                   std::optional<time_point> read_at = std::nullopt);
  /// `overloaded` if `v` is a new key and the table is full (2^32 - 1).
  caf::error check_room(const value& v);
  bool in_policy(entry_id id) const {
    return policy_ && (dirty_.empty() || !dirty_.count(id));
  }

  shard_options cfg_;
  bool weigh_bytes_;
  std::shared_ptr<read_side> reads_;
  entry_table& table_; // reads_->table
  std::unique_ptr<eviction_policy> policy_;
  // Min-heap of deadlines. Overwritten or removed entries leave theirs, skipped when
  // popped; rebuilt once stale items outnumber live ones, so it stays O(live TTLs).
  std::vector<deadline> deadlines_;
  uint64_t expiring_entries_ = 0;
  lease_watch lease_watch_; // what it last saw of its leases
  cache_stats stats_;
  // Read-through state, empty for caches without a loader.
  load_table loads_;
  struct load_facts {
    uint32_t delta_us = 0;        // how long the entry's last load took
    uint64_t next_draw_us = 0;    // no XFetch draw before this time
    uint64_t next_refresh_ms = 0; // a refresh failed: none before this time
  };
  std::unordered_map<entry_id, load_facts> load_facts_; // of loaded entries
  std::unordered_set<entry_id> stale_;                  // entries whose reload failed
  negative_cache negatives_;
  uint64_t stale_window_ms_ = 0;
  uint64_t unkept_through_ms_ = 0; // a repair's cap: what expires by it is not kept
  std::mt19937_64 rng_;
  std::vector<shard_write> outbox_; // write modes (empty without one): to hand over
  std::shared_ptr<held_links> held_links_; // write-through puts' names, at the store
  awaiting_writes awaiting_;               // handed to the store or the flusher
  write_line<pending_write> line_;         // write-back: parked for room
  // Entry -> its newest write's number; a pool hands the nodes round (no malloc a put).
  std::pmr::unsynchronized_pool_resource dirty_nodes_;
  std::pmr::unordered_map<entry_id, uint64_t> dirty_{&dirty_nodes_};
  uint64_t write_seq_ = 0;
  // Per key: writes awaiting the store (write-through) and a compute loading
  // it (all of it under write-back); and what waits behind them, in order.
  std::unordered_map<std::string, uint32_t, key_hasher> awaiting_keys_;
  std::unordered_set<std::string, key_hasher> computes_loading_;
  std::unordered_map<std::string, std::deque<compute_ptr>, key_hasher> computes_waiting_;
  time_point step_now_{};    // the time of the load or answer being completed
  bool step_current_ = true; // that load was not voided, nor slower than a lapse's cap
  bool stopping_ = false;    // in the destructor: waiters only fail
  bool computing_parked_ = false, parked_compute_wrote_ = false; // its write goes first
  bool room_returned_ = false;                                   // see take_room_returned
  caf::error writer_lost_;                                       // see writer_lost
  // Dependencies, empty for caches without any.
  dependency_index deps_;
  // What each entry with dependencies adds to `stats_.bytes` (`dependencies_charge`), so
  // that `max-bytes` bounds the index too: names are the caller's, often a client's.
  std::unordered_map<entry_id, uint64_t> deps_charge_;
  // Its links (an invalidation may have taken them already) and its charge.
  void forget_deps(entry_id id); // shard_deps.cpp
  // `deps` within limits (and max-bytes with `v`); linked to `key`'s entry if there.
  caf::error check_links(const value& v, const dependencies& deps);
  void link(const std::string& key, const dependencies& deps); // then enforce_bound
  std::vector<std::string> cascades_out_;
  // Distributed caches: what other nodes must hear about.
  std::vector<key_change> changed_out_;
  bool cleared_out_ = false;
  // The change listener's outbox (`notify_changes`).
  key_batch key_changes_;
  bool all_changed_ = false;
};

} // namespace karlton
