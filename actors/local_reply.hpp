// Telling a local actor's answer from a forgery (rule 9). CAF 0.17 matches a
// response to its request by the request's id alone, and its BASP lets any
// host that reaches a published actor (the cluster's peer) send it a message
// with any id and any sender: a guessed id completes a pending request as if
// the local actor had answered. The sender it names is a proxy of some node,
// an actor of this node that CAF's registry knows (one whose handle went to
// another node), or none at all (a routed message with source actor 0). The
// actors the peer asks (shards, the middleman) are not in that registry
// unless a shard itself sent to another node's actor (a cache whose
// `load_actor` is remote: README, Limits), so a forgery cannot name them; and
// no sender is genuine only for CAF's own bounce of a request to an actor
// that is gone.
#pragma once

#include <caf/abstract_actor.hpp>
#include <caf/actor_cast.hpp>

namespace karlton {

/// True if the message `self` is handling, inside the handler of its request
/// to the local actor `asked`, is `asked`'s answer or CAF's bounce because
/// `asked` has terminated; false for a forgery (ask again). A bounce can come
/// a moment before the terminated mark (scheduled_actor::cleanup bounces, then
/// marks), so asking again may bounce again until it is there.
template <class Self, class Handle>
bool answered_by(Self* self, const Handle& asked) {
  auto* target = caf::actor_cast<caf::abstract_actor*>(asked);
  const auto& sender = self->current_sender();
  if (sender) return sender->get() == target;
  return target == nullptr || target->getf(caf::abstract_actor::is_terminated_flag);
}

} // namespace karlton
