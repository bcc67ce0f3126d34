// Package apply turns the change streams of other sites into local state: a Worker
// consumes one origin site's JetStream stream, assembles each source transaction from its
// row events, and hands complete transactions to Sinks: apply/mariadb replays them into the
// local MariaDB, apply/cassandra writes the MUSIC store. Resync brings one table up to the
// MUSIC store's state (a joining or wiped site) while the workers keep running.
//
// # Messages, transactions and acknowledgement
//
// A message body holds one or more events of one source transaction (or one snapshot
// chunk) and one subject, '\n'-separated (changeevent.DecodeMessage); one event is the
// older one-event-per-message format. An event too large for a message comes as part
// messages (changeevent.ParsePart), joined with a changeevent.Joiner; a part delivered
// again while held, or after its event was joined, is acknowledged without effect.
//
// Events are grouped by Transaction.ID. A transaction is complete when it holds Total
// events with indexes 0 .. Total-1, Total known from any of its events: a buffered
// transaction (up to capture's 10,000 events) carries it on every event, a streamed one
// (more events) carries Total 0 on every event but the Last, which carries the total. A
// buffered transaction reaches the sinks only when complete, so a sink sees it all or not
// at all; a streamed one is applied message by message (below), still all or nothing.
// Snapshot rows (op r, Transaction.ID "snapshot:<db>.<table>:<ms>", Total 0) belong to no
// transaction: each message's rows are applied at once as independent rows
// (NewSnapshotTxns: the resync path, every row with its own version from its Source).
//
// # Streamed transactions
//
// A transaction whose first message starts with index 0, Total 0 and does not end it
// (capture streamed it: over 10,000 events) is applied in streaming mode, in memory
// independent of its size:
//
//   - it is a barrier in the scheduler: it waits for every earlier transaction of the
//     origin, and every later one waits for it;
//   - its messages are decoded one at a time, in Transaction.Index order (they are
//     consecutive in the stream), and handed to the task applying it through an unbuffered
//     channel: the consumer waits while the sinks work (back-pressure). Each sink gets a
//     Stream (StreamSink.BeginStream) and every message's events (Stream.Apply), then
//     Commit after the Last event. A sink that is not a StreamSink gets the whole
//     transaction at Commit (held in memory, as before);
//   - the messages stay unacknowledged until every sink committed; the tracker keeps only
//     their reply subjects, not their bodies. A copy of a message already applied (another
//     stream sequence) and redeliveries of held messages are dropped. A message of a
//     transaction not held whose first event is past index 0 (Total 0, or the Last) is the
//     rest of a transaction whose first messages were acknowledged, i.e. applied by every
//     sink: it is acknowledged (a crash while a transaction's acknowledgements went out);
//   - a failed attempt aborts every sink's Stream (apply/mariadb rolls its transaction
//     back) and, after the usual backoff, starts again from the first message, read again
//     from JetStream by stream sequence (the sequences are all that is kept). Outages are
//     retried forever; other failures quarantine the transaction's tables after
//     MaxRetries; a refusal, a malformed message or a quarantined table gives it up at once
//     (tables met later in the transaction are quarantined as its remaining messages come,
//     and acknowledged). A crash or a stopped Run acknowledges nothing, so the transaction
//     is redelivered and applied again whole;
//   - apply/mariadb replays it in one local transaction on one session, each message
//     through the same per-row rule (row_versions locked FOR UPDATE) as a whole
//     transaction; it is invisible at the site until committed. apply/cassandra writes
//     each message as it comes under the transaction's write timestamp: the MUSIC store
//     shows a huge transaction's rows progressively, and writing them again is a no-op;
//   - while its messages come it counts as assembling (OriginStatus.Assembling), its
//     tables lag by its age until it is committed, and its messages count as pending.
//
// Its messages must fit in MaxAckPending (all are unacknowledged until the commit): with
// the default 20000 and capture's 500 events a message, 10,000,000 events. A streamed
// transaction that reaches MaxAckPending messages before its last is given up like one
// that cannot be assembled (below).
//
// The durable consumer (one per local site and origin) uses AckExplicit: every message is
// acknowledged on its own once its transaction is done, i.e. every sink committed it, or it
// was refused or skipped (see Quarantine). A crash or a cancelled Run therefore loses
// nothing and redelivers whole transactions, which the sinks recognise as already applied.
// When a worker starts and its consumer still has unacknowledged messages, the consumer is
// recreated after its acknowledged floor, so they come again at once rather than after
// AckWait.
//
// Memory: a transaction that arrives in one message is decoded once. A buffered one
// spread over several messages (at most 10,000 events) is held as its message bodies and
// decoded again, whole, when it completes; the decoded transaction lives until every sink
// has it. A streamed transaction holds one or two decoded messages at a time, and its
// stream sequences (see Streamed transactions): a 1,000,000-row transaction is applied in
// about the memory of a 10,000-row one.
//
// # Ordering and parallelism
//
// Transactions are applied in parallel (Config.Workers) with per-row ordering: a
// transaction waits for every earlier transaction of the same origin that touches one of
// its rows (database, table, primary key); transactions on disjoint rows, even of the same
// table, run concurrently. A sink may order more (OrderHinter): it gives a table extra
// keys, and a transaction waits for every earlier one of the origin sharing a key with it,
// as for a row. apply/mariadb gives every table linked by foreign keys at the local site
// its group's key ("fk:<group>", the connected component of the tables' foreign keys):
// rule, one origin's transactions touching tables of one foreign key group apply in origin
// order, one after the other, as on a native replica (a parent's delete never overtakes its
// children's insert, which would orphan them rather than cascade); other tables and rows
// keep their parallelism. The keys are asked for once the origin's earlier schema changes
// are applied (a DDL may link or unlink tables; the consumer waits for it), or, while a
// streamed transaction is being fed, the transaction is a barrier; a sink that cannot tell
// its keys (server down) makes it a barrier too. A DDL transaction, or one whose rows
// cannot be keyed, is a barrier: it waits for all earlier transactions and all later ones
// wait for it; a barrier
// that keeps failing is quarantined like any change (below), so it blocks the others for
// at most its retries. Back-pressure: at most Config.MaxInFlight transactions are queued or
// running (the consumer stops reading), and the JetStream consumer holds at most
// Config.MaxAckPending unacknowledged messages (default 20000; at capture's 500 events a
// message, a 1,000,000-row transaction takes about 2,000). A transaction that holds
// MaxAckPending messages and is still incomplete can never be assembled (the consumer
// delivers nothing more): it is given up, its tables quarantined, with the error in the
// status, music_apply_unassembled_transactions_total and an error log; raise
// MaxAckPending and resync them. If the unacknowledged messages of several incomplete
// transactions together reach MaxAckPending, the status and an error log say the worker
// stalled.
//
// # Quarantine: no change is lost without a trace
//
// A change that cannot be applied quarantines its tables, and only them: a change refused
// (ErrRefused or ErrMalformed, by a sink or before: undecodable message, inconsistent
// transaction; quarantined at once), or one failing on a sink Config.MaxRetries times (with
// backoff) with an error that is not an outage (see Transient; outages, such as a MariaDB or
// Cassandra restart, are retried forever, with the error in the status and the lag
// growing). The rule:
//
//   - a quarantined table's status says so (TableStatus.Quarantined, the reason naming the
//     change's GTID, a row key and the error), and so do the music_apply_quarantined_tables
//     gauge and an error log naming table, key and GTID;
//   - the failing transaction, and every later transaction touching a quarantined table,
//     is skipped whole: acknowledged, not applied, counted per table (TableStatus.Skipped
//     with the first and last skipped GTID, music_apply_skipped_transactions_total). A
//     transaction touching a quarantined table and others is skipped whole too (all or
//     nothing), and quarantines those others as well;
//   - every other table, and the own-stream follower, keep flowing;
//   - the table stays quarantined until released (Worker.Release, QuarantineSet.Release,
//     as `music resync` does): release it when its resync starts; the resync brings the
//     rows the skipped changes wrote (the conflict rule keeps the newer of the store's row
//     and a streamed change), and later changes apply again.
//
// Refusals are counted against their table (db.table; db.* for a schema change of a whole
// database) in music_apply_refused_total{origin,table,sink} and the status. The quarantine
// is kept in memory: a restarted worker has forgotten it, but the skipped transactions are
// acknowledged, so the tables named in the status (or the error logs) still need their
// resync.
//
// # Conflict rule
//
// Every transaction carries a Version: (origin commit time in µs, origin GTID domain id,
// origin GTID sequence number), compared in that order. For each row the highest version
// wins at every site and in the store, whatever the arrival order: last writer wins on
// origin commit time, the higher GTID domain id (one per site) breaks ties, then GTID
// order. The commit time is the origin's commit clock (source.ts_us, stamped by capture):
// MariaDB's binlog keeps whole seconds only, so capture takes its wall clock when it reads
// the transaction, kept inside the binlog second and strictly after the site's previous
// transaction. It follows real time to the millisecond while capture keeps up; when
// capture catches up after an outage, a second's transactions get the end of that second.
// An older change is not applied; it is counted in
// music_apply_conflicts_total and logged with both versions. Deletes leave a tombstone
// version so a late older change does not resurrect the row. A failing transaction blocks
// the origin's later transactions on the same rows while it is retried (see Quarantine).
//
// # Local writes (the own stream)
//
// A site's own writes reach the conflict rule through a worker whose Origin is the local
// site (Txn.Own, `music apply --follow-own`, on by default): it records their versions and,
// in apply/mariadb, writes back a newer local write that an older change from elsewhere
// overwrote, or the winner over a local write that lost to it, so every site converges on
// the same winner (see apply/mariadb). Until the own stream has been read, a remote change
// is judged against the versions known so far, and the row may briefly show the loser.
//
// # Known limits
//
// A row changed in two messages of one streamed transaction is written twice to the MUSIC
// store with the same write timestamp, and Cassandra keeps the greater value (see
// apply/cassandra). apply/mariadb replays streamed transactions without foreign key
// checks (no cascades).
// One worker per (local site, origin): two running on the same durable consumer would
// split its messages, and neither could assemble a transaction.
// Events written before the commit clock existed (no ts_us) carry whole seconds: in the
// store two such changes of one row by one origin in one second tie (see
// Version.WriteTimestamp). Commit clocks of different sites are as good as their hosts'
// clock synchronisation (NTP): a site whose clock runs ahead wins conflicts it should lose.
//
// # Metrics
//
// music_apply_transactions_total, music_apply_rows_total{outcome}, music_apply_conflicts_total,
// music_apply_refused_total{origin,table,sink}, music_apply_errors_total (failed attempts),
// music_apply_skipped_transactions_total{origin,table}, music_apply_quarantined_tables,
// music_apply_unassembled_transactions_total{origin,table},
// music_apply_lag_milliseconds{origin,table} (the age of the table's oldest change not
// yet applied, including one being retried or skipped; else the last apply's lag, 0 once
// caught up), music_apply_lag_seconds (histogram), music_apply_pending_messages (consumer
// pending plus unacknowledged: never 0 while a transaction waits),
// music_apply_duration_seconds{sink}.
package apply
