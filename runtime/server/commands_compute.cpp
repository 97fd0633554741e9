// The read-modify-write commands (plan §5), each one atomic step on the
// key's shard: SET with NX/XX/GET/KEEPTTL, GETSET, GETDEL, SETNX, INCR,
// INCRBY, DECR, DECRBY, EXPIRE, PEXPIRE, PERSIST. Writes to a
// distribution=sync cache use the blocking forms on the pool (rule 7).
#include <limits>

#include "runtime/server/commands_keys.hpp"

namespace karlton::server {

namespace {

using spec = command_spec;

/// Runs a call through its callback form, or its blocking form on the pool
/// for a sync cache; `reply(r, result)` answers a success.
template <class R, class Async, class Blocking, class Reply>
void dispatch(command_call& c, Async async_call, Blocking blocking_call, Reply reply) {
  if (needs_blocking_writes(c.db())) {
    on_pool(c, [blocking_call, reply](const cache& db, const deferred_reply& r) {
      caf::expected<R> x = blocking_call(db);
      if (!x)
        r.fail(x.error());
      else
        reply(r, *x);
    });
    return;
  }
  auto r = c.defer();
  async_call(c.db(), [r, reply](caf::expected<R> x) {
    if (!x)
      r.fail(x.error());
    else
      reply(r, *x);
  });
}

void reply_before(const deferred_reply& r, const computed& x) {
  r.finish([&](reply_writer& w) {
    if (x.before)
      w.bulk(x.before.bytes());
    else
      w.null();
  });
}

void compute_cmd(command_call& c, compute_function fn,
                 std::function<void(const deferred_reply&, const computed&)> reply) {
  std::string key{c.args[1]};
  dispatch<computed>(
    c, [key, fn](const cache& db, auto f) { db.compute_async(key, fn, std::move(f)); },
    [key, fn](const cache& db) { return db.compute(key, fn); }, std::move(reply));
}

void getset(command_call& c) {
  std::string v{c.args[2]};
  compute_cmd(
    c, [v](const value&) { return compute_result::put(v, ttl::cache_default()); },
    reply_before);
}

void getdel(command_call& c) {
  compute_cmd(
    c,
    [](const value& cur) {
      return cur ? compute_result::erase() : compute_result::keep();
    },
    reply_before);
}

void setnx(command_call& c) {
  std::string key{c.args[1]}, v{c.args[2]};
  dispatch<bool>(
    c,
    [key, v](const cache& db, auto f) {
      db.compare_and_set_async(key, std::nullopt, std::string_view{v},
                               ttl::cache_default(), std::move(f));
    },
    [key, v](const cache& db) {
      return db.compare_and_set(key, std::nullopt, std::string_view{v});
    },
    [](const deferred_reply& r, bool done) {
      r.finish([&](reply_writer& w) { w.integer(done ? 1 : 0); });
    });
}

void increment_by(command_call& c, int64_t delta) {
  std::string key{c.args[1]};
  auto r = c.defer();
  auto answer = [r](caf::expected<int64_t> x) {
    if (x) return r.finish([&](reply_writer& w) { w.integer(*x); });
    if (!(x.error() == errc::not_an_integer)) return r.fail(x.error());
    bool overflow = describe(x.error()).find("overflow") != std::string::npos;
    r.finish([&](reply_writer& w) {
      w.error(overflow ? "increment or decrement would overflow"
                       : "value is not an integer or out of range");
    });
  };
  if (needs_blocking_writes(c.db())) {
    cache db = c.db();
    if (!c.session.run_blocking(
          [db, key, delta, answer] { answer(db.increment(key, delta)); }))
      r.finish([](reply_writer& w) { w.error("busy"); });
    return;
  }
  c.db().increment_async(key, delta, ttl::cache_default(), answer);
}

bool delta_arg(command_call& c, int64_t& d) {
  if (parse_int64(c.args[2], d)) return true;
  c.reply().error("value is not an integer or out of range");
  return false;
}

void incr(command_call& c) {
  increment_by(c, 1);
}

void decr(command_call& c) {
  increment_by(c, -1);
}

void incrby(command_call& c) {
  int64_t d = 0;
  if (delta_arg(c, d)) increment_by(c, d);
}

void decrby(command_call& c) {
  int64_t d = 0;
  if (!delta_arg(c, d)) return;
  if (d == std::numeric_limits<int64_t>::min()) {
    c.reply().error("decrement would overflow");
    return;
  }
  increment_by(c, -d);
}

void set_ttl_cmd(command_call& c, std::optional<caf::timespan> left, bool persist) {
  std::string key{c.args[1]};
  dispatch<remaining_ttl>(
    c,
    [key, left](const cache& db, auto f) { db.set_ttl_async(key, left, std::move(f)); },
    [key, left](const cache& db) { return db.set_ttl(key, left); },
    [persist](const deferred_reply& r, remaining_ttl before) {
      bool changed = persist ? before.state == remaining_ttl::expires : before.found();
      r.finish([&](reply_writer& w) { w.integer(changed ? 1 : 0); });
    });
}

void expire_in(command_call& c, int64_t unit, std::string_view name) {
  if (c.args.size() > 3) {
    c.reply().error("Unsupported option " + std::string{c.args[3].substr(0, 128)});
    return;
  }
  int64_t ms = 0;
  if (!parse_expire_ms(c, c.args[2], unit, name, false, ms)) return;
  set_ttl_cmd(c, std::chrono::milliseconds{ms}, false);
}

void expire(command_call& c) {
  expire_in(c, 1000, "expire");
}

void pexpire(command_call& c) {
  expire_in(c, 1, "pexpire");
}

void persist(command_call& c) {
  set_ttl_cmd(c, std::nullopt, true);
}

} // namespace

void set_by_compute(command_call& c, bool nx, bool xx, bool get, bool keepttl,
                    std::optional<int64_t> ms) {
  std::string v{c.args[2]};
  std::optional<ttl> life;
  if (!keepttl)
    life = ms ? ttl::after(std::chrono::milliseconds{*ms}) : ttl::cache_default();
  compute_cmd(
    c,
    [v, nx, xx, life](const value& cur) {
      bool exists = static_cast<bool>(cur);
      if ((nx && exists) || (xx && !exists)) return compute_result::keep();
      return compute_result::put(v, life);
    },
    [nx, xx, get](const deferred_reply& r, const computed& x) {
      if (get) return reply_before(r, x);
      bool stored = !((nx && x.before) || (xx && !x.before));
      r.finish([&](reply_writer& w) {
        if (stored)
          w.simple("OK");
        else
          w.null();
      });
    });
}

namespace {

write_path by_compute(const std::vector<std::string_view>&) {
  return write_path::compute;
}

write_path by_ttl(const std::vector<std::string_view>&) {
  return write_path::ttl;
}

} // namespace

void commands_compute(std::vector<command_spec>& t) {
  t.push_back({"getset", 3, spec::write, 1, 1, 1, getset, by_compute});
  t.push_back({"getdel", 2, spec::write, 1, 1, 1, getdel, by_compute});
  t.push_back({"setnx", 3, spec::write, 1, 1, 1, setnx, by_compute});
  t.push_back({"incr", 2, spec::write, 1, 1, 1, incr, by_compute});
  t.push_back({"decr", 2, spec::write, 1, 1, 1, decr, by_compute});
  t.push_back({"incrby", 3, spec::write, 1, 1, 1, incrby, by_compute});
  t.push_back({"decrby", 3, spec::write, 1, 1, 1, decrby, by_compute});
  t.push_back({"expire", -3, spec::write, 1, 1, 1, expire, by_ttl});
  t.push_back({"pexpire", -3, spec::write, 1, 1, 1, pexpire, by_ttl});
  t.push_back({"persist", 2, spec::write, 1, 1, 1, persist, by_ttl});
}

} // namespace karlton::server
