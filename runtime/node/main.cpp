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
#include <fcntl.h>
#include <poll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <caf/settings.hpp>

#include "runtime/node/console.hpp"
#include "runtime/node/node_settings.hpp"
#include "runtime/server/info.hpp"
#include "runtime/server/metrics_http.hpp"
#include "runtime/server/resp_server.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/options.hpp>
#include <karlton/runtime/runtime.hpp>

namespace {

using namespace std::chrono_literals;
using karlton::node::node_config;

// Readers never see a partial port: they see no file or the whole of it.
// The temporary file is made new, never followed: a link planted at
// <path>.tmp had the port written into whatever it named.
bool write_port_file(const std::string& path, uint16_t port) {
  auto tmp = path + ".tmp";
  ::unlink(tmp.c_str()); // a leftover of a killed run, or a planted link
  int fd =
    ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  auto text = std::to_string(port) + '\n';
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ok = ::close(fd) == 0 && ok;
  return ok && std::rename(tmp.c_str(), path.c_str()) == 0;
}

// Runs until the console's `quit` or a stop signal (read from `signal_fd`):
// answers console lines from stdin if `read_stdin` (EOF just stops reading),
// and logs a stats line every `interval` (0: never).
void serve(karlton::node::console& con, const std::string& name, bool read_stdin,
           caf::timespan interval, int signal_fd) {
  using clock = std::chrono::steady_clock;
  auto next_stats = clock::now() + interval;
  pollfd fds[2] = {{signal_fd, POLLIN, 0}, {read_stdin ? 0 : -1, POLLIN, 0}};
  karlton::node::console_lines lines;
  auto answer = [&](const std::string& line, bool too_long) {
    if (too_long)
      std::cout << "error line longer than "
                << karlton::node::console_lines::default_max_line << " bytes"
                << std::endl;
    else
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
        if (lines.finish(answer)) return;
      } else if (lines.feed({buf, static_cast<size_t>(n)}, answer)) {
        return;
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
  auto settings = karlton::node::settings_from(*cfg);
  if (!settings) {
    std::cerr << "karlton-node: " << karlton::describe(settings.error()) << '\n';
    return 2;
  }

  karlton::node::fit_scheduler(*cfg, *settings);

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
    karlton::node::fit_max_clients(*settings->resp);
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
