#include <karlton/runtime/options.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <thread>
#include <type_traits>

#include <caf/config_option_adder.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/settings.hpp>

#include <karlton/messages/cluster.hpp>
#include <karlton/messages/errors.hpp>

#include "runtime/runtime_detail.hpp"

namespace karlton {

namespace {

caf::error bad(const std::string& option, const std::string& why) {
  return make_error(errc::invalid_option, "option " + option + ": " + why);
}

bool valid_name(const std::string& name) {
  return !name.empty() && name.size() <= 128 &&
         std::all_of(name.begin(), name.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
                  c == '.';
         });
}

// -- the ranges of the options, each with its reason ---------------------------

/// A count or size option: `min..max`, and why.
struct size_range {
  const char* option;
  uint64_t min;
  uint64_t max;
  const char* why;
};

constexpr size_range shards_range{
  "shards", 0, max_shards,
  "0 = one per scheduler thread; each shard is an actor with its own "
  "queue and tables, more add only overhead"};
// A shard's entry ids are 32-bit (actors/entry_table.hpp), so no shard holds
// more; nothing beyond 2^48 bytes, the user address space of x86-64 and
// AArch64, can be cached. Larger values only overflowed or hung the shards.
constexpr size_range max_entries_range{"max-entries", 0, UINT32_MAX,
                                       "0 = unbounded; a shard's entry ids are 32-bit"};
constexpr size_range max_bytes_range{
  "max-bytes", 0, uint64_t{1} << 48,
  "0 = unbounded; 2^48 bytes is the user address space of x86-64 and AArch64"};
constexpr size_range ingress_range{
  "ingress-capacity", 2, uint64_t{1} << 18,
  "each slot takes 16 bytes, allocated when the cache is made: 4 MiB a shard at most, "
  "4 GiB for a cache of 1024 shards"};
constexpr size_range loaders_range{"loader-concurrency", 1, 256,
                                   "each loader is a thread of its own"};
constexpr size_range key_bytes_range{"max-key-bytes", 1, UINT32_MAX,
                                     "key sizes are 32-bit"};
constexpr size_range value_bytes_range{"max-value-bytes", 0, UINT32_MAX,
                                       "value sizes are 32-bit"};
constexpr size_range batch_size_range{"batch-size", 1, 1'000'000,
                                      "a batch is one store transaction, held in memory"};
constexpr size_range max_dirty_range{"max-dirty", 1, 1'000'000'000,
                                     "each dirty write holds its value in memory"};
constexpr size_range batch_max_range{"karlton.cluster.batch-max", 1, 1'048'576,
                                     "a batch is one message, held and serialized whole"};
constexpr size_range max_unacked_range{
  "karlton.cluster.max-unacked", 1, uint64_t{1} << 32,
  "each unacknowledged invalidation is held in memory until acknowledged"};

// `prefix` names a setting ("karlton.") rather than a field of the options;
// the cluster's ranges carry theirs.
std::string option_name(const std::string& prefix, const std::string& option) {
  return option.rfind("karlton.", 0) == 0 ? option : prefix + option;
}

caf::error check(const size_range& r, uint64_t v, const std::string& prefix = "") {
  if (v >= r.min && v <= r.max) return caf::none;
  return bad(option_name(prefix, r.option), std::to_string(v) + " is not in " +
                                              std::to_string(r.min) + ".." +
                                              std::to_string(r.max) + " (" + r.why + ")");
}

std::string show(caf::timespan d) {
  auto ns = d.count();
  constexpr int64_t hour = 3'600'000'000'000;
  if (ns != 0 && ns % hour == 0) return std::to_string(ns / hour) + "h";
  if (ns != 0 && ns % 1'000'000'000 == 0) return std::to_string(ns / 1'000'000'000) + "s";
  if (ns != 0 && ns % 1'000'000 == 0) return std::to_string(ns / 1'000'000) + "ms";
  return std::to_string(ns) + "ns";
}

// Ages (entry_table's born_ms) are 32-bit milliseconds: 2^32 ms is 49.7 days,
// so a longer refresh-after would never be reached.
constexpr caf::timespan max_refresh_after = std::chrono::hours{24 * 49};

constexpr const char* duration_why =
  "longer is never for a cache; it keeps now + d and d * 3 / 4 far from int64 "
  "nanosecond overflow";

/// A duration in `min..max`; `zero_means`, if given, also allows 0.
caf::error check_duration(const std::string& option, caf::timespan d, bool positive,
                          const char* zero_means = nullptr,
                          caf::timespan max = max_option_duration,
                          const char* why = duration_why) {
  if (zero_means && d == caf::timespan::zero()) return caf::none;
  auto min = positive ? caf::timespan{1} : caf::timespan::zero();
  if (d >= min && d <= max) return caf::none;
  return bad(option, show(d) + " is not in " + show(min) + ".." + show(max) + " (" +
                       (zero_means ? std::string{"0 = "} + zero_means + "; " : "") + why +
                       ")");
}

// Reads a size option as the 64 bits it has in the config, and checks it
// before it is narrowed: 4294967297 must be refused, not become 1.
template <class T>
caf::error read_size(const caf::actor_system_config& cfg, const size_range& r, T& out) {
  auto key = option_name("karlton.", r.option);
  auto v = caf::get_or(cfg, key, size_t{out});
  if (auto err = check(r, v, "karlton.")) return err;
  out = static_cast<T>(v);
  return caf::none;
}

// Beta as a setting would be written: 1, 0.5.
std::string show_beta(double beta) {
  auto text = std::to_string(beta);
  text.erase(text.find_last_not_of('0') + 1);
  if (!text.empty() && text.back() == '.') text.pop_back();
  return text;
}

// Each option on its own, as a setting may give it (`prefix` "karlton.") or a
// field of cache_options: what `validate` and `cache_options_from` share.
caf::error check_each(const cache_options& o, const std::string& prefix) {
  auto name = [&](const char* option) { return prefix + option; };
  if (!o.default_ttl.valid() || o.default_ttl.is_default())
    return bad(name("default-ttl"), "must be a positive duration (1ns.." +
                                      show(max_option_duration) + ") or never");
  if (!o.default_ttl.is_never())
    if (auto err =
          check_duration(name("default-ttl"), o.default_ttl.duration(), true, "never"))
      return err;
  if (auto err = check(shards_range, o.shards, prefix)) return err;
  if (auto err = check(max_entries_range, o.max_entries, prefix)) return err;
  if (auto err = check(max_bytes_range, o.max_bytes, prefix)) return err;
  if (auto err = check(key_bytes_range, o.max_key_bytes, prefix)) return err;
  if (auto err = check(value_bytes_range, o.max_value_bytes, prefix)) return err;
  if (auto err = check_duration(name("call-timeout"), o.call_timeout, true)) return err;
  if (auto err = check(ingress_range, o.ingress_capacity, prefix)) return err;
  if (auto err = check(loaders_range, o.loader_concurrency, prefix)) return err;
  if (auto err = check_duration(name("load-timeout"), o.load_timeout, true, "never"))
    return err;
  if (auto err = check_duration(name("refresh-after"), o.refresh_after, true, "off",
                                max_refresh_after,
                                "ages are 32-bit milliseconds, which wrap at 49.7 days"))
    return err;
  if (!(o.beta > 0.0) || !std::isfinite(o.beta))
    return bad(name("beta"), "must be a positive number");
  if (auto err = check_duration(name("negative-ttl"), o.negative_ttl, true, "off"))
    return err;
  if (auto err = check_duration(name("stale-if-error"), o.stale_if_error, true, "off"))
    return err;
  if (auto err = check(batch_size_range, o.batch_size, prefix)) return err;
  if (auto err = check_duration(name("flush-interval"), o.flush_interval, true))
    return err;
  if (auto err = check(max_dirty_range, o.max_dirty, prefix)) return err;
  if (auto err = check_duration(name("retry-base"), o.retry_base, true)) return err;
  if (auto err = check_duration(name("retry-max"), o.retry_max, true)) return err;
  if (o.retry_max < o.retry_base)
    return bad(name("retry-base") + ", " + name("retry-max"),
               "need 0 < retry-base <= retry-max");
  if (o.journal_max_bytes < 1)
    return bad(name("journal-max-bytes"), "must be at least 1");
  return caf::none;
}

} // namespace

caf::error validate(const cache_options& o) {
  // Every option is checked whatever else is set: one that is unused now
  // (e.g. loader-concurrency of a cache that loads from its store) must still
  // be in range when it is used.
  if (!valid_name(o.name))
    return bad("name",
               "'" + o.name +
                 "' must be 1-128 characters of letters, digits, '-', '_' or '.'");
  if (auto err = check_each(o, "")) return err;
  if (o.loader && o.load_actor)
    return bad("loader, load_actor",
               "are mutually exclusive: give a load function or a loader actor");
  if (o.writes != write_mode::none && !o.backing_store)
    return bad("write-mode", std::string{to_string(o.writes)} + " needs a backing_store");
  if (!o.journal_path.empty() && o.writes != write_mode::write_back)
    return bad("journal", "is for write_back caches only");
  auto loads = o.loader || o.load_actor || o.backing_store;
  if (!loads && o.refresh_after > caf::timespan::zero())
    return bad("refresh-after", "needs a loader: only a read-through cache can reload");
  if (!loads && o.early_refresh != early_refresh_mode::none)
    return bad("early-refresh", "needs a loader: only a read-through cache can reload");
  if (!loads && o.negative_ttl > caf::timespan::zero())
    return bad("negative-ttl", "needs a loader: only a read-through cache loads");
  if (!loads && o.stale_if_error > caf::timespan::zero())
    return bad("stale-if-error", "needs a loader: only a read-through cache loads");
  if (o.store_changes && !(o.backing_store && o.backing_store->origin()))
    return bad("store_changes", "needs a backing_store that reports its table's "
                                "changes (postgres_store)");
  return caf::none;
}

namespace {

// A setting's help text with its default, taken from the options structs so a
// default is changed in one place.
template <class T>
std::string with_default(const std::string& text, const T& value) {
  if constexpr (std::is_same_v<T, caf::timespan>)
    return text + " (default " + show(value) + ")";
  else
    return text + " (default " + std::to_string(value) + ")";
}

} // namespace

void add_options(caf::config_option_set& opts) {
  const cache_options cache;
  const cluster_options cluster;
  caf::config_option_adder{opts, "karlton"}
    .add<caf::timespan>("default-ttl", "TTL of puts that give none (0 = never expire)")
    .add<size_t>("shards", "shards per cache (0 = one per scheduler thread)")
    .add<size_t>("max-entries", "entries per cache (0 = unbounded)")
    .add<size_t>("max-bytes", "key + value bytes per cache (0 = unbounded)")
    .add<std::string>("policy", "eviction policy: tinylfu (default) or lru")
    .add<size_t>("max-key-bytes",
                 with_default("largest key accepted", cache.max_key_bytes))
    .add<size_t>("max-value-bytes",
                 with_default("largest value accepted", cache.max_value_bytes))
    .add<caf::timespan>("call-timeout",
                        with_default("how long blocking calls wait", cache.call_timeout))
    .add<size_t>("ingress-capacity",
                 with_default("jobs queued per shard from plain threads, 2..262144",
                              cache.ingress_capacity))
    .add<size_t>("loader-concurrency",
                 with_default("loader threads per read-through cache, 1..256",
                              cache.loader_concurrency))
    .add<caf::timespan>("load-timeout",
                        with_default("how long a load may take before its callers get "
                                     "timeout (0 = never)",
                                     cache.load_timeout))
    .add<caf::timespan>("refresh-after", "age after which a read reloads (0 = off)")
    .add<std::string>("early-refresh", "none (default), xfetch or naive")
    .add<double>("beta", "beta of the early-refresh modes (default " +
                           show_beta(cache.beta) + ")")
    .add<caf::timespan>("negative-ttl", "how long a load failure is remembered (0 = off)")
    .add<caf::timespan>("stale-if-error",
                        "how long past expiry an entry may stand in for a failed load "
                        "(0 = off)")
    .add<std::string>("write-mode", "none (default), write_through or write_back")
    .add<size_t>("batch-size",
                 with_default("write-back: keys per store transaction", cache.batch_size))
    .add<caf::timespan>(
      "flush-interval",
      with_default("write-back: longest a dirty write waits", cache.flush_interval))
    .add<size_t>("max-dirty", with_default("write-back: writes not yet stored, at most",
                                           cache.max_dirty))
    .add<caf::timespan>("retry-base",
                        with_default("write-back: first retry backoff", cache.retry_base))
    .add<caf::timespan>(
      "retry-max", with_default("write-back: longest retry backoff", cache.retry_max))
    .add<std::string>("journal", "write-back: journal file (default none)")
    .add<size_t>(
      "journal-max-bytes",
      with_default("write-back: journal length in bytes that makes it rewritten",
                   cache.journal_max_bytes))
    .add<std::string>("distribution", "local, async or sync (default local; in "
                                      "karlton-node async): see README");
  caf::config_option_adder{opts, "karlton.cluster"}
    .add<std::string>("node-name", "this node's name (default host:port)")
    .add<std::string>("host", "address to listen on (default 127.0.0.1)")
    .add<uint16_t>("port", "port to listen on (default 0: any free port)")
    .add<std::string>("secret", "the cluster secret every node must know")
    .add<std::vector<std::string>>("seeds", "nodes to join, as [\"host:port\", ...]")
    .add<caf::timespan>(
      "batch-delay",
      with_default("longest an invalidation waits behind a batch in flight",
                   cluster.batch_delay))
    .add<size_t>("batch-max",
                 with_default("invalidations per batch at most", cluster.batch_max))
    .add<size_t>("max-unacked",
                 with_default("invalidations a member may lag behind before "
                              "it is skipped and repairs",
                              cluster.max_unacked))
    .add<caf::timespan>("sync-timeout",
                        with_default("how long a sync invalidation waits for other nodes",
                                     cluster.sync_timeout))
    .add<caf::timespan>(
      "heartbeat", with_default("how often a node shows it is alive", cluster.heartbeat))
    .add<caf::timespan>("member-timeout",
                        with_default("silence after which a member is lost (repair, "
                                     "reconnect)",
                                     cluster.member_timeout))
    .add<caf::timespan>("read-lease", with_default("how long after sending what every "
                                                   "member took last hits are still "
                                                   "served",
                                                   cluster.read_lease))
    .add<caf::timespan>("repair-ttl", "on a gap or loss, cap every TTL to this instead "
                                      "of clearing (default 0: clear)")
    .add<bool>("tls", "links over TLS (default false)");
  detail::add_postgres_options(opts);
}

bool open_to_strangers(const cluster_options& o, const caf::actor_system_config& cfg) {
  bool loopback =
    o.host == "localhost" || o.host == "::1" || o.host.rfind("127.", 0) == 0;
  bool verified = o.tls && (!cfg.openssl_cafile.empty() || !cfg.openssl_capath.empty());
  return !loopback && !verified;
}

bool lease_outlives_drop(const cluster_options& o, const caf::actor_system_config& cfg) {
  auto timeout = caf::get_or(cfg, "middleman.connection-timeout", caf::timespan::max());
  return o.heartbeat + o.read_lease >= std::min(o.member_timeout, timeout);
}

caf::error validate(const cluster_options& o) {
  if (o.secret.empty())
    return bad("karlton.cluster.secret", "is empty: every node needs the cluster secret");
  if (o.host.empty()) return bad("karlton.cluster.host", "is empty");
  // Other nodes refuse a longer name or host in the handshake.
  if (o.host.size() > max_node_host_bytes)
    return bad("karlton.cluster.host",
               "is longer than " + std::to_string(max_node_host_bytes) + " bytes");
  // Printed on lines scripts read (`listening on`, `members a,b`): no
  // newline, escape, space or comma. host:port, IPv6's brackets and a scope.
  auto plain = [](const std::string& x) {
    return std::all_of(x.begin(), x.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) ||
             std::string_view{"._-:[]%"}.find(c) != std::string_view::npos;
    });
  };
  if (!plain(o.host))
    return bad("karlton.cluster.host",
               "holds a byte other than letters, digits and ._-:[]%");
  if (!plain(o.node_name))
    return bad("karlton.cluster.node-name",
               "holds a byte other than letters, digits and ._-:[]%");
  // Without a node name, the name is host:port (runtime/cluster.cpp).
  auto name_bytes = o.node_name.empty() ? o.host.size() + 6 : o.node_name.size();
  if (name_bytes > max_node_name_bytes)
    return bad(o.node_name.empty() ? "karlton.cluster.host" : "karlton.cluster.node-name",
               "makes a node name longer than " + std::to_string(max_node_name_bytes) +
                 " bytes");
  if (auto err = check(batch_max_range, o.batch_max)) return err;
  if (auto err = check(max_unacked_range, o.max_unacked)) return err;
  for (auto& [name, d] :
       {std::pair{"batch-delay", o.batch_delay},
        std::pair{"sync-timeout", o.sync_timeout}, std::pair{"heartbeat", o.heartbeat},
        std::pair{"member-timeout", o.member_timeout},
        std::pair{"read-lease", o.read_lease}})
    if (auto err = check_duration(std::string{"karlton.cluster."} + name, d, true))
      return err;
  if (auto err =
        check_duration("karlton.cluster.repair-ttl", o.repair_ttl, true, "clear"))
    return err;
  // A heartbeat of 1 ns with a lease of 2 ns kept a node at 81 % of a core,
  // clearing its caches 9,000 times a second: heartbeats are messages, and a
  // lease must outlast at least one late heartbeat.
  if (o.heartbeat < std::chrono::milliseconds{1})
    return bad("karlton.cluster.heartbeat", "must be at least 1 ms");
  if (o.read_lease < 2 * o.heartbeat)
    return bad("karlton.cluster.read-lease", "must be at least twice the heartbeat");
  if (o.member_timeout < 2 * o.heartbeat)
    return bad("karlton.cluster.member-timeout", "must be at least twice the heartbeat");
  for (auto& seed : o.seeds) {
    auto colon = seed.rfind(':');
    auto port = colon == std::string::npos ? "" : seed.substr(colon + 1);
    bool numeric =
      !port.empty() && port.size() <= 5 &&
      std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (colon == 0 || !numeric || std::stoul(port) == 0 || std::stoul(port) > 65535)
      return bad("karlton.cluster.seeds", "'" + seed + "' is not host:port");
  }
  return caf::none;
}

caf::expected<cluster_options> cluster_options_from(const caf::actor_system_config& cfg) {
  cluster_options o;
  o.node_name = caf::get_or(cfg, "karlton.cluster.node-name", o.node_name);
  o.host = caf::get_or(cfg, "karlton.cluster.host", o.host);
  o.port = caf::get_or(cfg, "karlton.cluster.port", o.port);
  o.secret = caf::get_or(cfg, "karlton.cluster.secret", o.secret);
  o.seeds = caf::get_or(cfg, "karlton.cluster.seeds", o.seeds);
  o.batch_delay = caf::get_or(cfg, "karlton.cluster.batch-delay", o.batch_delay);
  if (auto err = read_size(cfg, max_unacked_range, o.max_unacked)) return err;
  if (auto err = read_size(cfg, batch_max_range, o.batch_max)) return err;
  o.sync_timeout = caf::get_or(cfg, "karlton.cluster.sync-timeout", o.sync_timeout);
  o.heartbeat = caf::get_or(cfg, "karlton.cluster.heartbeat", o.heartbeat);
  o.member_timeout = caf::get_or(cfg, "karlton.cluster.member-timeout", o.member_timeout);
  o.read_lease = caf::get_or(cfg, "karlton.cluster.read-lease", o.read_lease);
  o.repair_ttl = caf::get_or(cfg, "karlton.cluster.repair-ttl", o.repair_ttl);
  o.tls = caf::get_or(cfg, "karlton.cluster.tls", o.tls);
  if (auto err = validate(o)) return err;
  return o;
}

caf::expected<cache_options> cache_options_from(const caf::actor_system_config& cfg) {
  cache_options o;
  if (auto d = caf::get_if<caf::timespan>(&cfg, "karlton.default-ttl")) {
    // Checked here, where the value is still known: ttl::after(-2ns) is
    // merely invalid.
    if (auto err = check_duration("karlton.default-ttl", *d, true, "never")) return err;
    o.default_ttl = d->count() == 0 ? ttl::never() : ttl::after(*d);
  }
  if (auto err = read_size(cfg, shards_range, o.shards)) return err;
  o.max_entries = caf::get_or(cfg, "karlton.max-entries", size_t{0});
  o.max_bytes = caf::get_or(cfg, "karlton.max-bytes", size_t{0});
  auto policy = caf::get_or(cfg, "karlton.policy", std::string{"tinylfu"});
  if (policy == "lru")
    o.policy = eviction_policy_kind::lru;
  else if (policy == "tinylfu")
    o.policy = eviction_policy_kind::tiny_lfu;
  else
    return bad("karlton.policy", "'" + policy + "' is not one of tinylfu, lru");
  if (auto err = read_size(cfg, key_bytes_range, o.max_key_bytes)) return err;
  if (auto err = read_size(cfg, value_bytes_range, o.max_value_bytes)) return err;
  o.call_timeout = caf::get_or(cfg, "karlton.call-timeout", o.call_timeout);
  if (auto err = read_size(cfg, ingress_range, o.ingress_capacity)) return err;
  if (auto err = read_size(cfg, loaders_range, o.loader_concurrency)) return err;
  o.load_timeout = caf::get_or(cfg, "karlton.load-timeout", o.load_timeout);
  o.refresh_after = caf::get_or(cfg, "karlton.refresh-after", o.refresh_after);
  auto early = caf::get_or(cfg, "karlton.early-refresh", std::string{"none"});
  if (early == "xfetch")
    o.early_refresh = early_refresh_mode::xfetch;
  else if (early == "naive")
    o.early_refresh = early_refresh_mode::naive;
  else if (early != "none")
    return bad("karlton.early-refresh",
               "'" + early + "' is not one of none, xfetch, naive");
  o.beta = caf::get_or(cfg, "karlton.beta", o.beta);
  o.negative_ttl = caf::get_or(cfg, "karlton.negative-ttl", o.negative_ttl);
  o.stale_if_error = caf::get_or(cfg, "karlton.stale-if-error", o.stale_if_error);
  auto mode = caf::get_or(cfg, "karlton.write-mode", std::string{"none"});
  if (mode == "write_through")
    o.writes = write_mode::write_through;
  else if (mode == "write_back")
    o.writes = write_mode::write_back;
  else if (mode != "none")
    return bad("karlton.write-mode",
               "'" + mode + "' is not one of none, write_through, write_back");
  if (auto err = read_size(cfg, batch_size_range, o.batch_size)) return err;
  o.flush_interval = caf::get_or(cfg, "karlton.flush-interval", o.flush_interval);
  if (auto err = read_size(cfg, max_dirty_range, o.max_dirty)) return err;
  o.retry_base = caf::get_or(cfg, "karlton.retry-base", o.retry_base);
  o.retry_max = caf::get_or(cfg, "karlton.retry-max", o.retry_max);
  o.journal_path = caf::get_or(cfg, "karlton.journal", o.journal_path);
  o.journal_max_bytes =
    caf::get_or(cfg, "karlton.journal-max-bytes", size_t{o.journal_max_bytes});
  auto dist = caf::get_or(cfg, "karlton.distribution", std::string{"local"});
  if (dist == "async")
    o.distributed = distribution::async;
  else if (dist == "sync")
    o.distributed = distribution::sync;
  else if (dist != "local")
    return bad("karlton.distribution", "'" + dist + "' is not one of local, async, sync");
  if (o.default_ttl.is_default()) o.default_ttl = ttl::never();
  // Each setting's range now, so that a runtime made from a command line
  // refuses it at once; what depends on the code's options (a store, a
  // loader) is for `validate`, when a cache is made.
  if (auto err = check_each(o, "karlton.")) return err;
  return o;
}

} // namespace karlton
