// The escaper of outside bytes for the console and the log.
#include <catch2/catch.hpp>

#include <string>

#include "base/printable.hpp"

using karlton::printable;

TEST_CASE("printable escapes what a terminal would act on and keeps UTF-8 text",
          "[printable]") {
  CHECK(printable("plain text") == "plain text");
  CHECK(printable("a\nb\r\tc\\") == "a\\nb\\r\\tc\\\\");
  CHECK(printable(std::string{"\x1b[2J\x7f", 5}) == "\\x1b[2J\\x7f");
  CHECK(printable("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") ==
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"); // é € 😀 stay
  // C1 controls, raw (8-bit terminals) or encoded (U+009B, CSI): escaped.
  CHECK(printable("\x9b"
                  "31m") == "\\x9b31m");
  CHECK(printable("\xc2\x9b"
                  "31m") == "\\xc2\\x9b31m");
  CHECK(printable("\xc2\xa0") == "\xc2\xa0"); // U+00A0 is text
  // Not UTF-8: overlong, surrogate, truncated, past U+10FFFF, a lone byte.
  CHECK(printable("\xc0\xaf") == "\\xc0\\xaf");
  CHECK(printable("\xed\xa0\x80") == "\\xed\\xa0\\x80");
  CHECK(printable("\xe2\x82") == "\\xe2\\x82");
  CHECK(printable("\xf4\x90\x80\x80") == "\\xf4\\x90\\x80\\x80");
  CHECK(printable("\xff"
                  "a") == "\\xffa");
}
