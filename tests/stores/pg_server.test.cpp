// The private PostgreSQL server of tests/support/pg_server.hpp: it starts on
// 127.0.0.1, answers psql, stops, starts again, and is gone afterwards.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>

#include "support/require_postgres.hpp"

using karlton::testing::pg_server;

namespace {

bool accepts_connections(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

} // namespace

TEST_CASE("a private server starts, answers and stops", "[pg_server]") {
  if (!karlton::testing::require_postgres()) return;
  uint16_t port = 0;
  {
    pg_server srv{"server"};
    KARLTON_REQUIRE_SERVER(srv);
    CHECK(srv.port() != 0);
    CHECK(srv.uri() ==
          "postgresql://karlton@127.0.0.1:" + std::to_string(srv.port()) + "/karlton");
    CHECK(srv.psql("SELECT 40 + 2") == "42");
    CHECK(srv.last_psql_ok());
    CHECK(srv.psql("SHOW listen_addresses") == "127.0.0.1");
    CHECK(srv.psql("SELECT current_database()") == "karlton");
    srv.psql("SELECT no_such_function()");
    CHECK_FALSE(srv.last_psql_ok());
    srv.psql("CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)");
    REQUIRE(srv.last_psql_ok());
    REQUIRE(srv.stop());
    srv.psql("SELECT 1");
    CHECK_FALSE(srv.last_psql_ok());
    REQUIRE(srv.start());
    CHECK(srv.psql("SELECT n FROM kept") == "7");
    REQUIRE(srv.restart());
    CHECK(srv.psql("SELECT n FROM kept") == "7");
    port = srv.port();
    CHECK(accepts_connections(port));
  }
  // The destructor stopped the daemonised postmaster.
  CHECK_FALSE(accepts_connections(port));
}
