// What PostgreSQL's triggers tell the change feed (docs/plans/postgres.md §2-3):
// one notification, parsed. It crosses from the listener thread to the change
// source actor, so it lives here with the other message types; the parser
// (stores/pg_payload.hpp) reads untrusted bytes (rule 9: any role may NOTIFY).
#pragma once

#include <cstdint>
#include <string>

#include <caf/meta/type_name.hpp>

namespace karlton {

/// One notification from the change triggers, parsed.
struct pg_change {
  /// What the notification says.
  enum class kind : uint8_t {
    row,      ///< a row with `key` changed in transaction `xid` (its `seq`-th change)
    long_key, ///< a row whose key is too long for a payload changed: repair `table`
    end,      ///< transaction `xid` committed with `seq` changes, at `commit_us`
    truncate, ///< `table` was truncated
    repair,   ///< a DBA asked for `table`'s caches to be repaired (karlton_repair)
  };
  kind what = kind::row; ///< what the notification says
  uint64_t xid = 0;      ///< the transaction (pg_current_xact_id); 0 for repair
  uint64_t seq = 0; ///< row, long_key: this change's number; end: the count it closes
  int64_t commit_us = 0; ///< end: clock_timestamp() in COMMIT, µs since the epoch
  std::string table;     ///< `schema.table`; empty for end
  std::string key;       ///< row: the key's bytes (decoded)
};

/// CAF's inspection; the enum crosses as its underlying type.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pg_change& x) {
  return f(caf::meta::type_name("karlton::pg_change"), x.what, x.xid, x.seq, x.commit_us,
           x.table, x.key);
}

/// The kind's name, for logs and test messages.
inline const char* to_string(pg_change::kind k) noexcept {
  switch (k) {
  case pg_change::kind::row:
    return "row";
  case pg_change::kind::long_key:
    return "long_key";
  case pg_change::kind::end:
    return "end";
  case pg_change::kind::truncate:
    return "truncate";
  case pg_change::kind::repair:
    return "repair";
  }
  return "unknown";
}

} // namespace karlton
