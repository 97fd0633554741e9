// The messages of read-through loading: a shard asks a loader worker for a
// key, the worker answers with a `load_outcome`.
#pragma once

#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/replies_to.hpp>
#include <caf/timespan.hpp>
#include <caf/typed_actor.hpp>

namespace karlton {

/// `(load, key)` to a shard is `get_or_load`; `(load, key, id)` to a loader
/// worker starts load number `id`.
using load_atom = caf::atom_constant<caf::atom("load")>;

/// What a loader worker reports back to the shard that asked.
struct load_outcome {
  /// The key loaded.
  std::string key;
  /// The load's number, as the shard gave it (its version stamp).
  uint64_t id = 0;
  /// Set if the loader failed; `bytes` is then empty.
  caf::error error;
  /// The loaded value, if `error` is not set.
  std::string bytes;
  /// How long the loader ran, on the runtime's clock: XFetch's delta.
  caf::timespan took{0};
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, load_outcome& x) {
  return f(caf::meta::type_name("karlton::load_outcome"), x.key, x.id, x.error, x.bytes,
           x.took);
}

/// A worker that runs the cache's loader function, one key at a time.
using loader_actor =
  caf::typed_actor<caf::replies_to<load_atom, std::string, uint64_t>::with<load_outcome>>;

} // namespace karlton
