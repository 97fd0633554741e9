// runtime::metrics_text: the runtime's counters in Prometheus' text format.
#include <karlton/runtime/runtime.hpp>

namespace karlton {

// WP0 seam: filled in by issue 15's WP6.
caf::expected<std::string> runtime::metrics_text() {
  return std::string{};
}

} // namespace karlton
