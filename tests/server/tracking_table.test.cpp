// The tracking table (plan §6.2): no change after a registration goes
// unreported however reads and changes interleave, BCAST prefixes, the key
// bound, flushes, and where messages go (RESP3 itself, RESP2 REDIRECT).
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "runtime/server/resp_session.hpp"
#include "runtime/server/tracking_table.hpp"

using namespace karlton;
using namespace karlton::server;

namespace {

/// One decoded message: the keys, or `everything` for a null.
struct message {
  bool everything = false;
  bool redirect_broken = false;
  bool pubsub_form = false; // RESP2 "message __redis__:invalidate"
  std::vector<std::string> keys;
};

// Reads "$<n>\r\n<bytes>\r\n" at `pos`.
std::string read_bulk(const std::string& s, size_t& pos) {
  auto end = s.find("\r\n", pos);
  auto n = std::stoul(s.substr(pos + 1, end - pos - 1));
  auto out = s.substr(end + 2, n);
  pos = end + 2 + n + 2;
  return out;
}

message decode(const std::string& s) {
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

tracking_mode bcast(std::vector<std::string> prefixes) {
  tracking_mode m;
  m.bcast = true;
  m.prefixes = std::move(prefixes);
  return m;
}

} // namespace

TEST_CASE("tracking: no change after a registration goes unreported, 2 readers "
          "against 2 writers",
          "[tracking]") {
  constexpr size_t keys = 16;
  constexpr int rounds = 20000;
  fixture f;
  std::array<std::atomic<uint64_t>, keys> version{}; // the cache: published changes
  auto name = [](size_t k) { return "k" + std::to_string(k); };
  // Per reader and key: messages received so far (null counts for every key).
  std::array<std::array<std::atomic<uint64_t>, keys>, 2> told{};
  for (uint64_t c = 0; c < 2; ++c) {
    auto& s = f.add(c + 1, 3);
    s.on_message = [&told, c](const message& m) {
      for (size_t k = 0; k < keys; ++k)
        if (m.everything || std::find(m.keys.begin(), m.keys.end(),
                                      "k" + std::to_string(k)) != m.keys.end())
          told[c][k].fetch_add(1);
    };
    REQUIRE(f.table->enable(c + 1, tracking_mode{}).empty());
  }
  // What each reader's own cache holds: the version it read and how many
  // messages it had seen when it registered.
  struct copy {
    bool held = false;
    uint64_t value = 0;
    uint64_t told_before = 0;
  };
  std::array<std::array<copy, keys>, 2> copies{};
  std::atomic<int> writers_done{0};
  std::vector<std::thread> threads;
  for (uint64_t c = 0; c < 2; ++c)
    threads.emplace_back([&, c] {
      std::mt19937 rng{static_cast<unsigned>(c)};
      // Reads as long as the writers write, so the last read of a key comes
      // before or after its last change, as the threads happen to run.
      while (writers_done.load() < 2) {
        auto k = rng() % keys;
        auto before = told[c][k].load();
        f.table->will_read(c + 1, 0, name(k)); // register, then read
        copies[c][k] = {true, version[k].load(), before};
      }
    });
  for (int w = 0; w < 2; ++w)
    threads.emplace_back([&, w] {
      std::mt19937 rng{static_cast<unsigned>(100 + w)};
      for (int i = 0; i < rounds; ++i) {
        auto k = rng() % keys;
        version[k].fetch_add(1); // publish, then tell
        f.change(0, {name(k)});
      }
      writers_done.fetch_add(1);
    });
  for (auto& t : threads)
    t.join();
  // A copy nobody invalidated since its registration must be current: a
  // change after the registration that went unreported leaves it stale.
  size_t held = 0;
  for (size_t c = 0; c < 2; ++c)
    for (size_t k = 0; k < keys; ++k) {
      const auto& cp = copies[c][k];
      if (!cp.held) continue;
      ++held;
      if (told[c][k].load() != cp.told_before) continue;
      INFO("reader " << c << " key " << k);
      CHECK(cp.value == version[k].load());
    }
  CHECK(held == 2 * keys);
  // Each message took its key out of the table, so the held ones remain.
  CHECK(f.table->keys() <= keys);
}

TEST_CASE("tracking: default mode reports a key once per read, only to readers of it",
          "[tracking]") {
  fixture f;
  auto& a = f.add(1, 3);
  auto& b = f.add(2, 3);
  REQUIRE(f.table->enable(1, {}).empty());
  REQUIRE(f.table->enable(2, {}).empty());
  f.table->will_read(1, 0, "x");
  f.table->will_read(1, 0, "x");
  f.table->will_read(2, 1, "x"); // another database
  CHECK(f.table->keys() == 2);
  f.change(0, {"x", "y"});
  f.change(0, {"x"}); // forgotten once told: no second message
  CHECK(a.keys() == std::vector<std::string>{"x"});
  CHECK(b.messages().empty());
  f.change(1, {"x"});
  CHECK(b.keys() == std::vector<std::string>{"x"});
  CHECK(f.table->keys() == 0);
  // OFF: nothing more, and no work for the shards.
  f.table->will_read(1, 0, "z");
  f.table->disable(1);
  f.table->disable(2);
  CHECK(f.table->clients() == 0);
  f.change(0, {"z"});
  CHECK(a.messages().size() == 1);
}

TEST_CASE("tracking: BCAST tells every key under a prefix, read or not", "[tracking]") {
  fixture f;
  auto& users = f.add(1, 3);
  auto& all = f.add(2, 3);
  REQUIRE(f.table->enable(1, bcast({"user:", "cart:"})).empty());
  REQUIRE(f.table->enable(2, bcast({})).empty());
  CHECK(f.table->prefixes() == 3); // "user:", "cart:", ""
  CHECK(f.table->enable(1, bcast({"user:1"})) ==
        "Prefix 'user:1' overlaps with an existing prefix 'user:'. Prefixes for a single "
        "client must not overlap.");
  // Each against its neighbours among the client's prefixes, in sorted order.
  CHECK(f.table->enable(1, bcast({"c"})) ==
        "Prefix 'c' overlaps with an existing prefix 'cart:'. Prefixes for a single "
        "client must not overlap.");
  CHECK(f.table->enable(1, bcast({"d", "us"})).rfind("Prefix 'us' overlaps", 0) == 0);
  CHECK(f.table->enable(1, bcast({})).rfind("Prefix '' overlaps", 0) == 0);
  CHECK(f.table->prefixes() == 3); // nothing of a refused ON went in
  CHECK(f.table->enable(1, tracking_mode{}).rfind("You can't switch BCAST mode", 0) == 0);
  fixture g;
  g.add(1, 3);
  CHECK(g.table->enable(1, bcast({"a", "ab"})) ==
        "Prefix 'a' overlaps with another provided prefix 'ab'. Prefixes for a single "
        "client must not overlap.");
  CHECK(g.table->enable(1, bcast({"x", "b", "x"})).rfind("Prefix 'x' overlaps", 0) == 0);
  CHECK(g.table->enable(1, bcast({"ab", "b", "a"})).rfind("Prefix 'a' overlaps", 0) == 0);
  f.change(0, {"user:7", "cart:1", "other"});
  f.change(3, {"user:8"}); // any database
  REQUIRE(users.messages().size() == 2);
  CHECK(users.messages()[0].keys == std::vector<std::string>{"user:7", "cart:1"});
  CHECK(users.messages()[1].keys == std::vector<std::string>{"user:8"});
  CHECK(all.keys() == std::vector<std::string>{"user:7", "cart:1", "other", "user:8"});
  // More prefixes later; OFF drops the client's prefixes only.
  REQUIRE(f.table->enable(1, bcast({"order:"})).empty());
  CHECK(f.table->prefixes() == 4);
  f.table->disable(2);
  CHECK(f.table->prefixes() == 3);
  f.change(0, {"order:1", "x"});
  CHECK(users.messages().back().keys == std::vector<std::string>{"order:1"});
  CHECK(all.messages().size() == 2);
}

TEST_CASE("tracking: BCAST finds every client's prefix of a key, whatever their lengths",
          "[tracking]") {
  fixture f;
  auto& a = f.add(1, 3);
  auto& b = f.add(2, 3);
  auto& c = f.add(3, 3);
  REQUIRE(f.table->enable(1, bcast({"a", "bc"})).empty());
  REQUIRE(f.table->enable(2, bcast({"ab", "b"})).empty());
  REQUIRE(f.table->enable(3, bcast({"abc", "abd"})).empty());
  f.change(0, {"abc", "bcd", "ab", "c", "abcd", "b", ""});
  CHECK(a.keys() == std::vector<std::string>{"abc", "bcd", "ab", "abcd"});
  CHECK(b.keys() == std::vector<std::string>{"abc", "bcd", "ab", "abcd", "b"});
  CHECK(c.keys() == std::vector<std::string>{"abc", "abcd"});
}

TEST_CASE("tracking: BCAST matches as a check of every prefix would, on random "
          "prefixes and keys",
          "[tracking]") {
  // The walk over the sorted prefixes (predecessor, then shorter) against
  // the plain definition, on a small alphabet so that prefixes nest, share
  // heads and sit next to the keys in every way.
  std::mt19937 rng{20261207};
  auto word = [&](size_t max_len) {
    std::string w(std::uniform_int_distribution<size_t>{0, max_len}(rng), 'a');
    for (auto& ch : w)
      ch = static_cast<char>('a' + std::uniform_int_distribution<int>{0, 2}(rng));
    return w;
  };
  for (int round = 0; round < 200; ++round) {
    fixture f;
    std::vector<std::vector<std::string>> held(6);
    for (uint64_t id = 1; id <= held.size(); ++id) {
      auto& client = f.add(id, 3);
      (void)client;
      std::vector<std::string> want;
      for (int i = 0; i < 4; ++i)
        want.push_back(word(4));
      // A client's prefixes may not overlap: those refused are left out.
      if (f.table->enable(id, bcast(want)).empty()) held[id - 1] = want;
    }
    std::vector<std::string> keys; // distinct: a key twice in a batch is told once
    for (int i = 0; i < 30; ++i)
      if (auto k = word(6); std::find(keys.begin(), keys.end(), k) == keys.end())
        keys.push_back(k);
    f.change(0, keys);
    for (size_t c = 0; c < held.size(); ++c) {
      std::vector<std::string> expected;
      for (auto& k : keys)
        for (auto& p : held[c])
          if (k.compare(0, p.size(), p) == 0) {
            expected.push_back(k);
            break;
          }
      INFO("round " << round << ", client " << c + 1);
      CHECK(f.sessions[c]->keys() == expected);
    }
  }
}

TEST_CASE("tracking: a prefix clients share stays until the last of them turns OFF",
          "[tracking]") {
  // ON and OFF change the shared index in place (they used to copy it whole).
  fixture f;
  auto& a = f.add(1, 3);
  auto& b = f.add(2, 3);
  REQUIRE(f.table->enable(1, bcast({"ab"})).empty());
  REQUIRE(f.table->enable(2, bcast({"ab", "x"})).empty());
  CHECK(f.table->prefixes() == 2);
  f.table->disable(1);
  CHECK(f.table->prefixes() == 2);
  f.change(0, {"abc", "xy"});
  CHECK(a.keys().empty());
  CHECK(b.keys() == std::vector<std::string>{"abc", "xy"});
  REQUIRE(f.table->enable(1, bcast({"abc"})).empty()); // again, another length
  f.table->disable(2);
  CHECK(f.table->prefixes() == 1);
  f.change(0, {"abcd", "ab", "xy"});
  CHECK(a.keys() == std::vector<std::string>{"abcd"});
  CHECK(b.keys().size() == 2);
  f.table->disable(1);
  CHECK(f.table->prefixes() == 0);
}

TEST_CASE("tracking: BCAST prefixes are bounded in count and length before any work",
          "[tracking]") {
  fixture f;
  f.add(1, 3);
  // Distinct, non-overlapping prefixes: the overlap check, quadratic in the
  // count, ran over all of them before the count was checked.
  std::vector<std::string> many;
  for (size_t i = 0; i <= tracking_table::max_prefixes_per_client; ++i)
    many.push_back(std::to_string(1000 + i));
  CHECK(f.table->enable(1, bcast(many)) == "too many prefixes: at most 256 per client");
  CHECK(f.table->enable(1, bcast({std::string(1025, 'p')})) ==
        "prefix of 1025 bytes: at most 1024");
  CHECK(f.table->prefixes() == 0);
  // Over all clients: 256 clients of 256 prefixes fill the table.
  for (uint64_t id = 2; id < 2 + tracking_table::max_prefixes_total / 256; ++id) {
    f.add(id, 3);
    std::vector<std::string> own;
    for (int i = 0; i < 256; ++i)
      own.push_back(std::to_string(id) + ":" + std::to_string(i) + ":");
    REQUIRE(f.table->enable(id, bcast(own)).empty());
  }
  CHECK(f.table->prefixes() == tracking_table::max_prefixes_total);
  CHECK(f.table->enable(1, bcast({"x"})) ==
        "too many prefixes: at most 65536 over all clients");
  f.table->disable(2);
  CHECK(f.table->enable(1, bcast({"x"})).empty());
  // And 1 MiB of prefixes over all clients.
  fixture g;
  for (uint64_t id = 1; id <= 5; ++id) { // each about 262 KB
    g.add(id, 3);
    std::vector<std::string> own;
    for (int i = 0; i < 256; ++i)
      own.push_back(std::to_string(id) + ":" + std::to_string(i) + ":" +
                    std::string(1018, 'p'));
    CHECK(g.table->enable(id, bcast(own)) ==
          (id < 5 ? "" : "too many prefix bytes: at most 1048576 over all clients"));
  }
}

TEST_CASE("tracking: past the key bound, keys are forgotten with a message",
          "[tracking]") {
  fixture f{3};
  auto& a = f.add(1, 3);
  REQUIRE(f.table->enable(1, {}).empty());
  std::vector<std::string> read = {"k1", "k2", "k3", "k4", "k5"};
  for (auto& k : read)
    f.table->will_read(1, 0, k);
  CHECK(f.table->keys() == 3);
  auto evicted = a.keys();
  CHECK(evicted.size() == 2);
  // Every key read is told exactly once: evicted now, or when it changes.
  f.change(0, read);
  auto told = a.keys();
  std::multiset<std::string> each(told.begin(), told.end());
  CHECK(told.size() == read.size());
  for (auto& k : read)
    CHECK(each.count(k) == 1);
  CHECK(f.table->keys() == 0);
}

TEST_CASE("tracking: past the byte bound, long keys are forgotten with a message",
          "[tracking]") {
  // Each tracked key costs its bytes, 4 for the database and 8 for its one
  // reader: three keys of 96 bytes fill 324, the fourth passes it.
  fixture f{0, 324}; // no bound on the count
  auto& a = f.add(1, 3);
  REQUIRE(f.table->enable(1, {}).empty());
  for (char c : std::string{"abcd"})
    f.table->will_read(1, 0, std::string(96, c));
  CHECK(f.table->keys() == 3);
  REQUIRE(a.keys().size() == 1); // the one forgotten, told at once
  f.change(0, {std::string(96, 'a'), std::string(96, 'b'), std::string(96, 'c'),
               std::string(96, 'd')});
  CHECK(a.keys().size() == 4); // each told once
  CHECK(f.table->keys() == 0);
}

TEST_CASE("tracking: readers count against the byte bound and those gone leave a key's "
          "list",
          "[tracking]") {
  // A key nobody writes, read once by each of 100,000 short connections:
  // before, every id stayed on its list (and outside the bound), and the
  // next change of the key walked all of them on a shard's thread.
  fixture f{0, 1 << 20};
  size_t refused = 0;
  for (uint64_t id = 1; id <= 100'000; ++id) {
    f.table->attach(id, std::weak_ptr<session>{});
    refused += !f.table->enable(id, {}).empty();
    f.table->will_read(id, 0, "hot");
    f.table->detach(id);
  }
  REQUIRE(refused == 0);
  auto& a = f.add(200'000, 3);
  REQUIRE(f.table->enable(200'000, {}).empty());
  f.table->will_read(200'000, 0, "hot");
  CHECK(f.table->keys() == 1);
  CHECK(f.table->bytes() <=
        4 + 3 + 129 * tracking_table::id_bytes); // at most one doubling
  CHECK(f.table->bytes() >= 4 + 3 + tracking_table::id_bytes);
  f.change(0, {"hot"});
  CHECK(a.keys() == std::vector<std::string>{"hot"});
  CHECK(f.table->bytes() == 0);
}

TEST_CASE("tracking: a flush tells every tracking client 'everything' and forgets that "
          "database's keys",
          "[tracking]") {
  fixture f;
  auto& a = f.add(1, 3);
  auto& b = f.add(2, 3);
  f.add(3, 3); // not tracking: nothing
  REQUIRE(f.table->enable(1, {}).empty());
  REQUIRE(f.table->enable(2, bcast({"p"})).empty());
  f.table->will_read(1, 0, "x");
  f.table->will_read(1, 1, "y");
  f.table->listener_for(0)->all_changed();
  REQUIRE(a.messages().size() == 1);
  CHECK(a.messages()[0].everything);
  REQUIRE(b.messages().size() == 1);
  CHECK(b.messages()[0].everything);
  CHECK(f.sessions[2]->messages().empty());
  CHECK(f.table->keys() == 1); // db 1's "y" stays
}

TEST_CASE("tracking: messages go to the REDIRECT target, in its protocol", "[tracking]") {
  fixture f;
  auto& tracker2 = f.add(1, 2);
  auto& target2 = f.add(2, 2);
  auto& target3 = f.add(3, 3);
  auto& tracker3 = f.add(4, 3);
  tracking_mode to2;
  to2.redirect = 2;
  tracking_mode to3;
  to3.redirect = 3;
  CHECK(f.table->enable(1, [] {
    tracking_mode m;
    m.redirect = 99;
    return m;
  }()) == "The client ID you want redirect to does not exist");
  REQUIRE(f.table->enable(1, to2).empty());
  f.table->will_read(1, 0, "a");
  f.change(0, {"a"}); // target not subscribed (RESP2): nothing
  CHECK(target2.messages().empty());
  f.table->set_subscribed(2, true);
  f.table->will_read(1, 0, "a");
  f.change(0, {"a"});
  REQUIRE(target2.messages().size() == 1);
  CHECK(target2.messages()[0].pubsub_form);
  CHECK(target2.messages()[0].keys == std::vector<std::string>{"a"});
  CHECK(tracker2.messages().empty());
  CHECK(tracker2.handed_on == 1); // through the reader, in its reply order
  // A RESP3 target gets the push form, subscribed or not.
  REQUIRE(f.table->enable(4, to3).empty());
  f.table->will_read(4, 0, "b");
  f.change(0, {"b"});
  REQUIRE(target3.messages().size() == 1);
  CHECK_FALSE(target3.messages()[0].pubsub_form);
  // The target goes away: a RESP3 tracker hears that its redirect broke.
  f.table->detach(3);
  f.table->will_read(4, 0, "b");
  f.change(0, {"b"});
  REQUIRE(tracker3.messages().size() == 1);
  CHECK(tracker3.messages()[0].redirect_broken);
  // RESP2 without REDIRECT: accepted, as Redis does, but it cannot be told.
  f.table->disable(1);
  REQUIRE(f.table->enable(1, {}).empty());
  f.table->will_read(1, 0, "c");
  f.change(0, {"c"});
  CHECK(tracker2.messages().empty());
}
