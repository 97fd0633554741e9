// A private PostgreSQL server for one test (or example, or benchmark run): a
// fresh cluster made by initdb in a temporary folder, listening on a free
// port of 127.0.0.1 only, with fsync off. Header-only and std + POSIX only,
// like temp_dir.hpp, so the examples and the bench can use it too; it needs
// the server binaries (`scripts/setup postgresql`), found by `find_bindir`.
//
// initdb refuses to run as root, so as root the folder is handed to Debian's
// `postgres` user (or a system user `karlton-pg`, made if missing) and
// initdb and pg_ctl run under `runuser`. psql connects over TCP with trust
// authentication and runs as whoever we are.
#pragma once

#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

// Beside this file: found whoever includes them (tests, examples, the bench).
#include "run_command.hpp"
#include "temp_dir.hpp"

namespace karlton::testing {

class pg_server {
public:
  /// $KARLTON_PG_BINDIR if set (an empty or missing folder: none), else the
  /// highest /usr/lib/postgresql/<version>/bin holding initdb.
  static std::optional<std::filesystem::path> find_bindir() {
    namespace fs = std::filesystem;
    auto usable = [](const fs::path& dir) {
      std::error_code ec;
      return fs::exists(dir / "initdb", ec) && fs::exists(dir / "pg_ctl", ec);
    };
    if (const char* env = std::getenv("KARLTON_PG_BINDIR")) {
      if (*env != '\0' && usable(env)) return fs::path{env};
      return std::nullopt;
    }
    std::error_code ec;
    std::optional<fs::path> best;
    int best_version = -1;
    for (auto& entry : fs::directory_iterator{"/usr/lib/postgresql", ec}) {
      auto name = entry.path().filename().string();
      if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
      auto version = std::atoi(name.c_str());
      if (version > best_version && usable(entry.path() / "bin")) {
        best_version = version;
        best = entry.path() / "bin";
      }
    }
    return best;
  }

  /// Makes the cluster and starts it; never throws for a server problem:
  /// `ready()` says whether it runs, `error()` why not (with the log's tail).
  explicit pg_server(const std::string& tag) : dir_{"pg-" + tag} {
    auto bindir = find_bindir();
    if (!bindir) {
      error_ = "no PostgreSQL server binaries (scripts/setup postgresql)";
      return;
    }
    bindir_ = *bindir;
    if (!pick_user()) return;
    std::filesystem::create_directories(dir_.path() / "socket");
    if (!user_.empty() && !hand_over(dir_.path())) return;
    std::string out;
    if (run_as_owner({(bindir_ / "initdb").string(), "-D", data(), "-U", "karlton",
                      "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"},
                     out) != 0) {
      error_ = "initdb failed: " + out;
      return;
    }
    for (int attempt = 0; attempt < 3 && !ready_; ++attempt) {
      port_ = free_port();
      if (port_ == 0) {
        error_ = "no free port on 127.0.0.1";
        return;
      }
      ready_ = start();
      if (!ready_ && log_text().find("could not bind") == std::string::npos) break;
    }
    if (!ready_) return;
    if (run_command({(bindir_ / "createdb").string(), "-h", "127.0.0.1", "-p",
                     std::to_string(port_), "-U", "karlton", "karlton"},
                    out) != 0) {
      error_ = "createdb failed: " + out;
      ready_ = false;
    }
  }

  /// Ends the server at once (`-m immediate`): nothing of it outlives the test.
  ~pg_server() {
    if (port_ != 0) {
      std::string ignored;
      run_as_owner({(bindir_ / "pg_ctl").string(), "-D", data(), "-w", "-t", "60", "-m",
                    "immediate", "stop"},
                   ignored);
    }
  }
  pg_server(const pg_server&) = delete;
  pg_server& operator=(const pg_server&) = delete;

  bool ready() const noexcept { return ready_; }
  const std::string& error() const noexcept { return error_; }
  uint16_t port() const noexcept { return port_; }
  const std::filesystem::path& bindir() const noexcept { return bindir_; }
  /// postgresql://karlton@127.0.0.1:<port>/karlton
  std::string uri() const {
    return "postgresql://karlton@127.0.0.1:" + std::to_string(port_) + "/karlton";
  }

  /// Runs `sql` through psql (unaligned, tuples only, stopping at the first
  /// error) and returns its output without the last newline; on failure, the
  /// output is psql's error and `last_psql_ok()` is false.
  std::string psql(const std::string& sql) {
    std::string out;
    psql_ok_ =
      run_command({(bindir_ / "psql").string(), "-X", "-At", "-v", "ON_ERROR_STOP=1",
                   "-h", "127.0.0.1", "-p", std::to_string(port_), "-U", "karlton", "-d",
                   "karlton", "-c", sql},
                  out) == 0;
    if (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  }
  bool last_psql_ok() const noexcept { return psql_ok_; }

  /// pg_ctl stop -m fast (waits until it is down).
  bool stop() { return ctl({"-m", "fast", "stop"}); }
  /// pg_ctl start on the same port (waits until it accepts connections).
  bool start() {
    return ctl({"-l", (dir_.path() / "log").string(), "-o", server_flags(), "start"});
  }
  /// pg_ctl restart -m fast: every connection is cut.
  bool restart() {
    return ctl({"-m", "fast", "-l", (dir_.path() / "log").string(), "-o", server_flags(),
                "restart"});
  }

  /// The server's log (for failure messages).
  std::string log_text() const {
    std::ifstream in{dir_.path() / "log"};
    std::stringstream all;
    all << in.rdbuf();
    return all.str();
  }

private:
  std::string data() const { return (dir_.path() / "data").string(); }

  std::string server_flags() const {
    return "-c listen_addresses=127.0.0.1 -c port=" + std::to_string(port_) +
           " -c unix_socket_directories='" + (dir_.path() / "socket").string() +
           "' -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
           " -c shared_buffers=16MB -c max_connections=60";
  }

  bool ctl(std::vector<std::string> args) {
    std::vector<std::string> cmd{
      (bindir_ / "pg_ctl").string(), "-D", data(), "-w", "-t", "60"};
    cmd.insert(cmd.end(), args.begin(), args.end());
    std::string out;
    if (run_as_owner(cmd, out) == 0) return true;
    auto log = log_text();
    error_ = "pg_ctl " + args.back() + " failed: " + out +
             "\nlog: " + log.substr(log.size() > 2000 ? log.size() - 2000 : 0);
    return false;
  }

  // Root may not run initdb: pick the user the cluster belongs to.
  bool pick_user() {
    if (::geteuid() != 0) return true;
    for (const char* name : {"postgres", "karlton-pg"})
      if (::getpwnam(name) != nullptr) {
        user_ = name;
        return true;
      }
    std::string out;
    if (run_command({"useradd", "--system", "--no-create-home", "karlton-pg"}, out) !=
        0) {
      error_ = "running as root and cannot add the user karlton-pg: " + out;
      return false;
    }
    user_ = "karlton-pg";
    return true;
  }

  bool hand_over(const std::filesystem::path& dir) {
    std::string out;
    if (run_command({"chown", "-R", user_, dir.string()}, out) != 0) {
      error_ = "cannot hand " + dir.string() + " to " + user_ + ": " + out;
      return false;
    }
    return true;
  }

  int run_as_owner(std::vector<std::string> cmd, std::string& out) {
    if (!user_.empty()) cmd.insert(cmd.begin(), {"runuser", "-u", user_, "--"});
    return run_command(cmd, out);
  }

  // A port the kernel just handed out on 127.0.0.1; another process may take
  // it before the server binds, hence the constructor's retries.
  static uint16_t free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    uint16_t port = 0;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
      port = ntohs(addr.sin_port);
    ::close(fd);
    return port;
  }

  temp_dir dir_;
  std::filesystem::path bindir_;
  std::string user_; // empty: we are not root, the cluster is ours
  uint16_t port_ = 0;
  bool ready_ = false;
  bool psql_ok_ = false;
  std::string error_;
};

} // namespace karlton::testing
