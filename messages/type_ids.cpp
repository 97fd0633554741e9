#include <karlton/messages/type_ids.hpp>

#include <caf/actor_system_config.hpp>

#include <karlton/messages/errors.hpp>

namespace karlton {

const char* to_string(removal_cause x) noexcept {
  switch (x) {
  case removal_cause::explicit_erase:
    return "explicit";
  case removal_cause::replaced:
    return "replaced";
  case removal_cause::expired:
    return "expired";
  case removal_cause::evicted:
    return "evicted";
  }
  return "unknown";
}

const char* to_string(write_mode x) noexcept {
  switch (x) {
  case write_mode::none:
    return "none";
  case write_mode::write_through:
    return "write_through";
  case write_mode::write_back:
    return "write_back";
  }
  return "unknown";
}

void register_types(caf::actor_system_config& cfg) {
  cfg.add_message_types<caf::id_block::karlton>();
  cfg.add_error_category(caf::atom("karlton"),
                         [](uint8_t code, caf::atom_value, const caf::message& ctx) {
                           return describe(caf::error{code, caf::atom("karlton"), ctx});
                         });
}

} // namespace karlton
