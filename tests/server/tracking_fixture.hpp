// What the tracking table's tests share: a session that records what is
// pushed to it, decoded, and a table with helpers to attach clients and
// report changed keys.
#pragma once

#include <catch2/catch.hpp>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/server/resp_session.hpp"
#include "runtime/server/tracking_table.hpp"

namespace karlton::testing::tracking {

using namespace karlton::server;

/// One decoded message: the keys, or `everything` for a null.
struct message {
  bool everything = false;
  bool redirect_broken = false;
  bool pubsub_form = false; // RESP2 "message __redis__:invalidate"
  std::vector<std::string> keys;
};

// Reads "$<n>\r\n<bytes>\r\n" at `pos`.
inline std::string read_bulk(const std::string& s, size_t& pos) {
  auto end = s.find("\r\n", pos);
  auto n = std::stoul(s.substr(pos + 1, end - pos - 1));
  auto out = s.substr(end + 2, n);
  pos = end + 2 + n + 2;
  return out;
}

inline message decode(const std::string& s) {
  message m;
  size_t pos = s.find("\r\n") + 2; // >2 or *3
  auto kind = read_bulk(s, pos);
  if (kind == "tracking-redir-broken") {
    m.redirect_broken = true;
    return m;
  }
  if (kind == "message") {
    m.pubsub_form = true;
    REQUIRE(read_bulk(s, pos) == "__redis__:invalidate");
  } else {
    REQUIRE(kind == "invalidate");
  }
  if (s.compare(pos, 3, "_\r\n") == 0 || s.compare(pos, 5, "$-1\r\n") == 0) {
    m.everything = true;
    return m;
  }
  auto end = s.find("\r\n", pos);
  auto n = std::stoul(s.substr(pos + 1, end - pos - 1));
  pos = end + 2;
  for (size_t i = 0; i < n; ++i)
    m.keys.push_back(read_bulk(s, pos));
  return m;
}

/// Stands in for a connection: records what is pushed to it.
class recording_session final : public session {
public:
  explicit recording_session(uint64_t id) : id_(id) {}
  uint64_t id() const noexcept override { return id_; }
  bool feed(std::string_view) override { return true; }
  void collect(std::string&) override {}
  bool wants_input() const noexcept override { return true; }
  bool closing() const noexcept override { return false; }
  bool replies_owed() const noexcept override { return false; }
  bool subscribed() const noexcept override { return false; }
  bool authenticated() const noexcept override { return true; }
  void detach() noexcept override {}
  bool output_overflowed() const noexcept override { return false; }
  size_t buffered_bytes() const noexcept override { return 0; }
  void push_for(std::string msg, std::weak_ptr<session> to) override {
    ++handed_on; // the reader's order is the session's business: hand it on now
    if (auto s = to.lock()) s->push(std::move(msg));
  }
  std::atomic<int> handed_on{0};
  void push(std::string msg) override {
    auto m = decode(msg);
    if (on_message) on_message(m);
    std::lock_guard<std::mutex> guard{mtx_};
    messages_.push_back(std::move(m));
  }
  std::vector<message> messages() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return messages_;
  }
  /// Every key of every message, in order.
  std::vector<std::string> keys() const {
    std::vector<std::string> out;
    for (auto& m : messages())
      out.insert(out.end(), m.keys.begin(), m.keys.end());
    return out;
  }
  std::function<void(const message&)> on_message; // set before any push

private:
  uint64_t id_;
  mutable std::mutex mtx_;
  std::vector<message> messages_;
};

struct fixture {
  std::shared_ptr<tracking_table> table;
  std::vector<std::shared_ptr<recording_session>> sessions;

  explicit fixture(size_t max_keys = tracking_table::default_max_keys,
                   size_t max_bytes = tracking_table::default_max_bytes)
    : table(std::make_shared<tracking_table>(max_keys, max_bytes)) {}

  recording_session& add(uint64_t id, int protocol) {
    sessions.push_back(std::make_shared<recording_session>(id));
    table->attach(id, sessions.back());
    table->set_protocol(id, protocol);
    return *sessions.back();
  }
  void change(uint32_t db, std::vector<std::string> keys) {
    key_batch b;
    for (auto& k : keys)
      b.add(std::string_view{k});
    table->listener_for(db)->keys_changed(b);
  }
};

inline tracking_mode bcast(std::vector<std::string> prefixes) {
  tracking_mode m;
  m.bcast = true;
  m.prefixes = std::move(prefixes);
  return m;
}

} // namespace karlton::testing::tracking
