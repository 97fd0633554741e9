// The /metrics request-head parser: what it keeps, how it takes bytes in
// pieces, and what it refuses (rule 9).
#include <catch2/catch.hpp>

#include <string>
#include <string_view>

#include "runtime/server/http_request.hpp"

using karlton::server::basic_auth_matches;
using karlton::server::http_request;
using state = http_request::state;

namespace {

const std::string scrape = "GET /metrics?x=1 HTTP/1.1\r\n"
                           "Host: 127.0.0.1:9121\r\n"
                           "User-Agent: Prometheus/2.45.0\r\n"
                           "Accept: text/plain;version=0.0.4;q=1,*/*;q=0.1\r\n"
                           "Authorization: Basic ZGVmYXVsdDpzZWNyZXQ=\r\n"
                           "\r\n";

http_request parse(std::string_view bytes) {
  http_request r;
  r.feed(bytes);
  return r;
}

// The status a head gets, or 0 if it parses.
int status_of(std::string_view bytes) {
  auto r = parse(bytes);
  REQUIRE(r.current() != state::need_more);
  return r.current() == state::failed ? r.error_status() : 0;
}

} // namespace

TEST_CASE("a scrape's head gives its method, path and Authorization", "[http]") {
  http_request r;
  CHECK(r.feed(scrape) == scrape.size());
  REQUIRE(r.current() == state::complete);
  CHECK(r.method() == "GET");
  CHECK(r.path() == "/metrics");
  CHECK(r.minor_version() == 1);
  REQUIRE(r.has_authorization());
  CHECK(r.authorization() == "Basic ZGVmYXVsdDpzZWNyZXQ=");
  CHECK(r.feed("more") == 0); // done: takes nothing
}

TEST_CASE("a head fed byte by byte parses as when fed whole", "[http]") {
  http_request r;
  for (size_t i = 0; i < scrape.size(); ++i) {
    REQUIRE(r.current() == state::need_more);
    CHECK(r.feed(std::string_view{scrape}.substr(i, 1)) == 1);
  }
  REQUIRE(r.current() == state::complete);
  CHECK(r.path() == "/metrics");
  CHECK(r.authorization() == "Basic ZGVmYXVsdDpzZWNyZXQ=");
}

TEST_CASE("the bytes after the head are not taken", "[http]") {
  http_request r;
  std::string bytes = "GET / HTTP/1.0\r\n\r\nbody";
  CHECK(r.feed(bytes) == bytes.size() - 4);
  CHECK(r.current() == state::complete);
  CHECK(r.minor_version() == 0); // HTTP/1.0 needs no Host
  CHECK_FALSE(r.has_authorization());
  http_request split;
  CHECK(split.feed("GET / HTTP/1.0\r\n\r") == 17);
  CHECK(split.feed("\nbody") == 1);
  CHECK(split.current() == state::complete);
}

TEST_CASE("bare line feeds end lines too, and header names are case-insensitive",
          "[http]") {
  auto r = parse("GET /metrics HTTP/1.1\nhOsT: x\nauthorization:   Basic abc  \n\n");
  REQUIRE(r.current() == state::complete);
  CHECK(r.authorization() == "Basic abc");
}

TEST_CASE("a head over 8 KiB is refused with 431, without holding more", "[http]") {
  std::string start = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Fill: ";
  std::string end = "\r\n\r\n";
  std::string at_limit =
    start + std::string(http_request::default_max_head - start.size() - end.size(), 'a') +
    end;
  CHECK(status_of(at_limit) == 0);
  std::string over =
    start + std::string(at_limit.size() - start.size() - end.size() + 1, 'a') + end;
  CHECK(status_of(over) == 431);
  // Endless: refused once the limit is reached, taking no byte beyond it.
  http_request r;
  size_t taken = 0;
  for (int i = 0; i < 100 && r.current() == state::need_more; ++i)
    taken += r.feed(std::string(1000, 'a'));
  CHECK(r.current() == state::failed);
  CHECK(r.error_status() == 431);
  CHECK(taken == http_request::default_max_head);
  // A long target counts the same.
  CHECK(status_of("GET /" + std::string(9000, 'm') + " HTTP/1.1\r\n\r\n") == 431);
}

TEST_CASE("malformed heads are refused with 400", "[http]") {
  const char* bad[] = {
    "\r\n\r\n",                                     // no request line
    "GET /metrics\r\nHost: x\r\n\r\n",              // no version
    "GET  /metrics HTTP/1.1\r\nHost: x\r\n\r\n",    // two spaces
    "GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n",     // not HTTP/1.x
    "GET /metrics http/1.1\r\nHost: x\r\n\r\n",     // the version is case-sensitive
    "GET metrics HTTP/1.1\r\nHost: x\r\n\r\n",      // not origin form
    "GET * HTTP/1.1\r\nHost: x\r\n\r\n",            // asterisk form
    "G(T /metrics HTTP/1.1\r\nHost: x\r\n\r\n",     // not a token
    "GET /met\x01rics HTTP/1.1\r\nHost: x\r\n\r\n", // a control byte in the target
    "GET /metrics HTTP/1.1\r\n\r\n",                // HTTP/1.1 without Host
    "GET /metrics HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    "GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n",           // space before the colon
    "GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", // obs-fold
    "GET /metrics HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n",
    "GET /metrics HTTP/1.1\r\nHost: x\r\nA: b\rc\r\n\r\n", // a bare CR in a value
    "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n",
  };
  for (auto* head : bad) {
    INFO(head);
    CHECK(status_of(head) == 400);
  }
  std::string nul = "GET /metrics HTTP/1.1\r\nHost: x\r\nA: b";
  nul += '\0';
  nul += "\r\n\r\n";
  CHECK(status_of(nul) == 400);
  auto r = parse("GET metrics HTTP/1.1\r\n\r\n");
  CHECK_FALSE(r.error().empty());
  CHECK(r.feed("GET / HTTP/1.1\r\n") == 0); // failed: stays failed
}

TEST_CASE("HTTP Basic credentials are checked exactly", "[http][auth]") {
  // "default:secret" and variants, in base64.
  CHECK(basic_auth_matches("Basic ZGVmYXVsdDpzZWNyZXQ=", "default", "secret"));
  CHECK(basic_auth_matches("basic   ZGVmYXVsdDpzZWNyZXQ=", "default", "secret"));
  CHECK(
    basic_auth_matches("Basic ZGVmYXVsdDpzZWNyZXQ", "default", "secret")); // no padding
  CHECK_FALSE(basic_auth_matches("Basic ZGVmYXVsdDpzZWNyZXQ=", "default", "secreT"));
  CHECK_FALSE(basic_auth_matches("Basic ZGVmYXVsdDpzZWNyZXQ=", "admin", "secret"));
  CHECK_FALSE(basic_auth_matches("Basic ZGVmYXVsdDpzZWNyZXR4", "default", "secret"));
  CHECK_FALSE(basic_auth_matches("Bearer ZGVmYXVsdDpzZWNyZXQ=", "default", "secret"));
  CHECK_FALSE(basic_auth_matches("Basic ZGVmYXVs!DpzZWNyZXQ=", "default", "secret"));
  CHECK_FALSE(basic_auth_matches("Basic", "default", "secret"));
  CHECK_FALSE(basic_auth_matches("", "default", "secret"));
  CHECK_FALSE(basic_auth_matches("Basic Og==", "default", "secret")); // ":"
}
