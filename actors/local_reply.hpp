// Telling a local actor's answer from a forgery (rule 9). CAF 0.17 matches a
// response to its request by the request's id alone, and its BASP lets any
// host that reaches a published actor (the cluster's peer) send it a message
// with any id: a guessed one completes a pending request as if the local
// actor had answered. Such a message comes through a proxy of the sending
// node; a local actor's answer, or CAF's own bounce, never does.
#pragma once

#include <caf/node_id.hpp>

namespace karlton {

/// True if the message `self` is handling came from an actor of another node:
/// inside a response handler to a local actor, a forged answer.
template <class Self>
bool from_another_node(Self* self) {
  const auto& sender = self->current_sender();
  return sender && sender->node() != self->node();
}

} // namespace karlton
