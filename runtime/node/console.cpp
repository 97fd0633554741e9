#include "runtime/node/console.hpp"

#include <algorithm>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "base/printable.hpp"
#include "runtime/json.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/messages/events.hpp>
#include <karlton/messages/ttl.hpp>

namespace karlton::node {

namespace {

std::string error_reply(const caf::error& err) {
  // Escaped whole: an error may quote what the line held (a cache's name).
  return "error " + printable(describe(err));
}

caf::error usage(const char* synopsis) {
  return make_error(errc::invalid_option, std::string{"usage: "} + synopsis);
}

// Splits `args` at single spaces into exactly `n` fields; with `rest`, the
// last field is the rest of the line, spaces and all. nullopt if there are
// fewer fields (or, without `rest`, more). An empty field is a field: "get  k"
// names the cache "", which then does not exist.
std::optional<std::vector<std::string_view>> fields(std::optional<std::string_view> args,
                                                    size_t n, bool rest = false) {
  std::vector<std::string_view> out;
  if (n == 0) {
    if (args) return std::nullopt;
    return out;
  }
  if (!args) return std::nullopt;
  auto s = *args;
  while (out.size() + 1 < n) {
    auto sp = s.find(' ');
    if (sp == std::string_view::npos) return std::nullopt;
    out.push_back(s.substr(0, sp));
    s.remove_prefix(sp + 1);
  }
  if (!rest && s.find(' ') != std::string_view::npos) return std::nullopt;
  out.push_back(s);
  return out;
}

struct snapshot {
  peer_stats peer;
  std::vector<std::pair<std::string, cache_stats>> caches; // by name
};

caf::expected<snapshot> take_snapshot(runtime& rt,
                                      const std::map<std::string, cache>& caches) {
  snapshot out;
  auto p = rt.cluster_stats();
  if (!p) return std::move(p.error());
  out.peer = std::move(*p);
  for (auto& [name, c] : caches) {
    auto s = c.stats();
    if (!s) return std::move(s.error());
    out.caches.emplace_back(name, std::move(*s));
  }
  return out;
}

// The reply to a read: the value, a miss, or the error.
std::string read_reply(caf::expected<value> v) {
  if (!v && v.error() == errc::not_found) return "miss";
  if (!v) return error_reply(v.error());
  if (!*v) return "miss";
  return "value " + printable(v->bytes());
}

std::string done_reply(const caf::error& err) {
  return err ? error_reply(err) : "ok";
}

// `putdep`'s <on,...>: comma-separated names, `event:<e>` for an event.
caf::expected<dependencies> parse_dependencies(std::string_view names) {
  dependencies deps;
  for (;;) {
    auto comma = names.find(',');
    auto name = names.substr(0, comma);
    if (name.empty() || name == "event:")
      return usage(
        "putdep <cache> <key> <on,...> <value...> (no empty names in <on,...>)");
    if (name.rfind("event:", 0) == 0)
      deps.events.emplace_back(name.substr(6));
    else
      deps.on.emplace_back(name);
    if (comma == std::string_view::npos) return deps;
    names.remove_prefix(comma + 1);
  }
}

} // namespace

console::console(runtime& rt, std::map<std::string, cache> caches)
  : rt_(rt), caches_(std::move(caches)) {}

std::string console::execute(const std::string& input) {
  // Every command, by name; each handler checks its own arguments.
  static const std::map<std::string_view, command_handler, std::less<>> commands{
    {"put", &console::put},           {"putdep", &console::putdep},
    {"get", &console::key_command},   {"load", &console::key_command},
    {"erase", &console::key_command}, {"clear", &console::clear},
    {"tag", &console::signal},        {"emit", &console::signal},
    {"members", &console::members},   {"stats", &console::stats},
    {"ping", &console::ping},         {"quit", &console::quit},
    {"sync", &console::sync},         {"changes", &console::changes},
    {"forget", &console::forget},
  };
  std::string_view line = input;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  auto sp = line.find(' ');
  auto cmd = line.substr(0, sp);
  std::optional<std::string_view> args;
  if (sp != std::string_view::npos) args = line.substr(sp + 1);
  auto i = commands.find(cmd);
  if (i == commands.end()) return "error unknown command '" + printable(cmd) + "'";
  return (this->*(i->second))(cmd, args);
}

caf::expected<cache> console::find(std::string_view name) const {
  auto i = caches_.find(std::string{name});
  if (i == caches_.end())
    return make_error(errc::unknown_cache,
                      "no cache named '" + std::string{name} + "' on this node");
  return i->second;
}

std::string console::put(std::string_view, std::optional<std::string_view> args) {
  auto f = fields(args, 3, true);
  if (!f) return error_reply(usage("put <cache> <key> <value...>"));
  auto c = find((*f)[0]);
  return c ? done_reply(c->put((*f)[1], (*f)[2])) : error_reply(c.error());
}

std::string console::putdep(std::string_view, std::optional<std::string_view> args) {
  auto f = fields(args, 4, true);
  if (!f) return error_reply(usage("putdep <cache> <key> <on,...> <value...>"));
  auto c = find((*f)[0]);
  if (!c) return error_reply(c.error());
  auto deps = parse_dependencies((*f)[2]);
  if (!deps) return error_reply(deps.error());
  return done_reply(c->put((*f)[1], (*f)[3], ttl::cache_default(), *deps));
}

std::string console::key_command(std::string_view cmd,
                                 std::optional<std::string_view> args) {
  auto f = fields(args, 2);
  if (!f) return error_reply(usage("get|load|erase <cache> <key>"));
  auto c = find((*f)[0]);
  if (!c) return error_reply(c.error());
  auto key = (*f)[1];
  if (cmd == "get") return read_reply(c->get(key));
  if (cmd == "load") return read_reply(c->get_or_load(key));
  auto r = c->erase(key);
  return r ? "ok" : error_reply(r.error());
}

std::string console::clear(std::string_view, std::optional<std::string_view> args) {
  auto f = fields(args, 1);
  if (!f) return error_reply(usage("clear <cache>"));
  auto c = find((*f)[0]);
  if (!c) return error_reply(c.error());
  auto r = c->clear();
  return r ? "ok" : error_reply(r.error());
}

std::string console::signal(std::string_view cmd, std::optional<std::string_view> args) {
  auto f = fields(args, 1);
  if (!f) return error_reply(usage("tag|emit <name>"));
  std::string name{(*f)[0]};
  auto r = cmd == "tag" ? rt_.invalidate_tag(name) : rt_.emit(name);
  return r ? "ok" : error_reply(r.error());
}

std::string console::members(std::string_view cmd, std::optional<std::string_view> args) {
  if (!fields(args, 0)) return no_arguments(cmd);
  auto ms = rt_.members();
  if (!ms) return error_reply(ms.error());
  std::vector<std::string> names;
  for (auto& m : *ms)
    names.push_back(printable(m.name)); // another node chose it
  std::sort(names.begin(), names.end());
  std::string out = "members ";
  for (size_t i = 0; i < names.size(); ++i)
    out += (i == 0 ? "" : ",") + names[i];
  return out;
}

std::string console::forget(std::string_view, std::optional<std::string_view> args) {
  auto f = fields(args, 1);
  if (!f) return error_reply(usage("forget <node>"));
  return done_reply(rt_.forget_member(std::string{(*f)[0]}));
}

std::string console::stats(std::string_view cmd, std::optional<std::string_view> args) {
  if (!fields(args, 0)) return no_arguments(cmd);
  auto j = stats_json();
  return j ? "stats " + *j : error_reply(j.error());
}

std::string console::ping(std::string_view cmd, std::optional<std::string_view> args) {
  return fields(args, 0) ? "pong" : no_arguments(cmd);
}

std::string console::sync(std::string_view cmd, std::optional<std::string_view> args) {
  if (!fields(args, 0)) return no_arguments(cmd);
  auto err = rt_.sync_changes();
  return err ? error_reply(err) : "ok";
}

std::string console::changes(std::string_view cmd, std::optional<std::string_view> args) {
  if (!fields(args, 0)) return no_arguments(cmd);
  auto c = rt_.change_stats();
  if (!c) return error_reply(c.error());
  auto num = [](const char* key, uint64_t x) {
    return "\"" + std::string{key} + "\":" + std::to_string(x);
  };
  return "changes {" + num("listening", c->listening) + "," +
         num("connects", c->connects) + "," + num("drops", c->drops) + "," +
         num("repairs", c->repairs) + "," + num("lease_lapses", c->lease_lapses) + "," +
         num("notifications_received", c->notifications_received) + "," +
         num("notifications_malformed", c->notifications_malformed) + "," +
         num("rows_applied", c->rows_applied) + "," + num("rows_own", c->rows_own) + "," +
         num("groups_applied", c->groups_applied) + "," +
         num("groups_incomplete", c->groups_incomplete) + "," +
         num("delay_samples", c->recent_delays_us.size()) + "," +
         num("delay_p50_us", delay_percentile_us(*c, 0.50)) + "," +
         num("delay_p99_us", delay_percentile_us(*c, 0.99)) + "}";
}

std::string console::quit(std::string_view cmd, std::optional<std::string_view> args) {
  if (!fields(args, 0)) return no_arguments(cmd);
  quit_ = true;
  return "bye";
}

std::string console::no_arguments(std::string_view cmd) {
  return error_reply(usage((std::string{cmd} + " (no arguments)").c_str()));
}

caf::expected<std::string> console::stats_json() {
  auto s = take_snapshot(rt_, caches_);
  if (!s) return std::move(s.error());
  auto& p = s->peer;
  auto num = [](const char* key, uint64_t x) {
    return "\"" + std::string{key} + "\":" + std::to_string(x);
  };
  std::string out =
    "{\"node\":" + json_quoted(rt_.node_name()) + "," + num("members", p.members) + "," +
    num("broadcasts_sent", p.broadcasts_sent) + "," +
    num("batches_sent", p.batches_sent) + "," +
    num("invalidations_received", p.invalidations_received) + "," +
    num("invalidations_applied", p.invalidations_applied) + "," + num("gaps", p.gaps) +
    "," + num("peers_lost", p.peers_lost) + "," + num("repairs", p.repairs) + "," +
    num("stalls", p.stalls) + "," + num("joins_refused", p.joins_refused) + "," +
    num("proofs_refused", p.proofs_refused) + "," +
    num("replays_refused", p.replays_refused) + "," +
    num("names_refused", p.names_refused) + "," +
    num("unauthenticated_messages", p.unauthenticated_messages) + "," +
    num("sync_timeouts", p.sync_timeouts) + "," + num("bad_messages", p.bad_messages) +
    "," + num("delay_samples", p.recent_delays_us.size()) + "," +
    num("delay_p50_us", delay_percentile_us(p, 0.50)) + "," +
    num("delay_p99_us", delay_percentile_us(p, 0.99)) + ",\"caches\":{";
  for (size_t i = 0; i < s->caches.size(); ++i) {
    auto& [name, c] = s->caches[i];
    out += (i == 0 ? "" : ",") + json_quoted(name) + ":{" + num("hits", c.hits) + "," +
           num("misses", c.misses) + "," + num("entries", c.entries) + "," +
           num("invalidations", c.invalidations) + "," +
           num("lease_clears", c.lease_clears) + "," + num("lease_caps", c.lease_caps) +
           "," + num("loads_out", c.loads_out) + "," +
           num("loads_queued", c.loads_queued) + "," +
           num("loads_refused", c.loads_refused) + "}";
  }
  return out + "}}";
}

caf::expected<std::string> console::stats_summary() {
  auto s = take_snapshot(rt_, caches_);
  if (!s) return std::move(s.error());
  auto& p = s->peer;
  std::string out = "members=" + std::to_string(p.members);
  for (auto& [name, c] : s->caches)
    out += " " + name + "{hits=" + std::to_string(c.hits) +
           " misses=" + std::to_string(c.misses) +
           " entries=" + std::to_string(c.entries) +
           " invalidations=" + std::to_string(c.invalidations) + "}";
  out += " peer{broadcasts_sent=" + std::to_string(p.broadcasts_sent) +
         " invalidations_received=" + std::to_string(p.invalidations_received) +
         " applied=" + std::to_string(p.invalidations_applied) +
         " gaps=" + std::to_string(p.gaps) + " repairs=" + std::to_string(p.repairs) +
         "}";
  return out;
}

} // namespace karlton::node
