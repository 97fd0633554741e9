// The types another node can send this one, for the messages fuzzer and its
// seeds: every type karlton registers with CAF (the middleman deserializes any
// registered type before the peer actor sees the message and drops what it
// does not handle), then a whole `caf::message` as BASP reads it off the wire.
// The list is karlton's type ID block itself, so a type added to or removed
// from messages/type_ids.hpp is fuzzed without a change here.
#pragma once

#include <cstddef>
#include <utility>

#include <caf/message.hpp>
#include <caf/type_id.hpp>

#include "messages/type_ids.hpp"

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

} // namespace detail

/// Calls `f(tag<T>{})` with the `i`-th type (`i < type_count`).
template <class F>
void visit_type(size_t i, F&& f) {
  if (i < registered_types)
    detail::visit(i, f, std::make_index_sequence<registered_types>{});
  else
    f(tag<caf::message>{});
}

} // namespace karlton::fuzzing
