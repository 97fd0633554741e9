// The peer actor's mailbox: what it refuses before CAF acts on it (see
// `peer_actor_impl`). CAF 0.17's BASP delivers to a published actor whatever
// a connected host sends, with any sender (a routed message names its own
// source node and actor, or none), so neither the sender nor its node tells a
// forgery from CAF's own message; the content and the named actor's state do.
#include "actors/peer_actor.hpp"

#include <utility>

#include <caf/actor_cast.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/system_messages.hpp>

namespace karlton {

bool forged_system_message(const caf::mailbox_element& x) {
  const auto& content = x.content();
  if (content.match_elements<caf::exit_msg>()) return true;
  if (!content.match_elements<caf::down_msg>()) return false;
  // CAF tells a monitor only after marking the watched actor terminated
  // (monitorable_actor::cleanup), also when it kills a proxy for a lost
  // connection. A source that cannot be had any more is gone: genuine.
  auto source =
    caf::actor_cast<caf::strong_actor_ptr>(content.get_as<caf::down_msg>(0).source);
  return source && !source->get()->getf(caf::abstract_actor::is_terminated_flag);
}

void peer_actor_impl::enqueue(caf::mailbox_element_ptr what, caf::execution_unit* host) {
  if (what && forged_system_message(*what)) {
    ++refused_at_mailbox;
    return;
  }
  stateful_actor::enqueue(std::move(what), host);
}

} // namespace karlton
