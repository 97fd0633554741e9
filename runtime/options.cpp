#include "runtime/options.hpp"

#include <algorithm>
#include <cmath>
#include <thread>

#include <caf/config_option_adder.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>

#include "messages/errors.hpp"
#include "messages/type_ids.hpp"

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

} // namespace

caf::error validate(const cache_options& o) {
  if (!valid_name(o.name))
    return bad("name",
               "'" + o.name +
                 "' must be 1-128 characters of letters, digits, '-', '_' or '.'");
  if (!o.default_ttl.valid() || o.default_ttl.is_default())
    return bad("default-ttl", "must be a positive duration or never");
  if (o.shards > 1024) return bad("shards", "must be at most 1024 (0 = one per core)");
  // A shard's entry ids are 32-bit (actors/entry_table.hpp), so no shard holds
  // more; nothing beyond 2^48 bytes, the user address space of x86-64 and
  // AArch64, can be cached. Larger values only overflowed or hung the shards.
  if (o.max_entries > UINT32_MAX)
    return bad("max-entries", "must be at most 4294967295 (0 = unbounded)");
  if (o.max_bytes > (uint64_t{1} << 48))
    return bad("max-bytes", "must be at most 281474976710656 (2^48; 0 = unbounded)");
  if (o.max_key_bytes == 0 || o.max_key_bytes > UINT32_MAX)
    return bad("max-key-bytes", "must be between 1 and 4294967295");
  if (o.max_value_bytes > UINT32_MAX)
    return bad("max-value-bytes", "must be at most 4294967295");
  if (o.call_timeout <= caf::timespan::zero())
    return bad("call-timeout", "must be positive");
  if (o.ingress_capacity < 2 || o.ingress_capacity > 65535)
    return bad("ingress-capacity", "must be between 2 and 65535");
  if (o.loader && o.load_actor)
    return bad("loader, load_actor",
               "are mutually exclusive: give a load function or a loader actor");
  if (o.loader && (o.loader_concurrency < 1 || o.loader_concurrency > 256))
    return bad("loader-concurrency", "must be between 1 and 256");
  if (o.refresh_after < caf::timespan::zero())
    return bad("refresh-after", "must not be negative (0 = off)");
  if (!(o.beta > 0.0) || !std::isfinite(o.beta))
    return bad("beta", "must be a positive number");
  if (o.negative_ttl < caf::timespan::zero())
    return bad("negative-ttl", "must not be negative (0 = off)");
  if (o.stale_if_error < caf::timespan::zero())
    return bad("stale-if-error", "must not be negative (0 = off)");
  if (o.writes != write_mode::none && !o.backing_store)
    return bad("write-mode", std::string{to_string(o.writes)} + " needs a backing_store");
  if (o.batch_size < 1) return bad("batch-size", "must be at least 1");
  if (o.flush_interval <= caf::timespan::zero())
    return bad("flush-interval", "must be positive");
  if (o.max_dirty < 1) return bad("max-dirty", "must be at least 1");
  if (o.retry_base <= caf::timespan::zero() || o.retry_max < o.retry_base)
    return bad("retry-base, retry-max", "need 0 < retry-base <= retry-max");
  if (!o.journal_path.empty() && o.writes != write_mode::write_back)
    return bad("journal", "is for write_back caches only");
  if (o.journal_max_bytes < 1) return bad("journal-max-bytes", "must be at least 1");
  auto loads = o.loader || o.load_actor || o.backing_store;
  if (!loads && o.refresh_after > caf::timespan::zero())
    return bad("refresh-after", "needs a loader: only a read-through cache can reload");
  if (!loads && o.early_refresh != early_refresh_mode::none)
    return bad("early-refresh", "needs a loader: only a read-through cache can reload");
  if (!loads && o.negative_ttl > caf::timespan::zero())
    return bad("negative-ttl", "needs a loader: only a read-through cache loads");
  if (!loads && o.stale_if_error > caf::timespan::zero())
    return bad("stale-if-error", "needs a loader: only a read-through cache loads");
  return caf::none;
}

void add_options(caf::config_option_set& opts) {
  caf::config_option_adder{opts, "karlton"}
    .add<caf::timespan>("default-ttl", "TTL of puts that give none (0 = never expire)")
    .add<size_t>("shards", "shards per cache (0 = one per scheduler thread)")
    .add<size_t>("max-entries", "entries per cache (0 = unbounded)")
    .add<size_t>("max-bytes", "key + value bytes per cache (0 = unbounded)")
    .add<std::string>("policy", "eviction policy: tinylfu (default) or lru")
    .add<size_t>("max-key-bytes", "largest key accepted (default 65536)")
    .add<size_t>("max-value-bytes", "largest value accepted (default 67108864)")
    .add<caf::timespan>("call-timeout", "how long blocking calls wait (default 5s)")
    .add<size_t>("ingress-capacity",
                 "jobs queued per shard from plain threads (default 16384)")
    .add<size_t>("loader-concurrency",
                 "loader threads per read-through cache (default 4)")
    .add<caf::timespan>("refresh-after", "age after which a read reloads (0 = off)")
    .add<std::string>("early-refresh", "none (default), xfetch or naive")
    .add<double>("beta", "beta of the early-refresh modes (default 1)")
    .add<caf::timespan>("negative-ttl", "how long a load failure is remembered (0 = off)")
    .add<caf::timespan>("stale-if-error",
                        "how long past expiry an entry may stand in for a failed load "
                        "(0 = off)")
    .add<std::string>("write-mode", "none (default), write_through or write_back")
    .add<size_t>("batch-size", "write-back: keys per store transaction (default 1000)")
    .add<caf::timespan>("flush-interval",
                        "write-back: longest a dirty write waits (default 100ms)")
    .add<size_t>("max-dirty",
                 "write-back: writes not yet stored, at most (default 100000)")
    .add<caf::timespan>("retry-base", "write-back: first retry backoff (default 10ms)")
    .add<caf::timespan>("retry-max", "write-back: longest retry backoff (default 5s)")
    .add<std::string>("journal", "write-back: journal file (default none)")
    .add<size_t>("journal-max-bytes",
                 "write-back: journal length that makes it rewritten (default 64 MiB)")
    .add<std::string>("distribution", "local, async or sync (default local; in "
                                      "karlton-node async): see README");
  caf::config_option_adder{opts, "karlton.cluster"}
    .add<std::string>("node-name", "this node's name (default host:port)")
    .add<std::string>("host", "address to listen on (default 127.0.0.1)")
    .add<uint16_t>("port", "port to listen on (default 0: any free port)")
    .add<std::string>("secret", "the cluster secret every node must know")
    .add<std::vector<std::string>>("seeds", "nodes to join, as [\"host:port\", ...]")
    .add<caf::timespan>("batch-delay", "longest an invalidation waits to be sent "
                                       "(default 1ms)")
    .add<size_t>("batch-max", "invalidations per batch at most (default 4096)")
    .add<size_t>("max-unacked", "invalidations a member may lag behind before it is "
                                "skipped and repairs (default 1048576)")
    .add<caf::timespan>(
      "sync-timeout", "how long a sync invalidation waits for other nodes (default 2s)");
}

caf::error validate(const cluster_options& o) {
  if (o.secret.empty())
    return bad("karlton.cluster.secret", "is empty: every node needs the cluster secret");
  if (o.host.empty()) return bad("karlton.cluster.host", "is empty");
  if (o.batch_max == 0) return bad("karlton.cluster.batch-max", "must be > 0");
  if (o.max_unacked == 0) return bad("karlton.cluster.max-unacked", "must be > 0");
  if (o.batch_delay.count() <= 0)
    return bad("karlton.cluster.batch-delay", "must be > 0");
  if (o.sync_timeout.count() <= 0)
    return bad("karlton.cluster.sync-timeout", "must be > 0");
  if (o.heartbeat.count() <= 0) return bad("karlton.cluster.heartbeat", "must be > 0");
  if (o.repair_ttl.count() < 0)
    return bad("karlton.cluster.repair-ttl", "must be 0 (flush) or positive");
  if (o.read_lease <= o.heartbeat)
    return bad("karlton.cluster.read-lease", "must be longer than the heartbeat");
  if (o.member_timeout <= o.heartbeat)
    return bad("karlton.cluster.member-timeout", "must be longer than the heartbeat");
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
  o.max_unacked = caf::get_or(cfg, "karlton.cluster.max-unacked", size_t{o.max_unacked});
  o.batch_max = static_cast<uint32_t>(
    caf::get_or(cfg, "karlton.cluster.batch-max", size_t{o.batch_max}));
  o.sync_timeout = caf::get_or(cfg, "karlton.cluster.sync-timeout", o.sync_timeout);
  o.heartbeat = caf::get_or(cfg, "karlton.cluster.heartbeat", o.heartbeat);
  o.member_timeout = caf::get_or(cfg, "karlton.cluster.member-timeout", o.member_timeout);
  o.read_lease = caf::get_or(cfg, "karlton.cluster.read-lease", o.read_lease);
  o.repair_ttl = caf::get_or(cfg, "karlton.cluster.repair-ttl", o.repair_ttl);
  o.tls = caf::get_or(cfg, "karlton.cluster.tls", o.tls);
  if (auto err = validate(o)) return err;
  return o;
}

caf::expected<cache_options> options_from(const caf::actor_system_config& cfg) {
  cache_options o;
  if (auto d = caf::get_if<caf::timespan>(&cfg, "karlton.default-ttl"))
    o.default_ttl = d->count() == 0 ? ttl::never() : ttl::after(*d);
  o.shards = static_cast<uint32_t>(caf::get_or(cfg, "karlton.shards", size_t{0}));
  o.max_entries = caf::get_or(cfg, "karlton.max-entries", size_t{0});
  o.max_bytes = caf::get_or(cfg, "karlton.max-bytes", size_t{0});
  auto policy = caf::get_or(cfg, "karlton.policy", std::string{"tinylfu"});
  if (policy == "lru")
    o.policy = eviction_policy_kind::lru;
  else if (policy == "tinylfu")
    o.policy = eviction_policy_kind::tiny_lfu;
  else
    return bad("karlton.policy", "'" + policy + "' is not one of tinylfu, lru");
  o.max_key_bytes = caf::get_or(cfg, "karlton.max-key-bytes", size_t{o.max_key_bytes});
  o.max_value_bytes =
    caf::get_or(cfg, "karlton.max-value-bytes", size_t{o.max_value_bytes});
  o.call_timeout = caf::get_or(cfg, "karlton.call-timeout", o.call_timeout);
  o.ingress_capacity = static_cast<uint32_t>(
    caf::get_or(cfg, "karlton.ingress-capacity", size_t{o.ingress_capacity}));
  o.loader_concurrency = static_cast<uint32_t>(
    caf::get_or(cfg, "karlton.loader-concurrency", size_t{o.loader_concurrency}));
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
  o.batch_size =
    static_cast<uint32_t>(caf::get_or(cfg, "karlton.batch-size", size_t{o.batch_size}));
  o.flush_interval = caf::get_or(cfg, "karlton.flush-interval", o.flush_interval);
  o.max_dirty = caf::get_or(cfg, "karlton.max-dirty", size_t{o.max_dirty});
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
  return o;
}

runtime_config::runtime_config() {
  register_types(*this);
  add_options(custom_options_);
  auto cores = std::max(1u, std::thread::hardware_concurrency());
  set("scheduler.max-threads", static_cast<size_t>(cores));
  set("work-stealing.moderate-poll-attempts", size_t{0});
  // Clusters: the middleman carries the peers' traffic. Heartbeats let a
  // node notice a frozen peer (CAF-0.17.md: without them it never does);
  // every node must use the same setting.
  load<caf::io::middleman>();
  load<caf::openssl::manager>(); // TLS between nodes, when asked for
  set("middleman.heartbeat-interval", caf::timespan{std::chrono::milliseconds{500}});
  set("middleman.connection-timeout", caf::timespan{std::chrono::seconds{2}});
}

} // namespace karlton
