// INFO's text (Redis 7.0's sections and field names where they mean the
// same) and the server's own Prometheus families.
#include <catch2/catch.hpp>

#include <atomic>
#include <map>
#include <string>
#include <vector>

#include "runtime/server/info.hpp"
#include "support/latch.hpp"
#include "support/must.hpp"
#include "support/prometheus_text.hpp"
#include <karlton/runtime/runtime.hpp>

using namespace karlton;
using namespace std::chrono_literals;
using karlton::server::render_info;
using karlton::server::resp_options;
using karlton::server::server_context;
using karlton::server::server_metrics_text;
using karlton::testing::must;
using karlton::testing::parse_prometheus;

namespace {

struct fixture {
  runtime rt;
  cache a = must(rt.create_cache("a"));
  cache b = must(rt.create_cache("b"));
  server_context ctx{
    rt, {a.without_queue_wait(), b.without_queue_wait()}, resp_options{}};
};

// "field:value" lines of `info`, and the section titles in order.
struct parsed_info {
  std::vector<std::string> sections;
  std::map<std::string, std::string> fields;
};

parsed_info parse(const std::string& info) {
  parsed_info out;
  size_t pos = 0;
  while (pos < info.size()) {
    auto end = info.find("\r\n", pos);
    REQUIRE(end != std::string::npos); // every line ends in CRLF
    auto line = info.substr(pos, end - pos);
    pos = end + 2;
    if (line.empty()) continue;
    if (line[0] == '#') {
      out.sections.push_back(line.substr(2));
      continue;
    }
    auto colon = line.find(':');
    REQUIRE(colon != std::string::npos);
    out.fields[line.substr(0, colon)] = line.substr(colon + 1);
  }
  return out;
}

} // namespace

TEST_CASE_METHOD(fixture,
                 "INFO has Redis's sections, and its field names for known traffic",
                 "[info]") {
  REQUIRE_FALSE(a.put("k1", "v"));
  REQUIRE_FALSE(a.put("k2", "v", ttl::after(1h)));
  REQUIRE_FALSE(b.put("k3", "v"));
  REQUIRE(must(a.get("k1")));
  REQUIRE(must(a.get("k2")));
  REQUIRE_FALSE(must(b.get("nope")));
  ctx.counters.total_connections = 7;
  ctx.counters.connected_clients = 2;
  ctx.counters.total_commands = 42;
  ctx.options.port = 6399;
  auto text = render_info(ctx, "");
  auto info = parse(text);
  CHECK(info.sections == std::vector<std::string>{"Server", "Clients", "Memory", "Stats",
                                                  "Keyspace", "Karlton"});
  // Sections are separated by an empty line, as Redis writes them.
  CHECK(text.find("\r\n\r\n# Clients\r\n") != std::string::npos);
  CHECK(text.substr(text.size() - 4) != "\r\n\r\n");
  auto& f = info.fields;
  CHECK(f["redis_version"] == "7.0.0");
  CHECK(f["redis_mode"] == "standalone");
  CHECK(f["tcp_port"] == "6399");
  CHECK(f.count("uptime_in_seconds") == 1);
  CHECK(f.count("karlton_version") == 1);
  CHECK(f["connected_clients"] == "2");
  CHECK(f["total_connections_received"] == "7");
  CHECK(f["total_commands_processed"] == "42");
  CHECK(f["keyspace_hits"] == "2");
  CHECK(f["keyspace_misses"] == "1");
  CHECK(f["expired_keys"] == "0");
  CHECK(f["evicted_keys"] == "0");
  CHECK(std::stoull(f["used_memory"]) > 0);
  CHECK(std::stoull(f["used_memory_rss"]) > 0);
  // db0 is cache a (SELECT order); expires= counts the entries with a TTL.
  CHECK(f["db0"] == "keys=2,expires=1,avg_ttl=0");
  CHECK(f["db1"] == "keys=1,expires=0,avg_ttl=0");
  CHECK(f["karlton_entries"] == "3");
  CHECK(f["karlton_caches"] == "2");
  CHECK(f["karlton_cluster_members"] == "0");
}

TEST_CASE("INFO leaves out the summed counters while a cache's stats are unavailable",
          "[info]") {
  // Before, it summed the caches that answered: keyspace_hits fell for one
  // INFO and came back, a reset to whoever rates it.
  karlton::testing::latch gate;
  std::atomic<bool> held{false};
  runtime rt;
  cache a = must(rt.create_cache(
    karlton::testing::holdable_cache("held", gate, held, 1, 16384, 200ms)));
  cache b = must(rt.create_cache("b"));
  karlton::testing::release_on_exit release{gate};
  REQUIRE_FALSE(b.put("k", "v"));
  REQUIRE(must(b.get("k")));
  server_context ctx{rt, {a, b}, resp_options{}};
  REQUIRE(parse(render_info(ctx, "")).fields["keyspace_hits"] == "1");
  auto erase = karlton::testing::hold_shard(a, "x", held);
  auto f = parse(render_info(ctx, "")).fields;
  CHECK(f.count("keyspace_hits") == 0);
  CHECK(f.count("karlton_entries") == 0);
  CHECK(f["karlton_stats_unavailable"] == "1");
  CHECK(f["karlton_cluster_members"] == "0"); // what answered is still there
  gate.release();
  CHECK(must(erase.get()));
  CHECK(parse(render_info(ctx, "")).fields["keyspace_hits"] == "1");
}

TEST_CASE_METHOD(fixture, "INFO answers the sections asked for, in any case", "[info]") {
  CHECK(parse(render_info(ctx, "keyspace")).sections ==
        std::vector<std::string>{"Keyspace"});
  CHECK(parse(render_info(ctx, "CLIENTS server")).sections ==
        std::vector<std::string>{"Server", "Clients"});
  CHECK(parse(render_info(ctx, "everything")).sections.size() == 6);
  CHECK(parse(render_info(ctx, "all")).sections.size() == 6);
  CHECK(render_info(ctx, "bogus").empty()); // as Redis: nothing
  // An empty keyspace is just its title.
  CHECK(render_info(ctx, "keyspace") == "# Keyspace\r\n");
}

TEST_CASE_METHOD(fixture, "the server's families are valid Prometheus text",
                 "[info][metrics]") {
  ctx.counters.total_commands = 5;
  ctx.counters.connected_clients = 1;
  auto text = server_metrics_text(ctx);
  auto s = parse_prometheus(text);
  CHECK(s.problems.empty());
  CHECK(s.value("karlton_resp_commands_total") == 5);
  CHECK(s.value("karlton_resp_connected_clients") == 1);
  CHECK(s.value("karlton_resident_bytes") > 0);
  // Appended to the runtime's, no family appears twice.
  auto both = parse_prometheus(must(rt.metrics_text()) + text);
  CHECK(both.problems.empty());
}
