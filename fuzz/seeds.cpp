// Writes a small valid corpus for each fuzz target into `<dir>/<target>/`:
// console lines, journal files written by the journal itself, one serialized
// value of each message type (prefixed with its type's index, as the messages
// fuzzer reads it), Redis requests, HTTP request heads and change-trigger
// payloads. scripts/fuzz runs it before the fuzzers.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/message.hpp>

#include "fuzz/message_types.hpp"
#include "stores/journal.hpp"
#include "stores/journal_records.hpp"
#include <karlton/messages/cluster.hpp>
#include <karlton/messages/errors.hpp>
#include <karlton/messages/stats.hpp>

using namespace karlton;
namespace fs = std::filesystem;

namespace {

void write(const fs::path& file, const std::string& bytes) {
  std::ofstream out{file, std::ios::binary | std::ios::trunc};
  out << bytes;
  if (!out) {
    std::fprintf(stderr, "karlton-fuzz-seeds: cannot write %s\n", file.c_str());
    std::exit(1);
  }
}

// Writes each input as <dir>/seed-<n>.
template <class Inputs>
void write_all(const fs::path& dir, const Inputs& inputs) {
  int i = 0;
  for (const auto& in : inputs)
    write(dir / ("seed-" + std::to_string(i++)), in);
}

void console_seeds(const fs::path& dir) {
  const char* inputs[] = {
    "put users u1 John Smith\nget users u1\nerase users u1\nget users u1",
    "load loaded known1\nload loaded other\nget loaded known1",
    "putdep users k tag1,event:e1,other v\ntag tag1\nemit e1\nclear users",
    "members\nstats\nping\nquit",
    "get nosuch k\nput users\nfrobnicate\r",
  };
  write_all(dir, inputs);
}

// The first byte is the resp_parser fuzzer's split seed (and, with its top
// bit, "not authenticated"); the rest is what a client sends.
void resp_seeds(const fs::path& dir) {
  const std::string inputs[] = {
    std::string{"\x01"} + "*3\r\n$3\r\nSET\r\n$5\r\nkey:1\r\n$5\r\nhello\r\n" +
      "*2\r\n$3\r\nGET\r\n$5\r\nkey:1\r\n*2\r\n$3\r\nDEL\r\n$5\r\nkey:1\r\n",
    std::string{"\x02"} + "PING\r\n\r\nPING hello\n",
    std::string{"\x03"} + "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n",
    std::string{"\x04"} + "set k \"a\\x41 \\\"b\\n\" 'it\\'s'\r\n",
    std::string{"\x05"} +
      "*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$0\r\n\r\n",
    std::string{"\x86"} + "*2\r\n$4\r\nAUTH\r\n$6\r\nsecret\r\n*1\r\n$100\r\n",
    std::string{"\x07"} + "*3\r\n$4\r\nMSET\r\n$1\r\na\r\n$2000\r\n",
  };
  write_all(dir, inputs);
}

// The first byte seeds the resp_session fuzzer's split points (its top bit:
// a server with a password); the rest is a client's pipeline.
void resp_session_seeds(const fs::path& dir) {
  auto cmd = [](std::initializer_list<std::string> args) {
    std::string out = "*" + std::to_string(args.size()) + "\r\n";
    for (const auto& a : args)
      out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
    return out;
  };
  const std::string inputs[] = {
    "\x01" + cmd({"SET", "k", "v"}) + cmd({"GET", "k"}) + cmd({"DEL", "k"}) +
      cmd({"GET", "k"}),
    "\x02" + cmd({"HELLO", "3"}) + cmd({"GET", "nope"}) + cmd({"MGET", "a", "b"}) +
      cmd({"CONFIG", "GET", "save"}),
    "\x03" + cmd({"SELECT", "1"}) + cmd({"KARLTON.LOAD", "known1"}) +
      cmd({"KARLTON.LOAD", "other"}) + cmd({"GET", "known1"}) + cmd({"DBSIZE"}),
    "\x04" + cmd({"MSET", "a", "1", "b", "2"}) + cmd({"EXISTS", "a", "b", "c"}) +
      cmd({"TTL", "a"}) + cmd({"SET", "t", "v", "PX", "100"}) + cmd({"PTTL", "t"}),
    "\x05" + cmd({"KARLTON.PUT", "p", "v", "EVENTS", "1", "e", "ON", "1", "tag"}) +
      cmd({"KARLTON.INVALIDATE", "tag"}) + cmd({"KARLTON.EMIT", "e"}) +
      cmd({"KARLTON.GRAPH", "DOT"}) + cmd({"FLUSHDB"}),
    "\x86" + cmd({"PING"}) + cmd({"AUTH", "wrong"}) + cmd({"AUTH", "secret"}) +
      cmd({"PING"}),
    "\x07" + cmd({"CLIENT", "SETNAME", "x"}) + cmd({"CLIENT", "ID"}) +
      cmd({"COMMAND", "COUNT"}) + cmd({"INFO"}) + cmd({"QUIT"}) + cmd({"PING"}),
    "\x08PING\r\nECHO hi\r\n*1\r\n$-5\r\n",
  };
  write_all(dir, inputs);
}

// The first byte is the http_request fuzzer's split seed and head limit
// (64 + 16 x byte); the rest is what a scraper or a stranger sends.
void http_seeds(const fs::path& dir) {
  const std::string inputs[] = {
    std::string{"\xff"} + "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9121\r\n" +
      "User-Agent: Prometheus/2.45.0\r\nAccept: text/plain;version=0.0.4\r\n" +
      "Authorization: Basic ZGVmYXVsdDpzZWNyZXQ=\r\n\r\n",
    std::string{"\x40"} + "GET /metrics?x=1 HTTP/1.0\n\nbody",
    std::string{"\x02"} +
      "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd",
    std::string{"\x01"} +
      "GET / HTTP/1.1\r\nHost: x\r\nX-Fill: " + std::string(300, 'a') + "\r\n\r\n",
    std::string{"\x10"} + "GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
  };
  write_all(dir, inputs);
}

// What the change triggers send (stores/pg_trigger_sql.cpp), one of each
// form, and a row with an empty key.
void pg_payload_seeds(const fs::path& dir) {
  const char* inputs[] = {
    "r 741 1 public.users 757365725f313233",
    "r 741 2 public.users ",
    "l 741 3 app.sessions",
    "e 741 3 1764633600123456",
    "t 742 public.users",
    "R public.users",
  };
  write_all(dir, inputs);
}

void journal_seeds(const fs::path& dir) {
  auto file = (dir / "seed-journal").string();
  fs::remove(file);
  {
    auto j = journal::open(file, "fuzz");
    if (!j) {
      std::fprintf(stderr, "karlton-fuzz-seeds: %s\n", describe(j.error()).c_str());
      std::exit(1);
    }
    std::vector<journal_write> batch{{1, {"k1", std::string{"v1"}}},
                                     {2, {"k2", std::nullopt}},
                                     {3, {"", std::string{}}},
                                     {4, {"key with spaces", std::string(100, 'x')}}};
    // The second batch rides on a stored mark of the first's writes 1 and 2.
    std::vector<journal_write> later{{5, {"k1", std::string{"v5"}}}};
    auto err = j->append(batch);
    if (!err) err = j->append(later, {1, 2});
    if (!err) err = j->mark_stored({5});
    if (err) {
      std::fprintf(stderr, "karlton-fuzz-seeds: %s\n", describe(err).c_str());
      std::exit(1);
    }
  }
  write(dir / "seed-empty", "");
  // The same records without the header: a journal of formats 1-2.
  std::ifstream in{file, std::ios::binary};
  std::string bytes{std::istreambuf_iterator<char>{in}, {}};
  write(dir / "seed-legacy",
        bytes.substr(journal_records::encode_file_header("fuzz").size()));
}

// One valid value per type; default-constructed unless a fuller one helps.
template <class T>
T sample() {
  return T{};
}

template <>
value sample<value>() {
  return value::make("key", "bytes");
}

template <>
invalidation sample<invalidation>() {
  return invalidation{invalidation_kind::event, "users", "e1", "data",
                      1'700'000'000'000'000'000};
}

template <>
std::vector<invalidation> sample<std::vector<invalidation>>() {
  return {sample<invalidation>(),
          invalidation{invalidation_kind::key, "users", "k", "", 5}};
}

template <>
invalidation_batch sample<invalidation_batch>() {
  return invalidation_batch{"node-a", 7, 100, sample<std::vector<invalidation>>()};
}

template <>
member_info sample<member_info>() {
  return member_info{"node-a", "127.0.0.1", 4242, 7};
}

template <>
std::vector<member_info> sample<std::vector<member_info>>() {
  return {sample<member_info>(), member_info{"node-b", "127.0.0.1", 4243, 8}};
}

template <>
age_histogram sample<age_histogram>() {
  age_histogram h;
  for (uint32_t ms : {1u, 20u, 300u, 5000u})
    h.record(ms);
  return h;
}

template <>
cache_stats sample<cache_stats>() {
  cache_stats s;
  s.hits = 3;
  s.hit_age = sample<age_histogram>();
  return s;
}

template <>
peer_stats sample<peer_stats>() {
  peer_stats s;
  s.members = 2;
  s.recent_delays_us = {10, 20, 30};
  return s;
}

template <>
caf::message sample<caf::message>() {
  return caf::make_message(batch_atom::value, sample<invalidation_batch>(),
                           link_tag{1, std::string(32, 'm')});
}

void message_seeds(const fs::path& dir) {
  caf::actor_system_config cfg;
  register_types(cfg);
  caf::actor_system sys{cfg};
  for (size_t i = 0; i < fuzzing::type_count; ++i)
    fuzzing::visit_type(i, [&](auto t) {
      auto x = sample<typename decltype(t)::type>();
      std::vector<char> buf{static_cast<char>(i)};
      caf::binary_serializer sink{sys, buf};
      if (auto err = sink(x)) {
        std::fprintf(stderr, "karlton-fuzz-seeds: cannot serialize type %zu: %s\n", i,
                     sys.render(err).c_str());
        std::exit(1);
      }
      write(dir / ("seed-" + std::to_string(i)), std::string{buf.begin(), buf.end()});
    });
}

// The files runtime/cores.cpp reads, one of each form.
void cgroup_seeds(const fs::path& dir) {
  const char* inputs[] = {
    "max 100000\n",
    "150000 100000\n",
    "-1\n100000\n",
    "0::/system.slice/karlton.service\n",
    "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n",
    "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup "
    "rw,cpu,cpuacct\n"
    "40 30 0:37 /docker/abc /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
  };
  write_all(dir, inputs);
}

// Config files of the forms the runtime takes, and one of each refusal.
void config_file_seeds(const fs::path& dir) {
  const char* inputs[] = {
    "[karlton]\nmax-entries=100\ndefault-ttl=5min\n",
    "[scheduler] ; threads\nmax-threads=1\n[ karlton ]\ncluster {\n  port = 0\n}\n",
    "[karlton.cluster]\nsecret=\"s3cret\"\nseeds=[\"127.0.0.1:7001\",\n]\n",
    "[karlton]\ndefault-ttl=5124096h\n",
    "[KARLTON]\nmax-entires=1\n",
  };
  write_all(dir, inputs);
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: karlton-fuzz-seeds <dir>\n");
    return 2;
  }
  fs::path dir = argv[1];
  for (auto* target : {"console", "journal", "messages", "resp_parser", "resp_session",
                       "http_request", "pg_payload", "cgroup", "config_file"})
    fs::create_directories(dir / target);
  console_seeds(dir / "console");
  journal_seeds(dir / "journal");
  message_seeds(dir / "messages");
  resp_seeds(dir / "resp_parser");
  resp_session_seeds(dir / "resp_session");
  http_seeds(dir / "http_request");
  pg_payload_seeds(dir / "pg_payload");
  cgroup_seeds(dir / "cgroup");
  config_file_seeds(dir / "config_file");
  return 0;
}
