// runtime::metrics_text: Prometheus' text format, every family once with its
// HELP and TYPE, cumulative buckets, counters that never go down, and the
// numbers of known traffic.
#include <catch2/catch.hpp>

#include <map>
#include <string>

#include "runtime/prometheus.hpp"
#include "support/must.hpp"
#include "support/prometheus_text.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>
#include <karlton/stores/memory_store.hpp>

using namespace karlton;
using namespace std::chrono_literals;
using karlton::testing::must;
using karlton::testing::parse_prometheus;
using karlton::testing::prom_scrape;

namespace {

struct fixture {
  std::shared_ptr<manual_clock> clk = std::make_shared<manual_clock>();
  runtime rt{clk};

  cache make(std::string name, write_mode mode = write_mode::none) {
    cache_options o;
    o.name = std::move(name);
    o.shards = 2;
    if (mode != write_mode::none) {
      o.backing_store = std::make_shared<memory_store>();
      o.writes = mode;
    }
    return must(rt.create_cache(o));
  }

  prom_scrape scrape() {
    auto text = must(rt.metrics_text());
    auto parsed = parse_prometheus(text);
    for (auto& p : parsed.problems)
      FAIL_CHECK(p);
    return parsed;
  }
};

std::map<std::string, std::string> in(const std::string& cache) {
  return {{"cache", cache}};
}

// Each histogram's buckets, per label set (without le): increasing le,
// counts that never fall, +Inf equal to _count.
void check_histograms(const prom_scrape& s) {
  for (auto& f : s.families) {
    if (f.type != "histogram") continue;
    std::map<std::map<std::string, std::string>, std::pair<double, double>> last; // le, n
    for (auto& x : f.samples) {
      auto labels = x.labels;
      if (x.name == f.name + "_bucket") {
        REQUIRE(labels.count("le") == 1);
        double le = labels["le"] == "+Inf" ? 1e308 : std::stod(labels["le"]);
        labels.erase("le");
        auto [at, fresh] = last.emplace(labels, std::pair{le, x.value});
        if (!fresh) {
          CHECK(le > at->second.first);
          CHECK(x.value >= at->second.second);
          at->second = {le, x.value};
        }
      } else if (x.name == f.name + "_count") {
        REQUIRE(last.count(labels) == 1);
        CHECK(last[labels].first == 1e308);
        CHECK(last[labels].second == x.value);
      }
    }
  }
}

} // namespace

TEST_CASE("prometheus text escapes label values and help, and prints exact decimals",
          "[metrics]") {
  CHECK(detail::escape_label_value("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
  CHECK(detail::escape_help("x\\y\nz\"") == "x\\\\y\\nz\"");
  CHECK(detail::fixed_point(0, 1000) == "0");
  CHECK(detail::fixed_point(1, 1000) == "0.001");
  CHECK(detail::fixed_point(1500, 1000) == "1.5");
  CHECK(detail::fixed_point(86'400'000, 1000) == "86400");
  CHECK(detail::fixed_point(250, 1'000'000) == "0.00025");
}

TEST_CASE("a histogram's buckets count the samples at or below each bound", "[metrics]") {
  age_histogram h;
  // 900 ms is in the bucket 896..959, at or below 1 s; 70 s is above it.
  for (uint32_t ms : {0u, 1u, 1u, 4u, 5u, 6u, 900u, 70000u})
    h.record(ms);
  detail::prometheus_writer w;
  w.family("x_seconds", detail::prometheus_writer::kind::histogram, "x");
  w.histogram({{"cache", "c"}}, h, {1, 5, 1000}, 1000);
  auto s = parse_prometheus(w.take());
  CHECK(s.problems.empty());
  CHECK(s.value("x_seconds_bucket", {{"cache", "c"}, {"le", "0.001"}}) == 3);
  CHECK(s.value("x_seconds_bucket", {{"cache", "c"}, {"le", "0.005"}}) == 5);
  CHECK(s.value("x_seconds_bucket", {{"cache", "c"}, {"le", "1"}}) == 7);
  CHECK(s.value("x_seconds_bucket", {{"cache", "c"}, {"le", "+Inf"}}) == 8);
  CHECK(s.value("x_seconds_count", {{"cache", "c"}}) == 8);
  CHECK(s.value("x_seconds_sum", {{"cache", "c"}}) == Approx(70.917));
}

TEST_CASE_METHOD(fixture,
                 "every family has one HELP and one TYPE and its samples together",
                 "[metrics]") {
  auto a = make("a");
  auto b = make("b", write_mode::write_back);
  auto odd = make("a.b-c_d");
  REQUIRE_FALSE(a.put("k", "v"));
  REQUIRE(must(a.get("k")));
  auto s = scrape();
  for (auto* name :
       {"karlton_hits_total", "karlton_misses_total", "karlton_expired_total",
        "karlton_evictions_total", "karlton_entries", "karlton_bytes",
        "karlton_invalidations_total", "karlton_dependency_links",
        "karlton_served_age_seconds", "karlton_flushes_total",
        "karlton_flushed_writes_total", "karlton_flush_failures_total",
        "karlton_dirty_writes", "karlton_events_emitted_total", "karlton_cluster_members",
        "karlton_cluster_repairs_total", "karlton_invalidation_delay_seconds"})
    CHECK(s.family(name) != nullptr);
  check_histograms(s);
  // Every cache in each per-cache family.
  for (auto& cache : {"a", "b", "a.b-c_d"})
    CHECK(s.value("karlton_hits_total", in(cache)) >= 0);
  // Flusher families only for write-back caches.
  CHECK(s.value("karlton_flushes_total", in("b")) == 0);
  CHECK(s.value("karlton_flushes_total", in("a")) == -1);
}

TEST_CASE_METHOD(fixture, "known traffic shows in the numbers", "[metrics]") {
  auto a = make("a");
  auto b = make("b", write_mode::write_back);
  for (int i = 0; i < 5; ++i)
    REQUIRE_FALSE(a.put("k" + std::to_string(i), "12345"));
  clk->advance(2s); // the values are 2 s old when served
  for (int i = 0; i < 3; ++i)
    REQUIRE(must(a.get("k" + std::to_string(i))));
  for (int i = 0; i < 4; ++i)
    REQUIRE_FALSE(must(a.get("missing" + std::to_string(i))));
  REQUIRE(must(a.erase("k4")));
  REQUIRE_FALSE(a.put("e", "x", ttl::never(), dependencies{}.on_events({"ev"})));
  REQUIRE(must(rt.emit("ev")).removed == 1);
  REQUIRE_FALSE(b.put("w", "1"));
  REQUIRE_FALSE(b.force_flush());

  auto s = scrape();
  CHECK(s.value("karlton_hits_total", in("a")) == 3);
  CHECK(s.value("karlton_misses_total", in("a")) == 4);
  CHECK(s.value("karlton_puts_total", in("a")) == 6);
  CHECK(s.value("karlton_entries", in("a")) == 4);
  CHECK(s.value("karlton_invalidations_total", {{"cache", "a"}, {"cause", "explicit"}}) ==
        1);
  CHECK(s.value("karlton_invalidations_total", {{"cache", "a"}, {"cause", "event"}}) ==
        1);
  CHECK(s.value("karlton_invalidations_total", {{"cache", "a"}, {"cause", "tag"}}) == 0);
  CHECK(s.value("karlton_events_emitted_total") == 1);
  // Hits on 2 s old values: above 1 s, at or below 5 s. The shard learns
  // the ages of direct reads later, from a sample of each stripe's buffer
  // (read_side.hpp), so the histogram holds at most the 3 hits.
  double aged = s.value("karlton_served_age_seconds_count", in("a"));
  CHECK(aged <= 3);
  CHECK(s.value("karlton_served_age_seconds_sum", in("a")) == 2 * aged);
  CHECK(s.value("karlton_served_age_seconds_bucket", {{"cache", "a"}, {"le", "1"}}) == 0);
  CHECK(s.value("karlton_served_age_seconds_bucket", {{"cache", "a"}, {"le", "5"}}) ==
        aged);
  CHECK(s.value("karlton_flushed_writes_total", in("b")) == 1);
  CHECK(s.value("karlton_flushes_total", in("b")) == 1);
  CHECK(s.value("karlton_dirty_writes", in("b")) == 0);
  CHECK(s.value("karlton_cluster_members") == 0);
  CHECK(s.value("karlton_invalidation_delay_seconds_count") == 0);
}

TEST_CASE_METHOD(fixture, "counters never decrease across scrapes with traffic between",
                 "[metrics]") {
  auto a = make("a");
  auto b = make("b", write_mode::write_back);
  auto traffic = [&](int round) {
    for (int i = 0; i < 20; ++i) {
      auto k = "k" + std::to_string((i + round) % 7);
      REQUIRE_FALSE(a.put(k, "v"));
      REQUIRE(must(a.get(k)));
      REQUIRE_FALSE(must(a.get("no" + k)));
      REQUIRE_FALSE(b.put(k, "w"));
      if (i % 3 == 0) REQUIRE(must(a.erase(k)));
    }
    clk->advance(1s);
    must(a.clear());
    REQUIRE_FALSE(b.force_flush());
  };
  traffic(0);
  auto first = scrape();
  traffic(1);
  auto second = scrape();
  size_t compared = 0;
  for (auto& f : first.families) {
    if (f.type == "gauge") continue; // counters and histograms only grow
    for (auto& x : f.samples) {
      double later = second.value(x.name, x.labels);
      INFO(x.name);
      CHECK(later >= x.value);
      ++compared;
    }
  }
  CHECK(compared > 50);
  // The traffic did move them.
  CHECK(second.value("karlton_hits_total", in("a")) ==
        2 * first.value("karlton_hits_total", in("a")));
  CHECK(second.value("karlton_flushed_writes_total", in("b")) >
        first.value("karlton_flushed_writes_total", in("b")));
}

TEST_CASE("metrics_text after shutdown says so", "[metrics]") {
  runtime rt;
  REQUIRE(rt.create_cache("a"));
  rt.shutdown();
  auto text = rt.metrics_text();
  REQUIRE_FALSE(text);
  CHECK(text.error().code() == static_cast<uint8_t>(errc::shut_down));
}
