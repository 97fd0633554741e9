// The RESP server tests' client (resp_server.test.cpp with fake sessions,
// resp_server_real_sessions.test.cpp with real ones): raw bytes over a
// loopback TCP socket, each wait bounded.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

namespace karlton::testing {

/// A blocking loopback client whose every wait has a deadline.
class loopback_client {
public:
  explicit loopback_client(uint16_t port, int receive_buffer = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (receive_buffer > 0)
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~loopback_client() { ::close(fd_); }
  loopback_client(const loopback_client&) = delete;
  loopback_client& operator=(const loopback_client&) = delete;

  bool connected() const { return connected_; }

  bool send(const std::string& bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      auto n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }

  /// Reads until `want` bytes arrived, EOF, or 10 s passed.
  std::string read(size_t want) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
    while (buffer_.size() < want && !eof_ && std::chrono::steady_clock::now() < deadline)
      read_some(100);
    auto n = std::min(want, buffer_.size());
    auto out = buffer_.substr(0, n);
    buffer_.erase(0, n);
    return out;
  }

  /// True once the server closed its side (within 10 s); the bytes before it
  /// stay readable.
  bool sees_eof() {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
    while (!eof_ && std::chrono::steady_clock::now() < deadline)
      read_some(100);
    return eof_;
  }

  /// What arrived and was not read yet.
  std::string rest() { return std::exchange(buffer_, {}); }

  /// What has arrived by now and was not read yet, without waiting.
  std::string read_now() {
    read_some(0);
    return rest();
  }

private:
  void read_some(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return;
    char buf[65536];
    auto n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0)
      eof_ = true;
    else
      buffer_.append(buf, static_cast<size_t>(n));
  }

  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  std::string buffer_;
};

} // namespace karlton::testing
