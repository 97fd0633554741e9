// The RESP server over loopback sockets with real sessions: over a cache in
// this process (a client that does not read is paused, one that reads gets
// every reply through pauses and resumes, KARLTON.FLUSH leaves the pool
// free), and in karlton-node (its RESP port, bad RESP options). With a fake
// session: resp_server.test.cpp.
#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "runtime/server/resp_server.hpp"
#include "server/gated_store.hpp"
#include "server/loopback_client.hpp"
#include "support/eventually.hpp"
#include "support/node_process.hpp"
#include "support/temp_dir.hpp"

using karlton::testing::eventually;
using client = karlton::testing::loopback_client;
namespace srv = karlton::server;

namespace {

// A server with real sessions over one cache holding a value of `bytes`
// under "big".
struct big_value_server {
  big_value_server(size_t bytes, const srv::resp_options& opts) : big(bytes, 'v') {
    REQUIRE_FALSE(db.put("big", big));
    server.emplace(rt, std::vector<karlton::cache>{db.without_queue_wait()}, opts);
    auto p = server->start();
    REQUIRE(p);
    port = *p;
  }

  karlton::runtime rt;
  karlton::cache db = *rt.create_cache("db0");
  std::string big;
  std::optional<srv::resp_server> server;
  uint16_t port = 0;
};

} // namespace

TEST_CASE("a client that pipelines without reading is paused, not buffered up to the "
          "output limit",
          "[resp-server]") {
  // Real sessions: they stop running commands while replies wait unsent.
  srv::resp_options opts;
  opts.output_pause_bytes = 256 << 10;
  opts.output_buffer_limit = 4 << 20;
  big_value_server f{100'000, opts};
  const auto& big = f.big;
  const auto& counters = f.server->context().counters;
  client hog{f.port, 4096}, other{f.port};
  std::string requests;
  for (int i = 0; i < 2000; ++i) // 200 MB of replies, never read
    requests += "GET big\r\n";
  REQUIRE(hog.send(requests));
  // Replies wait unsent once the socket's buffers are full: from there on
  // only a client that reads (or the limit) moves anything.
  REQUIRE(eventually(
    [&] { return counters.output_buffered > 0 || counters.output_limit_closes > 0; }));
  REQUIRE(other.send("PING\r\n"));
  CHECK(other.read(7) == "+PONG\r\n"); // served meanwhile
  // Before: it kept collecting and was closed at the 4 MiB limit.
  CHECK(counters.output_limit_closes == 0);
  CHECK(counters.output_buffered <= opts.output_pause_bytes + 2 * big.size());
  CHECK(counters.total_commands < 2000 / 2);
  // The hard limit still closes a client that does not read one huge reply.
  REQUIRE_FALSE(f.db.put("huge", std::string(5 << 20, 'h')));
  client huge{f.port, 4096};
  REQUIRE(huge.send("GET huge\r\n"));
  CHECK(eventually([&] { return counters.output_limit_closes == 1; }));
  f.server->stop();
}

TEST_CASE("a client that reads gets every reply of a pipeline through pauses and "
          "resumes",
          "[resp-server]") {
  // Replies larger than the socket takes at once and a pause bound a few
  // replies deep; the client sends in batches while it reads, so replies
  // pile up behind a write in progress, the session pauses, and a send
  // that then takes the paused output whole must resume it (that case
  // hung: no read, write or wake was left to resume the session).
  srv::resp_options opts;
  opts.output_pause_bytes = 100'000;
  big_value_server f{40'000, opts};
  const std::string reply = "$40000\r\n" + f.big + "\r\n";
  const std::string get = "*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n";
  for (int attempt = 0; attempt < 10; ++attempt) {
    client reader{f.port};
    constexpr int batches = 50, per_batch = 6;
    std::string got;
    for (int b = 0; b < batches; ++b) {
      std::string batch;
      for (int i = 0; i < per_batch; ++i)
        batch += get;
      REQUIRE(reader.send(batch));
      // Replies are owed all along (6 asked, at most 2 read per batch):
      // nothing for 10 s is the hang.
      auto chunk = reader.read(reply.size() * 2);
      REQUIRE_FALSE(chunk.empty());
      got += chunk;
    }
    got += reader.read(reply.size() * batches * per_batch - got.size());
    REQUIRE(got.size() == reply.size() * batches * per_batch);
    CHECK(got.substr(got.size() - reply.size()) == reply);
  }
  f.server->stop();
}

TEST_CASE("KARLTON.FLUSH waiting for a slow store holds no pool thread: another "
          "client's pool command is answered meanwhile",
          "[resp-server][flush]") {
  karlton::testing::gated_cache f{karlton::write_mode::write_back};
  srv::resp_server server{f.rt, {f.c.without_queue_wait()}, srv::resp_options{}};
  auto port = server.start();
  REQUIRE(port);
  const auto& counters = server.context().counters;
  client a{*port}, b{*port}, other{*port};
  REQUIRE(a.send("SET k v\r\n"));
  REQUIRE(a.read(5) == "+OK\r\n");
  // Each FLUSH waits until the store, held at its gate, takes the dirty write.
  // The PING behind a FLUSH runs once the FLUSH ran (and had handed its wait
  // to the pool, before the fix).
  REQUIRE(a.send("KARLTON.FLUSH\r\nPING\r\n"));
  REQUIRE(f.write_held());
  REQUIRE(b.send("KARLTON.FLUSH\r\nPING\r\n"));
  REQUIRE(eventually([&] { return counters.total_commands == 5; }));
  // KARLTON.INVALIDATE runs on the pool: it waited behind both FLUSHes, which
  // held the pool's two threads until they gave up after 10 s.
  REQUIRE(other.send("KARLTON.INVALIDATE t\r\n"));
  CHECK(other.read(4) == ":0\r\n");
  CHECK(a.read_now() == "");
  CHECK(b.read_now() == "");
  CHECK(f.db->writes_waiting == 1);
  f.db->gate.release();
  CHECK(a.read(12) == "+OK\r\n+PONG\r\n");
  CHECK(b.read(12) == "+OK\r\n+PONG\r\n");
  server.stop();
}

TEST_CASE("karlton-node prints the port it serves the Redis protocol on",
          "[resp-server][multiprocess]") {
  karlton::testing::node_process node{
    "resp",
    KARLTON_NODE,
    {"--karlton.cluster.secret=s", "--karlton.cluster.port=0", "--node.stats-interval=0",
     "--node.resp-port=0", "--node.resp-threads=2"}};
  REQUIRE(node.ready());
  REQUIRE(node.resp_port() != 0);
  CHECK(node.resp_port() != node.port());
  client c{node.resp_port()};
  CHECK(c.connected());
  CHECK(node.stop() == 0);
}

TEST_CASE("karlton-node refuses bad RESP options, no caches, and options that need a "
          "store it lacks, with exit 2",
          "[resp-server][multiprocess]") {
  for (auto bad :
       {"--node.resp-threads=0", "--node.maxclients=-1", "--node.resp-port=65536",
        "--node.resp-output-buffer-limit=0", "--node.resp-timeout=-1s",
        "--node.caches=[]",
        // Named as the operator sets them (it named a backing_store, a loader).
        "--karlton.write-mode=write_through", "--karlton.refresh-after=1s"}) {
    karlton::testing::node_process node{"bad",
                                        KARLTON_NODE,
                                        {"--karlton.cluster.secret=s",
                                         "--karlton.cluster.port=0", "--node.resp-port=0",
                                         bad}};
    INFO(bad);
    CHECK_FALSE(node.ready());
    auto status = node.wait(std::chrono::milliseconds{10'000});
    REQUIRE(status);
    CHECK(WEXITSTATUS(*status) == 2);
    CHECK(node.log().find(std::string{bad}.substr(2, std::string{bad}.find('=') - 2)) !=
          std::string::npos);
  }
}

TEST_CASE("karlton-node refuses a config file that would hide its password",
          "[resp-server][multiprocess]") {
  // Both started a node open to every client: CAF keeps "[NODE]" apart from
  // "[node]", and drops a section named after an option.
  karlton::testing::temp_dir dir{"node-config"};
  auto path = dir.file("node.ini");
  for (auto [text, named] : {std::pair{"[NODE]\nrequirepass=\"abcdefgh\"\n", "NODE"},
                             {"[node.requirepass]\nx = 1\n", "node.requirepass.x"}}) {
    INFO(text);
    { std::ofstream{path} << text; }
    karlton::testing::node_process node{"bad-config",
                                        KARLTON_NODE,
                                        {"--karlton.cluster.secret=s",
                                         "--karlton.cluster.port=0", "--node.resp-port=0",
                                         "--config-file=" + path}};
    CHECK_FALSE(node.ready());
    auto status = node.wait(std::chrono::milliseconds{10'000});
    REQUIRE(status);
    CHECK(WEXITSTATUS(*status) == 2);
    CHECK(node.log().find(named) != std::string::npos);
    CHECK(node.log().find("abcdefgh") == std::string::npos);
  }
}
