// Package capture tails one site's MariaDB binlog (go-mysql, MariaDB flavour, GTID
// positioning) and publishes every committed row change and schema change of the site's
// own GTID domain as a changeevent.Event to the site's JetStream stream, exactly once in
// effect, checkpointing only what JetStream acknowledged.
//
// # Pipeline
//
// One binlog session (BinlogSyncer.StartSyncGTID with the tailer's own server_id, default
// 1000000+domain_id) feeds a reader goroutine that assembles source transactions into
// events; encoder goroutines turn them into messages (JSON, see Messages) in parallel; a
// publisher sends them in binlog order with PublishMsgAsync, at most Config.MaxInFlight
// unacknowledged; an acker waits for the acknowledgements in order and advances the
// acknowledged position after each complete transaction (every message of it
// acknowledged); a checkpointer stores that position in the state bucket every
// Config.CheckpointInterval and when the session ends. Any error ends the session; Run
// starts a new one from the acknowledged position after an exponential backoff (100ms
// doubling to Config.MaxBackoff). A purged binlog is fatal unless
// Config.AutoSnapshotOnPurge (see Purged binlog).
//
// # Messages (the wire format, changeevent.DecodeMessage and changeevent.Joiner read it)
//
// A message body holds one or more encoded events of ONE source transaction (or one
// snapshot chunk) and ONE subject, in binlog order, separated by '\n'. Consecutive events
// of a transaction on one subject share a message, up to Config.MessageEvents (500) events
// and Config.MessageBytes (256 KiB) of body; a transaction touching tables a, b, a gives
// three messages. Nats-Msg-Id is the message id of the body's first event (below), plus
// "+<n-1>" when the body holds n > 1 events, so the id names the whole range; header
// changeevent.EventsHeader (Music-Events) is the event count. An event whose own encoding
// is over Config.PartSize (changeevent.DefaultPartSize, 512 KiB) goes alone, cut by
// changeevent.Split into part messages with Nats-Msg-Id changeevent.PartID(id, i) and
// headers PartOfHeader=id, PartHeader=i, PartsHeader=n; a consumer joins them
// (changeevent.Joiner) and decodes the whole. Per-event Transaction.Index/Total/Last are
// unchanged by the grouping. The grouping is a function of the events and of
// MessageEvents, MessageBytes, PartSize and MaxTxnBuffer (a streamed transaction is cut
// every MaxTxnBuffer events), so a transaction re-published after a restart gets the same
// messages and ids and the duplicate window drops them. Should the grouping differ after a
// restart (changed settings, an event encoded to another size), the ids differ too: the
// messages are published again and apply drops the events it already holds, so nothing is
// lost, only duplicated on the stream.
//
// # Names (what apply needs)
//
//	stream        Config.Stream, default changeevent.StreamName(site) = MUSIC_CDC_<SITE>,
//	              subjects changeevent.SiteSubjects(site) = music.cdc.<site>.>, file storage,
//	              limits retention, duplicate window Config.DuplicateWindow (default 24h)
//	subject       changeevent.Subject(site, db, table); DDL goes to its table's subject
//	message id    of an event: changeevent.MsgID(site, gtid, row); snapshot rows use
//	              <site>:snapshot:<db>.<table>:<start ms>:<row>; a message's Nats-Msg-Id
//	              is its first event's, plus "+<n-1>" for n > 1 events (see Messages)
//	key           Event.Key: the primary key columns (all columns for a table without
//	              one), from After for c/u/r and from Before for d; an update that
//	              changes the key has the old key in Before
//	state bucket  Config.StateBucket, default MUSIC_CAPTURE_<SITE> (JetStream KV):
//	              "checkpoint" (Checkpoint JSON) and "schema.<base64url(db.table)>"
//	              (SchemaHistory JSON) and "initial_snapshot"
//	command       music capture --site a --domain-id 1 --dsn 'root@tcp(host:3306)/'
//	              --nats-url nats://... [--include 'db.*'] [--initial-snapshot]
//	              [--snapshot db.table] [--auto-snapshot-on-purge] (or --config
//	              capture.yaml with the yaml keys of Config plus metrics_addr and log);
//	              /metrics, /healthz and /status (JSON of Status) on --metrics-addr
//
// # Guarantees and their limits
//
//   - Checkpoint: the position (own domain's last GTID) up to which JetStream acknowledged
//     every event; restart resumes exactly there, and the re-published events carry the
//     same message ids, so the stream's duplicate window drops them. A restart after a
//     longer outage than the window can duplicate events; apply is idempotent per row.
//     Row indexes (and so message ids) depend on the include/exclude filters: change them
//     only with a fresh stream or accept duplicates.
//   - Durability of an acknowledgement is JetStream's: a single NATS server fsyncs its file
//     store every 2 minutes by default, so a power loss (not a process crash) can lose
//     acknowledged events. Run the stream with Config.Replicas 3 on a cluster, or start the
//     server with sync_always (`music nats --sync-always`), where this matters.
//   - Order: events are published in binlog order on one connection, so per table (and per
//     row) order holds. A publish error restarts the session from the checkpoint.
//   - Transactions: Transaction.ID is the GTID, Index the event's place, Total the event
//     count. Up to Config.MaxTxnBuffer (10,000) events a transaction is buffered and every
//     event carries Total; a bigger one streams with bounded memory: its events carry
//     Total 0 and the last one carries Last=true and the final Total. Only published events
//     count (filtered tables are not in Total).
//   - XA: XA COMMIT ... ONE PHASE is logged (and published) like any transaction. A
//     two-phase XA transaction is two event groups in the binlog: XA PREPARE (GTID event
//     flagged FL_PREPARED_XA with the XID, the rows, an XA_PREPARE_LOG_EVENT) and later,
//     from any connection, also after a server restart, XA COMMIT or XA ROLLBACK (GTID
//     event flagged FL_COMPLETED_XA, query "XA COMMIT X'..',X'..',n"). Capture keeps the
//     prepared rows in memory (all of them: a prepare is never streamed, as it may still
//     roll back) and publishes them at the XA COMMIT as ONE transaction under the commit
//     group's GTID and commit time (message ids, Transaction.ID and Source.GTID are the
//     commit's; a big one is streamed then like any other); an XA ROLLBACK publishes
//     nothing. Transactions committed between the PREPARE and the COMMIT go out at once.
//     Restarts: while a prepared transaction with captured rows is open, the checkpoint
//     (position, file offset and commit clock) stays just before the oldest such prepare,
//     so a restart reads the prepare again and the XA COMMIT finds its rows; the
//     transactions after it that are read again carry the same message ids and the
//     duplicate window drops them (apply is idempotent beyond it). Holding the checkpoint
//     was chosen over storing the prepared rows in the state bucket: it needs no state of
//     its own (prepared rows can be large, KV values are bounded, and stored buffers would
//     need their own cleanup and consistency with the checkpoint), and it reuses the path
//     every restart already takes. Its costs: a prepared transaction left open (never
//     committed nor rolled back) keeps the checkpoint where it was, so restarts read the
//     binlog from there again, and if that binlog is purged meanwhile the restart reports a
//     purge (nothing is lost silently); prepared rows stay in memory until the completion.
//     A transaction prepared before capture's very first start position is not published
//     at its XA COMMIT (as any transaction written before the start); a prepare without
//     captured rows holds nothing.
//   - Positions: the checkpoint also stores the binlog file offset of the same point. When
//     MariaDB refuses the GTID position although the binlog is there (error 1236 "not in
//     the master's binlog", which happens when this site's domain got out-of-order
//     sequence numbers, e.g. from a replay into the site with the site's own domain),
//     capture logs it, counts music_capture_errors_total{kind="gtid_position"} and resumes
//     by file offset for the rest of the process's life. Only if that fails too is the
//     position treated as purged. The fallback is never taken for a position capture
//     found purged itself (see Purged binlog).
//   - Purged binlog: capture never moves its checkpoint past a transaction of its own
//     domain that it did not publish. MariaDB does not always refuse a purged position:
//     a checkpoint without a GTID of the domain (capture started before the site wrote
//     anything of its own, or from "earliest") made it stream from the oldest binlog,
//     silently skipping the purged transactions of the domain, and the checkpoint moved
//     past them. So at the start of every session capture compares the checkpoint's own
//     GTID with the oldest binlog file's Gtid_list (the domain's last GTID before it):
//     if the binlog starts after a newer GTID of the domain, transactions were purged.
//     And the session's first own-domain transaction must directly follow the checkpoint
//     (its successor, or BINLOG_GTID_POS just before it is the checkpoint's GTID).
//     Otherwise, and when the server refuses the position (error 1236, after the file
//     offset fallback), Run returns a *PurgedError naming the GTID range that may be lost
//     and the recovery (resnapshot every captured table); /healthz answers 503 with it,
//     Status says stopped and Purged, music_capture_purged is 1. `music capture` logs it at
//     error level and keeps serving /healthz, /status and /metrics until SIGTERM, then
//     exits 1 (without --metrics-addr it exits 1 at once). With auto_snapshot_on_purge
//     capture instead logs the error, counts music_capture_purge_resnapshots_total,
//     moves the checkpoint to the binlog's current end, snapshots every captured table
//     (tracked in the state bucket like the initial snapshot) and goes on. "earliest" as
//     a start means the oldest binlog's start (its Gtid_list), so it is no purge.
//   - Status: Capturer.Status (GET /status): state starting, running, retrying or stopped,
//     checkpoint, lag, last error, stopped tables, snapshots, counts. After a failed
//     session the state stays retrying (and /healthz 503) until a new session makes
//     progress (a transaction acknowledged, or caught up with nothing unacknowledged);
//     a lost NATS connection shows as retrying at once.
//   - Loops: only transactions of Config.DomainID are published (apply replays other sites'
//     changes with the origin's gtid_domain_id); transactions written with
//     @@skip_replication=1 are dropped too unless DropSkipReplication is false. Apply flags
//     every replay skip_replication, and capture sets skip_replication on its dump
//     connection, so the server does not even send them (as to a replica with
//     replicate_events_marked_for_skip=FILTER_ON_MASTER). Rows events are decoded only for
//     transactions capture publishes. Only the own domain is positioned in the dump and the
//     checkpoint.
//   - Values: decoded with the binlog's own table map (binlog_row_metadata=FULL gives names,
//     signedness, charsets, ENUM/SET labels, primary key), so an event always decodes with
//     the schema it was written with, also when old binlog is replayed. Kinds follow the
//     changeevent package doc. Time zone rule: TIMESTAMP is published in UTC (the binlog
//     keeps epoch seconds), DATETIME as the stored wall clock; fractional seconds carry the
//     column's declared digits. BINARY(n) is padded back to n bytes. Generated columns are
//     published as MariaDB logs them. Text must be valid UTF-8 (utf8/utf8mb4/ascii
//     columns); anything capture cannot represent exactly (e.g. latin1 text with bytes
//     above 0x7F) stops that table: no more events of it, an *UnrepresentableError naming
//     table and column in the log, TableErrors, /healthz and music_capture_stopped_tables.
//     Other tables go on. A restart of capture, or a CREATE/TRUNCATE/DROP of the table,
//     resumes it; then resnapshot it (music capture --snapshot db.table) for the rows
//     changed while it was stopped.
//   - Schema history: each DDL statement is classified with the TiDB parser
//     (internal/ddl: kind, every table touched, renames in order, column renames, key
//     changes, database DDL) and published as exactly one OpDDL event: on its table's
//     subject, or on db.* for database DDL and for statements the parser cannot read
//     (opaque: replayed verbatim at MariaDB, refused visibly by the store). A multi-table
//     RENAME (a swap included) is one event; the history of every table follows the
//     renames in statement order. A CREATE TABLE ... SELECT is published as its own DDL
//     transaction (<gtid>/ddl) before its rows. Each table's history is stored under the
//     GTID with information_schema's columns as read when capture processed it.
//     SchemaVersion of a row event is the GTID of the table's last DDL at that point of the
//     binlog ("" for a table with no DDL seen). information_schema only refines SQL types
//     (and tells JSON from LONGTEXT); when it does not match the binlog's columns the
//     binlog's types are used.
//   - Tables without primary key are published with all columns as Key, logged once as a
//     warning and counted by music_capture_tables_without_pk.
//   - Snapshot: see Capturer.Snapshot (consistent, lock-free, chunked, no gap). A snapshot
//     interrupted by a restart is not resumed: run it again.
//
// # Metrics
//
// music_capture_events_total{op}, _bytes_total, _transactions_total,
// _skipped_transactions_total{reason}, _lag_ms (0 when idle thanks to MariaDB heartbeats),
// _table_lag_ms{db,table}, _checkpoint_info{position}, _checkpoint_timestamp_seconds,
// _errors_total{kind}, _reconnects_total, _in_flight_events, _tables_without_pk,
// _stopped_tables, _snapshot_rows{db,table,state}, _snapshot_rows_per_second,
// _snapshot_eta_seconds, _purged, _purge_resnapshots_total. HealthHandler serves
// /healthz, StatusHandler /status.
package capture
