// What every example program needs and none of them is about: turning
// karlton's error values into an exit (`run_example`), printing values, a
// scratch folder.
#pragma once

#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include "tests/support/temp_dir.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/messages/value.hpp>
#include <karlton/stores/forwarding_store.hpp>

namespace examples {

// karlton returns its errors (`caf::expected<T>`, `caf::error`); the examples
// expect none, so any error ends the program (main catches and prints it).
template <class T>
T or_throw(caf::expected<T> x) {
  if (!x) throw std::runtime_error(karlton::describe(x.error()));
  return std::move(*x);
}

inline void or_throw(const caf::error& err) {
  if (err) throw std::runtime_error(karlton::describe(err));
}

// An example's `main`: runs `program` and returns its exit status; an
// exception (an error `or_throw` met) ends it with "<name>: <what>" on
// stderr and status 1.
template <class Program>
int run_example(const char* name, Program program) {
  try {
    return program();
  } catch (const std::exception& e) {
    std::cerr << name << ": " << e.what() << '\n';
    return 1;
  }
}

// A miss is an empty value; the guide prints it as Python's None.
inline std::string shown(const karlton::value& v) {
  return v ? v.str() : "None";
}

// A fresh folder under /tmp (for SQLite files and journals), removed with
// everything in it when the example ends: the one the tests use too.
using temp_dir = karlton::testing::temp_dir;

// The guide's database prints what it is asked; this store says so, then asks
// the real one. The caller of each store call waits for it (a blocking put,
// a get_or_load, force_flush), so the lines come in a fixed order. The rest
// is the real store's (forwarding_store): a cache over a logged PostgreSQL
// table is still fed its changes.
class logged_store final : public karlton::forwarding_store {
public:
  /// `read_label` starts the line of each key read, e.g. "[DB] Reading ".
  /// With `show_batches`, a write prints as one transaction with its values.
  logged_store(std::shared_ptr<karlton::store> inner, std::string read_label,
               bool show_batches = false)
    : forwarding_store(std::move(inner)), read_label_(std::move(read_label)),
      show_batches_(show_batches) {}

  caf::expected<std::optional<std::string>> load(std::string_view key) override {
    std::cout << read_label_ << key << '\n';
    return inner().load(key);
  }
  caf::expected<std::vector<std::optional<std::string>>>
  load_many(const std::vector<std::string>& keys) override {
    for (const auto& key : keys)
      std::cout << read_label_ << key << '\n';
    return inner().load_many(keys);
  }
  caf::error write_batch(const std::vector<karlton::store_write>& batch) override {
    if (show_batches_)
      std::cout << "[DB] A batch of " << batch.size() << ", one transaction:\n";
    for (const auto& w : batch) {
      if (!show_batches_)
        std::cout << (w.is_delete() ? "[DB] Deleting " : "[DB] Writing ") << w.key
                  << '\n';
      else
        std::cout << (w.is_delete() ? "[DB]   deleting " : "[DB]   writing ") << w.key
                  << (w.is_delete() ? "" : " = " + *w.bytes) << '\n';
    }
    return inner().write_batch(batch);
  }

private:
  std::string read_label_;
  bool show_batches_;
};

} // namespace examples
