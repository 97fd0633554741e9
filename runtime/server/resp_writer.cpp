#include "runtime/server/resp_writer.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>

namespace karlton::server {

namespace {

void append_number(std::string& out, int64_t n) {
  char buf[24];
  auto res = std::to_chars(buf, buf + sizeof(buf), n);
  out.append(buf, static_cast<size_t>(res.ptr - buf));
}

void append_one_line(std::string& out, std::string_view text) {
  size_t from = out.size();
  out.append(text);
  for (size_t i = from; i < out.size(); ++i)
    if (out[i] == '\r' || out[i] == '\n') out[i] = ' ';
}

} // namespace

void reply_writer::header(char type, size_t n) {
  out_.push_back(type);
  append_number(out_, static_cast<int64_t>(n));
  out_.append("\r\n");
}

void reply_writer::line(char type, std::string_view text) {
  out_.push_back(type);
  append_one_line(out_, text);
  out_.append("\r\n");
}

void reply_writer::simple(std::string_view text) {
  line('+', text);
}

void reply_writer::error(std::string_view text) {
  if (text.size() > 1 && text[0] == '-') { // its own code; a lone '-' names none
    line('-', text.substr(1));
    return;
  }
  out_.append("-ERR ");
  append_one_line(out_, text);
  out_.append("\r\n");
}

void reply_writer::integer(int64_t n) {
  out_.push_back(':');
  append_number(out_, n);
  out_.append("\r\n");
}

void reply_writer::bulk(std::string_view bytes) {
  header('$', bytes.size());
  out_.append(bytes);
  out_.append("\r\n");
}

void reply_writer::null() {
  out_.append(protocol_ >= 3 ? "_\r\n" : "$-1\r\n");
}

void reply_writer::null_array() {
  out_.append(protocol_ >= 3 ? "_\r\n" : "*-1\r\n");
}

void reply_writer::array(size_t n) {
  header('*', n);
}

void reply_writer::map(size_t n) {
  if (protocol_ >= 3)
    header('%', n);
  else
    header('*', 2 * n);
}

void reply_writer::set(size_t n) {
  header(protocol_ >= 3 ? '~' : '*', n);
}

void reply_writer::push(size_t n) {
  header(protocol_ >= 3 ? '>' : '*', n);
}

void reply_writer::boolean(bool b) {
  if (protocol_ >= 3)
    out_.append(b ? "#t\r\n" : "#f\r\n");
  else
    integer(b ? 1 : 0);
}

void reply_writer::double_value(double d) {
  // Redis 7.0's spelling: %.17g (exact round trip), inf and -inf spelled out
  // because libcs differ; nan as RESP3 names it.
  char buf[40];
  std::string_view text;
  if (std::isnan(d)) {
    text = "nan";
  } else if (std::isinf(d)) {
    text = d > 0 ? "inf" : "-inf";
  } else {
    int n = std::snprintf(buf, sizeof(buf), "%.17g", d);
    text = std::string_view{buf, static_cast<size_t>(n)};
  }
  if (protocol_ >= 3)
    line(',', text);
  else
    bulk(text);
}

void reply_writer::verbatim(std::string_view format, std::string_view text) {
  if (protocol_ < 3) {
    bulk(text);
    return;
  }
  // Clients read exactly three bytes of format before the ':'.
  auto kind = format.size() == 3 ? format : std::string_view{"txt"};
  header('=', kind.size() + 1 + text.size());
  out_.append(kind);
  out_.push_back(':');
  out_.append(text);
  out_.append("\r\n");
}

} // namespace karlton::server
