#include "stores/pg_connection.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstring>
#include <random>
#include <thread>

#include "base/backoff.hpp"
#include <karlton/messages/errors.hpp>

namespace karlton::pg {

namespace {

void put_be32(std::string& out, uint32_t v) {
  char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
               static_cast<char>(v >> 8), static_cast<char>(v)};
  out.append(b, 4);
}

std::string percent_encoded(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// The password as written between "user:" and "@" of a URI, which may be
// percent-encoded in a way of its own (libpq decodes any %XX).
std::string uri_password(const std::string& uri) {
  auto scheme = uri.find("://");
  if (scheme == std::string::npos) return {};
  auto start = scheme + 3;
  auto at = uri.find('@', start);
  auto slash = uri.find('/', start);
  if (at == std::string::npos || (slash != std::string::npos && slash < at)) return {};
  auto colon = uri.find(':', start);
  if (colon == std::string::npos || colon > at) return {};
  return uri.substr(colon + 1, at - colon - 1);
}

// libpq's messages span lines ("...\n\tThis probably means..."): one line,
// single spaces, for logs.
std::string one_line(const std::string& s) {
  std::string out;
  for (char c : s) {
    bool space = c == '\n' || c == '\t' || c == ' ' || c == '\r';
    if (!space)
      out += c;
    else if (!out.empty() && out.back() != ' ')
      out += ' ';
  }
  while (!out.empty() && out.back() == ' ')
    out.pop_back();
  return out;
}

// libpq's message about a URI or conninfo that does not parse quotes parts
// of it, which may hold a password however it was written ("...?password=x",
// a conninfo string): every quoted part goes, unless it is the name of one of
// libpq's connection options or of a parameter `input` gives ("name=").
std::string without_quoted_input(const std::string& msg, const std::string& input) {
  std::vector<std::string> keywords;
  if (auto* defaults = PQconndefaults()) {
    for (auto* o = defaults; o->keyword != nullptr; ++o)
      keywords.emplace_back(o->keyword);
    PQconninfoFree(defaults);
  }
  std::string out;
  size_t pos = 0;
  while (pos < msg.size()) {
    auto open = msg.find('"', pos);
    auto close = open == std::string::npos ? open : msg.find('"', open + 1);
    if (close == std::string::npos) {
      // An unmatched quote: everything after it is input.
      out += msg.substr(pos, open == std::string::npos ? std::string::npos : open - pos);
      if (open != std::string::npos) out += "\"...\"";
      break;
    }
    out += msg.substr(pos, open - pos);
    auto quoted = msg.substr(open + 1, close - open - 1);
    bool keyword =
      std::find(keywords.begin(), keywords.end(), quoted) != keywords.end() ||
      (!quoted.empty() && quoted.size() <= 63 &&
       std::all_of(quoted.begin(), quoted.end(),
                   [](char c) {
                     return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
                   }) &&
       input.find(quoted + "=") != std::string::npos); // a parameter's name
    out += keyword ? "\"" + quoted + "\"" : std::string{"\"...\""};
    pos = close + 1;
  }
  return out;
}

} // namespace

bool valid_identifier(std::string_view name) noexcept {
  if (name.empty() || name.size() > 63) return false;
  auto lower = [](char c) { return (c >= 'a' && c <= 'z') || c == '_'; };
  if (!lower(name[0])) return false;
  return std::all_of(name.begin(), name.end(),
                     [&](char c) { return lower(c) || (c >= '0' && c <= '9'); });
}

std::string quote(std::string_view name) {
  return "\"" + std::string{name} + "\"";
}

std::string redact(std::string text, const std::vector<std::string>& secrets) {
  for (auto& secret : secrets) {
    if (secret.empty()) continue;
    for (auto& form : {secret, percent_encoded(secret)}) {
      for (auto pos = text.find(form); pos != std::string::npos;
           pos = text.find(form, pos + 3))
        text.replace(pos, form.size(), "***");
    }
  }
  return text;
}

std::string bytea_array(const std::vector<const std::string*>& items) {
  constexpr uint32_t bytea_oid = 17;
  std::string out;
  size_t total = 20;
  for (auto* item : items)
    total += 4 + item->size();
  out.reserve(total);
  put_be32(out, 1); // dimensions
  put_be32(out, 0); // no NULLs
  put_be32(out, bytea_oid);
  put_be32(out, static_cast<uint32_t>(items.size()));
  put_be32(out, 1); // lower bound
  for (auto* item : items) {
    put_be32(out, static_cast<uint32_t>(item->size()));
    out += *item;
  }
  return out;
}

caf::expected<conn_params> parse(const postgres_options& opts,
                                 const std::string& application_name) {
  conn_params p;
  p.secrets.push_back(uri_password(opts.uri));
  if (opts.uri.size() > 4096)
    return make_error(errc::invalid_option, "postgres uri: longer than 4096 bytes");
  if (opts.uri.find('\0') != std::string::npos ||
      opts.uri.find('\n') != std::string::npos)
    return make_error(errc::invalid_option, "postgres uri: holds a NUL or a newline");
  // libpq splits "user:pa@ss@host" at the first '@': the rest of the password
  // would become the host, and appear in every connection error.
  if (auto scheme = opts.uri.find("://"); scheme != std::string::npos) {
    auto authority =
      opts.uri.substr(scheme + 3, opts.uri.find('/', scheme + 3) - scheme - 3);
    if (std::count(authority.begin(), authority.end(), '@') > 1)
      return make_error(
        errc::invalid_option,
        "postgres uri: more than one '@' before the host; write an '@' of "
        "the user or password as %40");
  }
  char* err = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(opts.uri.c_str(), &err);
  if (parsed == nullptr) {
    std::string msg = err ? one_line(err) : "out of memory";
    PQfreemem(err);
    return make_error(errc::invalid_option,
                      "postgres uri does not parse: " +
                        redact(without_quoted_input(msg, opts.uri), p.secrets));
  }
  std::string host, hostaddr, port, db, user;
  for (auto* o = parsed; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    std::string key = o->keyword;
    if (key == "password")
      p.secrets.push_back(o->val);
    else if (key == "host")
      host = o->val;
    else if (key == "hostaddr")
      hostaddr = o->val;
    else if (key == "port")
      port = o->val;
    else if (key == "dbname")
      db = o->val;
    else if (key == "user")
      user = o->val;
  }
  PQconninfoFree(parsed);
  auto env = [](const char* name, std::string fallback) {
    const char* v = std::getenv(name);
    return v && *v ? std::string{v} : fallback;
  };
  if (host.empty()) host = hostaddr.empty() ? env("PGHOST", "localhost") : hostaddr;
  if (port.empty()) port = env("PGPORT", "5432");
  if (db.empty()) db = env("PGDATABASE", user.empty() ? env("PGUSER", "") : user);
  p.where = redact(host + ":" + port + "/" + db, p.secrets);
  auto seconds = std::chrono::ceil<std::chrono::seconds>(opts.connect_timeout).count();
  std::vector<std::pair<std::string, std::string>> defaults{
    {"application_name", application_name},
    {"connect_timeout", std::to_string(std::max<int64_t>(seconds, 1))},
    {"keepalives", "1"},
    {"keepalives_idle", "5"},
    {"keepalives_interval", "2"},
    {"keepalives_count", "3"},
    {"tcp_user_timeout", "10000"},
    {"dbname", opts.uri}, // expanded (expand_dbname = 1); last, so it wins
  };
  for (auto& [k, v] : defaults) {
    p.keys.push_back(k);
    p.values.push_back(v);
  }
  return p;
}

conn_ptr connect(const conn_params& params, std::string& why) {
  std::vector<const char*> keys, values;
  for (size_t i = 0; i < params.keys.size(); ++i) {
    keys.push_back(params.keys[i].c_str());
    values.push_back(params.values[i].c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  conn_ptr conn{PQconnectdbParams(keys.data(), values.data(), 1)};
  if (!conn) {
    why = "out of memory";
    return nullptr;
  }
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    why = redact(one_line(PQerrorMessage(conn.get())), params.secrets);
    return nullptr;
  }
  // The server's notices ("trigger ... does not exist, skipping" from the
  // DDL on every open) would go to the service's stderr, libpq's default;
  // failures reach the caller as errors anyway.
  PQsetNoticeProcessor(
    conn.get(), [](void*, const char*) {}, nullptr);
  return conn;
}

std::string describe(PGconn* conn, const PGresult* res, const conn_params& params) {
  std::string text;
  const char* state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  const char* primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
  if (state && primary)
    text = std::string{state} + " " + primary;
  else if (res && *PQresultErrorMessage(res))
    text = PQresultErrorMessage(res);
  else if (conn)
    text = PQerrorMessage(conn);
  if (text.empty()) text = "no answer (out of memory?)";
  return redact(one_line(text), params.secrets);
}

bool refused(const PGresult* res) noexcept {
  const char* state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  if (state == nullptr) return false;
  // Data exceptions (22: a value too long, bad bytes), integrity constraints
  // (23: CHECK, NOT NULL, a foreign key), program limits (54: an index row
  // over its 2,704 bytes), a trigger's RAISE EXCEPTION (P0001).
  return std::strncmp(state, "22", 2) == 0 || std::strncmp(state, "23", 2) == 0 ||
         std::strncmp(state, "54", 2) == 0 || std::strcmp(state, "P0001") == 0;
}

bool refused_at_commit(const PGresult* res) noexcept {
  const char* state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  return state != nullptr &&
         (std::strncmp(state, "23", 2) == 0 || std::strcmp(state, "P0001") == 0);
}

bool lost(PGconn* conn, const PGresult* res) noexcept {
  if (conn == nullptr || PQstatus(conn) == CONNECTION_BAD) return true;
  const char* state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  if (state == nullptr) return res == nullptr;
  return std::strncmp(state, "08", 2) == 0 || std::strcmp(state, "57P01") == 0 ||
         std::strcmp(state, "57P02") == 0 || std::strcmp(state, "57P03") == 0;
}

// -- backoff ------------------------------------------------------------------

std::optional<std::string> backoff::refuse(clock::time_point now) const {
  std::lock_guard<std::mutex> guard{mtx_};
  if (failures_ == 0 || now >= next_attempt_) return std::nullopt;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(next_attempt_ - now).count();
  return "unreachable (" + last_error_ + "); next attempt in " + std::to_string(ms) +
         " ms";
}

void backoff::failed(clock::time_point now, std::string why) {
  std::lock_guard<std::mutex> guard{mtx_};
  ++failures_;
  auto delay = doubled_wait(base_, max_, failures_);
  thread_local std::minstd_rand rng{std::random_device{}()};
  next_attempt_ =
    now + std::chrono::duration_cast<clock::duration>(equal_jitter(delay, rng));
  last_error_ = std::move(why);
}

void backoff::succeeded() {
  std::lock_guard<std::mutex> guard{mtx_};
  failures_ = 0;
}

// -- pool ---------------------------------------------------------------------

pool::lease::lease(lease&& other) noexcept
  : owner_(other.owner_), conn_(std::move(other.conn_)), fresh_(other.fresh_),
    broken_(other.broken_) {
  other.owner_ = nullptr;
}

pool::lease& pool::lease::operator=(lease&& other) noexcept {
  if (this != &other) {
    if (owner_ && conn_) owner_->give_back(std::move(conn_), broken_);
    owner_ = other.owner_;
    conn_ = std::move(other.conn_);
    fresh_ = other.fresh_;
    broken_ = other.broken_;
    other.owner_ = nullptr;
  }
  return *this;
}

pool::lease::~lease() {
  if (owner_ && conn_) owner_->give_back(std::move(conn_), broken_);
}

pool::pool(const conn_params& params, uint32_t size, caf::timespan wait,
           std::shared_ptr<backoff> retry, setup on_connect)
  : params_(params), size_(size), wait_(wait), retry_(std::move(retry)),
    on_connect_(std::move(on_connect)) {}

pool::~pool() = default;

std::optional<pool::lease> pool::borrow(std::string& why) {
  std::unique_lock<std::mutex> guard{mtx_};
  auto deadline = backoff::clock::now() + wait_;
  for (;;) {
    if (!idle_.empty()) {
      lease l;
      l.owner_ = this;
      l.conn_ = std::move(idle_.back());
      idle_.pop_back();
      lend(l.conn_.get());
      return l;
    }
    if (open_ < size_) {
      if (auto refused = retry_->refuse(backoff::clock::now())) {
        why = *refused;
        return std::nullopt;
      }
      ++open_;
      guard.unlock();
      auto conn = connect(params_, why);
      std::string setup_failed;
      if (conn && on_connect_) setup_failed = on_connect_(conn.get());
      if (!conn || !setup_failed.empty()) {
        if (conn)
          why = setup_failed;
        else
          retry_->failed(backoff::clock::now(), why);
        guard.lock();
        --open_;
        returned_.notify_one();
        return std::nullopt;
      }
      retry_->succeeded();
      lease l;
      l.owner_ = this;
      l.conn_ = std::move(conn);
      l.fresh_ = true;
      guard.lock();
      lend(l.conn_.get());
      return l;
    }
    if (returned_.wait_until(guard, deadline) == std::cv_status::timeout &&
        idle_.empty() && open_ >= size_) {
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(wait_).count();
      why = "all " + std::to_string(size_) + " connections busy for " +
            std::to_string(ms) + " ms";
      return std::nullopt;
    }
  }
}

uint32_t pool::open_count() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return open_;
}

struct pool::cancel_handle {
  explicit cancel_handle(PGcancel* c) : cancel(c) {}
  ~cancel_handle() { PQfreeCancel(cancel); }
  cancel_handle(const cancel_handle&) = delete;
  cancel_handle& operator=(const cancel_handle&) = delete;
  PGcancel* cancel;
  std::atomic<bool> sending{false};
};

void pool::lend(PGconn* conn) noexcept {
  try {
    auto handle = std::make_shared<cancel_handle>(nullptr);
    lent_.reserve(lent_.size() + 1);
    handle->cancel = PQgetCancel(conn); // nothing throws after it
    lent_.emplace_back(conn, std::move(handle));
  } catch (...) { // no memory: this one cannot be cancelled
  }
}

void pool::cancel_lent() noexcept {
  std::vector<std::shared_ptr<cancel_handle>> to_send;
  try {
    std::lock_guard<std::mutex> guard{mtx_};
    to_send.reserve(lent_.size()); // so nothing below throws under the lock
    for (auto& l : lent_)
      if (l.second->cancel != nullptr && !l.second->sending.exchange(true))
        to_send.push_back(l.second);
  } catch (...) { // no memory: the next call tries again
    return;
  }
  for (auto& h : to_send)
    try {
      // Detached: shutdown does not wait for it, and it keeps the PGcancel
      // alive after the connection went back.
      std::thread{[h] {
        char why[256];
        PQcancel(h->cancel, why, sizeof why); // best effort
        h->sending = false;
      }}.detach();
    } catch (...) { // no thread: the next call tries again
      h->sending = false;
    }
}

void pool::give_back(conn_ptr conn, bool broken) noexcept {
  std::vector<conn_ptr> dropped;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = std::find_if(lent_.begin(), lent_.end(),
                          [&](const auto& l) { return l.first == conn.get(); });
    if (i != lent_.end()) lent_.erase(i); // a cancel being sent keeps its handle
    if (broken || PQtransactionStatus(conn.get()) != PQTRANS_IDLE) {
      dropped.push_back(std::move(conn));
      if (broken) {
        for (auto& c : idle_)
          dropped.push_back(std::move(c));
        idle_.clear();
      }
      open_ -= static_cast<uint32_t>(dropped.size());
    } else {
      idle_.push_back(std::move(conn));
    }
  }
  returned_.notify_all();
  // PQfinish (a network write) outside the lock.
}

} // namespace karlton::pg
