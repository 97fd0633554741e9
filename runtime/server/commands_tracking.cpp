// Client-side caching's commands (plan §6): CLIENT TRACKING, and the pub/sub
// commands, which serve only the __redis__:invalidate channel that RESP2
// clients read their REDIRECTed invalidations from. Forms and error texts are
// redis-server 7.0's.
#include <string>

#include "runtime/server/session_impl.hpp"

namespace karlton::server {

namespace {

using spec = command_spec;

constexpr std::string_view invalidate_channel = "__redis__:invalidate";

// One reply of the subscribe family: [kind, channel or null, count].
void subscription_reply(reply_writer& w, std::string_view kind,
                        const std::string_view* ch, int64_t count) {
  w.push(3);
  w.bulk(kind);
  if (ch != nullptr)
    w.bulk(*ch);
  else
    w.null();
  w.integer(count);
}

void subscribe(command_call& c) {
  for (size_t i = 1; i < c.args.size(); ++i)
    if (c.args[i] != invalidate_channel) {
      c.reply().error("karlton serves only the __redis__:invalidate channel (client-side "
                      "caching), not '" +
                      std::string{c.args[i].substr(0, 128)} + "'");
      return;
    }
  auto& s = c.session;
  s.set_subscribed(true);
  s.context().tracking->set_subscribed(s.id(), true);
  auto w = c.reply();
  for (size_t i = 1; i < c.args.size(); ++i)
    subscription_reply(w, "subscribe", &c.args[i], 1);
}

void unsubscribe(command_call& c) {
  auto& s = c.session;
  auto w = c.reply();
  bool was = s.subscribed();
  if (c.args.size() == 1) {
    subscription_reply(w, "unsubscribe", was ? &invalidate_channel : nullptr, 0);
    s.set_subscribed(false);
  }
  for (size_t i = 1; i < c.args.size(); ++i) {
    if (c.args[i] == invalidate_channel) s.set_subscribed(false);
    subscription_reply(w, "unsubscribe", &c.args[i], s.subscribed() ? 1 : 0);
  }
  if (was && !s.subscribed()) s.context().tracking->set_subscribed(s.id(), false);
}

void psubscribe(command_call& c) {
  c.reply().error("karlton serves no pattern subscriptions, only SUBSCRIBE "
                  "__redis__:invalidate (client-side caching)");
}

void punsubscribe(command_call& c) {
  int64_t count = c.session.subscribed() ? 1 : 0;
  auto w = c.reply();
  if (c.args.size() == 1) subscription_reply(w, "punsubscribe", nullptr, count);
  for (size_t i = 1; i < c.args.size(); ++i)
    subscription_reply(w, "punsubscribe", &c.args[i], count);
}

} // namespace

void client_tracking(command_call& c) {
  auto& s = c.session;
  auto& table = *s.context().tracking;
  bool on = iequals(c.args[2], "ON");
  if (!on && !iequals(c.args[2], "OFF")) {
    c.reply().error("syntax error");
    return;
  }
  tracking_mode mode;
  for (size_t i = 3; i < c.args.size(); ++i) {
    auto opt = c.args[i];
    bool more = i + 1 < c.args.size();
    if (iequals(opt, "REDIRECT") && more) {
      int64_t id = 0;
      if (!parse_int64(c.args[++i], id)) {
        c.reply().error("value is not an integer or out of range");
        return;
      }
      mode.redirect = static_cast<uint64_t>(id);
      if (id <= 0) {
        c.reply().error("The client ID you want redirect to does not exist");
        return;
      }
    } else if (iequals(opt, "BCAST")) {
      mode.bcast = true;
    } else if (iequals(opt, "PREFIX") && more) {
      if (mode.prefixes.size() == tracking_table::max_prefixes_per_client) {
        c.reply().error(tracking_table::too_many_prefixes());
        return;
      }
      mode.prefixes.emplace_back(c.args[++i]);
    } else if (iequals(opt, "OPTIN") || iequals(opt, "OPTOUT") ||
               iequals(opt, "NOLOOP")) {
      // NOLOOP would need the shards to know which client caused a change.
      c.reply().error("karlton does not support CLIENT TRACKING " + std::string{opt} +
                      " (only the default mode and BCAST)");
      return;
    } else {
      c.reply().error("syntax error");
      return;
    }
  }
  if (!on) {
    table.disable(s.id());
    s.set_tracks_reads(false);
    s.set_tracks_prefixes(false);
    c.reply().simple("OK");
    return;
  }
  if (!mode.bcast && !mode.prefixes.empty()) {
    c.reply().error("PREFIX option requires BCAST mode to be enabled");
    return;
  }
  table.set_protocol(s.id(), s.protocol());
  auto err = table.enable(s.id(), mode);
  if (!err.empty()) {
    c.reply().error(err);
    return;
  }
  s.set_tracks_reads(!mode.bcast);
  s.set_tracks_prefixes(mode.bcast);
  c.reply().simple("OK");
}

void commands_tracking(std::vector<command_spec>& t) {
  t.push_back({"subscribe", -2, spec::pubsub, 0, 0, 0, subscribe});
  t.push_back({"unsubscribe", -1, spec::pubsub, 0, 0, 0, unsubscribe});
  t.push_back({"psubscribe", -2, spec::pubsub, 0, 0, 0, psubscribe});
  t.push_back({"punsubscribe", -1, spec::pubsub, 0, 0, 0, punsubscribe});
}

} // namespace karlton::server
