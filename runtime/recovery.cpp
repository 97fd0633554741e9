// Crash recovery: what a write-back journal holds goes to the store before
// its cache serves anything.
#include "runtime/runtime_detail.hpp"

#include <string>

#include <karlton/runtime/log.hpp>

namespace karlton::detail {

caf::expected<journal> replay_journal(const std::string& path, const std::string& cache,
                                      store& db) {
  auto log = journal::open(path, cache);
  if (!log) return std::move(log.error());
  if (auto cut = log->discarded_bytes(); cut > 0)
    log_line("journal " + path + ": cut " + std::to_string(cut) + " bytes after byte " +
             std::to_string(log->size_bytes()) +
             " that are no whole record (a crash's torn append, or damage that took "
             "later writes with it); " +
             (log->cut_copy_error().empty()
                ? "they are kept in " + path + ".discarded"
                : "they could not be kept in " + path + ".discarded (" +
                    log->cut_copy_error() + ") and may be lost"));
  if (!log->recovered().empty()) {
    if (auto err = db.write_batch(log->recovered()))
      return make_error(errc::store_failure,
                        "replaying journal " + path +
                          " into the store failed: " + describe(err));
  }
  if (!log->empty())
    if (auto err = log->reset()) return err;
  return log;
}

} // namespace karlton::detail
