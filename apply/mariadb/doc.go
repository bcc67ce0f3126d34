// Package mariadb is the apply sink that replays other sites' transactions into the local
// MariaDB.
//
// One source transaction becomes one local transaction (READ COMMITTED), run on a session
// with the origin's gtid_domain_id, server_id and gtid_seq_no, so the replayed transaction
// is binlogged with the origin's GTID and the local capture, which publishes only its own
// domain, does not capture it again. If the server refuses the sequence number (strict GTID
// mode, out of order), the transaction is replayed in the origin's domain with a sequence
// number the server picks.
//
// The conflict rule and idempotence rest on a metadata table, <meta>.row_versions (default
// schema "music"), written in the same local transaction as the rows: per (database, table,
// primary key) the winning apply.Version, the origin site and GTID, and a deleted flag (the
// tombstone). A row change is applied only if its transaction's version is newer than the
// stored one: an equal version is a re-delivery, an older one a conflict (counted and
// logged with both versions). Replays keep the origin's GTID and are flagged
// skip_replication=1 (the local capture has the server filter them out). A resync batch
// (apply.Txn.Resync) carries one version per row and runs in the local domain.
//
// Schema changes (CREATE, ALTER, DROP, RENAME, TRUNCATE) run with the origin GTID in the
// origin's default database (created, outside the binlog, if capture did not publish its
// CREATE DATABASE) and are recorded in <meta>.ddl_applied (sql_log_bin=0) so a re-delivered
// DDL is not run twice; a server error saying the effect is already there (table exists,
// unknown table, duplicate column, ...) counts as applied. Other kinds are refused. A DDL
// the server rejects otherwise is an error the worker retries, with the error in its
// status, until an operator fixes the cause: later changes depend on the schema.
// EnsureTable creates a missing table from the MUSIC store's columns for a joining site.
//
// Writes: inserts, updates and snapshot reads become INSERT ... ON DUPLICATE KEY UPDATE of
// the full after image (batched per table), deletes DELETE ... WHERE (pk) IN (...); an
// update that changes the primary key deletes the old key. Sessions use
// foreign_key_checks=0, sql_mode NO_AUTO_VALUE_ON_ZERO and time_zone +00:00. Identifiers
// are quoted with backticks (names holding a backtick or NUL are refused), values are
// bound as parameters.
//
// Own transactions (apply.Txn.Own: the site's own writes, read back from its stream) are
// not replayed: their versions are recorded, and two repairs keep sites converged. For
// every row apply writes, row_versions also keeps the local domain's binlog position at that
// moment and the change itself (the winner). A newer own write committed before that
// position, whose row still holds exactly that change (the row and the change, written into
// a temporary copy of the table, hash alike; checked only on this rare path), was
// overwritten by an older change: its image is written back. An
// own write that loses to the recorded winner but was committed after it: the winner is
// written back. Both run with skip_replication=1 in the local domain. An own DDL is not run
// again.
//
// Limitations: tombstones are kept forever. A secondary unique key that collides with another row makes ON DUPLICATE KEY
// UPDATE update that row (as MariaDB would for the statement).
package mariadb
