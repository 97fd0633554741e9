// karlton's own commands (plan §5): KARLTON.PUT (dependencies), KARLTON.LOAD
// (read-through), FLUSH (the flusher's answer), and the blocking-only ones
// run on the pool: INVALIDATE, EMIT, GRAPH, STATS.
#include <algorithm>
#include <cassert>
#include <chrono>
#include <string>

#include <karlton/runtime/dependency_graph.hpp>

#include "runtime/server/commands_keys.hpp"

namespace karlton::server {

namespace {

using spec = command_spec;

// Reads a counted list ("EVENTS 2 a b") at args[i]; false on a bad count.
bool counted_list(const std::vector<std::string_view>& args, size_t& i,
                  std::vector<std::string>& out) {
  int64_t n = 0;
  if (i + 1 >= args.size() || !parse_int64(args[i + 1], n) || n < 0 ||
      static_cast<uint64_t>(n) > args.size() - i - 2)
    return false;
  for (int64_t j = 0; j < n; ++j)
    out.emplace_back(args[i + 2 + size_t(j)]);
  i += 1 + size_t(n);
  return true;
}

// KARLTON.PUT key value [PX ms] [EVENTS n e...] [ON n x...]
void put(command_call& c) {
  auto t = ttl::cache_default();
  dependencies deps;
  for (size_t i = 3; i < c.args.size(); ++i) {
    auto a = c.args[i];
    if (iequals(a, "PX") && i + 1 < c.args.size()) {
      int64_t ms = 0;
      if (!parse_expire_ms(c, c.args[i + 1], 1, "karlton.put", true, ms)) return;
      t = ttl::after(std::chrono::milliseconds{ms});
      ++i;
    } else if (iequals(a, "EVENTS") && deps.events.empty()) {
      if (!counted_list(c.args, i, deps.events)) return c.reply().error("syntax error");
    } else if (iequals(a, "ON") && deps.on.empty()) {
      if (!counted_list(c.args, i, deps.on)) return c.reply().error("syntax error");
    } else {
      return c.reply().error("syntax error");
    }
  }
  auto r = c.defer();
  c.db().put_async(c.args[1], c.args[2], t, deps,
                   [r](caf::expected<cache::unit> x) { reply_ok(r, x); });
}

// KARLTON.LOAD key: the cached value or the loader's; nil if neither has it.
void load(command_call& c) {
  auto r = c.defer();
  c.db().get_or_load_async(c.args[1], [r](caf::expected<value> v) {
    if (!v && !(v.error() == errc::not_found)) return r.fail(v.error());
    r.finish([&](reply_writer& w) {
      if (v && *v)
        w.bulk(v->bytes());
      else
        w.null();
    });
  });
}

void reply_summary(const deferred_reply& r,
                   const caf::expected<invalidation_summary>& x) {
  if (!x) return r.fail(x.error());
  r.finish([&](reply_writer& w) { w.integer(static_cast<int64_t>(x->removed)); });
}

// KARLTON.INVALIDATE tag: removes what depends on the key or tag; how many.
void invalidate(command_call& c) {
  auto ctx = c.session.context_ptr();
  on_pool(c, [ctx, tag = std::string{c.args[1]}](const cache&, const deferred_reply& r) {
    reply_summary(r, ctx->rt.invalidate_tag(tag));
  });
}

// KARLTON.EMIT event [data]: removes what depends on the event; how many.
void emit(command_call& c) {
  if (c.args.size() > 3) return c.reply().error("syntax error");
  auto ctx = c.session.context_ptr();
  std::string event{c.args[1]}, data{c.args.size() == 3 ? c.args[2] : std::string_view{}};
  on_pool(c, [ctx, event, data](const cache&, const deferred_reply& r) {
    reply_summary(r, ctx->rt.emit(event, data));
  });
}

// KARLTON.FLUSH [ms]: waits until the selected cache's dirty writes are in
// its store, this connection's earlier ones included, at most 10 s. The
// reply comes from the flusher's answer, not from a pool thread: a slow store
// held a thread for the whole wait, and two clients held the pool's two,
// stalling every command that needs it.
void flush(command_call& c) {
  if (c.args.size() > 2) return c.reply().error("syntax error");
  int64_t ms = 10000;
  if (c.args.size() == 2 && (!parse_int64(c.args[1], ms) || ms <= 0))
    return c.reply().error("value is not an integer or out of range");
  // A read: the session refused it already on a node without caches.
  assert(!c.session.context().caches.empty());
  auto wait = std::chrono::milliseconds{std::min<int64_t>(ms, 10000)};
  // Bounded as the pool's queue is: a FLUSH is a read, so one connection
  // could otherwise pipeline thousands of them, each waiting up to 10 s.
  auto ctx = c.session.context_ptr();
  if (ctx->flushes_waiting.fetch_add(1, std::memory_order_relaxed) >=
      ctx->options.blocking_queue) {
    ctx->flushes_waiting.fetch_sub(1, std::memory_order_relaxed);
    return c.reply().error("busy");
  }
  auto r = c.defer();
  c.db().force_flush_async(wait, [r, ctx](caf::expected<cache::unit> x) {
    ctx->flushes_waiting.fetch_sub(1, std::memory_order_relaxed);
    reply_ok(r, x);
  });
}

// KARLTON.GRAPH [JSON|DOT]: the dependency graph of every cache.
void graph(command_call& c) {
  if (c.args.size() > 2 ||
      (c.args.size() == 2 && !iequals(c.args[1], "JSON") && !iequals(c.args[1], "DOT")))
    return c.reply().error("syntax error");
  bool dot = c.args.size() == 2 && iequals(c.args[1], "DOT");
  auto ctx = c.session.context_ptr();
  on_pool(c, [ctx, dot](const cache&, const deferred_reply& r) {
    auto g = ctx->rt.dependencies_graph();
    if (!g) return r.fail(g.error());
    // Never more than the connection would be closed for.
    auto limit = ctx->options.output_buffer_limit;
    auto room = limit > reply_framing_bytes ? limit - reply_framing_bytes : 0;
    auto text = dot ? g->to_dot_within(room) : g->to_json_within(room);
    if (!text)
      return r.finish([&](reply_writer& w) {
        w.error("KARLTON.GRAPH's reply exceeds the output buffer limit (" +
                std::to_string(limit) + " bytes)");
      });
    r.finish([&](reply_writer& w) { w.bulk(*text); });
  });
}

void field(std::string& out, const char* name, uint64_t v, bool last = false) {
  out += '"';
  out += name;
  out += "\":";
  out += std::to_string(v);
  if (!last) out += ',';
}

// KARLTON.STATS: every database's counters as one JSON object, in SELECT
// order ({"caches":[{"name":..,"hits":..},..]}).
void stats(command_call& c) {
  auto ctx = c.session.context_ptr();
  on_pool(c, [ctx](const cache&, const deferred_reply& r) {
    std::string out = "{\"caches\":[";
    for (size_t i = 0; i < ctx->caches.size(); ++i) {
      const auto& db = ctx->caches[i];
      auto s = db.stats();
      if (!s) return r.fail(s.error());
      if (i > 0) out += ',';
      out += "{\"db\":" + std::to_string(i) + ",\"name\":\"" + db.name() + "\",";
      field(out, "hits", s->hits);
      field(out, "misses", s->misses);
      field(out, "puts", s->puts);
      field(out, "expired", s->expired);
      field(out, "evictions", s->evictions);
      field(out, "invalidations", s->invalidations);
      field(out, "dependency_links", s->dependency_links);
      field(out, "entries", s->entries);
      field(out, "bytes", s->bytes, true);
      out += '}';
    }
    out += "]}";
    r.finish([&](reply_writer& w) { w.bulk(out); });
  });
}

} // namespace

void commands_karlton(std::vector<command_spec>& t) {
  t.push_back({"karlton.put", -3, spec::write, 1, 1, 1, put});
  t.push_back({"karlton.load", 2, spec::read, 1, 1, 1, load});
  t.push_back(
    {"karlton.invalidate", 2, spec::write | spec::all_keys, 0, 0, 0, invalidate});
  t.push_back({"karlton.emit", -2, spec::write | spec::all_keys, 0, 0, 0, emit});
  // A read of the whole database for the session's order: it runs after this
  // connection's writes in flight are answered, so the flusher has them.
  t.push_back({"karlton.flush", -1, spec::read | spec::all_keys, 0, 0, 0, flush});
  t.push_back({"karlton.graph", -1, 0, 0, 0, 0, graph});
  t.push_back({"karlton.stats", 1, 0, 0, 0, 0, stats});
}

} // namespace karlton::server
