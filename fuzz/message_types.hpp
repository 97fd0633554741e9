// The types another node can send this one, for the messages fuzzer and its
// seeds: every type karlton registers with CAF (the middleman deserializes any
// registered type before the peer actor sees the message and drops what it
// does not handle), then a whole `caf::message` as BASP reads it off the wire.
// The list is karlton's type ID block itself, so a type added to or removed
// from messages/type_ids.hpp is fuzzed without a change here.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <string_view>
#include <utility>

#include <caf/message.hpp>
#include <caf/type_id.hpp>

#include <karlton/messages/type_ids.hpp>

namespace karlton::fuzzing {

template <class T>
struct tag {
  using type = T;
};

constexpr size_t registered_types =
  caf::id_block::karlton::end - caf::id_block::karlton::begin;

/// The registered types plus `caf::message`.
constexpr size_t type_count = registered_types + 1;

namespace detail {

template <class F, size_t... Is>
void visit(size_t i, F& f, std::index_sequence<Is...>) {
  ((i == Is ? f(tag<typename caf::type_by_id<static_cast<caf::type_id_t>(
                  caf::id_block::karlton::begin + Is)>::type>{})
            : void()),
   ...);
}

/// True if any of `names` occurs anywhere in the bytes.
inline bool names_any(const char* data, size_t size,
                      std::initializer_list<std::string_view> names) {
  std::string_view bytes{data, size};
  for (auto name : names)
    if (bytes.find(name) != std::string_view::npos) return true;
  return false;
}

} // namespace detail

/// Calls `f(tag<T>{})` with the `i`-th type (`i < type_count`).
template <class F>
void visit_type(size_t i, F&& f) {
  if (i < registered_types)
    detail::visit(i, f, std::make_index_sequence<registered_types>{});
  else
    f(tag<caf::message>{});
}

// CAF 0.17.6's own types that fail on hostile bytes inside libcaf_core,
// where karlton cannot make them return an error (tests/messages/caf_message.test.cpp):
// - a variant (`config_value`, and the stream messages' contents) with an
//   unknown type index throws std::runtime_error("invalid type found"), and
//   nothing on BASP's path catches it: std::terminate;
// - `std::vector<char>` resizes to its size field (up to 4 GiB) before it
//   checks that the bytes are there.
// Any peer that completes CAF's (unauthenticated) BASP handshake reaches
// them before the peer actor's checks; only TLS with verified certificates
// or a firewall keeps strangers off the port. The fuzzer skips inputs that
// name them anywhere (a message nests in an error, an error in a down_msg),
// so that it goes on finding what karlton can fix.
inline bool names_unsafe_caf_type(const char* data, size_t size) {
  return detail::names_any(
    data, size, {"@config_value", "@downstream_msg", "@upstream_msg", "@charbuf"});
}

// CAF 0.17.6 serializes an infinite float or double by halving it until it is
// below 2 (caf/detail/ieee_754.hpp, pack754), which never ends; its
// deserializer makes one from 4 bytes (tests/messages/caf_message.test.cpp).
// Only the way back out hangs, and karlton never re-serializes what it
// received (its own types hold no floating point), so the fuzzer still
// deserializes such messages and skips only their round trip. The names match
// `float`, `double` and `@ldouble` anywhere, nested ones included.
inline bool names_floating_point(const char* data, size_t size) {
  return detail::names_any(data, size, {"float", "double"});
}

} // namespace karlton::fuzzing
