// The options of a cache, their defaults, their checks, and the `karlton.*`
// keys through which CAF's configuration system (command line, ini) sets them.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <caf/actor_system_config.hpp>
#include <caf/config_option_set.hpp>
#include <caf/error.hpp>
#include <caf/timespan.hpp>

#include <karlton/base/key_changes.hpp>
#include <karlton/base/peer_options.hpp>
#include <karlton/base/policies.hpp>
#include <karlton/base/postgres_options.hpp>
#include <karlton/messages/shard_interface.hpp>
#include <karlton/messages/ttl.hpp>
#include <karlton/messages/writes.hpp>
#include <karlton/stores/store.hpp>

namespace karlton {

/// The longest duration any option takes: a year. Longer is "never" for a
/// cache, and it keeps the code far from what it cannot represent: int64
/// nanoseconds overflow `now + d` past 292 years and `d * 3 / 4` past 97,
/// and entry expiries are 40-bit milliseconds (34.8 years).
constexpr caf::timespan max_option_duration = std::chrono::hours{24 * 365};

/// Shards a cache has at most, whether counted or one per scheduler thread:
/// each is an actor with its own queue and tables, more add only overhead.
constexpr uint32_t max_shards = 1024;

/// How a cache's changes reach other nodes; see `cache_options::distributed`.
enum class distribution : uint8_t {
  local, ///< this node only
  async, ///< other nodes are told; calls do not wait for them
  sync,  ///< blocking calls wait until every live node applied the change
};

/// One named cache: one data type with its own strategy (the guide's "layer
/// strategies per data type"). Defaults come from the `karlton.*` settings.
struct cache_options {
  /// Unique within the runtime; letters, digits, '-', '_' and '.'.
  std::string name;
  /// TTL of a put that does not give one. `ttl::never()` keeps entries until
  /// they are erased or evicted. Setting: `karlton.default-ttl` (0 = never;
  /// otherwise 1ns..365 days, see `max_option_duration`).
  ttl default_ttl = ttl::never();
  /// Shards (actors) of this cache, at most `max_shards`; 0 means one per
  /// scheduler thread, up to `max_shards`. Setting: `karlton.shards`.
  uint32_t shards = 0;
  /// Size bounds for the whole cache (0: unbounded), split evenly over its
  /// shards. Settings: `karlton.max-entries`, `karlton.max-bytes`.
  uint64_t max_entries = 0;
  uint64_t max_bytes = 0; ///< key + value bytes (see `value::charge`); 0: unbounded
  /// Setting: `karlton.policy` ("tinylfu" or "lru").
  eviction_policy_kind policy = eviction_policy_kind::tiny_lfu;
  /// Largest key and value a put accepts (defaults and their reasons:
  /// `default_max_key_bytes`). Settings: `karlton.max-key-bytes`,
  /// `karlton.max-value-bytes`.
  uint64_t max_key_bytes = default_max_key_bytes;
  uint64_t max_value_bytes = default_max_value_bytes; ///< see `max_key_bytes`
  /// How long a blocking call waits, all its shards together (1ns..365
  /// days). Setting: `karlton.call-timeout`.
  caf::timespan call_timeout = std::chrono::seconds{5};
  /// Jobs queued per shard from plain threads before callers wait (blocking
  /// calls until their timeout, then `overloaded`). 2..2^18: each queued job
  /// takes a 16-byte slot, allocated when the cache is made (256 KiB a shard
  /// by default, 4 MiB at most). A job is one call, or up to 16 puts of a
  /// `put_batch` (a RESP connection's pipelined SETs), so the bound in puts
  /// is up to 16 times this. Setting: `karlton.ingress-capacity`.
  uint32_t ingress_capacity = 16384;
  /// Told about every removal, on the shard's thread; must not block.
  removal_callback on_removal;
  /// Told about every removal by message.
  removal_listener_actor removal_listener;
  /// Told which keys changed, by every cause, new keys included (a front
  /// end's client-side caching); on the shard's thread; must not block. Null:
  /// nothing is collected.
  std::shared_ptr<key_change_listener> change_listener;

  // -- read-through loading (`get_or_load`) -----------------------------------
  /// Fetches a missing key. It runs on one of `loader_concurrency` threads of
  /// its own, never on a shard, so it may block. Empty: no read-through.
  load_function loader;
  /// Or an actor that loads: shards send it `(load, key, id)` and install the
  /// `load_outcome` it answers (its `key`, `id` and, if 0, `took` are filled
  /// in by the shard). It may answer later through a response promise, e.g.
  /// after asking another service; an error answer (or the actor going down)
  /// fails the load. The cache neither spawns nor stops it. Exclusive with
  /// `loader`; null: none.
  loader_actor load_actor;
  /// Loader threads of this cache, 1..256 (each is a thread of its own).
  /// Setting: `karlton.loader-concurrency`.
  uint32_t loader_concurrency = 4;
  /// A load that has not finished this long after it started fails its
  /// waiters with `timeout` and is forgotten (a late answer is dropped), so
  /// a hung loader leaves no callers and load entries behind; counted in
  /// `cache_stats::load_timeouts`. 0: never. Setting: `karlton.load-timeout`.
  caf::timespan load_timeout = std::chrono::seconds{60};
  /// A `get_or_load` of a value older than this returns it at once and
  /// starts one background reload. 0: off; at most 49 days (ages are 32-bit
  /// milliseconds, which wrap at 49.7 days). Setting: `karlton.refresh-after`.
  caf::timespan refresh_after{0};
  /// Refresh or expire before the TTL runs out: none, xfetch or naive (the
  /// guide's). Setting: `karlton.early-refresh`.
  early_refresh_mode early_refresh = early_refresh_mode::none;
  /// XFetch's (or the naive mode's) beta; > 0. Setting: `karlton.beta`.
  double beta = 1.0;
  /// Uniform numbers in (0, 1] for the early modes, for reproducible tests.
  /// Called on shard threads, concurrently if the cache has several shards.
  /// Empty: a generator per shard, seeded from `seed` and the shard's index.
  std::function<double()> random;
  uint64_t seed = 1; ///< seeds the per-shard generators when `random` is empty
  /// How long a failed load's error is remembered: `get_or_load` of the key
  /// answers it without loading again, until a put, erase or clear of the key
  /// or the time runs out. 0: off. Setting: `karlton.negative-ttl`.
  caf::timespan negative_ttl{0};
  /// Stale-if-error (RFC 5861): expired entries are kept this long past
  /// their expiry (not served by `get`); if a `get_or_load`'s load of one
  /// fails in that window, the waiters get the old value instead of the
  /// error. Until the timer reclaims them they still count in `entries`,
  /// `bytes` and the size bound. 0: off. Setting: `karlton.stale-if-error`.
  caf::timespan stale_if_error{0};

  // -- store, write-through and write-back --------------------------------------
  /// The source of truth (e.g. `sqlite_store::open`). Misses of `get_or_load`
  /// load from it when no `loader` is given (a key it lacks: `not_found`).
  std::shared_ptr<store> backing_store;
  /// none, write_through or write_back; the last two need `backing_store`.
  /// Setting: `karlton.write-mode`.
  write_mode writes = write_mode::none;
  /// Write-back: a batch (one transaction) is written once this many keys are
  /// dirty (1..1000000) or the oldest dirty write is `flush_interval` old.
  /// Settings: `karlton.batch-size`, `karlton.flush-interval`.
  uint32_t batch_size = 1000;
  caf::timespan flush_interval = std::chrono::milliseconds{100}; ///< see `batch_size`
  /// Write-back: writes not yet stored, at most. A put beyond it waits for
  /// room up to 3/4 of `call_timeout`, then fails with `overloaded` without
  /// being applied. Setting: `karlton.max-dirty`.
  uint64_t max_dirty = 100'000;
  /// Write-back: backoff of retries after a failed batch, from base doubling
  /// up to max, with jitter. Settings: `karlton.retry-base`, `karlton.retry-max`.
  caf::timespan retry_base = std::chrono::milliseconds{10};
  caf::timespan retry_max = std::chrono::seconds{5}; ///< see `retry_base`
  /// Write-back: an append-only journal file; a put is acknowledged once its
  /// record is durable (group commit), and the journal is replayed into the
  /// store when the cache is created. Empty: none. Setting: `karlton.journal`.
  std::string journal_path;
  /// Write-back with a journal: once the journal holds this many bytes, the
  /// next group commit rewrites it with only the writes not yet stored, so a
  /// steady stream keeps it under max(this, 2 x the unstored writes' records)
  /// plus one group. Setting: `karlton.journal-max-bytes`.
  uint64_t journal_max_bytes = uint64_t{64} << 20;

  // -- distribution across nodes (see runtime::start_cluster) -------------------

  /// `local` (default): this node only. `async`: puts, erases and clears are
  /// also invalidated on every other node; calls return after the local
  /// change and the hand-over to the peer actor. `sync`: blocking calls
  /// return once every live node applied the invalidation, or `timeout`
  /// naming the nodes that did not (futures and callbacks stay async).
  distribution distributed = distribution::local;

  // -- the database's own changes (see runtime::start_change_feed) ------------

  /// Invalidate entries when their rows change in the database, whoever
  /// changed them (`psql`, another service, a migration). Needs a
  /// `backing_store` that reports its changes (`postgres_store`) and a
  /// running change feed. Hits stop while the feed cannot prove it hears
  /// everything (`postgres_options::lease`). karlton-node sets it from
  /// `karlton.postgres.listen` when `node.store` is a PostgreSQL URI.
  bool store_changes = false;
};

/// Checks every option; the error is `invalid_option` and names the option.
caf::error validate(const cache_options& opts);

/// Declares the `karlton.*` options, so `--karlton.max-entries=...` and the
/// `[karlton]` section of caf-application.ini are accepted. Call it from the
/// constructor of your `actor_system_config` subclass: `add_options(custom_options_)`.
void add_options(caf::config_option_set& opts);

/// Cache options as the settings in `cfg` give them (defaults for the rest).
/// Errors: `invalid_option` for a value out of range, e.g. an unknown policy.
caf::expected<cache_options> cache_options_from(const caf::actor_system_config& cfg);

/// A node's place in a cluster: where it listens, what it proves and whom it
/// joins (here), and how it batches, times out and repairs (`peer_options`,
/// whose fields and defaults are shared with the peer actor); the
/// `karlton.cluster.*` keys.
struct cluster_options : peer_options {
  /// How other nodes know this one; empty: "host:port".
  std::string node_name;
  /// The address it listens on (loopback unless told otherwise) and the
  /// port (0: any free one; `runtime::cluster_port` tells which).
  std::string host = "127.0.0.1";
  uint16_t port = 0; ///< see `host`
  /// Nodes to join, as "host:port"; one live member is enough.
  std::vector<std::string> seeds;
};

/// Checks `o`; the error names the bad option.
caf::error validate(const cluster_options& o);

/// True if a node with `o`, in an actor system with `cfg`, listens where
/// other hosts may reach it (not loopback) without TLS that verifies peers
/// (`tls` with `openssl.cafile` or `openssl.capath`). Then any host that
/// reaches the port can crash the node through CAF 0.17 (README, Limits), and
/// `runtime::start_cluster` logs a warning saying so.
bool open_to_strangers(const cluster_options& o, const caf::actor_system_config& cfg);

/// Below this many bytes the cluster secret is logged as guessable at start:
/// one handshake's answer lets anyone test guesses offline (README, Limits).
constexpr size_t min_strong_secret_bytes = 16;

/// True if a node with `o` may stay frozen long enough for the others to drop
/// it (after `member-timeout`, or CAF's `middleman.connection-timeout`: 2 s)
/// and still find its lease valid when it runs again, because it tells a
/// stall only past `heartbeat` + `read-lease`: it then serves what they
/// invalidated meanwhile until it hears of the gap. `runtime::start_cluster`
/// logs a warning; the defaults are safe.
bool lease_outlives_drop(const cluster_options& o, const caf::actor_system_config& cfg);

/// Cluster options as the config's `karlton.cluster.*` keys give them.
caf::expected<cluster_options> cluster_options_from(const caf::actor_system_config& cfg);

/// PostgreSQL's settings as the config's `karlton.postgres.*` keys give them
/// (defaults: `postgres_options`), with `uri` instead of `karlton.postgres.uri`
/// if given (karlton-node's `node.store`); `invalid_option` names one out of
/// range.
caf::expected<postgres_options>
postgres_options_from(const caf::actor_system_config& cfg,
                      std::optional<std::string> uri = std::nullopt);

/// The cores this process may use (at least 1): those its CPU affinity mask
/// allows (taskset, a container's cpuset), else all the machine has, and no
/// more than a CFS quota of its cgroups allows, rounded up (docker --cpus,
/// Kubernetes CPU limits, systemd's CPUQuota; cgroup v1 and v2).
size_t usable_cores() noexcept;

/// An actor system config with karlton's types, options and the scheduler
/// settings measured in CAF-0.17.md: as many threads as usable cores, and no
/// "moderate" polling phase (it makes a call from a plain thread wait ~100 us
/// for a sleeping worker; without it, ~30 us).
class runtime_config : public caf::actor_system_config {
public:
  runtime_config();

  /// Reads the command line (CAF's options, karlton's `karlton.*`, and those
  /// a subclass adds) and caf-application.ini. Unlike a bare `parse`, it
  /// takes a boolean as `--flag=true` or `--flag=false` (the ini file's
  /// spelling; CAF 0.17 wants a bare `--flag`), a zero duration without a
  /// unit (`--karlton.negative-ttl=0`), and `--help` as the long help (the
  /// short one lists only CAF's global options). Errors: `invalid_option`
  /// naming the argument and why (`option '--x': not_an_option`).
  /// Arguments that are not options stay in `remainder`. A key under
  /// `karlton` or `node` in the config file that no option declares is
  /// refused too, and one whose value is not of the option's type (a number
  /// for a string): CAF 0.17 ignores both silently. The config file is read
  /// and checked here, and CAF gets its text, never its path (a regular file
  /// or a pipe, at most 1 MiB, no NUL byte, nested at most 64 deep:
  /// runtime/config_file.hpp); a duration beyond 64-bit nanoseconds is
  /// refused in the file and on the command line; `--flag=false` wins over
  /// the file's true, and the command line's last word counts.
  caf::error parse_command_line(int argc, char** argv);

  /// CAF's `--dump-config`, with secrets (the cluster secret, passwords, URIs)
  /// shown as "***".
  caf::settings dump_content() const override;

private:
  caf::error check_declared() const;

  std::string config_text_; // the config file as read, checked (config_file::read)
};

/// A bad command line given to `runtime(argc, argv)`; `what()` says which
/// argument and why, `error()` is the `invalid_option` error.
class option_error : public std::invalid_argument {
public:
  /// Wraps `err`; `what()` is `describe(err)`.
  explicit option_error(caf::error err);
  /// The `invalid_option` error it was made from.
  const caf::error& error() const noexcept { return err_; }

private:
  caf::error err_;
};

} // namespace karlton
