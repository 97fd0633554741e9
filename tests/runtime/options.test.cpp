// Cache options: checks that name the option, and the karlton.* settings.
#include <catch2/catch.hpp>

#include <sstream>

#include "messages/errors.hpp"
#include "runtime/runtime.hpp"

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
  o.ingress_capacity = 100'000;
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

TEST_CASE("an unknown policy in the config is reported", "[options][config]") {
  runtime_config cfg;
  std::istringstream ini{"[karlton]\npolicy=\"fifo\"\n"};
  REQUIRE_FALSE(cfg.parse({}, ini));
  auto o = options_from(cfg);
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
