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
#include <cstring>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <caf/settings.hpp>

#include "runtime/node/console.hpp"
#include "runtime/node/line_writer.hpp"
#include "runtime/node/node_settings.hpp"
#include "runtime/server/info.hpp"
#include "runtime/server/metrics_http.hpp"
#include "runtime/server/resp_server.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/options.hpp>
#include <karlton/runtime/runtime.hpp>

namespace {

using namespace std::chrono_literals;
using karlton::node::line_writer;
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
// and logs a stats line every `interval` (0: never). While the replies wait
// for a reader of stdout, it neither answers nor reads further commands, and
// still hears the signals.
void serve(karlton::node::console& con, const std::string& name, bool read_stdin,
           caf::timespan interval, int signal_fd, line_writer& out, line_writer& err) {
  using clock = std::chrono::steady_clock;
  auto next_stats = clock::now() + interval;
  pollfd fds[2] = {{signal_fd, POLLIN, 0}, {-1, POLLIN, 0}};
  karlton::node::console_lines lines;
  auto answer = [&](const std::string& line, bool too_long) {
    if (too_long)
      out.write_line("error line longer than " +
                     std::to_string(karlton::node::console_lines::default_max_line) +
                     " bytes");
    else
      out.write_line(con.execute(line));
    return con.quit_requested();
  };
  char buf[4096];
  std::string_view unfed; // read from stdin, not answered yet
  for (;;) {
    // A reply queue over its limit pauses the console between replies, so
    // it holds the limit plus one reply at most.
    if (!unfed.empty()) {
      auto used = lines.feed_while(unfed, answer, [&] { return !out.backed_up(); });
      if (!used) return; // quit
      unfed.remove_prefix(*used);
    }
    bool paused = !unfed.empty() || (read_stdin && out.backed_up());
    fds[1].fd = read_stdin && !paused ? 0 : -1;
    int timeout_ms = -1;
    if (interval > caf::timespan::zero()) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(next_stats - clock::now());
      // poll takes an int: past 2^31 ms (24.8 days) wake early, not never.
      timeout_ms = static_cast<int>(
        std::clamp<int64_t>(left.count(), 0, std::numeric_limits<int>::max()));
    }
    // The writer has no descriptor to poll: look at its queue now and then.
    if (paused) timeout_ms = timeout_ms < 0 ? 50 : std::min(timeout_ms, 50);
    if (poll(fds, 2, timeout_ms) < 0) {
      if (errno == EINTR) continue;
      err.write_line(std::string{"karlton-node: poll: "} + std::strerror(errno));
      return;
    }
    if (fds[0].revents & POLLIN) return; // SIGTERM or SIGINT
    if (fds[1].fd >= 0 && fds[1].revents != 0) {
      auto n = read(0, buf, sizeof buf);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) {
        // EOF (or a broken stdin): a last line without newline still counts;
        // the node keeps running until it is told to stop.
        read_stdin = false;
        if (lines.finish(answer)) return;
      } else {
        unfed = {buf, static_cast<size_t>(n)};
      }
    }
    if (interval > caf::timespan::zero() && clock::now() >= next_stats) {
      auto line = con.stats_summary();
      err.write_line("karlton-node " + name + " stats: " +
                     (line ? *line : "unavailable: " + karlton::describe(line.error())));
      next_stats = std::max(next_stats + interval, clock::now());
    }
  }
}

// karlton's warnings go to `err` while this lives. The sink shares the
// writer: a thread that took the sink just before this let go of it may
// still be writing a line.
class log_through {
public:
  explicit log_through(std::shared_ptr<line_writer> err) {
    karlton::set_log_sink(
      [err = std::move(err)](const std::string& line) { err->write_line(line); });
  }
  ~log_through() { karlton::set_log_sink({}); }
  log_through(const log_through&) = delete;
  log_through& operator=(const log_through&) = delete;
};

// A descriptor 0-2 that came closed would be taken by the first file the node
// opens (the signalfd, a socket, the store), and replies or log lines written
// into it: give it /dev/null first.
void fill_standard_descriptors() {
  for (int fd = 0; fd <= 2; ++fd)
    if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
      int opened = open("/dev/null", O_RDWR);
      if (opened > 2) close(opened);
    }
}

} // namespace

int main(int argc, char** argv) {
  fill_standard_descriptors();
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

  // Stop signals are blocked in every thread (the writers' and CAF's threads
  // inherit this mask) and read from a signalfd by the main loop: nothing
  // runs in a signal handler, and shutdown happens on the main thread.
  // Until here a stop signal simply ends the process.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  int signal_fd = signalfd(-1, &stop_signals, SFD_CLOEXEC);
  if (signal_fd < 0) {
    std::perror("karlton-node: signalfd");
    return 1;
  }
  // From here on nothing writes to stdout or stderr but these (and CAF's
  // own rare complaints): console replies wait for their reader, log lines
  // past a MiB unread are dropped and counted. Destroyed last, they get
  // what the runtime logs while it shuts down.
  line_writer stdout_lines{STDOUT_FILENO, line_writer::when_full::keep};
  auto stderr_writer =
    std::make_shared<line_writer>(STDERR_FILENO, line_writer::when_full::drop);
  auto& stderr_lines = *stderr_writer;
  log_through logs{stderr_writer};
  karlton::runtime rt{std::move(cfg)};
  auto port = rt.start_cluster(settings->cluster);
  if (!port) {
    stderr_lines.write_line("karlton-node: cannot start the node: " +
                            karlton::describe(port.error()));
    return 1;
  }
  if (settings->feed)
    if (auto err = rt.start_change_feed(*settings->feed)) {
      stderr_lines.write_line("karlton-node: cannot listen for the database's changes: " +
                              karlton::describe(err));
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
      stderr_lines.write_line("karlton-node: cannot create cache '" + o.name +
                              "': " + karlton::describe(c.error()));
      return 1;
    }
    databases.push_back(c->without_queue_wait());
    caches.emplace(o.name, std::move(*c));
  }
  auto name = rt.node_name();
  stdout_lines.write_line("karlton-node " + name + " listening on " +
                          settings->cluster.host + ":" + std::to_string(*port));
  if (!settings->port_file.empty() && !write_port_file(settings->port_file, *port)) {
    stderr_lines.write_line("karlton-node: cannot write the port file " +
                            settings->port_file);
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
      stderr_lines.write_line("karlton-node: cannot serve the Redis protocol: " +
                              karlton::describe(resp_port.error()));
      return 1;
    }
    stdout_lines.write_line("karlton-node " + name + " resp on " + settings->resp->host +
                            ":" + std::to_string(*resp_port));
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
      stderr_lines.write_line("karlton-node: cannot serve /metrics: " +
                              karlton::describe(metrics_port.error()));
      return 1;
    }
    stdout_lines.write_line("karlton-node " + name + " metrics on " +
                            settings->metrics->host + ":" +
                            std::to_string(*metrics_port));
  }

  karlton::node::console con{rt, std::move(caches)};
  serve(con, name, settings->console, settings->stats_interval, signal_fd, stdout_lines,
        stderr_lines);
  // Before the runtime: in-flight calls end, and no client sees a cache
  // that is shutting down.
  if (metrics) metrics->stop();
  if (resp) resp->stop();
  // What shutdown logs (write-back writes it could not store) is kept.
  stderr_lines.stop_dropping();
  rt.shutdown(); // logs unstored write-back writes itself
  stderr_lines.write_line("karlton-node " + name + " stopped");
  close(signal_fd);
  return 0;
}
