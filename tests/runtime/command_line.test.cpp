// runtime(argc, argv): CAF's and karlton's options from a program's command
// line reach the actor system and the cache defaults; a bad one is refused
// with an error that names it.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <caf/all.hpp>

#include "support/temp_dir.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>

using namespace karlton;
using namespace std::chrono_literals;

namespace {

// argv as main gets it: the program name first, then `args`.
class command_line {
public:
  explicit command_line(std::vector<std::string> args) : args_(std::move(args)) {
    args_.insert(args_.begin(), "app");
    for (auto& a : args_)
      ptrs_.push_back(a.data());
    ptrs_.push_back(nullptr);
  }
  int argc() const { return static_cast<int>(args_.size()); }
  char** argv() { return ptrs_.data(); }

private:
  std::vector<std::string> args_;
  std::vector<char*> ptrs_;
};

// The option_error a runtime made from `args` throws; fails the test if none.
option_error refusal_of(std::vector<std::string> args) {
  command_line cl{std::move(args)};
  try {
    runtime rt{cl.argc(), cl.argv()};
  } catch (const option_error& e) {
    return e;
  }
  FAIL("the runtime accepted the command line");
  return option_error{caf::error{}};
}

} // namespace

TEST_CASE("a runtime from a command line refuses an unknown option, naming it",
          "[runtime][options][command-line]") {
  auto e = refusal_of({"--karlton.max-entires=10"});
  CHECK(e.error() == errc::invalid_option);
  INFO(e.what());
  CHECK(std::string{e.what()}.find("'--karlton.max-entires=...'") != std::string::npos);
  CHECK(std::string{e.what()}.find("not_an_option") != std::string::npos);
  // An unknown name never shows its value: a misspelled secret is a secret.
  e = refusal_of({"--karlton.cluster.secert=hunter2xyz"});
  INFO(e.what());
  CHECK(std::string{e.what()}.find("--karlton.cluster.secert=...") != std::string::npos);
  CHECK(std::string{e.what()}.find("hunter2xyz") == std::string::npos);
}

TEST_CASE("a flag set false on the command line wins over the config file's true",
          "[runtime][options][command-line]") {
  // CAF 0.17 takes only a bare flag; `--flag=false` was dropped, so a
  // config file's `true` stayed (node.console, resp-protected, tls ...).
  testing::temp_dir dir{"config-file"};
  auto path = dir.file("app.ini");
  { std::ofstream{path} << "[karlton.cluster]\ntls=true\n"; }
  using args = std::vector<std::string>;
  for (auto [more, want] :
       {std::pair{args{"--karlton.cluster.tls=false"}, false},
        std::pair{args{"--karlton.cluster.tls=true"}, true},
        std::pair{args{"--karlton.cluster.port=0"}, true},
        // The last word counts, as for every option.
        std::pair{args{"--karlton.cluster.tls=false", "--karlton.cluster.tls=true"},
                  true},
        std::pair{args{"--karlton.cluster.tls=false", "--karlton.cluster.tls"}, true},
        std::pair{args{"--karlton.cluster.tls", "--karlton.cluster.tls=false"}, false}}) {
    more.insert(more.begin(), "--config-file=" + path);
    command_line cl{more};
    auto arg = more.back();
    runtime_config cfg;
    auto err = cfg.parse_command_line(cl.argc(), cl.argv());
    INFO(arg << ": " << describe(err));
    REQUIRE_FALSE(err);
    CHECK(caf::get_or(caf::content(cfg), "karlton.cluster.tls", !want) == want);
  }
}

TEST_CASE("a config file that is no bounded text file, or holds what CAF's reader "
          "mishandles, is refused before CAF reads it",
          "[runtime][options][command-line]") {
  testing::temp_dir dir{"config-file"};
  auto path = dir.file("app.ini");
  auto refused = [&](const std::string& file, const std::string& why) {
    auto e = refusal_of({"--config-file=" + file});
    INFO(e.what());
    CHECK(e.error() == errc::invalid_option);
    CHECK(std::string{e.what()}.find(why) != std::string::npos);
  };
  // CAF stops at a NUL as at the end: the password after it was dropped,
  // and the node served everyone.
  { std::ofstream{path} << "[node]\nresp-port=0\n" << '\0' << "requirepass=\"pw\"\n"; }
  refused(path, "a NUL byte at offset");
  // CAF's reader recurses per '[': 50,000 of them overflowed the stack.
  { std::ofstream{path} << "[karlton]\nx=" << std::string(65, '[') << "\n"; }
  refused(path, "nested over 64 deep");
  {
    std::ofstream{path} << "[karlton]\nx=" << std::string(64, '[') << std::string(64, ']')
                        << "\n";
  }
  refused(path, "karlton.x"); // deep enough to parse, and then not an option
  // CAF recursed per dot of a name too, and took '#' for no comment.
  {
    std::ofstream{path} << "["
                        << std::string(70, 'a').replace(1, 130, std::string(65, '.'))
                        << "]\n";
  }
  refused(path, "nested over 64 deep");
  { std::ofstream{path} << "[foo]\nx = [<a:b#c>, " << std::string(65, '[') << "\n"; }
  refused(path, "nested over 64 deep");
  // /dev/zero grew without bound (a FIFO nobody writes blocked the start
  // for ever; a pipe is now awaited 10 s: see the next test).
  refused("/dev/zero", "neither a regular file nor a pipe");
  refused(dir.path(), "neither a regular file nor a pipe");
  refused(dir.file("missing.ini"), "no such file");
  { std::ofstream{path} << "; " << std::string(1 << 20, 'x') << "\n"; }
  refused(path, "over 1048576 bytes");
  // Durations CAF's unit multiplication wrapped (5124096h became 25 min), in
  // any section, CAF's own too, in any of CAF's number forms.
  for (auto text :
       {"[karlton]\ndefault-ttl=5124096h\n", "[karlton]\ndefault-ttl = 0x4E2F40h\n",
        "[middleman]\nheartbeat-interval=5124096h\n",
        "node {\n  stats-interval = 5124096h\n}\n"}) {
    { std::ofstream{path} << text; }
    refused(path, "is beyond any duration");
  }
  { std::ofstream{path} << "[karlton]\ndefault-ttl=5124096h\n"; }
  refused(path, "line 2: 5124096h is beyond any duration");
  for (auto arg :
       {"--karlton.call-timeout=9223372037s", "--karlton.call-timeout= 5124096h",
        "--karlton.call-timeout=0b10011100010111101000000h"}) {
    auto e = refusal_of({arg});
    INFO(e.what());
    CHECK(std::string{e.what()}.find("beyond any duration") != std::string::npos);
  }
  // The largest that fits is read, and refused only by its range; an octal
  // number that fits is no overflow.
  for (auto arg :
       {"--karlton.call-timeout=9223372036s", "--karlton.call-timeout=03000000h"}) {
    auto e = refusal_of({arg});
    INFO(e.what());
    CHECK(std::string{e.what()}.find("beyond any duration") == std::string::npos);
  }
}

TEST_CASE("the config file CAF is given is the one checked, however it is named",
          "[runtime][options][command-line]") {
  // CAF found the path by its own rules (a `--caf#` prefix, the first of
  // two, quotes stripped) and opened it unchecked when karlton's reading
  // of the path found nothing there.
  testing::temp_dir dir{"config-file"};
  auto deep = dir.file("deep.ini");
  { std::ofstream{deep} << "[karlton]\nx=" << std::string(65, '[') << "\n"; }
  auto ok = dir.file("ok.ini");
  { std::ofstream{ok} << "[karlton]\nmax-entries=100\n"; }
  for (std::vector<std::string> args :
       {std::vector<std::string>{"--caf#config-file=" + deep},
        std::vector<std::string>{"--config-file=\"" + deep + "\""},
        std::vector<std::string>{"--config-file=" + deep, "--config-file=" + ok},
        std::vector<std::string>{"--config-file=" + ok, "--config-file=" + deep}}) {
    auto e = refusal_of(args);
    INFO(e.what());
    CHECK(e.error() == errc::invalid_option);
  }
  // A pipe is read to its end (`--config-file=<(make-config)` keeps secrets
  // off the disk), and checked as a file is.
  auto fifo = dir.file("fifo");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  std::thread writer{[&] { std::ofstream{fifo} << "[karlton]\nmax-entires=10\n"; }};
  auto e = refusal_of({"--config-file=" + fifo});
  writer.join();
  INFO(e.what());
  CHECK(std::string{e.what()}.find("karlton.max-entires") != std::string::npos);
}

TEST_CASE("a runtime from a command line refuses a setting out of range, naming it",
          "[runtime][options][command-line]") {
  // Before, only a few were checked here; the rest reached create_cache, or
  // nothing when the program's own options replaced them.
  for (auto [setting, option] :
       {std::pair{"--karlton.call-timeout=0s", "karlton.call-timeout"},
        {"--karlton.flush-interval=0s", "karlton.flush-interval"},
        {"--karlton.max-entries=99999999999", "karlton.max-entries"},
        {"--karlton.retry-base=1h", "karlton.retry-base, karlton.retry-max"},
        {"--karlton.beta=-1", "karlton.beta"},
        {"--karlton.default-ttl=-5s", "karlton.default-ttl"}}) {
    INFO(setting);
    auto e = refusal_of({setting});
    CHECK(e.error() == errc::invalid_option);
    INFO(e.what());
    CHECK(std::string{e.what()}.find(std::string{"option "} + option + ":") !=
          std::string::npos);
  }
}

TEST_CASE("a bad value of an option that may hold a secret is refused without showing it",
          "[runtime][options][command-line]") {
  auto e = refusal_of({"--karlton.cluster.secret=\"hunter2"}); // an unterminated string
  INFO(e.what());
  CHECK(e.error() == errc::invalid_option);
  CHECK(std::string{e.what()}.find("--karlton.cluster.secret=...") != std::string::npos);
  CHECK(std::string{e.what()}.find("hunter2") == std::string::npos);
}

TEST_CASE("dump-config shows secrets masked", "[runtime][options][command-line]") {
  runtime_config cfg;
  command_line cl{{"--karlton.cluster.secret=hunter2", "--karlton.max-entries=7"}};
  REQUIRE_FALSE(cfg.parse_command_line(cl.argc(), cl.argv()));
  auto dump = cfg.dump_content();
  CHECK(caf::get_or(dump, "karlton.cluster.secret", std::string{}) == "***");
  CHECK(caf::get_or(dump, "karlton.max-entries", size_t{0}) == 7);
  CHECK(caf::get_or(cfg.content, "karlton.cluster.secret", std::string{}) == "hunter2");
}

TEST_CASE("a misspelled key in the config file is refused and named while declared keys "
          "and CAF's are taken",
          "[runtime][options][command-line]") {
  testing::temp_dir dir{"config-file"};
  auto path = dir.file("app.ini");
  {
    std::ofstream{path} << "[karlton]\nmax-entries=100\nmax-entires=10\n"
                           "[karlton.cluster]\ntsl=true\n";
  }
  // Before, CAF 0.17 took both silently: a cache without its bound, links
  // without TLS, and nothing said.
  auto e = refusal_of({"--config-file=" + path});
  CHECK(e.error() == errc::invalid_option);
  INFO(e.what());
  CHECK(std::string{e.what()}.find("karlton.max-entires") != std::string::npos);
  CHECK(std::string{e.what()}.find("karlton.cluster.tsl") != std::string::npos);
  CHECK(std::string{e.what()}.find("karlton.max-entries,") == std::string::npos);
  // A declared key of the wrong type: an unquoted number for the cluster
  // secret was read as no secret at all. The value is never shown.
  { std::ofstream{path} << "[karlton.cluster]\nsecret=12345678\n"; }
  e = refusal_of({"--config-file=" + path});
  INFO(e.what());
  CHECK(std::string{e.what()}.find("karlton.cluster.secret (its value") !=
        std::string::npos);
  CHECK(std::string{e.what()}.find("12345678") == std::string::npos);
  // In a plain section CAF drops such a value altogether.
  { std::ofstream{path} << "[karlton]\ndefault-ttl=12345678\n"; }
  e = refusal_of({"--config-file=" + path});
  INFO(e.what());
  CHECK(std::string{e.what()}.find("karlton.default-ttl (its value") !=
        std::string::npos);
  // A section spelt in capitals is one of its own to CAF, read by nobody;
  // one named after an option CAF drops whole (the node's
  // "[node.requirepass]" left it without a password).
  { std::ofstream{path} << "[KARLTON]\nmax-entries=100\n"; }
  e = refusal_of({"--config-file=" + path});
  INFO(e.what());
  CHECK(std::string{e.what()}.find("KARLTON (sections are lowercase") !=
        std::string::npos);
  { std::ofstream{path} << "[karlton.max-entries]\nx = 1\n"; }
  e = refusal_of({"--config-file=" + path});
  INFO(e.what());
  CHECK(std::string{e.what()}.find("karlton.max-entries.x") != std::string::npos);
  { std::ofstream{path} << "[karlton]\nmax-entries=100\n[scheduler]\nmax-threads=1\n"; }
  // What CAF's INI reader takes is taken: comments after a section, spaces
  // in its brackets, maps and lists over several lines.
  {
    std::ofstream{path} << "[scheduler] ; threads\nmax-threads=1\n"
                           "[ karlton ]\nmax-entries=100\ncluster {\n  port = 0\n}\n"
                           "[node]\ncaches = [\n  \"a=b\",\n]\n";
  }
  {
    command_line multi{{"--config-file=" + path}};
    runtime_config cfg;
    auto err = cfg.parse_command_line(multi.argc(), multi.argv());
    INFO(describe(err));
    CHECK_FALSE(err);
  }
  { std::ofstream{path} << "[karlton]\nmax-entries=100\n[scheduler]\nmax-threads=1\n"; }
  command_line ok{{"--config-file=" + path}};
  runtime rt{ok.argc(), ok.argv()};
  CHECK(rt.default_options("users").max_entries == 100);
}

TEST_CASE("a config file CAF cannot parse is refused naming the file and the line",
          "[runtime][options][command-line]") {
  testing::temp_dir dir{"config-file"};
  auto path = dir.file("app.ini");
  // Before: "option: unexpected_newline", with no word of where.
  {
    std::ofstream{path} << "[karlton]\nmax-entries=100\n[node]\nrequirepass=\"hunter2\n";
  }
  auto e = refusal_of({"--config-file=" + path});
  INFO(e.what());
  CHECK(e.error() == errc::invalid_option);
  CHECK(std::string{e.what()}.find("config file '" + path +
                                   "', line 4: unexpected_newline") != std::string::npos);
  CHECK(std::string{e.what()}.find("hunter2") == std::string::npos); // no value shown
  { std::ofstream{path} << "[karlton]\nmax-entries=100\n  x y = 3\n"; }
  e = refusal_of({"--config-file=" + path});
  INFO(e.what());
  CHECK(std::string{e.what()}.find("line 3 column 5:") != std::string::npos); // the y
  { std::ofstream{path} << "\n[karlton]\n  x y = 3\n"; } // a first line empty
  e = refusal_of({"--config-file=" + path});
  INFO(e.what());
  CHECK(std::string{e.what()}.find("line 3 column 5:") != std::string::npos);
}

TEST_CASE("a runtime from a command line refuses a karlton value out of range, naming "
          "the option",
          "[runtime][options][command-line]") {
  auto e = refusal_of({"--karlton.policy=fifo"});
  CHECK(e.error() == errc::invalid_option);
  INFO(e.what());
  CHECK(std::string{e.what()}.find("karlton.policy") != std::string::npos);
  CHECK(std::string{e.what()}.find("fifo") != std::string::npos);
}

TEST_CASE("a runtime from a command line refuses a stray argument",
          "[runtime][options][command-line]") {
  auto e = refusal_of({"users"});
  INFO(e.what());
  CHECK(std::string{e.what()}.find("unexpected argument 'users'") != std::string::npos);
}

TEST_CASE("a CAF option on the command line reaches the runtime's actor system",
          "[runtime][options][command-line]") {
  // runtime_config's own default is one thread per core: 3 is the command line's.
  command_line cl{{"--scheduler.max-threads=3"}};
  runtime rt{cl.argc(), cl.argv()};
  CHECK_FALSE(rt.help_printed());
  CHECK(rt.system().scheduler().num_workers() == 3);
  // A cache of one shard per scheduler thread gets three.
  auto c = rt.create_cache("per-thread");
  REQUIRE(c);
  CHECK(c->shard_count() == 3);
}

TEST_CASE("a karlton option on the command line reaches the cache defaults",
          "[runtime][options][command-line]") {
  command_line cl{{"--karlton.max-entries=1234", "--karlton.default-ttl=250ms",
                   "--karlton.policy=lru", "--karlton.negative-ttl=0"}};
  runtime rt{cl.argc(), cl.argv()};
  auto defaults = rt.default_options("users");
  CHECK(defaults.max_entries == 1234);
  CHECK(defaults.policy == eviction_policy_kind::lru);
  auto c = rt.create_cache("users");
  REQUIRE(c);
  CHECK(c->options().max_entries == 1234);
  CHECK(c->options().default_ttl.duration() == 250ms);
}

TEST_CASE("a duration without a unit on the command line is refused with the hint",
          "[runtime][options][command-line]") {
  // Before, CAF's bare "unexpected_eof", where a config file said why.
  auto e = refusal_of({"--karlton.default-ttl=5"});
  INFO(e.what());
  CHECK(e.error() == errc::invalid_option);
  CHECK(std::string{e.what()}.find("'--karlton.default-ttl=5'") != std::string::npos);
  CHECK(std::string{e.what()}.find("a duration has a unit") != std::string::npos);
  e = refusal_of({"--karlton.max-entries=lots"}); // not a duration: no such hint
  INFO(e.what());
  CHECK(std::string{e.what()}.find("a duration has a unit") == std::string::npos);
}
