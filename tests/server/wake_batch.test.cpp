// Wakes from other threads reach an I/O thread in one handler per batch
// (resp_connection.hpp, io_thread::woken): a shard that completes the
// commands of many clients must not post once per client.
#include <catch2/catch.hpp>

#include <memory>
#include <thread>
#include <vector>

#include "runtime/server/resp_connection.hpp"
#include <karlton/runtime/runtime.hpp>

using namespace karlton;
using namespace karlton::server;
using namespace karlton::server::detail;

TEST_CASE("wakes of many connections from another thread run as one handler",
          "[resp][server]") {
  runtime rt{std::make_shared<manual_clock>()};
  io_thread t;
  server_shared shared;
  shared.ctx = std::make_shared<server_context>(rt, std::vector<cache>{}, resp_options{});
  std::vector<std::shared_ptr<connection>> conns;
  for (int i = 0; i < 50; ++i)
    conns.push_back(std::make_shared<connection>(t, shared, tcp::socket{t.io}, false));

  std::thread shard{[&] { // as a shard thread completing 50 clients' replies
    for (auto& c : conns) {
      c->wake();
      c->wake(); // a second completion before the first wake ran: nothing more
    }
  }};
  shard.join();
  CHECK(t.io.poll() == 1);
  // Each was woken and may be woken again: the next batch posts again.
  conns[3]->wake();
  conns[7]->wake();
  CHECK(t.io.poll() == 1);
  CHECK(t.io.poll() == 0);
}
