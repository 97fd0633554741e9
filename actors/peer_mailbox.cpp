// The peer actor's mailbox: what it refuses before CAF acts on it (see
// `peer_actor_impl`), and what it drops after. CAF 0.17's BASP delivers to a
// published actor whatever a connected host sends, with any sender (a routed
// message names its own source node and actor, or none), so neither the
// sender nor its node tells a forgery from CAF's own message; the content and
// the named actor's state do.
#include "actors/peer_actor.hpp"

#include <string>
#include <utility>

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/message_view.hpp>
#include <caf/system_messages.hpp>
#include <caf/uniform_type_info_map.hpp>

#include "actors/peer_internal.hpp"
#include <karlton/messages/errors.hpp>

namespace karlton {

namespace {

// The types of `x`'s elements, as "(@atom, @str)"; the first 16.
std::string type_names(peer_detail::self_ptr self, const caf::message_view& x) {
  const auto& content = x.content();
  std::string out = "(";
  for (size_t i = 0; i < content.size() && i < 16; ++i)
    out += (i == 0 ? "" : ", ") + self->system().types().portable_name(content.type(i));
  return out + (content.size() > 16 ? ", ...)" : ")");
}

} // namespace

void peer_detail::ignore_strays(self_ptr self) {
  // An error that arrives as a message, not as the answer to a request of
  // ours, answers something another host sent in our name (CAF lets a host
  // claim any sender): a node refusing a forged message answers its claimed
  // sender. CAF's default would stop this actor, and with it the node's
  // membership. Found by cluster_trust.test.cpp: a forged batch claiming to
  // come from a member made the victim's refusal stop that member.
  // Logged by category and code only, as below: its context may be
  // megabytes of anything.
  self->set_error_handler([self](caf::error& err) {
    if (self->state.core->counters.bad_messages++ % 1000 == 0)
      log(self, "ignored an error not answering a request of ours: " +
                  caf::to_string(err.category()) + " " + std::to_string(err.code()));
  });
  // Bad input from the network (unknown messages, wrong types) is dropped;
  // the node keeps running. Logged by its types only: its content may be
  // megabytes of anything (it was stringified whole, then cut).
  self->set_default_handler(
    [self](caf::scheduled_actor*, caf::message_view& x) -> caf::result<caf::message> {
      if (self->state.core->counters.bad_messages++ % 1000 == 0)
        log(self, "ignored a message it does not understand: " + type_names(self, x));
      return caf::sec::unexpected_message;
    });
}

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
