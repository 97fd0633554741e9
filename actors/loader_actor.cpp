#include "actors/loader_actor.hpp"

#include <exception>

#include <caf/all.hpp>

#include <karlton/messages/errors.hpp>

namespace karlton {

loader_actor::behavior_type loader_worker(loader_actor::pointer, load_function fn,
                                          std::shared_ptr<const clock> time_source) {
  return {
    [fn, time_source](load_atom, std::string& key, uint64_t id) {
      load_outcome out;
      auto start = time_source->now();
      caf::expected<std::string> result = std::string{};
      try {
        result = fn(key);
      } catch (const std::exception& e) {
        result =
          make_error(errc::store_failure, std::string{"the loader threw: "} + e.what());
      } catch (...) {
        result =
          make_error(errc::store_failure, "the loader threw a non-standard exception");
      }
      out.took = time_source->now() - start;
      if (result)
        out.bytes = std::move(*result);
      else
        out.error = std::move(result.error());
      out.key = std::move(key);
      out.id = id;
      return out;
    },
  };
}

} // namespace karlton
