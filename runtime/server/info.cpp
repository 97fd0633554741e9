// INFO's text and the server's own Prometheus families. INFO uses Redis
// 7.0's field names where a field means the same (checked against
// redis-server 7.0.15), and `karlton_*` names for the rest.
#include "runtime/server/info.hpp"

#include <malloc.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <vector>

#include <karlton/messages/cluster.hpp>
#include <karlton/messages/stats.hpp>
#include <karlton/messages/writes.hpp>

#include "runtime/server/ascii.hpp"

#ifndef KARLTON_VERSION
#define KARLTON_VERSION "unknown"
#endif

namespace karlton::server {

namespace {

// Clients gate features on the protocol level a server reports: 7.0.0 is the
// command set karlton answers like (RESP3, HELLO, CLIENT TRACKING).
constexpr const char* redis_protocol_version = "7.0.0";

// INFO's sections, in the order it writes them.
enum section : size_t {
  server_sec,
  clients_sec,
  memory_sec,
  stats_sec,
  keyspace_sec,
  karlton_sec
};
constexpr std::array<const char*, 6> section_names = {"server", "clients",  "memory",
                                                      "stats",  "keyspace", "karlton"};

struct memory_use {
  uint64_t used = 0; // what malloc handed out and not yet got back
  uint64_t rss = 0;  // resident pages
};

memory_use memory_now() {
  memory_use out;
  auto m = mallinfo2();
  out.used = static_cast<uint64_t>(m.uordblks) + static_cast<uint64_t>(m.hblkhd);
  // statm: size resident shared text lib data dt, in pages.
  std::ifstream statm{"/proc/self/statm"};
  uint64_t size = 0, resident = 0;
  if (statm >> size >> resident)
    out.rss = resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  // An allocator other than glibc's (ASan's, a preloaded jemalloc) leaves
  // mallinfo at 0: the resident size is then the best figure there is.
  if (out.used == 0) out.used = out.rss;
  return out;
}

// Redis's bytesToHuman: "200B", "967.88K", "11.80M", "23.54G".
std::string human(uint64_t bytes) {
  constexpr std::array<char, 5> units = {'K', 'M', 'G', 'T', 'P'};
  if (bytes < 1024) return std::to_string(bytes) + "B";
  double x = static_cast<double>(bytes) / 1024;
  size_t unit = 0;
  while (x >= 1024 && unit + 1 < units.size()) {
    x /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%c", x, units[unit]);
  return buf;
}

class info_writer {
public:
  void section(const char* title) {
    if (!out_.empty()) out_ += "\r\n";
    out_ += "# ";
    out_ += title;
    out_ += "\r\n";
  }
  void field(std::string_view name, std::string_view value) {
    out_ += name;
    out_ += ':';
    out_ += value;
    out_ += "\r\n";
  }
  void field(std::string_view name, uint64_t value) {
    field(name, std::to_string(value));
  }
  std::string take() { return std::move(out_); }

private:
  std::string out_;
};

// What the stats, keyspace and karlton sections read from the runtime: one
// round of blocking calls, made only if one of them is asked for.
struct runtime_figures {
  std::vector<std::optional<cache_stats>> caches; // by SELECT index
  cache_stats total;
  write_stats writes; // summed over the write-back caches
  peer_stats peer;
  uint64_t unavailable = 0; // calls that failed (INFO still answers)
  // Whether each sum is whole. One left short is left out, not written: a
  // counter that fell for one INFO reads as a reset to whoever rates it.
  bool caches_whole = true, writes_whole = true, peer_whole = true;
};

runtime_figures gather(server_context& ctx) {
  runtime_figures out;
  for (auto& c : ctx.caches) {
    auto s = c.stats();
    if (!s) {
      ++out.unavailable;
      out.caches_whole = false;
      if (c.options().writes == write_mode::write_back) out.writes_whole = false;
      out.caches.emplace_back();
      continue;
    }
    out.total += *s;
    out.caches.emplace_back(std::move(*s));
    if (c.options().writes != write_mode::write_back) continue;
    if (auto w = c.flush_stats()) {
      out.writes.writes += w->writes;
      out.writes.batches += w->batches;
      out.writes.entries_flushed += w->entries_flushed;
      out.writes.flush_failures += w->flush_failures;
      out.writes.dirty += w->dirty;
      out.writes.oldest_dirty_ms =
        std::max(out.writes.oldest_dirty_ms, w->oldest_dirty_ms);
    } else {
      ++out.unavailable;
      out.writes_whole = false;
    }
  }
  if (auto p = ctx.rt.cluster_stats()) {
    out.peer = std::move(*p);
  } else {
    ++out.unavailable;
    out.peer_whole = false;
  }
  return out;
}

void server_section(info_writer& w, const server_context& ctx) {
  w.section("Server");
  w.field("redis_version", redis_protocol_version);
  w.field("karlton_version", KARLTON_VERSION);
  w.field("redis_mode", "standalone");
  utsname u{};
  if (uname(&u) == 0)
    w.field("os", std::string{u.sysname} + " " + u.release + " " + u.machine);
  w.field("arch_bits", uint64_t{sizeof(void*) * 8});
  w.field("multiplexing_api", "epoll");
  w.field("process_id", static_cast<uint64_t>(getpid()));
  w.field("tcp_port", uint64_t{ctx.options.port});
  auto since_epoch = std::chrono::system_clock::now().time_since_epoch();
  w.field("server_time_usec",
          static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(since_epoch).count()));
  auto up = std::chrono::duration_cast<std::chrono::seconds>(
              std::chrono::steady_clock::now() - ctx.started)
              .count();
  w.field("uptime_in_seconds", static_cast<uint64_t>(up));
  w.field("uptime_in_days", static_cast<uint64_t>(up / 86400));
  w.field("io_threads_active", ctx.options.threads > 1 ? "1" : "0");
}

void clients_section(info_writer& w, const server_context& ctx) {
  w.section("Clients");
  w.field("connected_clients", ctx.counters.connected_clients.load());
  w.field("maxclients", uint64_t{ctx.options.max_clients});
  w.field("blocked_clients", uint64_t{0}); // no blocking commands
  w.field("tracking_clients", uint64_t{ctx.tracking->clients()});
}

void memory_section(info_writer& w) {
  auto m = memory_now();
  w.section("Memory");
  w.field("used_memory", m.used);
  w.field("used_memory_human", human(m.used));
  w.field("used_memory_rss", m.rss);
  w.field("used_memory_rss_human", human(m.rss));
  w.field("mem_allocator", "libc");
}

void stats_section(info_writer& w, const server_context& ctx, const runtime_figures& f) {
  w.section("Stats");
  w.field("total_connections_received", ctx.counters.total_connections.load());
  w.field("total_commands_processed", ctx.counters.total_commands.load());
  w.field("rejected_connections", ctx.counters.rejected_connections.load());
  w.field("acl_access_denied_auth", ctx.counters.auth_failures.load());
  if (f.caches_whole) {
    w.field("expired_keys", f.total.expired);
    w.field("evicted_keys", f.total.evictions);
    w.field("keyspace_hits", f.total.hits);
    w.field("keyspace_misses", f.total.misses);
  }
  w.field("tracking_total_keys", uint64_t{ctx.tracking->keys()});
  w.field("tracking_total_prefixes", uint64_t{ctx.tracking->prefixes()});
}

// Like Redis, only databases that hold keys. avg_ttl is not tracked: 0, as
// Redis reports for a database without TTLs.
void keyspace_section(info_writer& w, const runtime_figures& f) {
  w.section("Keyspace");
  for (size_t i = 0; i < f.caches.size(); ++i) {
    auto& s = f.caches[i];
    if (!s || s->entries == 0) continue;
    w.field("db" + std::to_string(i), "keys=" + std::to_string(s->entries) + ",expires=" +
                                        std::to_string(s->expiring) + ",avg_ttl=0");
  }
}

void karlton_section(info_writer& w, const server_context& ctx,
                     const runtime_figures& f) {
  auto& t = f.total;
  w.section("Karlton");
  w.field("karlton_caches", uint64_t{ctx.caches.size()});
  uint64_t shards = 0;
  for (const auto& c : ctx.caches)
    shards += c.shard_count();
  w.field("karlton_shards", shards);
  if (f.caches_whole) {
    w.field("karlton_entries", t.entries);
    w.field("karlton_bytes", t.bytes);
    w.field("karlton_puts", t.puts);
    w.field("karlton_rejected", t.rejected);
    uint64_t caused =
      t.invalidated_by_event + t.invalidated_by_tag + t.invalidated_by_cascade;
    w.field("karlton_invalidations_explicit",
            t.invalidations > caused ? t.invalidations - caused : 0);
    w.field("karlton_invalidations_event", t.invalidated_by_event);
    w.field("karlton_invalidations_tag", t.invalidated_by_tag);
    w.field("karlton_invalidations_cascade", t.invalidated_by_cascade);
    w.field("karlton_dependency_links", t.dependency_links);
    w.field("karlton_served_age_p50_ms", t.age_p50_ms());
    w.field("karlton_served_age_p99_ms", t.age_p99_ms());
    w.field("karlton_loads", t.loads);
    w.field("karlton_load_failures", t.load_failures);
  }
  if (f.writes_whole) {
    w.field("karlton_dirty", f.writes.dirty);
    w.field("karlton_oldest_dirty_ms", f.writes.oldest_dirty_ms);
    w.field("karlton_flushes", f.writes.batches);
    w.field("karlton_flushed_writes", f.writes.entries_flushed);
    w.field("karlton_flush_failures", f.writes.flush_failures);
  }
  if (f.peer_whole) {
    auto& p = f.peer;
    w.field("karlton_cluster_members", p.members);
    w.field("karlton_cluster_repairs", p.repairs);
    w.field("karlton_cluster_gaps", p.gaps);
    w.field("karlton_cluster_peers_lost", p.peers_lost);
    w.field("karlton_cluster_stalls", p.stalls);
    w.field("karlton_invalidation_delay_p50_us", delay_percentile_us(p, 0.50));
    w.field("karlton_invalidation_delay_p99_us", delay_percentile_us(p, 0.99));
  }
  auto& c = ctx.counters;
  w.field("karlton_protocol_errors", c.protocol_errors.load());
  w.field("karlton_output_limit_closes", c.output_limit_closes.load());
  w.field("karlton_idle_closes", c.idle_closes.load());
  w.field("karlton_auth_timeouts", c.auth_timeouts.load());
  if (f.unavailable > 0) w.field("karlton_stats_unavailable", f.unavailable);
}

// The sections `request` names (space-separated, any case), in INFO's order.
std::array<bool, section_names.size()> wanted_sections(std::string_view request) {
  std::array<bool, section_names.size()> out{};
  size_t pos = 0;
  while (pos < request.size()) {
    auto end = request.find(' ', pos);
    if (end == std::string_view::npos) end = request.size();
    auto word = request.substr(pos, end - pos);
    pos = end + 1;
    if (word.empty()) continue;
    if (iequals(word, "default") || iequals(word, "all") || iequals(word, "everything"))
      out.fill(true);
    for (size_t i = 0; i < section_names.size(); ++i)
      if (iequals(word, section_names[i])) out[i] = true;
  }
  bool any = std::any_of(request.begin(), request.end(), [](char c) { return c != ' '; });
  if (!any) out.fill(true);
  return out;
}

} // namespace

std::string render_info(server_context& ctx, std::string_view section) {
  auto want = wanted_sections(section);
  std::optional<runtime_figures> figures;
  if (want[stats_sec] || want[keyspace_sec] || want[karlton_sec]) figures = gather(ctx);
  info_writer w;
  if (want[server_sec]) server_section(w, ctx);
  if (want[clients_sec]) clients_section(w, ctx);
  if (want[memory_sec]) memory_section(w);
  if (want[stats_sec]) stats_section(w, ctx, *figures);
  if (want[keyspace_sec]) keyspace_section(w, *figures);
  if (want[karlton_sec]) karlton_section(w, ctx, *figures);
  return w.take();
}

std::string server_metrics_text(const server_context& ctx) {
  // Families without labels: nothing to escape.
  std::string out;
  auto family = [&out](const char* name, const char* type, const char* help,
                       uint64_t value) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
    out += name;
    out += ' ';
    out += std::to_string(value);
    out += '\n';
  };
  auto& c = ctx.counters;
  family("karlton_resp_connected_clients", "gauge", "Redis-protocol clients connected.",
         c.connected_clients.load());
  family("karlton_resp_connections_total", "counter",
         "Redis-protocol connections accepted.", c.total_connections.load());
  family("karlton_resp_commands_total", "counter", "Redis-protocol commands processed.",
         c.total_commands.load());
  family("karlton_resp_rejected_connections_total", "counter",
         "Connections refused over maxclients.", c.rejected_connections.load());
  family("karlton_resp_protocol_errors_total", "counter",
         "Connections closed after a protocol error.", c.protocol_errors.load());
  family("karlton_resp_output_limit_closes_total", "counter",
         "Connections closed for not reading their replies.",
         c.output_limit_closes.load());
  family("karlton_resp_idle_closes_total", "counter",
         "Connections closed for being idle longer than resp-timeout.",
         c.idle_closes.load());
  family("karlton_resp_auth_timeouts_total", "counter",
         "Connections closed for not authenticating within resp-auth-timeout.",
         c.auth_timeouts.load());
  family("karlton_resp_auth_failures_total", "counter",
         "Wrong passwords given to AUTH or HELLO; the third before login closes the "
         "connection.",
         c.auth_failures.load());
  auto up = std::chrono::duration_cast<std::chrono::seconds>(
              std::chrono::steady_clock::now() - ctx.started)
              .count();
  family("karlton_resp_uptime_seconds", "gauge", "Seconds since the server started.",
         static_cast<uint64_t>(up));
  family("karlton_resident_bytes", "gauge", "Resident memory of the process.",
         memory_now().rss);
  return out;
}

} // namespace karlton::server
