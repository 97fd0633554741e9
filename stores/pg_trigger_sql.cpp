#include "stores/pg_trigger_sql.hpp"

#include "stores/pg_connection.hpp"
#include <karlton/messages/errors.hpp>

namespace karlton::pg {

namespace {

// The row trigger. The key's hex must fit PostgreSQL's 8,000-byte payload:
// (7,999 - 199 header bytes) / 2 hex digits per byte = 3,800 bytes; a longer
// key is sent as `l` (the listener repairs the table). `seq` numbers the
// transaction's notifications: NOTIFY folds identical payloads within a
// transaction, so without it a key changed twice would arrive once and the
// end's count would not match. set_config(..., true) is transaction-local and
// a rolled-back savepoint reverts it, together with its notifications. The
// writer's own transaction can set that counter too: one below zero would
// number its rows 0 or less, which the listener refuses, and no end would
// follow, so the change went unheard; it fails the transaction instead.
//
// Every function runs with its own search_path: with the writer's, a schema
// of its own ahead of pg_catalog (SET search_path = evil, pg_catalog) put a
// pg_notify of its making in place of the real one, and the change went
// unheard while the triggers looked in place (a review of 8 Dec).
constexpr const char* row_function = R"sql(
CREATE OR REPLACE FUNCTION @S.karlton_notify_row() RETURNS trigger LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp AS $$
DECLARE chan text := TG_ARGV[0]; tbl text := TG_ARGV[1]; g text := 'karlton.seq_' || TG_ARGV[0];
        xid text := pg_current_xact_id()::text; ks bytea[]; k bytea; seq bigint;
BEGIN
  IF TG_OP = 'INSERT' THEN ks := ARRAY[NEW.key];
  ELSIF TG_OP = 'DELETE' THEN ks := ARRAY[OLD.key];
  ELSIF OLD.key = NEW.key THEN ks := ARRAY[NEW.key];
  ELSE ks := ARRAY[OLD.key, NEW.key];
  END IF;
  FOREACH k IN ARRAY ks LOOP
    seq := coalesce(nullif(current_setting(g, true), ''), '0')::bigint + 1;
    IF seq < 1 THEN
      RAISE EXCEPTION 'karlton: % is %, not a count of this transaction''s changes', g, seq - 1;
    END IF;
    PERFORM set_config(g, seq::text, true);
    IF octet_length(k) <= 3800 THEN
      PERFORM pg_notify(chan, 'r ' || xid || ' ' || seq || ' ' || tbl || ' ' || encode(k, 'hex'));
    ELSE
      PERFORM pg_notify(chan, 'l ' || xid || ' ' || seq || ' ' || tbl);
    END IF;
  END LOOP;
  RETURN NULL;
END $$;
)sql";

// The end trigger, deferred: it runs in COMMIT, after every row trigger, and
// its NOTIFY joins the queue after theirs (PostgreSQL delivers a
// transaction's notifications in the order sent). It fires once per row, so
// `karlton.end_*` keeps it to one NOTIFY per new count; under SET CONSTRAINTS
// ... IMMEDIATE it fires at each statement's end and again at COMMIT for the
// rows changed after, each end closing the seqs up to its count.
constexpr const char* end_function = R"sql(
CREATE OR REPLACE FUNCTION @S.karlton_notify_end() RETURNS trigger LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp AS $$
DECLARE e text := 'karlton.end_' || TG_ARGV[0];
        seq text := coalesce(nullif(current_setting('karlton.seq_' || TG_ARGV[0], true), ''), '0');
BEGIN
  IF seq <> coalesce(nullif(current_setting(e, true), ''), '0') THEN
    PERFORM set_config(e, seq, true);
    PERFORM pg_notify(TG_ARGV[0], 'e ' || pg_current_xact_id()::text || ' ' || seq || ' '
                      || floor(extract(epoch FROM clock_timestamp()) * 1e6)::bigint);
  END IF;
  RETURN NULL;
END $$;
)sql";

constexpr const char* other_functions = R"sql(
CREATE OR REPLACE FUNCTION @S.karlton_notify_truncate() RETURNS trigger LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM pg_notify(TG_ARGV[0], 't ' || pg_current_xact_id()::text || ' ' || TG_ARGV[1]);
  RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION @S.karlton_repair(chan text, tbl text) RETURNS void
  LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ SELECT pg_notify(chan, 'R ' || tbl) $$;
)sql";

// PostgreSQL 15 has CREATE OR REPLACE TRIGGER, but not for constraint
// triggers ("CREATE OR REPLACE CONSTRAINT TRIGGER is not supported"): that
// one is dropped and created again, in the same transaction.
constexpr const char* triggers = R"sql(
CREATE OR REPLACE TRIGGER karlton_notify AFTER INSERT OR UPDATE OR DELETE ON @T
  FOR EACH ROW EXECUTE FUNCTION @S.karlton_notify_row('@C', '@N');
DROP TRIGGER IF EXISTS karlton_notify_end ON @T;
CREATE CONSTRAINT TRIGGER karlton_notify_end AFTER INSERT OR UPDATE OR DELETE ON @T
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION @S.karlton_notify_end('@C');
CREATE OR REPLACE TRIGGER karlton_truncate AFTER TRUNCATE ON @T
  FOR EACH STATEMENT EXECUTE FUNCTION @S.karlton_notify_truncate('@C', '@N');
)sql";

// Replaces each @S (quoted schema), @T (quoted schema.table), @N (plain
// schema.table) and @C (channel). The names are valid identifiers, so neither
// double nor single quotes need escaping.
std::string fill(std::string_view text, std::string_view schema, std::string_view table,
                 std::string_view channel) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '@' || i + 1 == text.size()) {
      out += text[i];
      continue;
    }
    switch (text[++i]) {
    case 'S':
      out += quote(schema);
      break;
    case 'T':
      out += quote(schema) + "." + quote(table);
      break;
    case 'N':
      out += std::string{schema} + "." + std::string{table};
      break;
    case 'C':
      out += channel;
      break;
    default:
      out += '@';
      out += text[i];
    }
  }
  return out;
}

} // namespace

caf::expected<std::string> trigger_sql(std::string_view schema, std::string_view table,
                                       std::string_view channel) {
  for (auto name : {schema, table, channel})
    if (!valid_identifier(name))
      return make_error(
        errc::invalid_option,
        "postgres trigger: '" + std::string{name} +
          "' must be 1-63 of a-z, 0-9 and '_', not starting with a digit");
  if (schema.substr(0, 3) == "pg_")
    return make_error(errc::invalid_option, "postgres trigger: schema '" +
                                              std::string{schema} +
                                              "': pg_* names are reserved");
  std::string out;
  for (auto* part : {row_function, end_function, other_functions, triggers})
    out += fill(part, schema, table, channel);
  return out;
}

std::string install_triggers(PGconn* conn, std::string_view schema,
                             std::string_view table, std::string_view channel) {
  auto sql = trigger_sql(schema, table, channel);
  if (!sql) return karlton::describe(sql.error());
  auto all =
    "BEGIN; SELECT pg_advisory_xact_lock(hashtext('karlton.ddl'));" + *sql + "COMMIT";
  result_ptr res{PQexec(conn, all.c_str())};
  if (res && PQresultStatus(res.get()) == PGRES_COMMAND_OK) return {};
  std::string detail = res ? PQresultErrorMessage(res.get()) : PQerrorMessage(conn);
  if (auto* state = res ? PQresultErrorField(res.get(), PG_DIAG_SQLSTATE) : nullptr)
    detail = std::string{state} + " " + detail;
  while (!detail.empty() && (detail.back() == '\n' || detail.back() == ' '))
    detail.pop_back();
  if (detail.empty()) detail = "unknown error";
  if (PQtransactionStatus(conn) != PQTRANS_IDLE) result_ptr{PQexec(conn, "ROLLBACK")};
  return detail;
}

} // namespace karlton::pg
