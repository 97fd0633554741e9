// Crash recovery: what a write-back journal holds goes to the store before
// its cache serves anything.
#include "runtime/runtime_detail.hpp"

#include <string>

#include <karlton/runtime/log.hpp>

namespace karlton::detail {

namespace {

// The replay's batch failed. One record the store refuses (a key over its
// index's limit, a CHECK constraint) fails the whole batch, and so every
// start: write the records one at a time, in order, and set aside the ones
// the store refuses while it answers, in a journal of their own at
// `<path>.rejected`. An error (the start fails, the journal kept) if the
// store took none and cannot load either (it is down, not refusing), or if
// the refused records could not be kept.
caf::error replay_one_by_one(const std::string& path, const std::string& cache,
                             const std::vector<store_write>& records, store& db,
                             const caf::error& first) {
  auto failed = [&](const std::string& why) {
    return make_error(errc::store_failure,
                      "replaying journal " + path + " into the store failed: " + why);
  };
  std::vector<journal_write> refused;
  caf::error last;
  for (size_t i = 0; i < records.size(); ++i)
    if (auto err = db.write_batch({records[i]})) {
      refused.push_back({i + 1, records[i]});
      last = std::move(err);
    }
  if (refused.empty()) return {}; // the batch's failure was passing
  if (refused.size() == records.size() && !db.load(records.front().key))
    return failed(describe(first));
  auto side_path = path + ".rejected";
  auto side = journal::open(side_path, cache);
  if (!side)
    return failed(describe(last) +
                  "; its refused records cannot be kept: " + describe(side.error()));
  if (auto err = side->append(refused))
    return failed(describe(last) +
                  "; its refused records cannot be kept: " + describe(err));
  log_line("journal " + path + ": the store refused " + std::to_string(refused.size()) +
           " of " + std::to_string(records.size()) + " records (" + describe(last) +
           "); they are kept in " + side_path +
           ", a journal of this cache's to replay once the store takes them (the "
           "others are stored)");
  return {};
}

} // namespace

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
  if (!log->recovered().empty())
    if (auto err = db.write_batch(log->recovered()))
      if (auto still = replay_one_by_one(path, cache, log->recovered(), db, err))
        return still;
  if (!log->empty())
    if (auto err = log->reset()) return err;
  return log;
}

} // namespace karlton::detail
