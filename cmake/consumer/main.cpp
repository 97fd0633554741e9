// Uses karlton the way an installed copy is used: headers under <karlton/...>,
// the library through find_package. Exits with 0 only if a value round-trips.
#include <iostream>
#include <string>

#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>

int main() {
  const std::string expected = "hello from an installed karlton";
  karlton::runtime rt;
  auto cache = rt.create_cache("consumer");
  if (!cache) {
    std::cerr << "create_cache: " << karlton::describe(cache.error()) << '\n';
    return 1;
  }
  if (auto err = cache->put("greeting", expected)) {
    std::cerr << "put: " << karlton::describe(err) << '\n';
    return 1;
  }
  auto v = cache->get("greeting");
  if (!v) {
    std::cerr << "get: " << karlton::describe(v.error()) << '\n';
    return 1;
  }
  std::cout << "greeting = " << (*v ? v->str() : "(miss)") << '\n';
  return *v && v->str() == expected ? 0 : 1;
}
