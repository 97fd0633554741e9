// Cache options: checks that name the option, and the karlton.* settings.
#include <catch2/catch.hpp>

#include <sched.h>

#include <sstream>
#include <thread>

#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>

using namespace karlton;
using namespace std::chrono_literals;

namespace {

std::string error_of(cache_options o) {
  auto err = validate(o);
  REQUIRE(err == errc::invalid_option);
  return describe(err);
}

cache_options named(std::string n) {
  cache_options o;
  o.name = std::move(n);
  return o;
}

} // namespace

TEST_CASE("every bad option is refused and named", "[options][errors]") {
  CHECK(validate(named("users")) == caf::none);
  CHECK(error_of(named("")).find("option name") != std::string::npos);
  CHECK(error_of(named("has space")).find("option name") != std::string::npos);
  auto o = named("c");
  o.default_ttl = ttl::after(0s);
  CHECK(error_of(o).find("default-ttl") != std::string::npos);
  o = named("c");
  o.shards = 5000;
  CHECK(error_of(o).find("shards") != std::string::npos);
  o = named("c");
  o.max_key_bytes = 0;
  CHECK(error_of(o).find("max-key-bytes") != std::string::npos);
  o = named("c");
  o.call_timeout = caf::timespan{0};
  CHECK(error_of(o).find("call-timeout") != std::string::npos);
  o = named("c");
  o.ingress_capacity = 1;
  CHECK(error_of(o).find("ingress-capacity") != std::string::npos);
}

TEST_CASE("max-entries and max-bytes beyond what a cache can hold are refused",
          "[options][errors]") {
  // 2^64 - 1 entries hung the shard's start; 1e12 threw bad_alloc out of it.
  auto o = named("c");
  o.max_entries = UINT64_MAX;
  CHECK(error_of(o).find("max-entries") != std::string::npos);
  o.max_entries = 1'000'000'000'000;
  CHECK(error_of(o).find("max-entries") != std::string::npos);
  o.max_entries = UINT32_MAX;
  CHECK(validate(o) == caf::none);
  o = named("c");
  o.max_bytes = UINT64_MAX;
  CHECK(error_of(o).find("max-bytes") != std::string::npos);
  o.max_bytes = uint64_t{1} << 48;
  CHECK(validate(o) == caf::none);
}

TEST_CASE("create_cache fails on a bad option or a taken name", "[options][errors]") {
  runtime rt;
  auto o = named("c");
  o.shards = 5000;
  auto bad = rt.create_cache(o);
  REQUIRE_FALSE(bad);
  CHECK(bad.error() == errc::invalid_option);
  REQUIRE(rt.create_cache(named("c")));
  auto twice = rt.create_cache(named("c"));
  REQUIRE_FALSE(twice);
  CHECK(describe(twice.error()).find("already exists") != std::string::npos);
  auto unknown = rt.find_cache("nope");
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error() == errc::unknown_cache);
}

TEST_CASE("options come from the command line and the ini file", "[options][config]") {
  auto cfg = std::make_unique<runtime_config>();
  std::istringstream ini{"[karlton]\nmax-entries=1000\npolicy=\"lru\"\n"};
  REQUIRE_FALSE(cfg->parse({"--karlton.default-ttl=250ms", "--karlton.shards=3"}, ini));
  runtime rt{std::move(cfg)};
  auto o = rt.default_options("from-config");
  CHECK(o.max_entries == 1000);
  CHECK(o.policy == eviction_policy_kind::lru);
  CHECK(o.default_ttl == ttl::after(250ms));
  auto c = rt.create_cache("from-config");
  REQUIRE(c);
  CHECK(c->shard_count() == 3);
}

TEST_CASE("default_options refuses a setting out of range rather than give defaults",
          "[options][config]") {
  auto cfg = std::make_unique<runtime_config>();
  std::istringstream ini{"[karlton]\nmax-entries=1000\nflush-interval=0s\n"};
  REQUIRE_FALSE(cfg->parse({}, ini));
  runtime rt{std::move(cfg)}; // a config parsed by the caller, not checked here
  try {
    auto o = rt.default_options("users");
    FAIL("default options from a bad setting, max_entries " << o.max_entries);
  } catch (const option_error& e) {
    CHECK(std::string{e.what()}.find("karlton.flush-interval") != std::string::npos);
  }
  auto c = rt.create_cache("users"); // reports it too
  REQUIRE_FALSE(c);
  CHECK(describe(c.error()).find("karlton.flush-interval") != std::string::npos);
}

TEST_CASE("an unknown policy in the config is reported", "[options][config]") {
  runtime_config cfg;
  std::istringstream ini{"[karlton]\npolicy=\"fifo\"\n"};
  REQUIRE_FALSE(cfg.parse({}, ini));
  auto o = cache_options_from(cfg);
  REQUIRE_FALSE(o);
  CHECK(describe(o.error()).find("karlton.policy") != std::string::npos);
}

TEST_CASE("the runtime config sets the measured scheduler defaults",
          "[options][config]") {
  runtime_config cfg;
  CHECK(caf::get_or(cfg, "work-stealing.moderate-poll-attempts", size_t{500}) == 0);
  CHECK(caf::get_or(cfg, "scheduler.max-threads", size_t{0}) ==
        std::max(1u, std::thread::hardware_concurrency()));
}

TEST_CASE("a seed that is not host and port is refused and named", "[options][errors]") {
  cluster_options o;
  o.secret = "s";
  o.seeds = {"127.0.0.1:4242", "node-b:1"};
  CHECK(validate(o) == caf::none);
  for (auto seed :
       {"127.0.0.1", "127.0.0.1:", "host:http", "host:0", "host:65536", ":80"}) {
    o.seeds = {seed};
    auto err = validate(o);
    CHECK(err == errc::invalid_option);
    CHECK(describe(err).find("karlton.cluster.seeds") != std::string::npos);
  }
}

TEST_CASE("the cluster's heartbeat is at least 1 ms, and the lease and member timeout at "
          "least twice it",
          "[options][errors]") {
  using namespace std::chrono_literals;
  cluster_options o;
  o.secret = "s";
  // Before, 1 ns heartbeats with a 2 ns lease kept a node busy clearing its caches.
  o.heartbeat = 1ns;
  o.read_lease = 2ns;
  o.member_timeout = 2ns;
  CHECK(describe(validate(o)).find("karlton.cluster.heartbeat") != std::string::npos);
  o.heartbeat = 100ms;
  o.read_lease = 199ms;
  o.member_timeout = 1s;
  CHECK(describe(validate(o)).find("karlton.cluster.read-lease") != std::string::npos);
  o.read_lease = 200ms;
  o.member_timeout = 150ms;
  CHECK(describe(validate(o)).find("karlton.cluster.member-timeout") !=
        std::string::npos);
  o.member_timeout = 200ms;
  CHECK(validate(o) == caf::none);
}

TEST_CASE("a node name or host other nodes would refuse is refused at start",
          "[options][errors]") {
  cluster_options o;
  o.secret = "s";
  o.node_name = std::string(max_node_name_bytes, 'n');
  CHECK(validate(o) == caf::none);
  o.node_name += 'n';
  CHECK(describe(validate(o)).find("karlton.cluster.node-name") != std::string::npos);
  // Without a node name, host:port is the name.
  o.node_name.clear();
  o.host = std::string(max_node_name_bytes - 6, 'h');
  CHECK(validate(o) == caf::none);
  o.host += 'h';
  CHECK(describe(validate(o)).find("karlton.cluster.host") != std::string::npos);
  o.node_name = "n";
  o.host = std::string(max_node_host_bytes + 1, 'h');
  CHECK(describe(validate(o)).find("karlton.cluster.host") != std::string::npos);
  // Names are printed on lines scripts read: a newline split `listening on`,
  // a comma made `members a,b` ambiguous, an escape reached the terminal.
  o.host = "127.0.0.1";
  for (auto bad : {"a\nb", "a,b", "a b", "\x1b[31mx"}) {
    o.node_name = bad;
    CHECK(describe(validate(o)).find("karlton.cluster.node-name: holds a byte") !=
          std::string::npos);
  }
  o.node_name = "";
  o.host = "bad\nhost";
  CHECK(describe(validate(o)).find("karlton.cluster.host: holds a byte") !=
        std::string::npos);
  for (auto good : {"node-1", "a.b_c", "[::1]:7001", "fe80::1%eth0"}) {
    o.host = good;
    o.node_name = good;
    CHECK(validate(o) == caf::none);
  }
}

TEST_CASE("every cluster option the README lists is accepted on the command line",
          "[options][config]") {
  // The last five were read from the config but not declared, so CAF refused
  // them on the command line as unknown options.
  runtime_config cfg;
  std::istringstream none;
  auto err =
    cfg.parse({"--karlton.cluster.secret=s", "--karlton.cluster.node-name=n",
               "--karlton.cluster.batch-delay=2ms", "--karlton.cluster.sync-timeout=3s",
               "--karlton.cluster.heartbeat=100ms", "--karlton.cluster.member-timeout=5s",
               "--karlton.cluster.read-lease=2s", "--karlton.cluster.repair-ttl=30s",
               "--karlton.cluster.tls"},
              none);
  INFO(describe(err));
  REQUIRE_FALSE(err);
  auto o = cluster_options_from(cfg);
  REQUIRE(o);
  CHECK(o->node_name == "n");
  CHECK(o->batch_delay == std::chrono::milliseconds{2});
  CHECK(o->sync_timeout == std::chrono::seconds{3});
  CHECK(o->heartbeat == std::chrono::milliseconds{100});
  CHECK(o->member_timeout == std::chrono::seconds{5});
  CHECK(o->read_lease == std::chrono::seconds{2});
  CHECK(o->repair_ttl == std::chrono::seconds{30});
  CHECK(o->tls);
}

TEST_CASE("every option is checked whatever else is set, naming value and range",
          "[options][errors]") {
  // Unused now is no excuse: loader-concurrency of a cache that loads from
  // its store, or of one without any loader.
  auto o = named("c");
  o.loader_concurrency = 0;
  CHECK(error_of(o).find("option loader-concurrency: 0 is not in 1..256") !=
        std::string::npos);
  o.loader_concurrency = 100'000; // would be 100000 threads
  CHECK(error_of(o).find("loader-concurrency: 100000 is not in 1..256") !=
        std::string::npos);
  o = named("c");
  o.ingress_capacity = 262'145; // 4 MiB of slots a shard is the most
  CHECK(error_of(o).find("ingress-capacity: 262145 is not in 2..262144") !=
        std::string::npos);
  o.ingress_capacity = 262'144;
  CHECK(validate(o) == caf::none);
  o = named("c");
  o.batch_size = 0;
  CHECK(error_of(o).find("batch-size: 0 is not in 1..1000000") != std::string::npos);
  o = named("c");
  o.max_dirty = 0;
  CHECK(error_of(o).find("max-dirty") != std::string::npos);
}

TEST_CASE("size settings are checked before they are narrowed", "[options][config]") {
  // 4294967297 is 2^32 + 1: narrowed to 32 bits first it was 1.
  for (auto setting :
       {"--karlton.shards=4294967297", "--karlton.ingress-capacity=4294967298",
        "--karlton.loader-concurrency=4294967297", "--karlton.batch-size=4294967297",
        "--karlton.loader-concurrency=0", "--karlton.cluster.batch-max=4294967297"}) {
    INFO(setting);
    auto cfg = std::make_unique<runtime_config>();
    std::istringstream none;
    REQUIRE_FALSE(cfg->parse({setting}, none));
    std::string option{setting + 10};
    option = option.substr(0, option.find('='));
    caf::error err;
    if (option.rfind("cluster.", 0) == 0) {
      auto co = cluster_options_from(*cfg);
      REQUIRE_FALSE(co);
      err = co.error();
    } else {
      auto co = cache_options_from(*cfg);
      REQUIRE_FALSE(co);
      err = co.error();
    }
    CHECK(err == errc::invalid_option);
    CHECK(describe(err).find(option) != std::string::npos);
    CHECK(describe(err).find(std::string{setting}.substr(std::string{setting}.find('=') +
                                                         1)) != std::string::npos);
    if (option.rfind("cluster.", 0) == 0) continue;
    runtime rt{std::move(cfg)};
    auto c = rt.create_cache("from-config"); // reports it too, not defaults
    REQUIRE_FALSE(c);
    CHECK(describe(c.error()).find(option) != std::string::npos);
  }
}

TEST_CASE("durations beyond what the code represents are refused", "[options][errors]") {
  auto forever = caf::timespan::max();
  auto check_refused = [](cache_options o, const std::string& option) {
    INFO(option);
    CHECK(error_of(std::move(o)).find("option " + option + ":") != std::string::npos);
  };
  auto o = named("c");
  o.call_timeout = forever; // now + timeout overflowed: every call timed out at once
  check_refused(o, "call-timeout");
  o.call_timeout = max_option_duration;
  CHECK(validate(o) == caf::none);
  o = named("c");
  o.default_ttl = ttl::after(forever);
  check_refused(o, "default-ttl");
  o = named("c");
  o.loader = [](const std::string&) -> caf::expected<std::string> { return "v"; };
  auto loading = o;
  o.refresh_after = std::chrono::hours{24 * 50}; // 32-bit ms ages wrap at 49.7 days
  check_refused(o, "refresh-after");
  o.refresh_after = std::chrono::hours{24 * 49};
  CHECK(validate(o) == caf::none);
  o = loading;
  o.stale_if_error = forever;
  check_refused(o, "stale-if-error");
  o = loading;
  o.negative_ttl = forever;
  check_refused(o, "negative-ttl");
  o = loading;
  o.load_timeout = -1ms;
  check_refused(o, "load-timeout");
  o = named("c");
  o.flush_interval = forever;
  check_refused(o, "flush-interval");
  o = named("c");
  o.retry_max = forever;
  check_refused(o, "retry-max");
  cluster_options co;
  co.secret = "s";
  CHECK(validate(co) == caf::none);
  co.sync_timeout = forever;
  CHECK(describe(validate(co)).find("karlton.cluster.sync-timeout") != std::string::npos);
  co = cluster_options{};
  co.secret = "s";
  co.repair_ttl = forever;
  CHECK(describe(validate(co)).find("karlton.cluster.repair-ttl") != std::string::npos);
}

TEST_CASE("a negative TTL is refused, never taken for default or never",
          "[options][errors][ttl]") {
  for (auto d : {-1ns, -2ns, caf::timespan{-1'000'000}}) {
    auto t = ttl::after(d);
    CHECK_FALSE(t.valid());
    CHECK_FALSE(t.is_default());
    CHECK_FALSE(t.is_never());
  }
  auto o = named("c");
  o.default_ttl = ttl::after(-2ns); // was "never"
  CHECK(error_of(o).find("default-ttl") != std::string::npos);
  auto cfg = std::make_unique<runtime_config>();
  std::istringstream none;
  REQUIRE_FALSE(cfg->parse({"--karlton.default-ttl=-2ns"}, none));
  runtime rt{std::move(cfg)};
  auto refused = rt.create_cache("from-config");
  REQUIRE_FALSE(refused);
  CHECK(describe(refused.error()).find("default-ttl") != std::string::npos);
  auto c = rt.create_cache(named("c"));
  REQUIRE(c);
  auto put = c->put("k", "v", ttl::after(-1ns)); // was "the cache's default"
  REQUIRE(put);
  CHECK(put == errc::invalid_option);
}

TEST_CASE("karlton.postgres settings are read, and one out of range is named",
          "[options][config]") {
  auto parsed = [](std::vector<std::string> args) {
    runtime_config cfg;
    std::istringstream ini;
    REQUIRE_FALSE(cfg.parse(std::move(args), ini));
    return postgres_options_from(cfg);
  };
  auto p =
    parsed({"--karlton.postgres.uri=postgresql://app@127.0.0.1:5432/shop",
            "--karlton.postgres.channel=shop_changes", "--karlton.postgres.pool-size=8",
            "--karlton.postgres.lease=2s", "--karlton.postgres.repair-ttl=30s",
            "--karlton.postgres.max-group-bytes=1048576"});
  REQUIRE(p);
  CHECK(p->uri == "postgresql://app@127.0.0.1:5432/shop");
  CHECK(p->channel == "shop_changes");
  CHECK(p->pool_size == 8);
  CHECK(p->max_group_bytes == 1048576);
  CHECK(p->lease == caf::timespan{2s});
  CHECK(p->repair_ttl == caf::timespan{30s});
  CHECK(p->heartbeat == postgres_options{}.heartbeat); // unset: the default

  auto refused = [&](std::vector<std::string> args, const std::string& names) {
    auto bad = parsed(std::move(args));
    REQUIRE_FALSE(bad);
    CHECK(bad.error() == errc::invalid_option);
    CHECK_THAT(describe(bad.error()), Catch::Contains(names));
  };
  refused({"--karlton.postgres.pool-size=65"}, "pool-size");
  refused({"--karlton.postgres.pool-size=4294967297"}, "pool-size"); // not wrapped to 1
  refused({"--karlton.postgres.max-group-keys=0"}, "max-group-keys");
  refused({"--karlton.postgres.max-group-bytes=1023"}, "max-group-bytes");
  refused({"--karlton.postgres.max-group-bytes=68719476737"}, "max-group-bytes");
  refused({"--karlton.postgres.lease=400ms"},
          "lease must be at least twice the heartbeat");
  refused({"--karlton.postgres.reconnect-max=25h"},
          "reconnect-max must be within 1ms..1d");
  refused({"--karlton.postgres.heartbeat=25h", "--karlton.postgres.lease=100h"},
          "heartbeat must be within 1ms..1d");
  refused({"--karlton.postgres.channel=Changes"}, "channel");
  refused({"--karlton.postgres.schema=pg_catalog"}, "reserved");
}

TEST_CASE("usable_cores counts the CPUs the affinity mask allows", "[options]") {
  cpu_set_t all;
  REQUIRE(::sched_getaffinity(0, sizeof all, &all) == 0);
  // A CFS quota of this process's cgroups may allow fewer (tests/runtime/cores.test.cpp).
  CHECK(usable_cores() <= static_cast<size_t>(CPU_COUNT(&all)));
  // The mask is per thread: restrict a fresh one to a single CPU.
  size_t seen = 0;
  std::thread restricted{[&] {
    cpu_set_t one;
    CPU_ZERO(&one);
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
      if (CPU_ISSET(cpu, &all)) {
        CPU_SET(cpu, &one);
        break;
      }
    if (::sched_setaffinity(0, sizeof one, &one) == 0) seen = usable_cores();
  }};
  restricted.join();
  CHECK(seen == 1);
  // karlton's actor system runs a worker per usable core.
  runtime_config cfg;
  CHECK(caf::get_or(cfg, "scheduler.max-threads", size_t{0}) == usable_cores());
}

TEST_CASE("a lease that outlives the others' dropping of a frozen node is told apart, "
          "for start_cluster's warning",
          "[options]") {
  runtime_config cfg; // CAF's connection timeout: 2 s
  cluster_options o;
  o.heartbeat = 250ms;
  o.member_timeout = 3s;
  o.read_lease = 1s;
  CHECK_FALSE(lease_outlives_drop(o, cfg)); // the defaults
  o.member_timeout = 1s;
  o.read_lease = 4s;
  CHECK(lease_outlives_drop(o, cfg)); // dropped after 1 s, stall told after 4.25 s
  o.member_timeout = 10s;
  o.read_lease = 1800ms;
  CHECK(lease_outlives_drop(o, cfg)); // CAF drops its connection after 2 s
}

TEST_CASE("a cluster port open to other hosts without verified TLS is told apart, "
          "for start_cluster's warning",
          "[options]") {
  runtime_config cfg;
  cluster_options o;
  o.secret = "s";
  for (auto host : {"127.0.0.1", "127.0.1.1", "localhost", "::1"}) {
    o.host = host;
    CHECK_FALSE(open_to_strangers(o, cfg));
  }
  for (auto host : {"0.0.0.0", "10.1.2.3", "::", "node-a"}) {
    o.host = host;
    CHECK(open_to_strangers(o, cfg));
  }
  // TLS alone is anonymous: anyone may still connect. With an authority to
  // verify against, only holders of its certificates can.
  o.tls = true;
  CHECK(open_to_strangers(o, cfg));
  cfg.openssl_cafile = "/etc/karlton/ca.pem";
  CHECK_FALSE(open_to_strangers(o, cfg));
  o.tls = false;
  CHECK(open_to_strangers(o, cfg));
}
