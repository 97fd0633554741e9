// `tcp_relay`: a loopback TCP relay in front of a port, for tests of a link
// that breaks one way only. It forwards both directions until told to hold
// what clients send (`hold_from_clients`): from then on the server hears
// nothing more from them, while what the server sends still reaches them, and
// a connection the server closes stays open on the clients' side (a
// partition the client cannot see, not a closed connection it would notice).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

namespace karlton::testing {

class tcp_relay {
public:
  /// Listens on a free loopback port and relays what connects to
  /// 127.0.0.1:`server_port`.
  explicit tcp_relay(uint16_t server_port) : server_port_(server_port) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    auto addr = loopback(0);
    socklen_t len = sizeof(addr);
    if (listener_ < 0 || ::bind(listener_, as_sockaddr(addr), len) != 0 ||
        ::listen(listener_, 8) != 0 ||
        ::getsockname(listener_, as_sockaddr(addr), &len) != 0) {
      if (listener_ >= 0) ::close(listener_);
      throw std::runtime_error("tcp_relay: cannot listen on loopback");
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread{[this] { run(); }};
  }

  ~tcp_relay() {
    stop_ = true;
    thread_.join();
    for (auto& p : pairs_) {
      ::close(p.client);
      if (p.server >= 0) ::close(p.server);
    }
    ::close(listener_);
  }

  tcp_relay(const tcp_relay&) = delete;
  tcp_relay& operator=(const tcp_relay&) = delete;

  uint16_t port() const noexcept { return port_; }

  /// From now on nothing the clients send reaches the server.
  void hold_from_clients() noexcept { held_ = true; }

private:
  struct pair {
    int client;
    int server; // -1 once the server closed it
  };

  static sockaddr_in loopback(uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
  }
  static sockaddr* as_sockaddr(sockaddr_in& a) { return reinterpret_cast<sockaddr*>(&a); }

  // Copies what `from` has to `to`; false once `from` closed or failed.
  static bool pass(int from, int to) {
    char buf[16384];
    auto n = ::read(from, buf, sizeof buf);
    if (n <= 0) return false;
    for (ssize_t done = 0; done < n;) {
      // MSG_NOSIGNAL: a side that closed fails the send, not the process.
      auto w = ::send(to, buf + done, static_cast<size_t>(n - done), MSG_NOSIGNAL);
      if (w <= 0) return false;
      done += w;
    }
    return true;
  }

  void accept_one() {
    int c = ::accept(listener_, nullptr, nullptr);
    if (c < 0) return;
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    auto addr = loopback(server_port_);
    if (s < 0 || ::connect(s, as_sockaddr(addr), sizeof addr) != 0) {
      ::close(c);
      if (s >= 0) ::close(s);
      return;
    }
    pairs_.push_back({c, s});
  }

  // Polls every 20 ms for at most as long as the relay lives.
  void run() {
    while (!stop_) {
      std::vector<pollfd> fds{{listener_, POLLIN, 0}};
      for (auto& p : pairs_) {
        // A held client is not read; poll ignores the -1s.
        fds.push_back({held_ || p.server < 0 ? -1 : p.client, POLLIN, 0});
        fds.push_back({p.server, POLLIN, 0});
      }
      if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
      auto polled = pairs_.size();
      if (fds[0].revents & POLLIN) accept_one();
      for (size_t i = 0; i < polled; ++i) {
        auto& p = pairs_[i];
        auto client_ready = fds[1 + 2 * i].revents != 0;
        auto server_ready = fds[2 + 2 * i].revents != 0;
        if (server_ready && !pass(p.server, p.client)) {
          ::close(p.server); // the client's side stays open
          p.server = -1;
        }
        if (client_ready && p.server >= 0 && !pass(p.client, p.server)) {
          ::close(p.server);
          p.server = -1;
        }
      }
    }
  }

  uint16_t server_port_;
  int listener_ = -1;
  uint16_t port_ = 0;
  std::vector<pair> pairs_; // the relay thread's only, until it joined
  std::atomic<bool> held_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

} // namespace karlton::testing
