// Crash recovery: what a write-back journal holds goes to the store before
// its cache serves anything.
#include "runtime/runtime_detail.hpp"

namespace karlton::detail {

caf::expected<journal> replay_journal(const std::string& path, store& db) {
  auto log = journal::open(path);
  if (!log) return std::move(log.error());
  if (!log->recovered().empty()) {
    if (auto err = db.write_batch(log->recovered()))
      return make_error(errc::store_failure,
                        "replaying journal " + path +
                          " into the store failed: " + describe(err));
  }
  if (log->size_bytes() > 0)
    if (auto err = log->reset()) return err;
  return log;
}

} // namespace karlton::detail
