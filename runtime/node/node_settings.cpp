#include "runtime/node/node_settings.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <set>

#include <caf/config_option_adder.hpp>
#include <caf/settings.hpp>

#include "runtime/node/node_stores.hpp"
#include "runtime/server/tracking_table.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>

namespace karlton::node {

node_config::node_config() {
  caf::config_option_adder{custom_options_, "node"}
    .add<std::vector<std::string>>("caches",
                                   "caches this node creates (default [\"default\"])")
    .add<caf::timespan>("stats-interval",
                        "a stats line on stderr this often (default 10s, 0 = off)")
    .add<bool>("console", "answer console commands on stdin (default false)")
    .add<std::string>("port-file",
                      "write the port listened on to this file once listening")
    .add<std::string>("store", "SQLite file or postgresql:// URI behind every cache, "
                               "one table per cache (default none); nodes may "
                               "share it")
    .add<int64_t>("resp-port", "serve the Redis protocol on this port (default off; "
                               "0 = any free port, printed)")
    .add<std::string>("resp-host", "address the Redis protocol listens on (default "
                                   "127.0.0.1; another needs a password)")
    .add<int64_t>("resp-threads", "Redis-protocol I/O threads (default 1)")
    .add<std::string>("requirepass", "clients must AUTH with this password (prefer "
                                     "requirepass-file: arguments show in ps)")
    .add<std::string>("requirepass-file", "file holding the password clients must AUTH "
                                          "with (one line)")
    .add<bool>("resp-protected", "refuse a non-loopback resp-host without a password "
                                 "(default true)")
    .add<int64_t>("maxclients", "most Redis-protocol clients at once (default 10000)")
    .add<int64_t>("resp-max-bulk", "longest argument in bytes (default 64 MiB)")
    .add<int64_t>("resp-max-args", "most arguments of one command (default 1M)")
    .add<int64_t>("resp-query-buffer-limit",
                  "most bytes held for one incomplete command (default 128 MiB)")
    .add<int64_t>("resp-output-buffer-limit",
                  "a client whose unsent replies exceed this many bytes is closed "
                  "(default: the largest karlton.max-value-bytes + resp-output-pause "
                  "+ 16, at least 65 MiB + 16)")
    .add<int64_t>("resp-output-pause",
                  "a client with this many unsent reply bytes is not read from until "
                  "it reads (default 1 MiB)")
    .add<int64_t>("resp-tracking-max-keys",
                  "keys tracked for client-side caching at most; beyond, keys are "
                  "forgotten with an invalidation (default 1M, 0 = no bound)")
    .add<caf::timespan>("resp-timeout",
                        "close clients idle this long (default 0 = never)")
    .add<caf::timespan>("resp-auth-timeout",
                        "with a password, close clients that have not "
                        "authenticated this long after connecting (default "
                        "10s, 0 = never)")
    .add<int64_t>("metrics-port", "serve GET /metrics (Prometheus) on this port (default "
                                  "off; 0 = any free port, printed)")
    .add<std::string>("metrics-host", "address /metrics listens on (default 127.0.0.1; "
                                      "another needs a password)")
    .add<bool>("metrics-protected", "refuse a non-loopback metrics-host without a "
                                    "password (default true)");
  // The program exists to be distributed: its caches invalidate across
  // the cluster unless `karlton.distribution` says otherwise. Set before
  // parsing, so the command line and the ini file override it.
  set("karlton.distribution", "async");
  // 0: as many workers as the Redis protocol's I/O threads leave cores for
  // (fit_scheduler, after parsing).
  set("scheduler.max-threads", size_t{0});
}

namespace {

caf::error bad_option(const std::string& option, const std::string& why) {
  return karlton::make_error(karlton::errc::invalid_option,
                             "option " + option + ": " + why);
}

// `name` as an integer in [lo, hi], or `fallback` when unset.
caf::expected<int64_t> int_option(const node_config& cfg, const std::string& name,
                                  int64_t lo, int64_t hi, int64_t fallback) {
  auto x = caf::get_or(caf::content(cfg), name, fallback);
  if (x < lo || x > hi)
    return bad_option(name,
                      "must be in " + std::to_string(lo) + ".." + std::to_string(hi));
  return x;
}

// The longest password file read: a password is one line.
constexpr off_t max_password_file = 4096;

// The password from node.requirepass or the first line of
// node.requirepass-file (never both). The password itself is never part of
// an error message.

caf::expected<std::string> password_from(const node_config& cfg) {
  auto direct = caf::get_or(cfg, "node.requirepass", std::string{});
  auto file = caf::get_or(cfg, "node.requirepass-file", std::string{});
  if (file.empty()) return direct;
  if (!direct.empty())
    return bad_option("node.requirepass-file",
                      "give node.requirepass or the file, not both");
  // A regular file of a few bytes, checked on the descriptor read: a path to
  // /dev/zero would be read forever and a FIFO would block the start.
  // O_NONBLOCK: opening a FIFO must not wait for its writer either.
  int fd = ::open(file.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return bad_option("node.requirepass-file", "cannot open " + file);
  struct stat st {};
  std::string content;
  bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  if (regular && st.st_size <= max_password_file) {
    content.resize(static_cast<size_t>(st.st_size));
    auto n = ::read(fd, content.data(), content.size());
    content.resize(n > 0 ? static_cast<size_t>(n) : 0);
  }
  ::close(fd);
  if (!regular)
    return bad_option("node.requirepass-file", file + " is not a regular file");
  if (st.st_size > max_password_file)
    return bad_option("node.requirepass-file",
                      file + " is over " + std::to_string(max_password_file) + " bytes");
  auto line = content.substr(0, content.find('\n'));
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.empty())
    return bad_option("node.requirepass-file", file + " has an empty line");
  return line;
}

// node.resp-* and node.metrics-*: unset ports leave either off.
caf::error server_settings(const node_config& cfg, node_settings& out) {
  auto password = password_from(cfg);
  if (!password) return std::move(password.error());
  if (caf::get_if(&caf::content(cfg), "node.resp-port") != nullptr) {
    karlton::server::resp_options o;
    auto port = int_option(cfg, "node.resp-port", 0, 65535, 0);
    if (!port) return std::move(port.error());
    o.port = static_cast<uint16_t>(*port);
    o.host = caf::get_or(cfg, "node.resp-host", o.host);
    o.password = *password;
    o.protected_mode = caf::get_or(cfg, "node.resp-protected", o.protected_mode);
    auto threads = int_option(cfg, "node.resp-threads", 1, 64, o.threads);
    if (!threads) return std::move(threads.error());
    o.threads = static_cast<uint32_t>(*threads);
    // Each client holds a descriptor: Redis's 10000 by default.
    auto clients = int_option(cfg, "node.maxclients", 1, 1'000'000, o.max_clients);
    if (!clients) return std::move(clients.error());
    o.max_clients = static_cast<uint32_t>(*clients);
    constexpr int64_t gib = int64_t{1} << 30;
    auto bulk = int_option(cfg, "node.resp-max-bulk", 1, 4 * gib,
                           static_cast<int64_t>(o.limits.max_bulk));
    if (!bulk) return std::move(bulk.error());
    o.limits.max_bulk = static_cast<size_t>(*bulk);
    auto args = int_option(cfg, "node.resp-max-args", 1, int64_t{1} << 31,
                           static_cast<int64_t>(o.limits.max_args));
    if (!args) return std::move(args.error());
    o.limits.max_args = static_cast<size_t>(*args);
    auto query = int_option(cfg, "node.resp-query-buffer-limit", 1, 8 * gib,
                            static_cast<int64_t>(o.limits.max_query_buffer));
    if (!query) return std::move(query.error());
    o.limits.max_query_buffer = static_cast<size_t>(*query);
    auto pause = int_option(cfg, "node.resp-output-pause", 1, 64 * gib,
                            static_cast<int64_t>(o.output_pause_bytes));
    if (!pause) return std::move(pause.error());
    o.output_pause_bytes = static_cast<size_t>(*pause);
    // By default a client that reads is never closed for reading the largest
    // value its caches hold (a set limit is the operator's to choose).
    uint64_t largest = 0;
    for (const auto& c : out.caches)
      largest = std::max(largest, c.max_value_bytes);
    auto reading = std::min<uint64_t>(
      karlton::server::reading_client_bytes(o.output_pause_bytes, largest), 64 * gib);
    auto output =
      int_option(cfg, "node.resp-output-buffer-limit", 1, 64 * gib,
                 static_cast<int64_t>(std::max(o.output_buffer_limit, reading)));
    if (!output) return std::move(output.error());
    o.output_buffer_limit = static_cast<size_t>(*output);
    auto timeout = caf::get_or(cfg, "node.resp-timeout", caf::timespan{0});
    if (timeout < caf::timespan::zero() || timeout > karlton::max_option_duration)
      return bad_option("node.resp-timeout", "must be in 0..365 days (0 = never)");
    o.idle_timeout = std::chrono::ceil<std::chrono::seconds>(timeout);
    auto auth_timeout =
      caf::get_or(cfg, "node.resp-auth-timeout", caf::timespan{std::chrono::seconds{10}});
    if (auth_timeout < caf::timespan::zero() ||
        auth_timeout > karlton::max_option_duration)
      return bad_option("node.resp-auth-timeout", "must be in 0..365 days (0 = never)");
    o.auth_timeout = std::chrono::ceil<std::chrono::seconds>(auth_timeout);
    auto tracked =
      int_option(cfg, "node.resp-tracking-max-keys", 0, int64_t{1} << 40,
                 static_cast<int64_t>(karlton::server::tracking_table::default_max_keys));
    if (!tracked) return std::move(tracked.error());
    // Made before the caches: each reports its key changes to it.
    o.tracking =
      std::make_shared<karlton::server::tracking_table>(static_cast<size_t>(*tracked));
    if (auto err = karlton::server::check(o)) return err;
    out.resp = std::move(o);
  }
  bool metrics = caf::get_if(&caf::content(cfg), "node.metrics-port") != nullptr;
  if (metrics) {
    karlton::server::metrics_http_options m;
    auto port = int_option(cfg, "node.metrics-port", 0, 65535, 0);
    if (!port) return std::move(port.error());
    m.port = static_cast<uint16_t>(*port);
    m.host = caf::get_or(cfg, "node.metrics-host", m.host);
    m.password = *password;
    // As for the Redis protocol: cache names, counters and the cluster's
    // state are not for anyone who can reach the port.
    if (!karlton::server::is_loopback(m.host) && m.password.empty() &&
        caf::get_or(cfg, "node.metrics-protected", true))
      return bad_option("node.metrics-host",
                        "is not a loopback address and no password is set: set "
                        "node.requirepass(-file), or node.metrics-protected=false to "
                        "serve anyone");
    out.metrics = std::move(m);
  }
  if (!out.resp && !metrics && !password->empty())
    return bad_option("node.requirepass",
                      "needs node.resp-port or node.metrics-port "
                      "(neither the Redis protocol nor /metrics is on)");
  return {};
}

} // namespace

caf::expected<node_settings> settings_from(const node_config& cfg) {
  node_settings out;
  auto cluster = karlton::cluster_options_from(cfg);
  if (!cluster) return std::move(cluster.error());
  out.cluster = std::move(*cluster);
  auto defaults = karlton::cache_options_from(cfg);
  if (!defaults) return std::move(defaults.error());
  auto names =
    caf::get_or(cfg, "node.caches", std::vector<std::string>{std::string{"default"}});
  if (names.empty())
    return bad_option("node.caches", "names no cache: a node serves at least one");
  // A journal holds one cache's writes, and a node's settings give every
  // cache the same file: the second would fail on it only once the first runs.
  if (!defaults->journal_path.empty() && names.size() > 1)
    return bad_option("karlton.journal",
                      "one file serves one cache, and node.caches lists " +
                        std::to_string(names.size()) +
                        ": a node with a journal serves one write-back cache");
  auto stores = karlton::node::node_stores::from(cfg, names.size());
  if (!stores) return std::move(stores.error());
  out.feed = stores->feed();
  // The options' own check names a backing_store or a loader, which an
  // operator cannot set: a node's caches write to and load from node.store.
  if (stores->empty()) {
    if (defaults->writes != karlton::write_mode::none)
      return bad_option("karlton.write-mode", std::string{to_string(defaults->writes)} +
                                                " needs a store: set node.store");
    for (auto [option, set] :
         {std::pair{"karlton.refresh-after", defaults->refresh_after.count() > 0},
          std::pair{"karlton.early-refresh",
                    defaults->early_refresh != karlton::early_refresh_mode::none},
          std::pair{"karlton.negative-ttl", defaults->negative_ttl.count() > 0},
          std::pair{"karlton.stale-if-error", defaults->stale_if_error.count() > 0}})
      if (set) return bad_option(option, "needs a store to load from: set node.store");
  }
  std::set<std::string> seen;
  for (auto& name : names) {
    if (!seen.insert(name).second)
      return bad_option("node.caches", "'" + name + "' is listed twice");
    auto o = *defaults;
    o.name = name;
    // Set before validating: write-through and write-back need a store.
    if (!stores->empty()) {
      auto st = stores->open(name);
      if (!st) return std::move(st.error());
      o.backing_store = std::move(*st);
      o.store_changes = out.feed.has_value();
    }
    if (auto err = karlton::validate(o)) return err;
    out.caches.push_back(std::move(o));
  }
  out.stats_interval = caf::get_or(cfg, "node.stats-interval", out.stats_interval);
  // At least a second: 1 ns wrote 30k lines in 3 s.
  if (out.stats_interval < caf::timespan::zero() ||
      (out.stats_interval > caf::timespan::zero() &&
       out.stats_interval < std::chrono::seconds{1}) ||
      out.stats_interval > karlton::max_option_duration)
    return bad_option("node.stats-interval",
                      "must be 0 (off) or 1 s..365 days (longer is never, and far from "
                      "int64 nanosecond overflow)");
  out.console = caf::get_or(cfg, "node.console", out.console);
  out.port_file = caf::get_or(cfg, "node.port-file", out.port_file);
  if (auto err = server_settings(cfg, out)) return err;
  return out;
}

// Each client holds a descriptor: like Redis, raise the open-files limit for
// maxclients plus 64 spare (stores, the cluster, logs, /metrics) plus the
// rejected clients whose close lingers, or lower maxclients to what the limit
// allows, and say so. Without the lingering ones, clients refused for
// maxclients took the spare: /metrics and the stores' files failed meanwhile.
void fit_max_clients(karlton::server::resp_options& o) {
  const rlim_t spare = 64 + rlim_t{o.max_rejected_lingering};
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  rlim_t want = rlim_t{o.max_clients} + spare;
  if (lim.rlim_cur >= want) return;
  rlimit raised = lim;
  raised.rlim_cur = lim.rlim_max == RLIM_INFINITY ? want : std::min(want, lim.rlim_max);
  if (setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  if (lim.rlim_cur >= want) return;
  auto fits = lim.rlim_cur > spare ? lim.rlim_cur - spare : 1;
  karlton::log_line("karlton-node: node.maxclients lowered from " +
                    std::to_string(o.max_clients) + " to " + std::to_string(fits) +
                    ": the open-files limit is " + std::to_string(lim.rlim_cur));
  o.max_clients = static_cast<uint32_t>(fits);
}

// CAF's workers and the Redis protocol's I/O threads share the cores: unless
// scheduler.max-threads is given, the workers get what the I/O threads leave,
// at least one. On 2 cores one worker beside one I/O thread served pipelined
// SETs ~20 % faster than two workers did, with half the context switches
// (docs/benchmarks.md, "resp").
void fit_scheduler(node_config& cfg, const node_settings& s) {
  if (caf::get_or(cfg, "scheduler.max-threads", size_t{0}) != 0) return;
  size_t cores = karlton::usable_cores();
  size_t io = s.resp ? s.resp->threads : 0;
  cfg.set("scheduler.max-threads", cores > io ? cores - io : size_t{1});
}

} // namespace karlton::node
