// Crash recovery: what a write-back journal holds goes to the store before
// its cache serves anything.
#include "runtime/runtime_detail.hpp"

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <karlton/runtime/log.hpp>

namespace karlton::detail {

namespace {

// The replay's batch failed. A record the store refuses for what it holds
// (`store_refused`: a key over its index's limit, a CHECK constraint) fails
// the whole batch, and so every start: write the records one at a time, in
// order. Any other failure fails the start, the journal kept as it is. Only
// a key's last record counts: a refused one that a later record of the key
// replaced is moot; a key whose last record was refused has that record kept
// in `<path>.rejected`, a journal of the same cache, and the store holds the
// key's older value, or none.
caf::error replay_one_by_one(const std::string& path, const std::string& cache,
                             const std::vector<store_write>& records, store& db) {
  auto failed = [&](const std::string& why) {
    return make_error(errc::store_failure,
                      "replaying journal " + path + " into the store failed: " + why);
  };
  std::unordered_map<std::string_view, size_t> last; // key -> its last record
  for (size_t i = 0; i < records.size(); ++i)
    last[records[i].key] = i;
  std::vector<journal_write> refused;
  caf::error why;
  for (size_t i = 0; i < records.size(); ++i) {
    auto err = db.write_batch({records[i]});
    if (!err) continue;
    if (err != errc::store_refused) return failed(describe(err));
    if (last[records[i].key] != i) continue; // a later record replaces it
    refused.push_back({i + 1, records[i]});
    why = std::move(err);
  }
  if (refused.empty()) return {};
  // Every key refused is the store refusing writes, not one write's content
  // (a CHECK on every row, a setting that breaks the triggers): setting the
  // whole journal aside would start a cache that looks healthy.
  if (refused.size() > 1 && refused.size() == last.size())
    return failed("the store refused every key's last write (" + describe(why) + ")");
  auto side_path = path + ".rejected";
  auto side = journal::open(side_path, cache);
  if (!side)
    return failed(describe(why) +
                  "; the refused records cannot be kept: " + describe(side.error()));
  if (auto err = side->append(refused))
    return failed(describe(why) +
                  "; the refused records cannot be kept: " + describe(err));
  log_line(
    "journal " + path + ": the store refused " + std::to_string(refused.size()) +
    " of its records, each the last write of its key (" + describe(why) +
    "); they are kept in " + side_path +
    ", a journal of this cache's, and the store has those keys' older values or none");
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
    if (db.write_batch(log->recovered()))
      if (auto still = replay_one_by_one(path, cache, log->recovered(), db)) return still;
  if (!log->empty())
    if (auto err = log->reset()) return err;
  return log;
}

} // namespace karlton::detail
