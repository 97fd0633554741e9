// The asynchronous calls' callback type (runtime/callback.hpp): a move-only
// function that keeps small callables in place.
#include <catch2/catch.hpp>

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include <karlton/runtime/callback.hpp>

using karlton::detail::callback_fn;
using fn = callback_fn<void(std::string)>;

TEST_CASE("a callback holding a shared_ptr and two words is kept in place",
          "[runtime][callback]") {
  // The RESP server's reply handle: a session, a slot, the protocol.
  struct reply_handle {
    std::shared_ptr<int> session;
    void* slot;
    int protocol;
    void operator()(std::string) {}
  };
  STATIC_REQUIRE(fn::stores_inline<reply_handle>);
  STATIC_REQUIRE_FALSE(fn::stores_inline<std::array<char, 200>>);
}

TEST_CASE("a callback calls, moves and destroys its callable exactly once",
          "[runtime][callback]") {
  auto owner = std::make_shared<int>(0);
  std::string got;
  auto small = [owner, &got](std::string s) { got = std::move(s); };
  std::array<char, 128> pad{};
  auto large = [owner, &got, pad](std::string s) {
    got = s + std::to_string(pad.size());
  };
  STATIC_REQUIRE(fn::stores_inline<decltype(small)>);
  STATIC_REQUIRE_FALSE(fn::stores_inline<decltype(large)>);
  {
    fn a{small};
    fn b{large};
    CHECK(owner.use_count() == 5); // owner, the two lambdas, their copies
    fn c{std::move(a)};
    fn d;
    d = std::move(b);
    CHECK_FALSE(a);
    CHECK_FALSE(b);
    CHECK(owner.use_count() == 5); // moved, not copied
    c("in place");
    CHECK(got == "in place");
    d("on the heap ");
    CHECK(got == "on the heap 128");
    d = std::move(c); // the heap one goes
    CHECK(owner.use_count() == 4);
  }
  CHECK(owner.use_count() == 3); // the originals and `owner`
}

TEST_CASE("a callback takes a move-only callable", "[runtime][callback]") {
  auto box = std::make_unique<int>(7);
  int seen = 0;
  fn f{[b = std::move(box), &seen](std::string) { seen = *b; }};
  fn g{std::move(f)};
  g("x");
  CHECK(seen == 7);
}

TEST_CASE("an empty std::function or a null pointer makes an empty callback, as "
          "std::function does",
          "[runtime][callback]") {
  callback_fn<void(int)> from_empty{std::function<void(int)>{}};
  CHECK_FALSE(from_empty);
  void (*none)(int) = nullptr;
  callback_fn<void(int)> from_null{none};
  CHECK_FALSE(from_null);
  from_empty(1); // does nothing (it crashed: an empty one was called)
  from_null(2);
  int seen = 0;
  callback_fn<void(int)> from_set{std::function<void(int)>{[&](int v) { seen = v; }}};
  REQUIRE(from_set);
  from_set(3);
  CHECK(seen == 3);
}
