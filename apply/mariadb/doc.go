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
// # Sessions
//
// Every use of the pool takes a dedicated *sql.Conn, sets what it needs (replays: the
// origin's gtid_domain_id, server_id and gtid_seq_no, skip_replication=1, time_zone,
// sql_mode, foreign_key_checks=0, READ COMMITTED; metadata and created tables:
// sql_log_bin=0) and, in a deferred release that also runs after a failed statement, a
// rolled-back transaction or a cancelled context, sets every one of them back (to the
// DSN's connect value or the global default) before the connection returns to the pool.
// If that reset fails, or the session ran USE (a replayed DDL), the connection is closed
// instead (driver.ErrBadConn through Conn.Raw), never reused. A connection whose replay
// succeeded is kept apart from the pool in its replay session (up to half the pool) for
// the next replay, which then sets only gtid_seq_no (an own transaction: nothing), or its
// whole session if it is another origin's; it reaches the pool again only through the same
// reset. So a one-row replay is six round trips (gtid_seq_no, BEGIN, read versions, write
// rows, write versions reading the local binlog position, COMMIT) where it was nine.
//
// # Resync (repair)
//
// Sink.Repair (apply.Resync, `music resync`, `music apply --resync`) makes a table hold
// exactly a reference's rows, whatever row_versions says: the MUSIC store (apply/cassandra)
// or a peer site's MariaDB (Peer: rows and their row_versions read in one consistent
// snapshot; a row without a recorded version gets version zero). Drift made outside the
// binlog (a restore, a manual fix with sql_log_bin=0) leaves row_versions saying a change
// is applied when the row says otherwise, so rows are compared by content, not version.
//
// Copy phase, per batch of reference rows, one local transaction (skip_replication=1, local
// domain, so capture drops it): the keys' row_versions entries are read FOR UPDATE (the
// lock every replay takes first, so a replay of the same keys is serialised with the
// batch) and so are the local rows. A key whose recorded version is newer than the
// reference row's is left alone (a change that reached this site before the reference:
// it wins; counted as Conflicts). Otherwise the reference images are written into a
// temporary copy of the table and hashed on the server like the local rows; a row missing
// or different is overwritten with the reference image; row_versions gets the reference
// row's version, with the resync's write recorded as the row's last write and the local
// binlog position (so the own stream still restores a newer local write it overwrote, see
// below). A replay after the batch compares its version with the reference row's, as usual:
// the newer wins.
//
// Delete phase: the local table is walked in primary key order; a row whose key the
// reference did not hold is deleted, in a transaction with its row_versions entry locked,
// unless that entry records a live version at most RepairOptions.KeepRecent (default 1
// minute) older than the start of the repair, or newer: a change the reference cannot
// have yet, which arrived while it was read. A deleted row leaves a tombstone: the version
// recorded before (any newer change of the row still wins), or version zero for a row no
// version was ever recorded for (written outside MUSIC), again with the delete recorded as
// the row's last write. The local keys are read through the text protocol and encoded as
// the stream would encode them; if a locked row's key does not encode back to the
// reference key it was found by, the delete phase is refused (ErrRefused) rather than risk
// deleting rows the reference holds.
//
// Residual: a local row the reference lacks whose recorded version is older than
// KeepRecent is deleted even if the reference merely lags (the store behind a site's own
// agent by more than KeepRecent); its change is then lost at this site until the row
// changes again. An application write at this site during the repair is overwritten or
// deleted if the reference does not have it yet, and restored when its own-stream record
// arrives (apply follows the own stream; without --follow-own it stays lost).
//
// # Tombstones
//
// A delete leaves a tombstone in row_versions (deleted=1, the delete's version) so that an
// older change arriving later does not resurrect the row. A tombstone is needed only as
// long as such an older change can still arrive. Rule: a tombstone may be removed once
// every change older than it has been applied here, from every origin. The sweeper
// (Sink.NewSweeper, every TombstoneSweepInterval, default 10 minutes) implements the
// conservative form: it removes the tombstones whose version's commit time is older than
// both
//
//   - now minus TombstoneRetention (default 24h: beyond JetStream's duplicate window and
//     any redelivery of an acknowledged message), and
//   - the horizon: for every origin's durable consumer, the commit time of the oldest
//     message not yet acknowledged (now when nothing is pending), the minimum over origins.
//     An origin's commit clock only moves forward in its stream, so every change still to
//     be applied here from any origin is at least as new as the horizon, hence newer than
//     every collected tombstone: it wins over the row's absence anyway, exactly as it
//     would have won over the tombstone. A message that cannot be read or decoded makes the
//     sweep wait for the next round.
//
// Deletes are batched (batch_rows per statement, outside the binlog); each takes the row
// lock a replay takes, so a replay that has a tombstone locked is never decided on a
// removed one. Metrics: music_apply_tombstones_collected_total, music_apply_tombstones
// (tombstones left after the last sweep).
//
// Residual risk: a change not yet in any stream when its row's tombstone is collected, and
// older than that tombstone: a site whose capture was down or cut off from NATS for longer
// than the retention, whose changes are then published late. Such a change resurrects a
// row deleted elsewhere (at this site only). Keep the retention above the longest outage
// of a site's capture that is not followed by a resync of its tables; a resync repairs it.
// Tombstones written by a resync for rows MUSIC never knew have version zero and are
// collected at the next sweep.
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
// # Tables without a primary key, sequences, cascades, triggers, AUTO_INCREMENT
//
// A table without a primary key is a multiset (multiset.go): a row is keyed by its full
// image; inserts add a copy, an UPDATE or DELETE changes exactly one row equal to its
// before image (LIMIT 1, NULL-safe), like a native replica's row applier. No last writer
// wins (identical copies have no identity to version): such transactions are ordered
// barriers in the worker, and row_versions keeps per table and origin the last applied
// version (pk "multiset:<origin>") so a redelivery is not applied twice. An UPDATE/DELETE
// that finds no equal row (changed here meanwhile) is a conflict, counted and logged.
// Snapshot rows only make sure as many copies exist as the chunk holds. In the MUSIC
// store such a table has one row per copy (apply/cassandra). A sequence's NEXTVAL/SETVAL
// is binlogged as a write of its one row: it is keyed by a constant key, judged by last
// writer wins, and written with a plain INSERT (which sets the sequence's state).
//
// Foreign keys and triggers (engine.go): transactions touching a table with foreign keys
// replay with foreign_key_checks=1 and a primary key change as one UPDATE, so InnoDB
// performs the cascades the origin's binlog does not hold. Rule: one origin's transactions
// touching tables linked by foreign keys (a group: connected component of the local
// site's information_schema.REFERENTIAL_CONSTRAINTS, read again after every replayed DDL
// and every minute) apply in origin order; the sink gives the worker the group's order key
// (apply.OrderHinter). 1451/1452 can then come only from another origin's transaction
// not applied yet (or schemas that differ): they are retried, and after 20 tries the
// transaction is replayed without checks, logged as an error (possible divergence) and
// counted in music_apply_fk_unchecked_total{db,table}. Triggers fire for replayed
// SQL: a trigger on a mirrored table must be guarded with IF @@skip_replication = 0
// (replays always set it); unguarded ones are logged and counted
// (music_apply_unguarded_triggers_total).
//
// Choice and measurement (2026-12-02, 2 cores, sites a -> b of the local topology): the
// server's own row applier, fed mysqlbinlog-style BINLOG '<base64>' statements (format
// description, table map, rows events), replayed a 100,000-row transaction (BIGINT pk,
// VARCHAR, DECIMAL, DATETIME(6)) in 0.51 s, about 195k rows/s, without triggers firing
// (slave_run_triggers_for_rbr=NO) and with InnoDB cascades. The SQL replay of this sink
// does 4.1k rows/s in 1000-row transactions (BenchmarkApply, row_versions included). The
// BINLOG path is both faster and the exact semantics, but needs the raw event bytes
// (capture shipping them beside the decoded events, or apply encoding table-map and rows
// events per column type, charset included) and a fallback to SQL when only part of an
// event's rows win; neither fits the files and time of this change. Kept: SQL replay with
// the cascade and trigger rules above. Limits: an unguarded trigger fires twice; the
// MUSIC store performs no cascades (a child deleted or re-keyed by a cascade keeps its
// old row in the store until a resync of the child table).
//
// AUTO_INCREMENT: sites must step ids by an upper bound of the number of sites from their
// own offset (deploy/local/mariadb-instance.sh: 16 and the site index; capture warns,
// music_capture_auto_increment_unsafe, and `music status` flags AUTO_INCREMENT_UNSAFE when
// a site steps by 1). Two different inserts that still collide on one key lose one of
// them at every site: logged as "lost insert" with both GTIDs and counted in
// music_apply_lost_inserts_total{db,table} (Sink.Collectors), besides the conflict.
//
// Limitations: a secondary unique key that collides with another row makes ON DUPLICATE
// KEY UPDATE update that row (as MariaDB would for the statement). Resync (Repair) of a
// table without a primary key is not supported.
package mariadb
