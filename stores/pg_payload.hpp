// The text of a change trigger's NOTIFY (docs/plans/postgres.md §2-3), read
// and written. Any database role may NOTIFY any channel, so the listener
// reads these bytes as untrusted input (DESIGN.md rule 9): the grammar is
// exact and anything else is refused. Internal: the listener and the tests
// use it; nothing here is installed.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <caf/expected.hpp>

#include <karlton/messages/changes.hpp>

namespace karlton {

/// The most bytes a payload may have: PostgreSQL refuses 8000 and more.
constexpr size_t max_payload_bytes = 7'999;

/// The most hex digits of a row's key (3,800 bytes): the triggers send a
/// longer key as `l` (repair the table) instead, so that the header (at most
/// 199 bytes: kind, xid, seq, `schema.table`, spaces) and the key fit in
/// `max_payload_bytes`.
constexpr size_t max_key_hex = 7'600;

/// Parses one notification. The forms, single-space separated, each with
/// exactly its number of tokens:
///
///     r <xid> <seq> <schema.table> <key as lower-case hex, possibly empty>
///     l <xid> <seq> <schema.table>
///     e <xid> <n> <commit µs since the epoch>
///     t <xid> <schema.table>
///     R <schema.table>
///
/// xid, seq and n are decimal without sign or leading zero, 1 .. 2^64-1
/// (PostgreSQL never assigns xid 0); the commit time is a decimal int64 (a
/// leading `-` allowed); each half of the table name matches
/// `^[a-z_][a-z0-9_]{0,62}$` and the schema is not `pg_*`; the key has an even
/// number of hex digits, at most `max_key_hex`. The whole payload has at most
/// `max_payload_bytes`. Anything else: `invalid_option` saying what is wrong,
/// with at most 32 bytes of the payload, non-printable ones escaped.
caf::expected<pg_change> parse_payload(std::string_view payload);

/// The payload the triggers send for `change` (what `parse_payload` reads
/// back to an equal change): for tests and the fuzzer. Checks nothing.
std::string format_payload(const pg_change& change);

} // namespace karlton
