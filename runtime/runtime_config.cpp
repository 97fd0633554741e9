// runtime_config: the actor system config karlton's runtimes and karlton-node
// read their options with (CAF's command line and config file, checked).
#include <karlton/runtime/options.hpp>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/pec.hpp>
#include <caf/settings.hpp>

#include "runtime/config_file.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/messages/type_ids.hpp>

namespace karlton {

runtime_config::runtime_config() {
  register_types(*this);
  add_options(custom_options_);
  set("scheduler.max-threads", usable_cores());
  set("work-stealing.moderate-poll-attempts", size_t{0});
  // Clusters: the middleman carries the peers' traffic. Heartbeats let a
  // node notice a frozen peer (CAF-0.17.md: without them it never does);
  // every node must use the same setting.
  load<caf::io::middleman>();
  load<caf::openssl::manager>(); // TLS between nodes, when asked for
  set("middleman.heartbeat-interval", caf::timespan{std::chrono::milliseconds{500}});
  set("middleman.connection-timeout", caf::timespan{std::chrono::seconds{2}});
}

namespace {

// True if option `name` with `value` may hold a secret: the cluster secret, a
// password, a URI, or a store given as a URI or conninfo (not a file name).
bool may_hold_secret(const std::string& name, const std::string& value) {
  for (const char* word : {"secret", "pass", "uri"})
    if (name.find(word) != std::string::npos) return true;
  return name.find("store") != std::string::npos &&
         value.find_first_of(":=") != std::string::npos;
}

// "--name=value" with the value left out if it may hold a secret.
std::string without_secret(const std::string& arg) {
  auto eq = arg.find('=');
  if (eq == std::string::npos) return arg;
  auto name = arg.substr(0, eq);
  return may_hold_secret(name, arg.substr(eq + 1)) ? name + "=..." : arg;
}

// An unknown option as "--name=..." or "-x...": what follows its name may be
// a secret under a misspelled name.
std::string name_only(const std::string& arg) {
  if (arg.rfind("--", 0) != 0) return arg.substr(0, 2) + (arg.size() > 2 ? "..." : "");
  auto eq = arg.find('=');
  return eq == std::string::npos ? arg : arg.substr(0, eq) + "=...";
}

// CAF reports a bad command line as a parser error whose context holds the
// argument, and a bad config file as one whose context holds the line and
// column where its parser stopped; say where, and why.
caf::error clear_parse_error(const caf::error& err, const std::string& file_path,
                             const std::string& file_text,
                             const std::vector<std::string>& durations = {}) {
  if (err.category() != caf::atom("parser")) return err;
  auto code = static_cast<caf::pec>(err.code());
  std::string out = "option";
  if (err.context().match_elements<caf::settings>()) {
    const auto& where = err.context().get_as<caf::settings>(0);
    if (auto arg = caf::get_if<std::string>(&where, std::string{"argument"})) {
      // An unknown name says nothing of its value: a misspelled secret's
      // name (`secert`) holds a secret all the same.
      out += " '" +
             (code == caf::pec::not_an_option ? name_only(*arg) : without_secret(*arg)) +
             "'";
      // CAF says only where it stopped (`--karlton.default-ttl=5`: unexpected_eof).
      if (std::find(durations.begin(), durations.end(), *arg) != durations.end())
        return make_error(errc::invalid_option,
                          out + ": " + caf::to_string(code) +
                            " (a duration has a unit, as in 5s or 100ms)");
    } else if (auto line = caf::get_if<int64_t>(&where, std::string{"line"})) {
      // CAF counts a newline only when it moves past one, never the file's
      // first character (so a first empty line goes uncounted), and columns
      // from 2 after the first line. At a line's end it stopped on the next.
      auto at = *line + (!file_text.empty() && file_text.front() == '\n' ? 1 : 0);
      if (code == caf::pec::unexpected_newline && at > 1) --at;
      out = "config file '" + file_path + "', line " + std::to_string(at);
      if (code != caf::pec::unexpected_newline)
        if (auto column = caf::get_if<int64_t>(&where, std::string{"column"}))
          out += " column " + std::to_string(*line > 1 ? *column - 1 : *column);
    }
  }
  return make_error(errc::invalid_option, out + ": " + caf::to_string(code));
}

// True if some option lives in `top` or one of its sub-categories.
bool declares(const caf::config_option_set& opts, caf::string_view top) {
  for (const auto& opt : opts) {
    auto cat = opt.category();
    if (cat.compare(0, top.size(), top) == 0 &&
        (cat.size() == top.size() || cat[top.size()] == '.'))
      return true;
  }
  return false;
}

// The keys under `category` that no option declares. CAF 0.17 refuses an
// unknown option on the command line but takes one in a config file
// silently: `requirepas=...` left a node open to every client, `tsl=true`
// its links in the clear.
void find_undeclared(const caf::config_option_set& opts, const caf::settings& xs,
                     const std::string& category, std::vector<std::string>& out) {
  for (const auto& kvp : xs) {
    auto name = category + "." + kvp.first;
    if (auto opt = opts.qualified_name_lookup(category, kvp.first)) {
      // Declared, but of the wrong type: CAF keeps `secret=12345678` in a
      // nested section as a number, which a string option reads as unset.
      if (opt->check(kvp.second))
        out.push_back(name + " (its value is not of the option's type)");
      continue;
    }
    if (auto sub = caf::get_if<caf::settings>(&kvp.second))
      find_undeclared(opts, *sub, name, out);
    else
      out.push_back(std::move(name));
  }
}

// Secrets in a dump of the settings become "***".
void mask_secrets(caf::settings& xs) {
  for (auto& kvp : xs) {
    if (auto sub = caf::get_if<caf::settings>(&kvp.second)) {
      mask_secrets(*sub);
      continue;
    }
    auto str = caf::get_if<std::string>(&kvp.second);
    if (str != nullptr && !str->empty() && may_hold_secret(kvp.first, *str))
      kvp.second = std::string{"***"};
  }
}

} // namespace

caf::settings runtime_config::dump_content() const {
  auto out = caf::actor_system_config::dump_content();
  mask_secrets(out);
  return out;
}

caf::error runtime_config::check_declared() const {
  std::vector<std::string> unknown;
  for (std::string top : {"karlton", "node"}) {
    if (!declares(custom_options_, top)) continue;
    if (auto sub = caf::get_if<caf::settings>(&content, top))
      find_undeclared(custom_options_, *sub, top, unknown);
    // "[NODE]" is a section of its own to CAF, which nobody reads: a
    // `requirepass` there left a node open.
    for (const auto& kvp : content)
      if (kvp.first != top && config_file::lowercase(kvp.first) == top)
        unknown.push_back(kvp.first + " (sections are lowercase: " + top + ")");
  }
  // A declared key whose value CAF's INI reader refused as of the wrong type
  // (an unquoted number for a string in [node]) is dropped from `content`
  // with no error: `requirepass=12345678` left the node without a password.
  for (auto& key : config_file::keys(config_text_))
    if (caf::get_if(&content, key) == nullptr &&
        std::find_if(unknown.begin(), unknown.end(), [&](const std::string& u) {
          return u == key || u.rfind(key + " ", 0) == 0;
        }) == unknown.end())
      unknown.push_back(key + " (its value is not of the option's type)");
  if (unknown.empty()) return caf::none;
  std::string names;
  for (const auto& n : unknown)
    names += (names.empty() ? "" : ", ") + n;
  return make_error(errc::invalid_option,
                    "in the config file, not an option or not of its type: " + names +
                      " (misspelled? strings are quoted, durations have a unit, "
                      "reals a decimal point)");
}

caf::error runtime_config::parse_command_line(int argc, char** argv) {
  std::vector<std::string> args;
  std::vector<const caf::config_option*> turned_off; // by `--flag=false`, last word
  std::vector<std::string> durations;                // arguments of timespan options
  bool named_file = false;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h" || arg == "-?") arg = "--long-help";
    if (i == 0 || arg.rfind("--", 0) != 0) {
      args.push_back(std::move(arg));
      continue;
    }
    auto eq = arg.find('=');
    auto name = arg.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    if (name.rfind("caf#", 0) == 0) name.erase(0, 4); // CAF's prefix for its own
    auto opt = custom_options_.cli_long_name_lookup(name);
    auto val = eq == std::string::npos ? std::string{} : arg.substr(eq + 1);
    if (name == "config-file" && eq != std::string::npos) {
      // Read here and handed to CAF as text; CAF never opens a path, so no
      // spelling of it can reach a file these checks did not see.
      if (named_file)
        return make_error(errc::invalid_option, "option --config-file: given twice");
      if (val.empty() || val.front() == '"')
        return make_error(errc::invalid_option,
                          "option --config-file: give a path, unquoted");
      config_file_path = val;
      named_file = true;
    } else if (opt && opt->is_flag()) {
      // CAF 0.17 takes only the bare flag; false is set after the config
      // file, so that the command line wins as for every other option, and
      // a later true undoes it: the last word counts.
      turned_off.erase(std::remove(turned_off.begin(), turned_off.end(), opt),
                       turned_off.end());
      if (val == "false") {
        turned_off.push_back(opt);
        continue;
      }
      if (val == "true") arg.erase(eq);
    } else if (opt && opt->type_name() == "timespan") {
      if (val == "0") arg += 's';
      durations.push_back(arg);
      if (config_file::duration_overflows(val))
        return make_error(errc::invalid_option,
                          "option '" + arg + "': beyond any duration");
    }
    args.push_back(std::move(arg));
  }
  std::vector<char*> arg_ptrs;
  for (auto& a : args)
    arg_ptrs.push_back(a.data());
  auto text = config_file::read(config_file_path, named_file);
  if (!text) return std::move(text.error());
  config_text_ = *text ? std::move(**text) : std::string{};
  std::istringstream ini{config_text_};
  if (auto err = parse(static_cast<int>(arg_ptrs.size()), arg_ptrs.data(), ini))
    return clear_parse_error(err, config_file_path, config_text_, durations);
  // Not through `set`: CAF 0.17 finds "karlton.cluster.tls" under the
  // category "karlton" only.
  for (auto opt : turned_off) {
    caf::config_value off{false};
    opt->store(off);
    auto full = opt->full_name();
    if (opt->category() == "global")
      content[std::string{opt->long_name().data(), opt->long_name().size()}] = off;
    else
      caf::put(content, caf::string_view{full.data(), full.size()}, false);
  }
  return check_declared();
}

option_error::option_error(caf::error err)
  : std::invalid_argument(describe(err)), err_(std::move(err)) {}

} // namespace karlton
