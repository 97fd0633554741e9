// Connection commands (plan §5): PING, ECHO, QUIT, HELLO, AUTH, SELECT,
// CLIENT, COMMAND, CONFIG GET, INFO. CLIENT TRACKING and the pub/sub commands
// are commands_tracking.cpp's.
#include <string>

#include "runtime/server/info.hpp"
#include "runtime/server/session_impl.hpp"

namespace karlton::server {

namespace {

using spec = command_spec;

// Equal without an early exit on the first differing byte, so the time a
// wrong password takes says nothing about how much of it was right.
bool same_secret(std::string_view given, std::string_view secret) noexcept {
  unsigned diff = given.size() == secret.size() ? 0u : 1u;
  for (size_t i = 0; i < given.size(); ++i) {
    auto s = secret.empty() ? 0 : secret[i % secret.size()];
    diff |= static_cast<unsigned char>(given[i]) ^ static_cast<unsigned char>(s);
  }
  return diff == 0;
}

constexpr const char* wrongpass =
  "-WRONGPASS invalid username-password pair or user is disabled.";

// AUTH's and HELLO's check; true if `user`/`pass` may log in.
bool credentials_ok(session_impl& s, std::string_view user, std::string_view pass) {
  const auto& password = s.context().options.password;
  if (!iequals(user, "default")) return false;
  if (password.empty()) return true; // the default user has no password
  return same_secret(pass, password);
}

// Wrong passwords a connection may give before it logs in. Then it closes,
// so that guessing costs a connect and a round trip per three guesses (at
// most maxclients at once) rather than a pipelined line each; Redis itself
// has no such bound.
constexpr uint32_t max_wrong_passwords = 3;

void refuse_credentials(command_call& c) {
  auto& s = c.session;
  s.context().counters.auth_failures.fetch_add(1, std::memory_order_relaxed);
  c.reply().error(wrongpass);
  if (!s.authenticated() && s.note_wrong_password() >= max_wrong_passwords)
    s.close_after_reply();
}

void ping(command_call& c) {
  if (c.args.size() > 2) {
    c.reply().error("wrong number of arguments for 'ping' command");
  } else if (c.session.subscribed() && c.session.protocol() < 3) {
    auto w = c.reply(); // Redis's form in the pub/sub context of RESP2
    w.array(2);
    w.bulk("pong");
    w.bulk(c.args.size() == 2 ? c.args[1] : std::string_view{});
  } else if (c.args.size() == 2) {
    c.reply().bulk(c.args[1]);
  } else {
    c.reply().simple("PONG");
  }
}

void echo(command_call& c) {
  c.reply().bulk(c.args[1]);
}

void quit(command_call& c) {
  c.reply().simple("OK");
  c.session.close_after_reply();
  c.session.context().tracking->detach(c.session.id()); // gone, as in Redis
}

void auth(command_call& c) {
  auto& s = c.session;
  if (c.args.size() > 3) {
    c.reply().error("syntax error");
    return;
  }
  if (c.args.size() == 2 && s.context().options.password.empty()) {
    c.reply().error("AUTH <password> called without any password configured for the "
                    "default user. Are you sure your configuration is correct?");
    return;
  }
  auto user = c.args.size() == 3 ? c.args[1] : std::string_view{"default"};
  if (!credentials_ok(s, user, c.args.back())) return refuse_credentials(c);
  s.set_authenticated();
  c.reply().simple("OK");
}

// Redis's rule for CLIENT SETNAME and HELLO SETNAME (printable, no spaces),
// and a bound Redis does not have: each connection keeps its name.
constexpr size_t max_client_name_bytes = 256;

bool name_ok(command_call& c, std::string_view name) {
  if (name.size() > max_client_name_bytes) {
    c.reply().error("Client names are at most " + std::to_string(max_client_name_bytes) +
                    " bytes.");
    return false;
  }
  for (char ch : name)
    if (ch < '!' || ch > '~') {
      c.reply().error("Client names cannot contain spaces, newlines or special "
                      "characters.");
      return false;
    }
  return true;
}

void hello(command_call& c) {
  auto& s = c.session;
  int proto = s.protocol();
  size_t i = 1;
  if (c.args.size() > 1) {
    int64_t v = 0;
    if (!parse_int64(c.args[1], v)) {
      c.reply().error("Protocol version is not an integer or out of range");
      return;
    }
    if (v < 2 || v > 3) {
      c.reply().error("-NOPROTO unsupported protocol version");
      return;
    }
    proto = static_cast<int>(v);
    i = 2;
  }
  // Options take effect in their order, as in Redis 7.0: an AUTH before a
  // bad SETNAME has logged the client in when the name is refused.
  std::optional<std::string_view> name;
  for (; i < c.args.size(); ++i) {
    bool more = i + 1 < c.args.size();
    if (iequals(c.args[i], "AUTH") && i + 2 < c.args.size()) {
      if (!credentials_ok(s, c.args[i + 1], c.args[i + 2])) return refuse_credentials(c);
      s.set_authenticated();
      i += 2;
    } else if (iequals(c.args[i], "SETNAME") && more) {
      name = c.args[++i];
      if (!name_ok(c, *name)) return;
    } else {
      c.reply().error("Syntax error in HELLO option '" +
                      std::string{c.args[i].substr(0, 128)} + "'");
      return;
    }
  }
  if (!s.authenticated()) {
    c.reply().error("-NOAUTH HELLO must be called with the client already authenticated, "
                    "otherwise the HELLO AUTH <user> <pass> option can be used to "
                    "authenticate the client and select the RESP protocol version at the "
                    "same time");
    return;
  }
  if (name) s.set_name(std::string{*name});
  s.set_protocol(proto);
  s.context().tracking->set_protocol(s.id(), proto);
  auto w = c.reply(); // in the new protocol
  w.map(7);
  w.bulk("server");
  w.bulk("redis");
  w.bulk("version");
  w.bulk("7.0.0");
  w.bulk("proto");
  w.integer(proto);
  w.bulk("id");
  w.integer(static_cast<int64_t>(s.id()));
  w.bulk("mode");
  w.bulk("standalone");
  w.bulk("role");
  w.bulk("master");
  w.bulk("modules");
  w.array(0);
}

void select(command_call& c) {
  int64_t n = 0;
  if (!parse_int64(c.args[1], n)) {
    c.reply().error("value is not an integer or out of range");
  } else if (n < 0 || static_cast<uint64_t>(n) >= c.session.context().caches.size()) {
    c.reply().error("DB index is out of range");
  } else {
    c.session.select(static_cast<size_t>(n));
    c.reply().simple("OK");
  }
}

void wrong_sub_arity(command_call& c, std::string_view cmd) {
  std::string sub{c.args[1]};
  for (auto& ch : sub)
    ch = ascii_lower(ch);
  c.reply().error("wrong number of arguments for '" + std::string{cmd} + "|" + sub +
                  "' command");
}

void unknown_sub(command_call& c, std::string_view help) {
  c.reply().error("unknown subcommand '" + std::string{c.args[1].substr(0, 128)} +
                  "'. Try " + std::string{help} + " HELP.");
}

void client(command_call& c) {
  auto sub = c.args[1];
  auto& s = c.session;
  if (iequals(sub, "ID")) {
    if (c.args.size() != 2) return wrong_sub_arity(c, "client");
    c.reply().integer(static_cast<int64_t>(s.id()));
  } else if (iequals(sub, "GETNAME")) {
    if (c.args.size() != 2) return wrong_sub_arity(c, "client");
    if (s.name().empty())
      c.reply().null();
    else
      c.reply().bulk(s.name());
  } else if (iequals(sub, "SETNAME")) {
    if (c.args.size() != 3) return wrong_sub_arity(c, "client");
    if (!name_ok(c, c.args[2])) return;
    s.set_name(std::string{c.args[2]});
    c.reply().simple("OK");
  } else if (iequals(sub, "TRACKING")) {
    if (c.args.size() < 3) return wrong_sub_arity(c, "client");
    client_tracking(c);
  } else {
    unknown_sub(c, "CLIENT");
  }
}

void command_info(reply_writer& w, const command_spec& cmd) {
  w.array(10);
  w.bulk(cmd.name);
  w.integer(cmd.arity);
  size_t nflags = (cmd.flags & (spec::read | spec::write)) ? 1 : 0;
  nflags += (cmd.flags & spec::no_auth) ? 1 : 0;
  w.set(nflags);
  if (cmd.flags & spec::write)
    w.simple("write");
  else if (cmd.flags & spec::read)
    w.simple("readonly");
  if (cmd.flags & spec::no_auth) w.simple("no_auth");
  w.integer(cmd.first_key);
  w.integer(cmd.last_key);
  w.integer(cmd.step);
  w.set(0);   // ACL categories
  w.set(0);   // tips
  w.array(0); // key specs
  w.array(0); // subcommands
}

void command(command_call& c) {
  const auto& table = command_table();
  if (c.args.size() == 1) {
    auto w = c.reply();
    w.array(table.size());
    for (const auto& cmd : table)
      command_info(w, cmd);
    return;
  }
  auto sub = c.args[1];
  if (iequals(sub, "COUNT")) {
    if (c.args.size() != 2) return wrong_sub_arity(c, "command");
    c.reply().integer(static_cast<int64_t>(table.size()));
  } else if (iequals(sub, "DOCS")) {
    // No documentation: redis-cli 7.0 then gives no hints, and works.
    c.reply().map(0);
  } else if (iequals(sub, "INFO")) {
    auto w = c.reply();
    if (c.args.size() == 2) {
      w.array(table.size());
      for (const auto& cmd : table)
        command_info(w, cmd);
      return;
    }
    w.array(c.args.size() - 2);
    for (size_t i = 2; i < c.args.size(); ++i) {
      if (const auto* cmd = find_command(c.args[i]))
        command_info(w, *cmd);
      else
        w.null(); // Redis's null bulk ($-1), not a null array
    }
  } else {
    unknown_sub(c, "COMMAND");
  }
}

void config(command_call& c) {
  if (!iequals(c.args[1], "GET")) return unknown_sub(c, "CONFIG");
  if (c.args.size() < 3) return wrong_sub_arity(c, "config");
  // What redis-benchmark asks before it starts: no persistence here.
  std::vector<std::pair<const char*, const char*>> found;
  for (size_t i = 2; i < c.args.size(); ++i) {
    if (iequals(c.args[i], "save"))
      found.emplace_back("save", "");
    else if (iequals(c.args[i], "appendonly"))
      found.emplace_back("appendonly", "no");
  }
  auto w = c.reply();
  w.map(found.size());
  for (auto& [k, v] : found) {
    w.bulk(k);
    w.bulk(v);
  }
}

void info(command_call& c) {
  // INFO server clients ...: the sections named, as in Redis 7. A word
  // longer than any section's name, or with a space, names none (not
  // copied); naming none gives nothing, as in Redis, not every section.
  // At most the first 32 words count: the job copies them, and a pipeline of
  // INFOs of 10,000 words each would otherwise hold megabytes in the pool's line.
  constexpr size_t max_words = 32;
  std::string section;
  for (size_t i = 1; i < c.args.size() && i <= max_words; ++i)
    if (c.args[i].size() <= 16 && c.args[i].find(' ') == std::string_view::npos) {
      section += ' ';
      section += c.args[i];
    }
  if (c.args.size() > 1 && section.find_first_not_of(' ') == std::string::npos)
    section = "-"; // no section's name
  auto reply = c.defer();
  auto ctx = c.session.context_ptr();
  bool queued = c.session.run_blocking([reply, ctx, section] {
    auto text = render_info(*ctx, section);
    reply.finish([&](reply_writer& w) {
      if (w.protocol() == 3)
        w.verbatim("txt", text);
      else
        w.bulk(text);
    });
  });
  if (!queued) reply.finish([](reply_writer& w) { w.error("busy"); });
}

} // namespace

void commands_conn(std::vector<command_spec>& t) {
  t.push_back({"ping", -1, spec::pubsub, 0, 0, 0, ping});
  t.push_back({"echo", 2, 0, 0, 0, 0, echo});
  t.push_back({"quit", -1, spec::no_auth | spec::pubsub, 0, 0, 0, quit});
  t.push_back({"auth", -2, spec::no_auth, 0, 0, 0, auth});
  t.push_back({"hello", -1, spec::no_auth, 0, 0, 0, hello});
  t.push_back({"select", 2, 0, 0, 0, 0, select});
  t.push_back({"client", -2, 0, 0, 0, 0, client});
  t.push_back({"command", -1, 0, 0, 0, 0, command});
  t.push_back({"config", -2, 0, 0, 0, 0, config});
  t.push_back({"info", -1, 0, 0, 0, 0, info});
}

} // namespace karlton::server
