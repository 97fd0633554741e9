// The plain key commands (plan §5): GET, SET (EX/PX), MGET, MSET, DEL,
// UNLINK, EXISTS, TTL, PTTL, DBSIZE, FLUSHDB, FLUSHALL. The read-modify-write
// ones (SET's NX/XX/GET/KEEPTTL, GETSET, INCR, EXPIRE, ...) are in
// commands_compute.cpp.
#include "runtime/server/commands_keys.hpp"

#include <algorithm>
#include <chrono>
#include <limits>

namespace karlton::server {

namespace {

using spec = command_spec;

void reply_value(const deferred_reply& r, const caf::expected<value>& v) {
  if (!v)
    r.fail(v.error());
  else
    r.finish([&](reply_writer& w) {
      if (*v)
        w.bulk(v->bytes());
      else
        w.null();
    });
}

void get(command_call& c) {
  auto r = c.defer();
  c.db().get_async(c.args[1], [r](caf::expected<value> v) { reply_value(r, v); });
}

} // namespace

bool parse_expire_ms(command_call& c, std::string_view arg, int64_t unit,
                     std::string_view cmd, bool positive, int64_t& ms) {
  int64_t n = 0;
  if (!parse_int64(arg, n)) {
    c.reply().error("value is not an integer or out of range");
    return false;
  }
  // Past 30 years karlton would keep the key as never expiring and TTL would
  // answer -1 for a key the client was told expires: refused, with the error
  // Redis gives past its own range (README, "Serving Redis clients").
  constexpr int64_t max_ms =
    std::chrono::duration_cast<std::chrono::milliseconds>(longest_exact_ttl).count();
  if ((positive && n <= 0) || n > max_ms / unit ||
      n < std::numeric_limits<int64_t>::min() / unit) { // Redis refuses these too
    c.reply().error("invalid expire time in '" + std::string{cmd} + "' command");
    return false;
  }
  // Any lifetime of 0 or less deletes the key (EXPIRE), however negative.
  ms = std::max<int64_t>(n, -1) * unit;
  return true;
}

namespace {

/// SET's options, as Redis parses them.
struct set_options {
  bool nx = false, xx = false, get = false, keepttl = false;
  std::optional<int64_t> ms;
  bool seconds = false;                       // ms came from EX
  std::optional<std::string_view> expire_arg; // the last EX or PX, checked at the end
};

bool parse_set(command_call& c, set_options& o) {
  for (size_t i = 3; i < c.args.size(); ++i) {
    auto a = c.args[i];
    bool more = i + 1 < c.args.size();
    if (iequals(a, "NX") && !o.xx) {
      o.nx = true;
    } else if (iequals(a, "XX") && !o.nx) {
      o.xx = true;
    } else if (iequals(a, "GET")) {
      o.get = true;
    } else if (iequals(a, "KEEPTTL") && !o.expire_arg) {
      o.keepttl = true;
    } else if ((iequals(a, "EX") || iequals(a, "PX")) && !o.keepttl && more &&
               (!o.expire_arg || o.seconds == iequals(a, "EX"))) {
      // Redis 7.0 takes EX twice (or PX twice), but not both; only the last
      // is checked, after the syntax: `EX 0 EX 10` is 10 s, `EX 0 NOPE` a
      // syntax error.
      o.seconds = iequals(a, "EX");
      o.expire_arg = c.args[++i];
    } else {
      c.reply().error("syntax error");
      return false;
    }
  }
  if (!o.expire_arg) return true;
  int64_t ms = 0;
  if (!parse_expire_ms(c, *o.expire_arg, o.seconds ? 1000 : 1, "set", true, ms))
    return false;
  o.ms = ms;
  return true;
}

ttl ttl_of_ms(std::optional<int64_t> ms) {
  return ms ? ttl::after(std::chrono::milliseconds{*ms}) : ttl::cache_default();
}

} // namespace

// SET with NX, XX, GET or KEEPTTL: a compute (commands_compute.cpp).
void set_by_compute(command_call& c, bool nx, bool xx, bool get, bool keepttl,
                    std::optional<int64_t> ms);

namespace {

// SET with NX, XX, GET or KEEPTTL is a compute, plain SET a put (the
// session orders a key's writes that take different ways).
write_path set_path(const std::vector<std::string_view>& args) {
  for (size_t i = 3; i < args.size(); ++i)
    for (auto opt : {"NX", "XX", "GET", "KEEPTTL"})
      if (iequals(args[i], opt)) return write_path::compute;
  return write_path::put;
}

void set(command_call& c) {
  set_options o;
  if (!parse_set(c, o)) return;
  if (o.nx || o.xx || o.get || o.keepttl)
    return set_by_compute(c, o.nx, o.xx, o.get, o.keepttl, o.ms);
  auto t = ttl_of_ms(o.ms);
  if (needs_blocking_writes(c.db())) {
    on_pool(
      c, [k = std::string{c.args[1]}, v = std::string{c.args[2]},
          t](const cache& db, const deferred_reply& r) { reply_ok(r, db.put(k, v, t)); });
    return;
  }
  // With the pipeline's other plain SETs: one job per shard, not one each.
  c.put_in_batch(c.args[1], c.args[2], t);
}

void mget(command_call& c) {
  std::vector<std::string> keys(c.args.begin() + 1, c.args.end());
  auto r = c.defer();
  auto limit = c.session.context().options.output_buffer_limit;
  size_t nil = c.session.protocol() >= 3 ? 3 : 5; // "_\r\n" or "$-1\r\n"
  c.db().get_many_async(keys, [r, limit, nil](caf::expected<std::vector<value>> vs) {
    if (!vs) return r.fail(vs.error());
    // Never build a reply the connection would be closed for: a few bytes of
    // MGET naming one large key many times would ask for gigabytes.
    size_t bytes = length_line_bytes(vs->size());
    for (const auto& v : *vs)
      bytes += v ? bulk_reply_bytes(v.bytes().size()) : nil;
    if (bytes > limit)
      return r.finish([&](reply_writer& w) {
        w.error("MGET's reply of " + std::to_string(bytes) +
                " bytes exceeds the output buffer limit");
      });
    r.finish([&](reply_writer& w) {
      w.array(vs->size());
      for (const auto& v : *vs) {
        if (v)
          w.bulk(v.bytes());
        else
          w.null();
      }
    });
  });
}

void mset(command_call& c) {
  if (c.args.size() % 2 != 1) {
    c.reply().error("wrong number of arguments for 'mset' command");
    return;
  }
  std::vector<std::pair<std::string, std::string>> items;
  items.reserve(c.args.size() / 2);
  for (size_t i = 1; i + 1 < c.args.size(); i += 2)
    items.emplace_back(std::string{c.args[i]}, std::string{c.args[i + 1]});
  if (needs_blocking_writes(c.db())) {
    on_pool(c, [items = std::move(items)](const cache& db, const deferred_reply& r) {
      reply_ok(r, db.put_many(items));
    });
    return;
  }
  auto r = c.defer();
  c.db().put_many_async(items, ttl::cache_default(),
                        [r](caf::expected<cache::unit> x) { reply_ok(r, x); });
}

void del(command_call& c) {
  if (needs_blocking_writes(c.db())) {
    std::vector<std::string> keys(c.args.begin() + 1, c.args.end());
    on_pool(c, [keys = std::move(keys)](const cache& db, const deferred_reply& r) {
      auto counter = std::make_shared<counted_reply>(r, keys.size());
      for (const auto& k : keys)
        counter->add(db.erase(k));
    });
    return;
  }
  each_key(c, [](const cache& db, std::string_view k, auto answer) {
    db.erase_async(k, std::move(answer));
  });
}

void exists(command_call& c) {
  each_key(c, [](const cache& db, std::string_view k, auto answer) {
    db.contains_async(k, std::move(answer));
  });
}

void ttl_reply(command_call& c, int64_t unit) {
  auto r = c.defer();
  c.db().ttl_of_async(c.args[1], [r, unit](caf::expected<remaining_ttl> x) {
    if (!x) return r.fail(x.error());
    r.finish([&](reply_writer& w) {
      if (x->state == remaining_ttl::missing)
        w.integer(-2);
      else if (x->state == remaining_ttl::never_expires)
        w.integer(-1);
      else {
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(x->left).count();
        w.integer(unit == 1 ? ms : (ms + 500) / 1000);
      }
    });
  });
}

void ttl_cmd(command_call& c) {
  ttl_reply(c, 1000);
}

void pttl(command_call& c) {
  ttl_reply(c, 1);
}

void dbsize(command_call& c) {
  auto r = c.defer();
  c.db().stats_async([r](caf::expected<cache_stats> x) {
    if (!x) return r.fail(x.error());
    r.finish([&](reply_writer& w) { w.integer(static_cast<int64_t>(x->entries)); });
  });
}

bool flush_args_ok(command_call& c) {
  if (c.args.size() > 2 || (c.args.size() == 2 && !iequals(c.args[1], "ASYNC") &&
                            !iequals(c.args[1], "SYNC"))) {
    c.reply().error("syntax error");
    return false;
  }
  return true;
}

void flushdb(command_call& c) {
  if (!flush_args_ok(c)) return;
  auto r = c.defer();
  c.db().clear_async([r](caf::expected<uint64_t> x) {
    if (!x) return r.fail(x.error());
    r.finish([](reply_writer& w) { w.simple("OK"); });
  });
}

void flushall(command_call& c) {
  if (!flush_args_ok(c)) return;
  const auto& dbs = c.session.context().caches;
  auto r = c.defer();
  auto left = std::make_shared<std::atomic<size_t>>(dbs.size());
  auto first_error = std::make_shared<std::pair<std::mutex, caf::error>>();
  for (const auto& db : dbs)
    db.clear_async([r, left, first_error](caf::expected<uint64_t> x) {
      if (!x) {
        std::lock_guard<std::mutex> guard{first_error->first};
        if (!first_error->second) first_error->second = x.error();
      }
      if (left->fetch_sub(1) != 1) return;
      std::lock_guard<std::mutex> guard{first_error->first};
      if (first_error->second)
        r.fail(first_error->second);
      else
        r.finish([](reply_writer& w) { w.simple("OK"); });
    });
}

} // namespace

void commands_keys(std::vector<command_spec>& t) {
  t.push_back({"get", 2, spec::read, 1, 1, 1, get});
  t.push_back({"set", -3, spec::write | spec::batches_puts, 1, 1, 1, set, set_path});
  t.push_back({"mget", -2, spec::read, 1, -1, 1, mget});
  t.push_back({"mset", -3, spec::write, 1, -1, 2, mset});
  t.push_back({"del", -2, spec::write, 1, -1, 1, del, each_key_path});
  t.push_back({"unlink", -2, spec::write, 1, -1, 1, del, each_key_path});
  t.push_back({"exists", -2, spec::read, 1, -1, 1, exists, each_key_path});
  t.push_back({"ttl", 2, spec::read, 1, 1, 1, ttl_cmd});
  t.push_back({"pttl", 2, spec::read, 1, 1, 1, pttl});
  t.push_back({"dbsize", 1, spec::read | spec::all_keys, 0, 0, 0, dbsize});
  t.push_back({"flushdb", -1, spec::write | spec::all_keys, 0, 0, 0, flushdb});
  t.push_back({"flushall", -1, spec::write | spec::all_keys, 0, 0, 0, flushall});
}

} // namespace karlton::server
