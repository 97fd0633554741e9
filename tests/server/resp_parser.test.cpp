// The RESP request parser: pipelines, splits, inline commands, and each
// malformed or oversized request with Redis's error text.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "runtime/server/resp_parser.hpp"

using karlton::server::parser_limits;
using karlton::server::request_parser;
using status = request_parser::status;
using command = std::vector<std::string>;

namespace {

struct outcome {
  std::vector<command> commands;
  status last = status::need_more;
  std::string error;
  size_t most_buffered = 0;
};

// Feeds `pieces` in order, taking every command out of each, as a connection
// would; stops at the first error.
outcome feed(request_parser& p, const std::vector<std::string>& pieces) {
  outcome out;
  for (const auto& piece : pieces) {
    std::string_view in = piece;
    for (;;) {
      out.last = p.next(in);
      out.most_buffered = std::max(out.most_buffered, p.buffered());
      if (out.last != status::command) break;
      out.commands.emplace_back(p.args().begin(), p.args().end());
    }
    if (out.last == status::error) {
      out.error = std::string{p.error()};
      break;
    }
    CHECK(in.empty());
  }
  return out;
}

outcome parse(const std::string& bytes, parser_limits limits = {}) {
  request_parser p{limits};
  return feed(p, {bytes});
}

std::string multibulk(const command& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args)
    out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return out;
}

} // namespace

TEST_CASE("a pipeline in one buffer gives each command in order", "[resp]") {
  auto r = parse(multibulk({"SET", "k", "v"}) + multibulk({"GET", "k"}) + "PING\r\n" +
                 multibulk({"DEL", "k", "x"}));
  CHECK(r.last == status::need_more);
  REQUIRE(r.commands.size() == 4);
  CHECK(r.commands[0] == command{"SET", "k", "v"});
  CHECK(r.commands[1] == command{"GET", "k"});
  CHECK(r.commands[2] == command{"PING"});
  CHECK(r.commands[3] == command{"DEL", "k", "x"});
}

TEST_CASE("every split point of a pipeline gives the same commands", "[resp]") {
  const std::string bytes = multibulk({"SET", "key:1", std::string(40, 'x')}) +
                            "ECHO \"a b\"\r\n" + multibulk({"GET", "key:1"}) + "\n" +
                            multibulk({"MSET", "a", "", "b", "\r\n"}) + "PING\n";
  const auto whole = parse(bytes);
  REQUIRE(whole.commands.size() == 5);
  for (size_t i = 0; i <= bytes.size(); ++i) {
    for (size_t j = i; j <= bytes.size(); j += 7) {
      request_parser p;
      auto split = feed(p, {bytes.substr(0, i), bytes.substr(i, j - i), bytes.substr(j)});
      INFO("split at " << i << " and " << j);
      CHECK(split.commands == whole.commands);
      CHECK(split.last == status::need_more);
    }
  }
  request_parser byte_by_byte;
  std::vector<std::string> bytes_one_by_one;
  for (char c : bytes)
    bytes_one_by_one.emplace_back(1, c);
  CHECK(feed(byte_by_byte, bytes_one_by_one).commands == whole.commands);
}

TEST_CASE("arguments are binary-safe", "[resp]") {
  const std::string binary{"a\0b\r\nc\n\r$*", 10};
  auto r = parse(multibulk({"SET", binary, std::string{"\0", 1}}));
  REQUIRE(r.commands.size() == 1);
  CHECK(r.commands[0][1] == binary);
  CHECK(r.commands[0][2] == std::string{"\0", 1});
}

TEST_CASE("inline commands split words and unquote as redis-cli", "[resp]") {
  auto r = parse("set  k \"a b\\x41\\n\"\r\nget 'it\\'s'\n  \tPING   \r\n"
                 "echo \"\" x\"y z\"\r\n");
  REQUIRE(r.commands.size() == 4);
  CHECK(r.commands[0] == command{"set", "k", "a bA\n"});
  CHECK(r.commands[1] == command{"get", "it's"});
  CHECK(r.commands[2] == command{"PING"});
  CHECK(r.commands[3] == command{"echo", "", "xy z"});
}

TEST_CASE("*0, negative counts and blank lines are no command", "[resp]") {
  auto r = parse("*0\r\n*-1\r\n*-10\r\n\r\n\n   \r\n" + multibulk({"PING"}));
  CHECK(r.last == status::need_more);
  REQUIRE(r.commands.size() == 1);
  CHECK(r.commands[0] == command{"PING"});
}

TEST_CASE("each malformed request gets Redis's error, and the error sticks", "[resp]") {
  struct bad {
    std::string bytes;
    std::string error;
  };
  parser_limits small;
  small.max_args = 4;
  small.max_bulk = 100;
  small.max_inline = 64;
  small.max_query_buffer = 200;
  const std::vector<bad> cases{
    {"*x\r\n", "Protocol error: invalid multibulk length"},
    {"*1x\r\n", "Protocol error: invalid multibulk length"},
    {"*+1\r\n", "Protocol error: invalid multibulk length"},
    {"*01\r\n", "Protocol error: invalid multibulk length"},
    {"*1\n", "Protocol error: invalid multibulk length"},
    {"*5\r\n", "Protocol error: invalid multibulk length"},
    {"*99999999999999999999\r\n", "Protocol error: invalid multibulk length"},
    {"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"},
    {"*1\r\n$101\r\n", "Protocol error: invalid bulk length"},
    {"*1\r\n$\r\n", "Protocol error: invalid bulk length"},
    {"*1\r\n$1x\r\n", "Protocol error: invalid bulk length"},
    {"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n", "Protocol error: expected '$', got 'f'"},
    {"*1\r\n\r\n", "Protocol error: expected '$', got ' '"},
    {"*1\r\n$1\r\nab\r\n", "Protocol error: expected CRLF after bulk"},
    {"*" + std::string(65, '1'), "Protocol error: too big mbulk count string"},
    {"*1\r\n$" + std::string(64, '1'), "Protocol error: too big bulk count string"},
    {std::string(65, 'a'), "Protocol error: too big inline request"},
    {std::string(65, 'a') + "\r\n", "Protocol error: too big inline request"},
    {"get \"k\r\n", "Protocol error: unbalanced quotes in request"},
    {"get 'k\r\n", "Protocol error: unbalanced quotes in request"},
    {"get \"k\"x\r\n", "Protocol error: unbalanced quotes in request"},
    {"*3\r\n$100\r\n" + std::string(100, 'v') + "\r\n$100\r\n" + std::string(100, 'v') +
       "\r\n$100\r\n",
     "Protocol error: query buffer limit exceeded"},
  };
  for (const auto& c : cases) {
    INFO(c.bytes);
    request_parser p{small};
    auto r = feed(p, {c.bytes});
    CHECK(r.last == status::error);
    CHECK(r.error == c.error);
    CHECK(r.commands.empty());
    std::string_view more = "PING\r\n";
    CHECK(p.next(more) == status::error);
    CHECK(more.size() == 6);
    CHECK(p.error() == c.error);
    CHECK(p.memory() < 4096); // a failed connection holds nothing but its error
  }
}

TEST_CASE("a line of exactly the limit passes, one byte more fails", "[resp]") {
  parser_limits small;
  small.max_inline = 16;
  small.max_query_buffer = 1000;
  auto fits = parse(std::string(16, 'a') + "\r\n", small);
  CHECK(fits.last == status::need_more);
  CHECK(fits.commands.size() == 1);
  auto over = parse(std::string(17, 'a') + "\r\n", small);
  CHECK(over.error == "Protocol error: too big inline request");
}

TEST_CASE("a declared huge length allocates nothing", "[resp]") {
  request_parser p;
  auto r = feed(p, {"*2\r\n$3\r\nSET\r\n$67108864\r\nabc"});
  CHECK(r.last == status::need_more);
  CHECK(p.buffered() == 6); // "SET" and "abc": what arrived, not what was declared
  CHECK(p.memory() < 4096);
  request_parser huge;
  auto h = feed(huge, {"*1\r\n$1000000000\r\n"});
  CHECK(h.error == "Protocol error: invalid bulk length");
  CHECK(huge.buffered() == 0);
  CHECK(huge.memory() < 4096);
  request_parser many;
  auto m = feed(many, {"*1048576\r\n$1\r\n"});
  CHECK(m.last == status::need_more);
  CHECK(many.buffered() < 64);
  CHECK(many.memory() < 4096); // the argument list too grows only as arguments arrive
}

TEST_CASE("a command that cannot fit the query buffer fails at its header", "[resp]") {
  parser_limits small;
  small.max_bulk = 1000;
  small.max_query_buffer = 1500;
  request_parser p{small};
  auto r =
    feed(p, {"*3\r\n$3\r\nSET\r\n$600\r\n" + std::string(600, 'x') + "\r\n$1000\r\n"});
  CHECK(r.error == "Protocol error: query buffer limit exceeded");
  CHECK(r.most_buffered <= 1500);
}

TEST_CASE("the buffered bytes never exceed the query buffer limit", "[resp]") {
  parser_limits small;
  small.max_bulk = 256;
  small.max_inline = 512;
  small.max_query_buffer = 300;
  // Many small arguments: each fits, together they do not.
  std::string bytes = "*100\r\n";
  for (int i = 0; i < 100; ++i)
    bytes += "$10\r\n0123456789\r\n";
  for (size_t step : {1, 3, 64, 5000}) {
    request_parser p{small};
    std::vector<std::string> pieces;
    for (size_t i = 0; i < bytes.size(); i += step)
      pieces.push_back(bytes.substr(i, step));
    auto r = feed(p, pieces);
    CHECK(r.error == "Protocol error: query buffer limit exceeded");
    CHECK(r.most_buffered <= 300);
  }
  auto line = parse(std::string(400, 'a'), small);
  CHECK(line.error == "Protocol error: query buffer limit exceeded");
  CHECK(line.most_buffered <= 300);
}

TEST_CASE("before AUTH, commands are limited to 10 args of 16 KiB", "[resp]") {
  request_parser p;
  p.set_authenticated(false);
  std::string ok_bulk(16 << 10, 'p');
  auto ok = feed(p, {multibulk({"AUTH", ok_bulk}) + multibulk(command(10, "x"))});
  CHECK(ok.commands.size() == 2);
  CHECK(ok.last == status::need_more);
  auto too_many = feed(p, {multibulk(command(11, "x"))});
  CHECK(too_many.error == "Protocol error: unauthenticated multibulk length");

  request_parser q;
  q.set_authenticated(false);
  auto too_long = feed(q, {multibulk({"AUTH", ok_bulk + "p"})});
  CHECK(too_long.error == "Protocol error: unauthenticated bulk length");

  request_parser after;
  after.set_authenticated(false);
  after.set_authenticated(true);
  auto big =
    feed(after, {multibulk({"SET", "k", ok_bulk + "p"}) + multibulk(command(11, "x"))});
  CHECK(big.commands.size() == 2);

  // AUTH run before the next command is parsed lifts the limits for the rest
  // of the same pipeline.
  request_parser pipelined;
  pipelined.set_authenticated(false);
  const std::string bytes = multibulk({"AUTH", "pw"}) + multibulk(command(11, "x"));
  std::string_view in = bytes;
  REQUIRE(pipelined.next(in) == status::command);
  pipelined.set_authenticated(true);
  CHECK(pipelined.next(in) == status::command);
  CHECK(pipelined.args().size() == 11);
}

TEST_CASE("a large command's memory is given back", "[resp]") {
  request_parser p;
  const std::string set = multibulk({"SET", "k", std::string(2 << 20, 'v')});
  std::string_view in = set;
  REQUIRE(p.next(in) == status::command);
  CHECK(p.memory() >= (2 << 20));
  std::string_view ping = "PING\r\n";
  REQUIRE(p.next(ping) == status::command);
  CHECK(p.memory() < (1 << 20));
}

TEST_CASE("an inline command is held to the limits of a multibulk one", "[resp]") {
  auto words = [](size_t n, size_t length) {
    std::string line;
    for (size_t i = 0; i < n; ++i)
      line += std::string(length, 'w') + " ";
    return line + "\r\n";
  };
  parser_limits few;
  few.max_args = 100;
  CHECK(parse(words(100, 1), few).commands.size() == 1);
  CHECK(parse(words(101, 1), few).error == "Protocol error: invalid multibulk length");
  // Before, a word of an inline line passed a max-bulk under the line's 64 KiB.
  parser_limits short_words;
  short_words.max_bulk = 8;
  CHECK(parse(words(2, 8), short_words).commands.size() == 1);
  CHECK(parse(words(1, 9), short_words).error == "Protocol error: invalid bulk length");

  request_parser p;
  p.set_authenticated(false);
  CHECK(feed(p, {words(10, 1)}).commands.size() == 1);
  request_parser many;
  many.set_authenticated(false);
  CHECK(feed(many, {words(11, 1)}).error ==
        "Protocol error: unauthenticated multibulk length");
  request_parser one_long;
  one_long.set_authenticated(false);
  CHECK(feed(one_long, {words(1, (16 << 10) + 1)}).error ==
        "Protocol error: unauthenticated bulk length");
}

TEST_CASE("a long blank line is not kept by an idle connection", "[resp]") {
  request_parser p;
  auto r = feed(p, {std::string(60 << 10, ' ') + "\r\n"});
  CHECK(r.commands.empty());
  CHECK(r.last == status::need_more);
  CHECK(p.memory() < 8192);
  std::string_view empty;
  CHECK(p.next(empty) == status::need_more); // and no null pointer reaches memchr
}

TEST_CASE("a large argument arriving in pieces holds no more than its own length",
          "[resp]") {
  request_parser p;
  const size_t length = (3 << 20) + 12345; // doubling would reach 4 MiB
  const std::string set = multibulk({"SET", "k", std::string(length, 'v')});
  std::string_view in = set;
  status s = status::need_more;
  size_t most = 0;
  while (!in.empty()) {
    std::string_view piece = in.substr(0, 64 << 10);
    in.remove_prefix(piece.size());
    s = p.next(piece);
    most = std::max(most, p.memory());
    if (s == status::command) break;
  }
  REQUIRE(s == status::command);
  CHECK(p.args()[2].size() == length);
  CHECK(most < length + (64 << 10));
}

TEST_CASE("many small arguments arriving one by one parse in linear time", "[resp]") {
  // 200k arguments of 8 bytes, each in its own piece: an arena that grew
  // to each argument's end alone would copy ~1.6 MB x 200k / 2 bytes.
  request_parser p;
  const size_t count = 200'000;
  std::string bytes = "*" + std::to_string(count) + "\r\n";
  for (size_t i = 0; i < count; ++i)
    bytes += "$8\r\nabcdefgh\r\n";
  std::string_view in = bytes;
  status s = status::need_more;
  const size_t piece_length = 14; // one argument per piece
  while (!in.empty() && s != status::command) {
    std::string_view piece = in.substr(0, piece_length);
    in.remove_prefix(piece.size());
    while (!piece.empty() && (s = p.next(piece)) == status::need_more) {
    }
  }
  REQUIRE(s == status::command);
  CHECK(p.args().size() == count);
}

TEST_CASE("the look ahead finds the keys of the GETs among the next commands", "[resp]") {
  using karlton::server::peek_get_keys;
  std::string_view keys[5];
  const std::string in =
    "*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n"
    "*3\r\n$3\r\nSET\r\n$2\r\nk2\r\n$1\r\nv\r\n"
    "*2\r\n$3\r\ngEt\r\n$0\r\n\r\n"
    "*3\r\n$3\r\nGET\r\n$1\r\na\r\n$1\r\nb\r\n" // not a GET of one key
    "*2\r\n$3\r\nget\r\n$2\r\nk4\r\n";
  REQUIRE(peek_get_keys(in, keys, 5) == 3);
  CHECK(keys[0] == "k1");
  CHECK(keys[1].empty());
  CHECK(keys[2] == "k4");
  // At most `max` commands are looked at, GETs or not.
  CHECK(peek_get_keys(in, keys, 2) == 1);
  // It stops at what is not a whole multibulk command: a partial one, an
  // inline one, a bad length, a length past the end.
  CHECK(peek_get_keys(in, keys, 4) == 2);
  CHECK(peek_get_keys(in.substr(0, in.size() - 1), keys, 5) == 2);
  CHECK(peek_get_keys("GET k1\r\n*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n", keys, 4) == 0);
  CHECK(peek_get_keys("*2\r\n$3\r\nGET\r\n$x\r\nk1\r\n", keys, 4) == 0);
  CHECK(peek_get_keys("*2\r\n$3\r\nGET\r\n$99999999999999999999\r\nk\r\n", keys, 4) == 0);
  CHECK(peek_get_keys("*2\r\n$3\r\nGET\r\n$3\r\nk1\r\n", keys, 4) == 0);
  CHECK(peek_get_keys("", keys, 4) == 0);
}
