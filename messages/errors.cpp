#include <karlton/messages/errors.hpp>

#include <caf/atom.hpp>
#include <caf/message.hpp>
#include <caf/sec.hpp>

namespace karlton {

const char* to_string(errc x) noexcept {
  switch (x) {
  case errc::none:
    return "none";
  case errc::key_too_large:
    return "key_too_large";
  case errc::value_too_large:
    return "value_too_large";
  case errc::unknown_cache:
    return "unknown_cache";
  case errc::invalid_option:
    return "invalid_option";
  case errc::overloaded:
    return "overloaded";
  case errc::timeout:
    return "timeout";
  case errc::store_failure:
    return "store_failure";
  case errc::shut_down:
    return "shut_down";
  case errc::not_found:
    return "not_found";
  case errc::blocking_in_actor:
    return "blocking_in_actor";
  case errc::not_an_integer:
    return "not_an_integer";
  case errc::compute_failed:
    return "compute_failed";
  case errc::name_taken:
    return "name_taken";
  case errc::store_refused:
    return "store_refused";
  }
  return "unknown";
}

caf::error make_error(errc code, std::string context) {
  return caf::error{static_cast<uint8_t>(code), caf::atom("karlton"),
                    caf::make_message(std::move(context))};
}

std::string describe(const caf::error& err) {
  if (!err) return "no error";
  std::string out;
  if (err.category() == caf::atom("karlton")) {
    out = "karlton.";
    out += to_string(static_cast<errc>(err.code()));
  } else if (err.category() == caf::atom("system")) {
    out = "caf.";
    out += caf::to_string(static_cast<caf::sec>(err.code()));
  } else {
    out = caf::to_string(err);
  }
  const auto& ctx = err.context();
  if (ctx.match_elements<std::string>()) {
    out += ": ";
    out += ctx.get_as<std::string>(0);
  }
  return out;
}

} // namespace karlton
