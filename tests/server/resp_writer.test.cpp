// The RESP reply writer: the exact bytes of each reply type in RESP2 and RESP3.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "runtime/server/resp_writer.hpp"

using karlton::server::reply_writer;

namespace {

std::string written(int protocol, const std::function<void(reply_writer&)>& write) {
  std::string out;
  reply_writer w{out, protocol};
  write(w);
  return out;
}

} // namespace

TEST_CASE("simple, error, integer, bulk and array are the same in RESP2 and 3",
          "[resp]") {
  for (int proto : {2, 3}) {
    INFO("RESP" << proto);
    CHECK(written(proto, [](auto& w) { w.simple("OK"); }) == "+OK\r\n");
    CHECK(written(proto, [](auto& w) { w.simple("a\r\nb"); }) == "+a  b\r\n");
    CHECK(written(proto, [](auto& w) { w.error("unknown command 'x'"); }) ==
          "-ERR unknown command 'x'\r\n");
    CHECK(written(proto, [](auto& w) { w.error("-WRONGTYPE no\nway"); }) ==
          "-WRONGTYPE no way\r\n");
    // A lone '-' names no code: the reply still starts with one.
    CHECK(written(proto, [](auto& w) { w.error("-"); }) == "-ERR -\r\n");
    CHECK(written(proto, [](auto& w) { w.integer(0); }) == ":0\r\n");
    CHECK(written(proto, [](auto& w) { w.integer(INT64_MIN); }) ==
          ":-9223372036854775808\r\n");
    CHECK(written(proto, [](auto& w) { w.bulk(""); }) == "$0\r\n\r\n");
    CHECK(written(proto, [](auto& w) {
            w.bulk(std::string{"a\0\r\n", 4});
          }) == std::string{"$4\r\na\0\r\n\r\n", 10});
    CHECK(written(proto, [](auto& w) {
            w.array(2);
            w.bulk("x");
            w.integer(7);
          }) == "*2\r\n$1\r\nx\r\n:7\r\n");
  }
}

TEST_CASE("null, map, set, push and boolean differ by protocol", "[resp]") {
  CHECK(written(2, [](auto& w) { w.null(); }) == "$-1\r\n");
  CHECK(written(3, [](auto& w) { w.null(); }) == "_\r\n");
  CHECK(written(2, [](auto& w) { w.null_array(); }) == "*-1\r\n");
  CHECK(written(3, [](auto& w) { w.null_array(); }) == "_\r\n");
  auto one_pair = [](reply_writer& w) {
    w.map(1);
    w.bulk("proto");
    w.integer(3);
  };
  CHECK(written(2, one_pair) == "*2\r\n$5\r\nproto\r\n:3\r\n");
  CHECK(written(3, one_pair) == "%1\r\n$5\r\nproto\r\n:3\r\n");
  CHECK(written(2, [](auto& w) { w.set(3); }) == "*3\r\n");
  CHECK(written(3, [](auto& w) { w.set(3); }) == "~3\r\n");
  CHECK(written(2, [](auto& w) { w.push(2); }) == "*2\r\n");
  CHECK(written(3, [](auto& w) { w.push(2); }) == ">2\r\n");
  CHECK(written(2, [](auto& w) { w.boolean(true); }) == ":1\r\n");
  CHECK(written(2, [](auto& w) { w.boolean(false); }) == ":0\r\n");
  CHECK(written(3, [](auto& w) { w.boolean(true); }) == "#t\r\n");
  CHECK(written(3, [](auto& w) { w.boolean(false); }) == "#f\r\n");
}

TEST_CASE("doubles are spelled as Redis 7.0 does", "[resp]") {
  CHECK(written(3, [](auto& w) { w.double_value(1.5); }) == ",1.5\r\n");
  CHECK(written(2, [](auto& w) { w.double_value(1.5); }) == "$3\r\n1.5\r\n");
  CHECK(written(3, [](auto& w) { w.double_value(0.1); }) == ",0.10000000000000001\r\n");
  CHECK(written(3, [](auto& w) { w.double_value(INFINITY); }) == ",inf\r\n");
  CHECK(written(3, [](auto& w) { w.double_value(-INFINITY); }) == ",-inf\r\n");
  CHECK(written(2, [](auto& w) { w.double_value(-INFINITY); }) == "$4\r\n-inf\r\n");
  CHECK(written(3, [](auto& w) {
          w.double_value(std::numeric_limits<double>::quiet_NaN());
        }) == ",nan\r\n");
}

TEST_CASE("verbatim text carries its format in RESP3 only", "[resp]") {
  CHECK(written(3, [](auto& w) { w.verbatim("txt", "a\r\nb"); }) ==
        "=8\r\ntxt:a\r\nb\r\n");
  CHECK(written(2, [](auto& w) { w.verbatim("txt", "a\r\nb"); }) == "$4\r\na\r\nb\r\n");
  // Clients read exactly three bytes of format: any other is sent as txt.
  CHECK(written(3, [](auto& w) { w.verbatim("markdown", "x"); }) == "=5\r\ntxt:x\r\n");
}

TEST_CASE("replies append to what the buffer holds", "[resp]") {
  std::string out = "+first\r\n";
  reply_writer w{out, 3};
  CHECK(w.protocol() == 3);
  w.integer(-1);
  CHECK(out == "+first\r\n:-1\r\n");
}
