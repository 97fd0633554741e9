// The change triggers karlton puts on a table (docs/plans/postgres.md §2): a
// row trigger NOTIFYing each changed key, numbered within its transaction; a
// deferred constraint trigger NOTIFYing the transaction's end with the count
// and the commit time; a TRUNCATE trigger; and karlton_repair() for DBAs. The
// payloads are what stores/pg_payload.hpp reads. Internal: postgres_store
// installs them, and prints them for DBAs who install them themselves.
#pragma once

#include <string>
#include <string_view>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <libpq-fe.h>

namespace karlton::pg {

/// The row trigger's name (AFTER INSERT OR UPDATE OR DELETE, FOR EACH ROW).
constexpr const char* row_trigger = "karlton_notify";
/// The end trigger's name: a deferred constraint trigger. Triggers that fire
/// at the same moment run in name order, and this one must run after the row
/// trigger (under SET CONSTRAINTS ... IMMEDIATE both fire at the end of each
/// statement): "karlton_notify_end" sorts after "karlton_notify".
constexpr const char* end_trigger = "karlton_notify_end";
/// The TRUNCATE trigger's name (FOR EACH STATEMENT).
constexpr const char* truncate_trigger = "karlton_truncate";

/// The SQL that creates (or replaces) the functions in `schema` and the three
/// triggers on `schema.table`, sending on `channel`. Idempotent; no
/// transaction or lock of its own (see `install_triggers`). `invalid_option`
/// if a name is not `^[a-z_][a-z0-9_]{0,62}$` or the schema is `pg_*`: the
/// names are written into the SQL, quoted but not escaped.
caf::expected<std::string> trigger_sql(std::string_view schema, std::string_view table,
                                       std::string_view channel);

/// Runs `trigger_sql` on `conn` in one transaction under the advisory lock
/// every karlton node takes for DDL (two nodes opening at once would
/// otherwise collide in the catalog). The table must exist. Empty on success;
/// else why not (a bad name, or the server's SQLSTATE and message, one line,
/// without the place: the caller adds it), the transaction rolled back.
std::string install_triggers(PGconn* conn, std::string_view schema,
                             std::string_view table, std::string_view channel);

} // namespace karlton::pg
