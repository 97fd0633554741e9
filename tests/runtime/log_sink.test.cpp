// One way to report each failure: karlton's warnings (unstored writes at
// shutdown, a node's membership lines) go to the log sink, never straight to
// stderr, and shutdown's unstored writes are also in its report.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "stores/faulty_store.hpp"
#include "support/log_sink_lines.hpp"
#include "support/temp_dir.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/log.hpp>
#include <karlton/runtime/runtime.hpp>
#include <karlton/stores/memory_store.hpp>

using namespace karlton;
using namespace std::chrono_literals;

namespace {

// While it lives, file descriptor 2 writes to a file: what karlton (or
// anything else in the process) wrote to stderr can be read back.
class stderr_capture {
public:
  stderr_capture() : dir_("stderr"), path_(dir_.file("stderr.txt")) {
    std::fflush(stderr);
    saved_ = ::dup(2);
    REQUIRE(saved_ >= 0);
    auto* f = std::fopen(path_.c_str(), "w");
    REQUIRE(f != nullptr);
    REQUIRE(::dup2(::fileno(f), 2) >= 0);
    std::fclose(f);
  }
  ~stderr_capture() { restore(); }

  /// Everything written to stderr since the capture started; ends it.
  std::string text() {
    restore();
    std::ifstream in{path_};
    return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
  }

private:
  void restore() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    ::dup2(saved_, 2);
    ::close(saved_);
    saved_ = -1;
  }

  testing::temp_dir dir_;
  std::string path_;
  int saved_ = -1;
};

} // namespace

TEST_CASE("failed write-back batches and shutdown's unstored writes go to the log sink, "
          "nothing to stderr",
          "[runtime][shutdown][log]") {
  testing::log_sink_lines log;
  stderr_capture err;
  {
    runtime rt;
    auto o = rt.default_options("wb");
    o.shards = 1;
    o.writes = write_mode::write_back;
    // Every batch fails: the writes stay dirty until shutdown gives up.
    o.backing_store =
      std::make_shared<faulty_store>(std::make_shared<memory_store>(), 1.0, 7);
    auto wb = rt.create_cache(o);
    REQUIRE(wb);
    REQUIRE_FALSE(wb->put("a", "1"));
    REQUIRE_FALSE(wb->put("b", "2"));
    // Each failed batch is logged with the store's error: the flusher's
    // warnings went to CAF's log macros, which Debian's CAF compiles out.
    REQUIRE_FALSE(log.wait_for("a write-back batch failed, retrying", 30s).empty());
    auto report = rt.shutdown(50ms);
    REQUIRE(report.unstored.size() == 1);
    CHECK(report.unstored[0].first == "wb");
    CHECK(report.unstored[0].second == 2);
  }
  auto lines = log.containing("could not be stored");
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find("2 write-back writes of cache 'wb'") != std::string::npos);
  auto failed = log.containing("a write-back batch failed, retrying");
  REQUIRE_FALSE(failed.empty());
  CHECK(failed[0].find("store_failure") != std::string::npos);
  CHECK(failed[0].find("(cache 'wb')") != std::string::npos);
  CHECK(err.text().empty());
}

TEST_CASE("a node's log lines go to the log sink when its options name no log",
          "[runtime][cluster][log]") {
  testing::log_sink_lines log;
  stderr_capture err;
  {
    runtime a;
    runtime b;
    cluster_options o;
    o.secret = "s";
    o.node_name = "a";
    auto port = a.start_cluster(o);
    REQUIRE(port);
    o.node_name = "b";
    o.seeds = {"127.0.0.1:" + std::to_string(*port)};
    REQUIRE(b.start_cluster(o));
    // Before the fix, the peer actor wrote these lines to stderr.
    CHECK_FALSE(log.wait_for("member joined: b", 30s).empty());
    CHECK_FALSE(log.wait_for("member joined: a", 30s).empty());
  }
  CHECK(err.text().empty());
}

TEST_CASE("a line the log sink throws on goes to stderr, and the warner goes on",
          "[runtime][log]") {
  // Warnings come from actors (a flusher, a shard stopping at shutdown): a
  // sink that throws must not take them down.
  auto previous =
    set_log_sink([](const std::string&) { throw std::runtime_error("sink down"); });
  stderr_capture captured;
  CHECK_NOTHROW(log_line("karlton: a warning the sink refused"));
  auto text = captured.text();
  set_log_sink(previous);
  CHECK(text.find("karlton: a warning the sink refused") != std::string::npos);
}
