// A session over a real runtime without a socket: a fake host that counts
// wakes and runs blocking jobs on its own threads, and a client that feeds
// bytes and collects replies until it has as many as it expects (bounded in
// time, no sleeps).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "runtime/server/reply_reader.hpp"
#include "runtime/server/resp_session.hpp"

namespace karlton::testing {

/// A server context over `caches` as the server makes it: handles that never
/// wait for queue room, in SELECT order.
inline std::shared_ptr<server::server_context>
context_for(runtime& rt, const std::vector<cache>& caches, server::resp_options o = {}) {
  std::vector<cache> handles;
  for (const auto& c : caches)
    handles.push_back(c.without_queue_wait());
  return std::make_shared<server::server_context>(rt, std::move(handles), std::move(o));
}

/// The I/O side as a test plays it.
class fake_host final : public server::session_host {
public:
  explicit fake_host(size_t threads = 2, size_t queue_limit = 256) : limit_(queue_limit) {
    for (size_t i = 0; i < threads; ++i)
      pool_.emplace_back([this] { work(); });
  }

  ~fake_host() override {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : pool_)
      t.join();
  }

  void wake() noexcept override {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      ++wakes_;
    }
    cv_.notify_all();
  }

  bool run_blocking(std::function<void()> job) override {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (refuse_jobs || jobs_.size() >= limit_) return false;
      jobs_.push_back(std::move(job));
    }
    cv_.notify_all();
    return true;
  }

  uint64_t wakes() {
    std::lock_guard<std::mutex> guard{mtx_};
    return wakes_;
  }

  /// Waits until more than `seen` wakes happened; false after `max`.
  bool wait_wake(uint64_t seen,
                 std::chrono::milliseconds max = std::chrono::seconds{10}) {
    std::unique_lock<std::mutex> guard{mtx_};
    return cv_.wait_for(guard, max, [&] { return wakes_ > seen; });
  }

  /// Jobs handed over and not yet taken by a pool thread.
  size_t queued() {
    std::lock_guard<std::mutex> guard{mtx_};
    return jobs_.size();
  }

  /// Runs the newest queued job on the calling thread (a host made with no
  /// threads runs nothing by itself: the test picks the order); false if none.
  bool run_newest() {
    std::function<void()> job;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (jobs_.empty()) return false;
      job = std::move(jobs_.back());
      jobs_.pop_back();
    }
    job();
    return true;
  }

  /// Set by a test to make run_blocking answer "full".
  std::atomic<bool> refuse_jobs{false};

private:
  void work() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> guard{mtx_};
        cv_.wait(guard, [&] { return stopping_ || !jobs_.empty(); });
        if (jobs_.empty()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }

  size_t limit_;
  std::mutex mtx_;
  std::condition_variable cv_;
  uint64_t wakes_ = 0;
  bool stopping_ = false;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> pool_;
};

/// `*n $len arg ...` for one command.
inline std::string resp_command(std::initializer_list<std::string_view> args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (auto a : args) {
    out += "$" + std::to_string(a.size()) + "\r\n";
    out.append(a.data(), a.size());
    out += "\r\n";
  }
  return out;
}

/// Splits `out` into whole replies; stops at the first incomplete one and
/// leaves it in `out`. A malformed reply is returned as "MALFORMED:<rest>".
inline std::vector<std::string> take_replies(std::string& out) {
  std::vector<std::string> replies;
  for (;;) {
    size_t len = 0;
    auto st = server::read_reply(out, len);
    if (st == server::reply_status::incomplete) break;
    if (st == server::reply_status::malformed) {
      replies.push_back("MALFORMED:" + out);
      out.clear();
      break;
    }
    replies.push_back(out.substr(0, len));
    out.erase(0, len);
  }
  return replies;
}

/// One connection: its host and session.
struct test_client {
  explicit test_client(std::shared_ptr<server::server_context> c, size_t threads = 2)
    : ctx(std::move(c)), host(std::make_unique<fake_host>(threads)),
      s(server::make_session(ctx, host.get())) {}

  ~test_client() {
    if (s) s->detach();
  }

  /// Feeds `bytes` (false if the session said it closes).
  bool feed(std::string_view bytes) { return s->feed(bytes); }

  /// Collects until `n` replies are in (or 10 s passed); returns those.
  std::vector<std::string> replies(size_t n) {
    std::vector<std::string> got;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
    while (got.size() < n && std::chrono::steady_clock::now() < deadline) {
      auto seen = host->wakes();
      s->collect(pending);
      for (auto& r : take_replies(pending))
        got.push_back(std::move(r));
      if (got.size() >= n) break;
      host->wait_wake(seen, std::chrono::milliseconds{500});
    }
    return got;
  }

  /// Feeds `bytes` and returns the next `n` replies.
  std::vector<std::string> send(std::string_view bytes, size_t n = 1) {
    feed(bytes);
    return replies(n);
  }

  /// One command, one reply.
  std::string call(std::initializer_list<std::string_view> args) {
    auto r = send(resp_command(args), 1);
    return r.empty() ? std::string{"(no reply)"} : r[0];
  }

  /// Whatever collect gives now, without waiting.
  std::string collect_now() {
    s->collect(pending);
    std::string out;
    out.swap(pending);
    return out;
  }

  std::shared_ptr<server::server_context> ctx;
  std::unique_ptr<fake_host> host;
  std::shared_ptr<server::session> s;
  std::string pending;
};

} // namespace karlton::testing
