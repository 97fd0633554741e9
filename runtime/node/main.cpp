// karlton-node: one karlton runtime as a cluster node in its own process.
//
// It listens on `karlton.cluster.host:port`, joins `karlton.cluster.seeds`,
// creates the caches `node.caches` (distributed `async` unless
// `karlton.distribution` says otherwise), prints
// `karlton-node <name> listening on <host>:<port>` on stdout (with
// `node.store`, every cache reads through and writes to a table of its own in
// that SQLite file or PostgreSQL database, which other nodes may share; with
// PostgreSQL the caches also lose what the database's own changes touch),
// and runs until
// SIGTERM, SIGINT or the console's `quit`; then it shuts the runtime down
// (write-back caches flush, the node leaves the cluster), prints
// `karlton-node <name> stopped` on stderr and exits 0. Exit 2: bad
// configuration; exit 1: the node could not start.
//
//   karlton-node --karlton.cluster.secret=s --node.console=true
//   karlton-node --help          every option, with its description
#include <poll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <caf/config_option_adder.hpp>
#include <caf/settings.hpp>

#include "runtime/node/console.hpp"
#include "runtime/node/node_stores.hpp"
#include "runtime/server/info.hpp"
#include "runtime/server/metrics_http.hpp"
#include "runtime/server/resp_server.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/options.hpp>
#include <karlton/runtime/runtime.hpp>

namespace {

using namespace std::chrono_literals;

/// karlton's config plus the `node` category.
class node_config : public karlton::runtime_config {
public:
  node_config() {
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
                    "(default 64 MiB)")
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
      .add<int64_t>("metrics-port",
                    "serve GET /metrics (Prometheus) on this port (default "
                    "off; 0 = any free port, printed)")
      .add<std::string>("metrics-host",
                        "address /metrics listens on (default 127.0.0.1)");
    // The program exists to be distributed: its caches invalidate across
    // the cluster unless `karlton.distribution` says otherwise. Set before
    // parsing, so the command line and the ini file override it.
    set("karlton.distribution", "async");
    // 0: as many workers as the Redis protocol's I/O threads leave cores for
    // (fit_scheduler, after parsing).
    set("scheduler.max-threads", size_t{0});
  }
};

struct node_settings {
  std::vector<karlton::cache_options> caches;
  karlton::cluster_options cluster;
  caf::timespan stats_interval{10s};
  bool console = false;
  std::string port_file;
  /// Set: the caches are fed PostgreSQL's changes (node.store).
  std::optional<karlton::postgres_options> feed;
  /// Set: serve the Redis protocol.
  std::optional<karlton::server::resp_options> resp;
  /// Set: serve /metrics.
  std::optional<karlton::server::metrics_http_options> metrics;
};

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
  std::ifstream in{file};
  std::string line;
  if (!in || !std::getline(in, line))
    return bad_option("node.requirepass-file", "cannot read a line from " + file);
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
    auto output = int_option(cfg, "node.resp-output-buffer-limit", 1, 64 * gib,
                             static_cast<int64_t>(o.output_buffer_limit));
    if (!output) return std::move(output.error());
    o.output_buffer_limit = static_cast<size_t>(*output);
    auto pause = int_option(cfg, "node.resp-output-pause", 1, 64 * gib,
                            static_cast<int64_t>(o.output_pause_bytes));
    if (!pause) return std::move(pause.error());
    o.output_pause_bytes = static_cast<size_t>(*pause);
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
  } else if (!password->empty()) {
    return bad_option("node.requirepass",
                      "needs node.resp-port (the Redis protocol is off)");
  }
  if (caf::get_if(&caf::content(cfg), "node.metrics-port") != nullptr) {
    karlton::server::metrics_http_options m;
    auto port = int_option(cfg, "node.metrics-port", 0, 65535, 0);
    if (!port) return std::move(port.error());
    m.port = static_cast<uint16_t>(*port);
    m.host = caf::get_or(cfg, "node.metrics-host", m.host);
    m.password = *password;
    out.metrics = std::move(m);
  }
  return {};
}

caf::expected<node_settings> settings_from(const node_config& cfg) {
  node_settings out;
  auto cluster = karlton::cluster_options_from(cfg);
  if (!cluster) return std::move(cluster.error());
  out.cluster = std::move(*cluster);
  auto defaults = karlton::cache_options_from(cfg);
  if (!defaults) return std::move(defaults.error());
  auto names =
    caf::get_or(cfg, "node.caches", std::vector<std::string>{std::string{"default"}});
  auto stores = karlton::node::node_stores::from(cfg, names.size());
  if (!stores) return std::move(stores.error());
  out.feed = stores->feed();
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
  if (out.stats_interval < caf::timespan::zero() ||
      out.stats_interval > karlton::max_option_duration)
    return bad_option("node.stats-interval",
                      "must be in 0..365 days (0 = off; longer is never, and far from "
                      "int64 nanosecond overflow)");
  out.console = caf::get_or(cfg, "node.console", out.console);
  out.port_file = caf::get_or(cfg, "node.port-file", out.port_file);
  if (auto err = server_settings(cfg, out)) return err;
  return out;
}

// Each client holds a descriptor: like Redis, raise the open-files limit for
// maxclients plus 64 spare (stores, the cluster, logs), or lower maxclients
// to what the limit allows, and say so.
void fit_max_clients(karlton::server::resp_options& o) {
  constexpr rlim_t spare = 64;
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  rlim_t want = rlim_t{o.max_clients} + spare;
  if (lim.rlim_cur >= want) return;
  rlimit raised = lim;
  raised.rlim_cur = lim.rlim_max == RLIM_INFINITY ? want : std::min(want, lim.rlim_max);
  if (setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  if (lim.rlim_cur >= want) return;
  auto fits = lim.rlim_cur > spare ? lim.rlim_cur - spare : 1;
  std::cerr << "karlton-node: node.maxclients lowered from " << o.max_clients << " to "
            << fits << ": the open-files limit is " << lim.rlim_cur << '\n';
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

// Readers never see a partial port: they see no file or the whole of it.
bool write_port_file(const std::string& path, uint16_t port) {
  auto tmp = path + ".tmp";
  {
    std::ofstream out{tmp, std::ios::trunc};
    out << port << '\n';
    out.flush();
    if (!out) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

// Runs until the console's `quit` or a stop signal (read from `signal_fd`):
// answers console lines from stdin if `read_stdin` (EOF just stops reading),
// and logs a stats line every `interval` (0: never).
void serve(karlton::node::console& con, const std::string& name, bool read_stdin,
           caf::timespan interval, int signal_fd) {
  using clock = std::chrono::steady_clock;
  auto next_stats = clock::now() + interval;
  pollfd fds[2] = {{signal_fd, POLLIN, 0}, {read_stdin ? 0 : -1, POLLIN, 0}};
  std::string pending; // stdin read so far, not yet a whole line
  auto answer = [&](const std::string& line) {
    std::cout << con.execute(line) << std::endl;
    return con.quit_requested();
  };
  for (;;) {
    int timeout_ms = -1;
    if (interval > caf::timespan::zero()) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(next_stats - clock::now());
      // poll takes an int: past 2^31 ms (24.8 days) wake early, not never.
      timeout_ms = static_cast<int>(
        std::clamp<int64_t>(left.count(), 0, std::numeric_limits<int>::max()));
    }
    if (poll(fds, 2, timeout_ms) < 0) {
      if (errno == EINTR) continue;
      std::perror("karlton-node: poll");
      return;
    }
    if (fds[0].revents & POLLIN) return; // SIGTERM or SIGINT
    if (fds[1].fd >= 0 && fds[1].revents != 0) {
      char buf[4096];
      auto n = read(0, buf, sizeof buf);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) {
        // EOF (or a broken stdin): a last line without newline still counts;
        // the node keeps running until it is told to stop.
        fds[1].fd = -1;
        if (!pending.empty() && answer(pending)) return;
        pending.clear();
      } else {
        pending.append(buf, static_cast<size_t>(n));
        size_t start = 0;
        for (auto nl = pending.find('\n'); nl != std::string::npos;
             nl = pending.find('\n', start)) {
          if (answer(pending.substr(start, nl - start))) return;
          start = nl + 1;
        }
        pending.erase(0, start);
      }
    }
    if (interval > caf::timespan::zero() && clock::now() >= next_stats) {
      auto line = con.stats_summary();
      std::cerr << "karlton-node " << name << " stats: "
                << (line ? *line : "unavailable: " + karlton::describe(line.error()))
                << std::endl;
      next_stats = std::max(next_stats + interval, clock::now());
    }
  }
}

} // namespace

int main(int argc, char** argv) {
  // Stop signals are blocked in every thread (CAF's threads inherit this
  // mask) and read from a signalfd by the main loop: nothing runs in a
  // signal handler, and shutdown happens on the main thread.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  // A reader that closed our stdout must not kill the node.
  std::signal(SIGPIPE, SIG_IGN);

  auto cfg = std::make_unique<node_config>();
  if (auto err = cfg->parse_command_line(argc, argv)) {
    std::cerr << "karlton-node: " << karlton::describe(err) << '\n';
    return 2;
  }
  if (cfg->cli_helptext_printed) return 0;
  if (!cfg->remainder.empty()) {
    std::cerr << "karlton-node: unexpected argument '" << cfg->remainder.front()
              << "' (options look like --karlton.cluster.secret=...; see --help)\n";
    return 2;
  }
  auto settings = settings_from(*cfg);
  if (!settings) {
    std::cerr << "karlton-node: " << karlton::describe(settings.error()) << '\n';
    return 2;
  }

  fit_scheduler(*cfg, *settings);

  int signal_fd = signalfd(-1, &stop_signals, SFD_CLOEXEC);
  if (signal_fd < 0) {
    std::perror("karlton-node: signalfd");
    return 1;
  }
  karlton::runtime rt{std::move(cfg)};
  auto port = rt.start_cluster(settings->cluster);
  if (!port) {
    std::cerr << "karlton-node: cannot start the node: "
              << karlton::describe(port.error()) << '\n';
    return 1;
  }
  if (settings->feed)
    if (auto err = rt.start_change_feed(*settings->feed)) {
      std::cerr << "karlton-node: cannot listen for the database's changes: "
                << karlton::describe(err) << '\n';
      return 1;
    }
  std::map<std::string, karlton::cache> caches;
  // SELECT n is the n-th of node.caches; an I/O thread never waits for queue room.
  std::vector<karlton::cache> databases;
  for (auto& o : settings->caches) {
    if (settings->resp) // client-side caching hears of every change
      o.change_listener =
        settings->resp->tracking->listener_for(static_cast<uint32_t>(databases.size()));
    auto c = rt.create_cache(o);
    if (!c) {
      std::cerr << "karlton-node: cannot create cache '" << o.name
                << "': " << karlton::describe(c.error()) << '\n';
      return 1;
    }
    databases.push_back(c->without_queue_wait());
    caches.emplace(o.name, std::move(*c));
  }
  auto name = rt.node_name();
  std::cout << "karlton-node " << name << " listening on " << settings->cluster.host
            << ':' << *port << std::endl;
  if (!settings->port_file.empty() && !write_port_file(settings->port_file, *port)) {
    std::cerr << "karlton-node: cannot write the port file " << settings->port_file
              << '\n';
    return 1;
  }
  // After the listening line, which tests and scripts read first.
  std::unique_ptr<karlton::server::resp_server> resp;
  if (settings->resp) {
    fit_max_clients(*settings->resp);
    resp = std::make_unique<karlton::server::resp_server>(rt, std::move(databases),
                                                          *settings->resp);
    auto resp_port = resp->start();
    if (!resp_port) {
      std::cerr << "karlton-node: cannot serve the Redis protocol: "
                << karlton::describe(resp_port.error()) << '\n';
      return 1;
    }
    std::cout << "karlton-node " << name << " resp on " << settings->resp->host << ':'
              << *resp_port << std::endl;
  }
  std::unique_ptr<karlton::server::metrics_http> metrics;
  if (settings->metrics) {
    std::function<std::string()> extra;
    if (resp)
      extra = [server = resp.get()] {
        return karlton::server::server_metrics_text(server->context());
      };
    metrics = std::make_unique<karlton::server::metrics_http>(rt, *settings->metrics,
                                                              std::move(extra));
    auto metrics_port = metrics->start();
    if (!metrics_port) {
      std::cerr << "karlton-node: cannot serve /metrics: "
                << karlton::describe(metrics_port.error()) << '\n';
      return 1;
    }
    std::cout << "karlton-node " << name << " metrics on " << settings->metrics->host
              << ':' << *metrics_port << std::endl;
  }

  karlton::node::console con{rt, std::move(caches)};
  serve(con, name, settings->console, settings->stats_interval, signal_fd);
  // Before the runtime: in-flight calls end, and no client sees a cache
  // that is shutting down.
  if (metrics) metrics->stop();
  if (resp) resp->stop();
  rt.shutdown(); // reports unstored write-back writes on stderr itself
  std::cerr << "karlton-node " << name << " stopped" << std::endl;
  close(signal_fd);
  return 0;
}
