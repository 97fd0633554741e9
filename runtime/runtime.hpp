// The embedding runtime: an actor system (owned or borrowed) and named caches.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>

#include <karlton/base/clock.hpp>
#include <karlton/base/postgres_options.hpp>
#include <karlton/messages/bus_interface.hpp>
#include <karlton/messages/changes.hpp>
#include <karlton/messages/peer_interface.hpp>
#include <karlton/runtime/cache.hpp>
#include <karlton/runtime/dependency_graph.hpp>
#include <karlton/runtime/log.hpp>
#include <karlton/runtime/options.hpp>

/// karlton's whole public API: `runtime` embeds it, `cache` is a handle to one
/// named cache, `errc` lists every failure a call can return.
namespace karlton {

// Internals the runtime holds or its private steps name; only their
// definitions' files (never installed) include them.
class ingress;        // actors/ingress.hpp
class journal;        // stores/journal.hpp
class read_lease;     // actors/read_lease.hpp
class feed_routes;    // actors/feed_routes.hpp
struct change_feed;   // actors/pg_listener_actor.hpp
struct shard_options; // actors/shard_state.hpp
namespace detail {
struct gate; // runtime/bridge.hpp
} // namespace detail

/// Embeds karlton in a service: owns (or borrows) a CAF actor system and the
/// shard actors of its named caches.
///
/// ```
/// karlton::runtime rt{argc, argv};               // CAF's and karlton's options
/// if (rt.help_printed()) return 0;               // --help
/// auto users = rt.create_cache("users");         // caf::expected<cache>
/// users->put("user_123", "John", karlton::ttl::after(std::chrono::minutes{5}));
/// auto v = users->get("user_123");               // caf::expected<value>
/// ```
///
/// Destroying the runtime stops every cache: calls in flight complete with
/// `shut_down` (or their result, if the shard got to them first), and later
/// calls through surviving `cache` handles return `shut_down`. An owned actor
/// system is destroyed with it, which waits for every actor on it: actors
/// the service spawned on `system()` must be stopped first. If any still run
/// a second after shutdown, the log (`set_log_sink`) says how many and how to
/// stop them, and the destructor keeps waiting.
/// @threadsafe
class runtime {
public:
  /// Owns an actor system with `runtime_config`'s defaults.
  explicit runtime(
    std::shared_ptr<const clock> time_source = std::make_shared<steady_clock>());

  /// Owns an actor system configured by the command line: CAF's options
  /// (`--scheduler.max-threads=4`), karlton's (`--karlton.max-entries=1000`,
  /// the defaults of `create_cache(name)` and `default_options`), and
  /// caf-application.ini, as `runtime_config::parse_command_line` reads them.
  /// `--help` prints every option and sets `help_printed()`. Throws
  /// `option_error` for a bad option or a stray argument, saying which and why.
  runtime(int argc, char** argv,
          std::shared_ptr<const clock> time_source = std::make_shared<steady_clock>());

  /// Owns an actor system built from `cfg`, e.g. after `cfg->parse(argc, argv)`.
  explicit runtime(
    std::unique_ptr<runtime_config> cfg,
    std::shared_ptr<const clock> time_source = std::make_shared<steady_clock>());

  /// Uses the service's own actor system. Its config must have karlton's
  /// types (`register_types(cfg)`) and, for `karlton.*` settings, its options
  /// (`add_options(custom_options_)`). `sys` must outlive this runtime.
  explicit runtime(caf::actor_system& sys, std::shared_ptr<const clock> time_source =
                                             std::make_shared<steady_clock>());

  ~runtime();
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  /// Cache options as this runtime's `karlton.*` settings give them. Throws
  /// `option_error`, naming it, for a setting out of range: possible only
  /// on a config the runtime did not parse itself (`runtime(argc, argv)`
  /// refuses such settings at once). Before, it gave every default instead,
  /// and a cache made from them silently lost its other settings.
  cache_options default_options(std::string name) const;

  /// Creates a named cache. Errors: `invalid_option` (naming the option), or
  /// `invalid_option` if the name is taken, `shut_down` after `shutdown()`.
  caf::expected<cache> create_cache(cache_options opts);

  /// Creates a named cache with the `karlton.*` settings; a setting out of
  /// range is `invalid_option`, naming it.
  caf::expected<cache> create_cache(std::string name) {
    auto opts = cache_options_from(sys_->config());
    if (!opts) return std::move(opts.error());
    opts->name = std::move(name);
    return create_cache(std::move(*opts));
  }

  /// The cache called `name`, or `unknown_cache`.
  caf::expected<cache> find_cache(const std::string& name) const;

  /// What `shutdown` could not do.
  struct shutdown_report {
    /// Acknowledged write-back writes that were not stored in time, by cache
    /// (only caches with any). With a journal they are still in it, and are
    /// stored when the cache is created again.
    std::vector<std::pair<std::string, uint64_t>> unstored;
    /// The sum over `unstored`; 0 if shutdown stored everything.
    uint64_t unstored_writes() const {
      uint64_t n = 0;
      for (auto& [name, count] : unstored)
        n += count;
      return n;
    }
  };

  /// Stops every cache (see the class comment), each beside the others. Writes the
  /// store or flusher has finish first (in a write-back cache for at most half of
  /// `flush_timeout`, else all of it), then a write-back cache whose shards stopped
  /// stores its dirty writes; both steps together wait about `flush_timeout` at most
  /// (a negative one counts as 0, one over a year as a year; a flusher that does not
  /// answer gets 1 s more; a loader call still running is waited for). What was not
  /// stored is reported, here and in the log (`set_log_sink`, stderr by default).
  /// A slow load in one cache takes no time from another cache's drain.
  /// Calls racing it get their result or `shut_down`; it waits for callers
  /// still talking to the stopped actors (`force_flush`, `flush_stats`, a
  /// synchronous-mode write), at most their own timeout. Idempotent (a second
  /// call reports nothing); the destructor calls it.
  shutdown_report shutdown(caf::timespan flush_timeout = std::chrono::seconds{30});

  // -- events and dependencies (the bus) ----------------------------------------

  /// Invalidates every entry, in every cache, that depends on `event`, and
  /// what depends on those (transitively), then returns how many entries
  /// went: no read that starts after it returned sees one of them. Also tells
  /// the event's subscribers (`data` is theirs). `invalid_option` for an
  /// empty name; an event nothing depends on removes 0.
  caf::expected<invalidation_summary> emit(const std::string& event,
                                           const std::string& data = {});
  /// The same, returning at once.
  caf::error emit_async(const std::string& event, const std::string& data = {});

  /// Invalidates every entry, in every cache, that depends on `tag` (a tag,
  /// or a key: see `dependencies::on`), transitively; returns when they are
  /// gone from every shard.
  caf::expected<invalidation_summary> invalidate_tag(const std::string& tag);
  /// The same, returning at once; `invalid_option` for an empty tag.
  caf::error invalidate_tag_async(const std::string& tag);

  /// Calls `handler(event, data)` for every emit of `event`, on an actor
  /// thread of its own (keep it short; it must not block on this runtime).
  caf::error
  subscribe(const std::string& event,
            std::function<void(const std::string&, const std::string&)> handler);
  /// Sends `(emit, event, data)` to `subscriber` for every emit of `event`.
  caf::error subscribe(const std::string& event, event_subscriber_actor subscriber);

  /// Every cached entry with dependencies and what it depends on.
  caf::expected<dependency_graph> dependencies_graph();
  /// The bus's counters: events emitted, tags invalidated, cascades, ...
  caf::expected<bus_stats> event_stats();

  // -- monitoring ------------------------------------------------------------------

  /// Every counter of every cache, the flusher, the bus and the peer, in
  /// Prometheus' text format 0.0.4 (one `cache` label per cache), for a
  /// service to serve at its own `/metrics`. Blocking: not inside an actor.
  caf::expected<std::string> metrics_text();

  // -- distributed nodes (the peer actor) -----------------------------------------

  /// Makes this runtime a node: spawns its peer actor, listens on
  /// `opts.host:opts.port` and joins each seed that answers (one is enough).
  /// Returns the port it listens on. Caches created afterwards with
  /// `distributed` other than `local` are invalidated across the nodes.
  /// Errors: `invalid_option` (naming the option, or a second call), or the
  /// middleman's error if the port is taken. Seeds that cannot be reached
  /// are retried in the background.
  caf::expected<uint16_t> start_cluster(cluster_options opts);
  /// Joins the node at `host:port` (and so its cluster); waits for the
  /// handshake. `invalid_option` if the secrets differ.
  caf::error join(const std::string& host, uint16_t port);
  /// The nodes this one is connected to (not itself).
  caf::expected<std::vector<member_info>> members();
  /// Forgets `name`, a member lost without leaving that the operator knows is
  /// gone for good (a crashed machine, a node restarted under another name):
  /// this node's synchronous calls stop naming it as not answered (rule 7)
  /// and it stops reconnecting to it. Each node forgets for itself: run it on
  /// every node that lost it. Never for a node only cut off: it may still
  /// serve what those calls invalidate. If it comes back, or a member lists
  /// it in a join, it is wanted again. `invalid_option` for a current member,
  /// `not_found` for a name not lost.
  caf::error forget_member(const std::string& name);
  /// The peer actor's counters (broadcasts, batches, gaps, repairs, delays).
  caf::expected<peer_stats> cluster_stats();
  /// This node's name and port; empty and 0 before `start_cluster`.
  std::string node_name() const;
  uint16_t cluster_port() const; ///< see `node_name`

  // -- the database's own changes (the change feed) -------------------------------

  /// Starts this runtime's change feed: one connection that LISTENs on
  /// `opts.channel` of the database at `opts.uri`, where `postgres_store`'s
  /// triggers report every committed change of its tables, whoever made it.
  /// Caches created afterwards with `store_changes` lose the keys whose rows
  /// changed (a transaction's together), skip the notifications of their own
  /// store's writes, and are repaired (cleared, or TTLs capped at
  /// `opts.repair_ttl`) whenever the feed may have missed something: on every
  /// (re)connection, a TRUNCATE, a key too long for a notification. Their
  /// hits stop while the feed has not proved for `opts.lease` that it hears
  /// (reads then go to the store). Returns at once: an unreachable server is
  /// retried in the background with backoff. Errors: `invalid_option` (a bad
  /// option, `listen` false, or a second call), `shut_down`.
  caf::error start_change_feed(postgres_options opts);
  /// Returns once every change committed before the call has reached the
  /// fed caches (or a repair covered it) and the feed's lease holds, so the
  /// caches serve hits again: a test, an example or a console can then read
  /// without racing the notification. `timeout` while the feed is down or
  /// cannot prove it hears (a change trigger disabled); `invalid_option`
  /// before `start_change_feed`; `shut_down` if the runtime stops meanwhile;
  /// `blocking_in_actor` inside an actor (it blocks).
  caf::error sync_changes(caf::timespan timeout = std::chrono::seconds{10});
  /// The change feed's counters (zero before `start_change_feed`). Blocking:
  /// not inside an actor.
  caf::expected<karlton::change_feed_stats> change_stats();

  /// True if the command line asked for `--help` (the constructor from
  /// `argc, argv` printed it on stdout): a program then exits.
  bool help_printed() const noexcept {
    return owned_cfg_ != nullptr && owned_cfg_->cli_helptext_printed;
  }

  /// The actor system the shards run on (owned or borrowed), for spawning
  /// the service's own actors; stop them before the runtime is destroyed.
  caf::actor_system& system() noexcept { return *sys_; }
  /// The clock the caches read for TTLs and ages, as given to the constructor.
  const std::shared_ptr<const clock>& time_source() const noexcept { return clock_; }

private:
  static void forget_logger_of_this_thread();

  std::unique_ptr<runtime_config> owned_cfg_;
  std::unique_ptr<caf::actor_system> owned_sys_;
  caf::actor_system* sys_;
  std::shared_ptr<const clock> clock_;
  std::shared_ptr<detail::gate> gate_;
  mutable std::mutex caches_mtx_;
  std::map<std::string, std::shared_ptr<detail::cache_core>> caches_;
  bool stopped_ = false;
  bus_actor bus_;                                      // spawned when first needed
  std::vector<event_subscriber_actor> handler_actors_; // ours, for `subscribe(event, f)`
  int32_t caches_on_bus_ = 0;
  peer_actor peer_;                   // once start_cluster ran
  std::shared_ptr<read_lease> lease_; // the peer's, checked by distributed shards
  uint16_t cluster_port_ = 0;         // published there
  std::string node_name_;
  std::shared_ptr<change_feed> feed_;      // once start_change_feed ran
  std::shared_ptr<feed_routes> fed_;       // the caches it feeds, by table
  std::shared_ptr<read_lease> feed_lease_; // checked by the fed caches' shards

  /// The change feed (null before `start_change_feed`), or `shut_down`.
  caf::expected<std::shared_ptr<change_feed>> live_feed();
  /// Stops the change feed and waits until it is gone (shutdown's first step).
  void stop_change_feed(caf::scoped_actor& self);

  bus_actor ensure_bus(); // with caches_mtx_ held
  /// The bus (spawned if needed), or `shut_down`.
  caf::expected<bus_actor> live_bus();
  /// The peer actor (null before `start_cluster`), or `shut_down`.
  caf::expected<peer_actor> live_peer();
  void join_seeds(const peer_actor& p, const std::vector<std::string>& seeds);

  // create_cache's steps (cache_assembly.cpp), with caches_mtx_ held. The
  // loaders, store writer, journal writer and flusher `opts` asks for; gives
  // the loaders the shards use.
  std::vector<loader_actor> spawn_workers(const cache_options& opts,
                                          std::shared_ptr<journal> log,
                                          shard_options& scfg, detail::cache_core& core);
  /// One shard per inbox, announced to the bus and the peer.
  void spawn_shards(const cache_options& opts, shard_options& scfg,
                    const std::vector<loader_actor>& shard_loaders,
                    std::vector<std::shared_ptr<ingress>> inboxes,
                    detail::cache_core& core);

  /// From now on the change feed invalidates the cache's shards.
  void feed_changes_to(const cache_options& opts, detail::cache_core& core);

  // shutdown's steps (shutdown.cpp).
  shutdown_report stop_actors(caf::timespan flush_timeout);
  void release_actor_handles();
  /// blocking_in_actor on a scheduler thread: the runtime's blocking calls
  /// wait on actors (the bus, the peer, the shards) that thread may have to
  /// run, as a callback that emits waits on its own shard.
  caf::error refused_in_actor() const;
  /// Tells other nodes about a tag or event; with `sync`, waits for them.
  caf::error broadcast(invalidation x, bool sync);
  /// The end of `emit` and `invalidate_tag`: tells other nodes of `x` whatever
  /// this node's round (`local`) said. A round that timed out still runs to its
  /// end here, and before, the other nodes were never told. Waits for them only
  /// if `local` holds; its error first.
  caf::expected<invalidation_summary> reach_all(caf::expected<invalidation_summary> local,
                                                invalidation x);
};

} // namespace karlton
