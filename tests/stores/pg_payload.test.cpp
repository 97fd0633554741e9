// parse_payload: the change triggers' NOTIFY text, read as untrusted bytes
// (any database role may NOTIFY any channel; docs/plans/postgres.md §3, §5).
// No server: the payloads are written here, and by format_payload.
#include <catch2/catch.hpp>

#include <string>

#include "stores/pg_payload.hpp"
#include <karlton/messages/errors.hpp>

using namespace karlton;
using kind = pg_change::kind;

namespace {

pg_change parsed(const std::string& payload) {
  auto c = parse_payload(payload);
  if (!c) FAIL(payload << ": " << describe(c.error()));
  return *c;
}

bool refused(const std::string& payload) {
  auto c = parse_payload(payload);
  if (c) return false;
  CHECK(c.error() == errc::invalid_option);
  return true;
}

} // namespace

TEST_CASE("each form of the triggers' payloads parses to its change", "[pg-payload]") {
  auto row = parsed("r 741 3 public.users 00ff6b");
  CHECK(row.what == kind::row);
  CHECK(row.xid == 741);
  CHECK(row.seq == 3);
  CHECK(row.table == "public.users");
  CHECK(row.key == std::string{"\0\xffk", 3});

  auto empty_key = parsed("r 741 4 public.users ");
  CHECK(empty_key.what == kind::row);
  CHECK(empty_key.key.empty());

  auto long_key = parsed("l 741 5 app_2.t_1");
  CHECK(long_key.what == kind::long_key);
  CHECK(long_key.xid == 741);
  CHECK(long_key.seq == 5);
  CHECK(long_key.table == "app_2.t_1");

  auto end = parsed("e 741 5 1764633600123456");
  CHECK(end.what == kind::end);
  CHECK(end.xid == 741);
  CHECK(end.seq == 5);
  CHECK(end.commit_us == 1764633600123456);
  CHECK(end.table.empty());

  auto truncate = parsed("t 742 public.users");
  CHECK(truncate.what == kind::truncate);
  CHECK(truncate.xid == 742);
  CHECK(truncate.table == "public.users");

  auto repair = parsed("R _s._");
  CHECK(repair.what == kind::repair);
  CHECK(repair.xid == 0);
  CHECK(repair.table == "_s._");
}

TEST_CASE("numbers are canonical decimals within their ranges", "[pg-payload]") {
  CHECK(parsed("t 18446744073709551615 public.t").xid == UINT64_MAX);
  CHECK(refused("t 18446744073709551616 public.t"));  // 2^64
  CHECK(refused("t 99999999999999999999 public.t"));  // 20 digits, over
  CHECK(refused("t 184467440737095516150 public.t")); // 21 digits
  CHECK(refused("t 0 public.t"));                     // never an xid
  CHECK(refused("t 07 public.t"));                    // leading zero
  CHECK(refused("t +7 public.t"));
  CHECK(refused("t -7 public.t"));
  CHECK(refused("t 7a public.t"));
  CHECK(refused("t  public.t"));
  CHECK(refused("r 7 0 public.t 00")); // seq >= 1
  CHECK(refused("e 7 0 1"));           // an end closes n >= 1
  CHECK(parsed("r 7 18446744073709551615 public.t 00").seq == UINT64_MAX);

  CHECK(parsed("e 7 1 0").commit_us == 0);
  CHECK(parsed("e 7 1 -5").commit_us == -5);
  CHECK(parsed("e 7 1 9223372036854775807").commit_us == INT64_MAX);
  CHECK(parsed("e 7 1 -9223372036854775808").commit_us == INT64_MIN);
  CHECK(refused("e 7 1 9223372036854775808"));
  CHECK(refused("e 7 1 -9223372036854775809"));
  CHECK(refused("e 7 1 -0"));
  CHECK(refused("e 7 1 -"));
  CHECK(refused("e 7 1 "));
  CHECK(refused("e 7 1 1.5"));
}

TEST_CASE("each form has exactly its number of single-space separated tokens",
          "[pg-payload]") {
  CHECK(refused(""));
  CHECK(refused(" "));
  CHECK(refused("r 7 1 public.t"));       // the key's token is missing
  CHECK(refused("r 7 1 public.t 00 "));   // one too many (empty)
  CHECK(refused("r 7 1 public.t 00 11")); // one too many
  CHECK(refused("r 7 1  public.t 00"));   // two spaces
  CHECK(refused(" r 7 1 public.t 00"));   // leading space
  CHECK(refused("r\t7 1 public.t 00"));   // not a space
  CHECK(refused("l 7 1 public.t "));
  CHECK(refused("l 7 1"));
  CHECK(refused("e 7 1 5 6"));
  CHECK(refused("e 7 1"));
  CHECK(refused("t 7 public.t x"));
  CHECK(refused("t 7"));
  CHECK(refused("R public.t x"));
  CHECK(refused("R"));
  CHECK(refused("R "));
  CHECK(refused("x 7 public.t"));
  CHECK(refused("rr 7 1 public.t 00"));
  CHECK(refused("r"));
}

TEST_CASE("the table is schema.table of lower-case identifiers, the schema not pg_*",
          "[pg-payload]") {
  const std::string longest(63, 'a');
  CHECK(parsed("R " + longest + "." + longest).table == longest + "." + longest);
  CHECK(refused("R " + longest + "a.t"));
  CHECK(refused("R s." + longest + "a"));
  CHECK(refused("R users"));
  CHECK(refused("R .users"));
  CHECK(refused("R public."));
  CHECK(refused("R a.b.c"));
  CHECK(refused("R Public.users"));
  CHECK(refused("R public.1users"));
  CHECK(refused("R public.us-ers"));
  CHECK(refused("R \"public\".\"users\""));
  CHECK(refused("R pg_catalog.pg_class"));
  CHECK(parsed("R s.pg_t").table == "s.pg_t"); // only the schema is reserved
  CHECK(refused(std::string{"R public.us\0rs", 14}));
  CHECK(refused("R public.us\xc3\xa9rs"));
}

TEST_CASE("the key is lower-case hex of even length, at most 7,600 digits",
          "[pg-payload]") {
  CHECK(refused("r 7 1 public.t 0"));
  CHECK(refused("r 7 1 public.t 0A"));
  CHECK(refused("r 7 1 public.t 0g"));
  CHECK(refused("r 7 1 public.t \\x00"));
  std::string hex;
  for (int i = 0; i < 3'800; ++i)
    hex += "c3";
  auto longest = parsed("r 7 1 public.t " + hex);
  CHECK(longest.key == std::string(3'800, '\xc3'));
  CHECK(refused("r 7 1 public.t " + hex + "c3"));
}

TEST_CASE("a payload over 7,999 bytes is refused before it is read", "[pg-payload]") {
  // The longest valid payload: 20-digit xid and seq, 63-byte names, the
  // longest key: well under the bound, which PostgreSQL enforces too.
  std::string name(63, 'n');
  std::string hex(max_key_hex, 'a');
  auto payload =
    "r 18446744073709551615 18446744073709551615 " + name + "." + name + " " + hex;
  CHECK(payload.size() <= max_payload_bytes);
  CHECK(parse_payload(payload));
  CHECK(refused("R public.t" + std::string(max_payload_bytes, ' ')));
  auto err = parse_payload("R public.t" + std::string(max_payload_bytes, 'x'));
  REQUIRE_FALSE(err);
  CHECK_THAT(describe(err.error()), Catch::Contains("longer than 7999 bytes"));
}

TEST_CASE("a refusal says what is wrong and shows at most 32 bytes, escaped",
          "[pg-payload]") {
  auto err =
    parse_payload(std::string{"r 7 1 public.t 0\n\x01\\"} + std::string(100, 'z'));
  REQUIRE_FALSE(err);
  auto text = describe(err.error());
  CHECK_THAT(text, Catch::Contains("invalid_option"));
  CHECK_THAT(text, Catch::Contains("'r 7 1 public.t 0\\x0a\\x01\\x5czzzzzzzzzzzzz...'"));
  CHECK_THAT(text, Catch::Contains("(119 bytes)"));
  CHECK(text.find('\n') == std::string::npos);
}

TEST_CASE("format_payload writes what parse_payload reads back", "[pg-payload]") {
  pg_change row{kind::row, 9, 2, 0, "s.t", std::string{"\0a\xff", 3}};
  CHECK(format_payload(row) == "r 9 2 s.t 0061ff");
  pg_change end{kind::end, 9, 2, -1, "", ""};
  CHECK(format_payload(end) == "e 9 2 -1");
  for (const auto& c : {row, end, pg_change{kind::long_key, 1, 1, 0, "a.b", ""},
                        pg_change{kind::truncate, 3, 0, 0, "a.b", ""},
                        pg_change{kind::repair, 0, 0, 0, "a.b", ""}}) {
    auto back = parsed(format_payload(c));
    CHECK(back.what == c.what);
    CHECK(back.xid == c.xid);
    CHECK(back.seq == c.seq);
    CHECK(back.commit_us == c.commit_us);
    CHECK(back.table == c.table);
    CHECK(back.key == c.key);
  }
}
