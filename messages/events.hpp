// The messages of event-driven and dependency-based invalidation: what an
// entry depends on, and how the bus invalidates dependents from every shard.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

namespace karlton {

/// What a put's entry depends on. When one of them is invalidated, so is the
/// entry (and, transitively, what depends on the entry's key).
/// - `events`: the guide's `depends_on_events`; `emit(event)` invalidates them.
/// - `on`: keys of the same cache, or tags; invalidating such a key (erase,
///   or a cascade) or `invalidate_tag(name)` invalidates the entry.
struct dependencies {
  std::vector<std::string> events; ///< names of events (`runtime::emit`)
  std::vector<std::string> on;     ///< keys of the same cache, or tags

  /// True if it depends on nothing (a plain put).
  bool empty() const noexcept { return events.empty() && on.empty(); }

  /// `dependencies{}.on_events({"user_updated"}).on_keys({"user_123"})`
  dependencies& on_events(std::vector<std::string> xs) {
    events = std::move(xs);
    return *this;
  }
  /// Sets `on` (keys or tags); returns `*this`, for chaining.
  dependencies& on_keys(std::vector<std::string> xs) {
    on = std::move(xs);
    return *this;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, dependencies& x) {
  return f(caf::meta::type_name("karlton::dependencies"), x.events, x.on);
}

/// Why an invalidation removes entries (counted per cause in `invalidation_stats`).
enum class invalidation_cause : uint8_t {
  event,   ///< the entry depended on an emitted event
  tag,     ///< the entry depended on an invalidated tag
  cascade, ///< the entry depended on a key that was invalidated
};

/// `(invalidate_dependents, names, cause, level)` to a shard: remove every entry that
/// depends on one of `names` (at cascade `level`); answered with an
/// `invalidation_result`.
using invalidate_dependents_atom = caf::atom_constant<caf::atom("inval_deps")>;
/// `(emit, event)` to the bus.
using emit_atom = caf::atom_constant<caf::atom("emit")>;
/// `(graph)` to a shard: its part of the dependency graph.
using graph_atom = caf::atom_constant<caf::atom("graph")>;

/// What one shard removed in an invalidation.
struct invalidation_result {
  uint64_t removed = 0; ///< entries it removed
  /// Keys it removed that entries may depend on (per the cache's
  /// `depended_names`: the next round), each with its level: 0 for a direct dependent of
  /// the names asked for, n for an entry reached through n invalidated keys.
  std::vector<std::string> cascade;
  std::vector<uint32_t> levels; ///< the level of each of `cascade`, by index
  /// The highest level of any entry it removed.
  uint32_t deepest = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, invalidation_result& x) {
  return f(caf::meta::type_name("karlton::invalidation_result"), x.removed, x.cascade,
           x.levels, x.deepest);
}

/// What a synchronous emit or tag invalidation did, over every shard.
struct invalidation_summary {
  uint64_t removed = 0; ///< entries removed, over every cache and shard
  /// The longest chain of invalidated keys followed (0: only direct dependents).
  uint32_t depth = 0;
  uint32_t subscribers_called = 0; ///< event subscribers told (0 for a tag)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, invalidation_summary& x) {
  return f(caf::meta::type_name("karlton::invalidation_summary"), x.removed, x.depth,
           x.subscribers_called);
}

/// The bus's counters.
struct bus_stats {
  uint64_t events_emitted = 0;     ///< `emit` calls, synchronous or not
  uint64_t tags_invalidated = 0;   ///< `invalidate_tag` calls, synchronous or not
  uint64_t key_cascades = 0;       ///< erased keys whose dependents were invalidated
  uint64_t subscribers_called = 0; ///< deliveries to event subscribers
  uint32_t deepest_cascade = 0;    ///< most rounds of cascading of one invalidation
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, bus_stats& x) {
  return f(caf::meta::type_name("karlton::bus_stats"), x.events_emitted,
           x.tags_invalidated, x.key_cascades, x.subscribers_called, x.deepest_cascade);
}

/// `(subscribe, event, subscriber)` to the bus.
using subscribe_atom = caf::atom_constant<caf::atom("subscribe")>;
/// `(shards, cache, list)` to the bus: a new cache's shards.
using shards_atom = caf::atom_constant<caf::atom("shards")>;
/// `(bstats)` to the bus.
using bus_stats_atom = caf::atom_constant<caf::atom("bstats")>;

/// Told every event it subscribed to: `(emit, event, data)`.
using event_subscriber_actor =
  caf::typed_actor<caf::reacts_to<emit_atom, std::string, std::string>>;

/// One shard's part of the dependency graph: each entry's key and what it
/// depends on (events prefixed "event:").
using graph_edges = std::vector<std::pair<std::string, std::vector<std::string>>>;

} // namespace karlton
