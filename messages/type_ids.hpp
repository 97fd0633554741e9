// Registers every karlton message type with CAF, so each can cross the network.
#pragma once

#include <string>
#include <vector>

#include <caf/type_id.hpp>

#include <karlton/messages/bus_interface.hpp>
#include <karlton/messages/changes.hpp>
#include <karlton/messages/peer_interface.hpp>
#include <karlton/messages/shard_interface.hpp>

CAF_BEGIN_TYPE_ID_BLOCK(karlton, caf::first_custom_type_id)
CAF_ADD_TYPE_ID(karlton, (karlton::value))
CAF_ADD_TYPE_ID(karlton, (std::vector<karlton::value>))
CAF_ADD_TYPE_ID(karlton, (std::vector<std::string>))
CAF_ADD_TYPE_ID(karlton, (karlton::ttl))
CAF_ADD_TYPE_ID(karlton, (karlton::remaining_ttl))
CAF_ADD_TYPE_ID(karlton, (karlton::removal_cause))
CAF_ADD_TYPE_ID(karlton, (karlton::age_histogram))
CAF_ADD_TYPE_ID(karlton, (karlton::cache_stats))
CAF_ADD_TYPE_ID(karlton, (karlton::shard_actor))
CAF_ADD_TYPE_ID(karlton, (karlton::removal_listener_actor))
CAF_ADD_TYPE_ID(karlton, (karlton::shard_write))
CAF_ADD_TYPE_ID(karlton, (std::vector<karlton::shard_write>))
CAF_ADD_TYPE_ID(karlton, (karlton::write_stats))
CAF_ADD_TYPE_ID(karlton, (karlton::invalidation))
CAF_ADD_TYPE_ID(karlton, (std::vector<karlton::invalidation>))
CAF_ADD_TYPE_ID(karlton, (karlton::invalidation_batch))
CAF_ADD_TYPE_ID(karlton, (karlton::member_info))
CAF_ADD_TYPE_ID(karlton, (std::vector<karlton::member_info>))
CAF_ADD_TYPE_ID(karlton, (karlton::peer_stats))
CAF_ADD_TYPE_ID(karlton, (karlton::peer_actor))
CAF_ADD_TYPE_ID(karlton, (karlton::compare_and_set_args))
CAF_ADD_TYPE_ID(karlton, (karlton::pg_change))
CAF_ADD_TYPE_ID(karlton, (std::vector<karlton::pg_change>))
CAF_ADD_TYPE_ID(karlton, (karlton::change_feed_stats))
CAF_ADD_TYPE_ID(karlton, (karlton::change_source_actor))
CAF_ADD_TYPE_ID(karlton, (karlton::local_token))
CAF_ADD_TYPE_ID(karlton, (karlton::link_tag))
CAF_END_TYPE_ID_BLOCK(karlton)

namespace caf {
class actor_system_config;
}

namespace karlton {

/// Adds karlton's message types and its error category to `cfg`. The runtime
/// calls this on the config it builds; a service that brings its own actor
/// system calls it before constructing that system.
void register_types(caf::actor_system_config& cfg);

} // namespace karlton
