// The tracking table's messages (plan §6.2): how an invalidation is spelt
// for each protocol, and how a batch of them is routed to the connections.
#include <array>
#include <string>
#include <utility>
#include <vector>

#include "runtime/server/resp_session.hpp"
#include "runtime/server/resp_writer.hpp"
#include "runtime/server/tracking_table.hpp"

namespace karlton::server {

namespace {

constexpr std::string_view channel = "__redis__:invalidate";

// An invalidation of `keys` (null: every key) as client `protocol` reads it:
// a RESP3 push, or in RESP2 a message of the __redis__:invalidate channel.
std::string invalidation(int protocol, const std::vector<std::string>* keys) {
  std::string out;
  reply_writer w{out, protocol};
  if (protocol >= 3) {
    w.push(2);
    w.bulk("invalidate");
  } else {
    w.push(3);
    w.bulk("message");
    w.bulk(channel);
  }
  if (keys == nullptr) {
    w.null();
  } else {
    w.array(keys->size());
    for (const auto& k : *keys)
      w.bulk(k);
  }
  return out;
}

} // namespace

std::string invalidation_for(std::string_view msg, int protocol) {
  // Both spellings are a head, then the keys' array (the same bytes in both
  // protocols) or the protocol's null.
  struct spelling {
    std::string head, null;
  };
  static const std::array<spelling, 2> forms = [] {
    std::array<spelling, 2> out;
    for (int p : {2, 3}) {
      auto& f = out[p - 2];
      reply_writer w{f.null, p};
      w.null();
      f.head = invalidation(p, nullptr);
      f.head.resize(f.head.size() - f.null.size());
    }
    return out;
  }();
  for (const auto& from : forms) {
    if (msg.substr(0, from.head.size()) != from.head) continue;
    auto body = msg.substr(from.head.size());
    if (body == from.null) return invalidation(protocol, nullptr);
    if (body.empty() || body[0] != '*') return {};
    return forms[protocol >= 3 ? 1 : 0].head + std::string{body};
  }
  return {};
}

// Routes each client's message: to itself (RESP3), or to its REDIRECT target
// (RESP3, or RESP2 subscribed to the channel). The pushes happen outside the
// lock: a session may die with its last reference here, and its destructor
// detaches from this table.
void tracking_table::send(const outbox& out) {
  struct delivery {
    std::shared_ptr<session> to;
    std::string message;
    std::weak_ptr<session> target; // REDIRECT: `to` hands it on in its order
    bool redirected = false;
  };
  std::vector<delivery> deliveries;
  {
    std::shared_lock<std::shared_mutex> guard{clients_mtx_};
    auto route = [&](uint64_t id, const std::vector<std::string>* keys) {
      auto i = clients_.find(id);
      if (i == clients_.end() || !i->second->tracking) return; // dead or OFF: dropped
      const auto& c = *i->second;
      if (c.mode.redirect == 0) {
        if (c.protocol < 3) return; // RESP2 has no pushes on the same connection
        if (auto s = c.conn.lock())
          deliveries.push_back({s, invalidation(3, keys), {}, false});
        return;
      }
      auto t = clients_.find(c.mode.redirect);
      if (t == clients_.end()) {
        if (c.protocol < 3) return;
        std::string broken;
        reply_writer w{broken, 3};
        w.push(2);
        w.bulk("tracking-redir-broken");
        w.integer(static_cast<int64_t>(c.mode.redirect));
        if (auto s = c.conn.lock())
          deliveries.push_back({s, std::move(broken), {}, false});
        return;
      }
      const auto& target = *t->second;
      if (target.protocol < 3 && !target.subscribed) return;
      // Through the reader, after its replies (a GET's value still waiting
      // behind a slow command), as its own pushes go; straight to the target
      // if the reader is gone.
      if (auto reader = c.conn.lock())
        deliveries.push_back(
          {reader, invalidation(target.protocol, keys), target.conn, true});
      else if (auto s = target.conn.lock())
        deliveries.push_back({s, invalidation(target.protocol, keys), {}, false});
    };
    for (const auto& [id, keys] : out.keys)
      route(id, &keys);
    for (auto id : out.everything)
      route(id, nullptr);
  }
  for (auto& d : deliveries) {
    if (d.redirected)
      d.to->push_for(std::move(d.message), std::move(d.target));
    else
      d.to->push(std::move(d.message));
  }
}

} // namespace karlton::server
