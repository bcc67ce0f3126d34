// Package apply turns the change streams of other sites into local state: a Worker
// consumes one origin site's JetStream stream, assembles each source transaction from its
// row events, and hands complete transactions to Sinks: apply/mariadb replays them into the
// local MariaDB, apply/cassandra writes the MUSIC store. Resync brings one table up to the
// MUSIC store's state (a joining or wiped site) while the workers keep running.
//
// # Transactions and acknowledgement
//
// Events are grouped by Transaction.ID until all Transaction.Total of them are there; a
// transaction reaches the sinks only when complete, so a sink sees it all or not at all.
// The durable consumer (one per local site and origin) uses AckAll: the worker acknowledges
// the highest stream sequence below which every message belongs to a transaction that every
// sink committed (or refused). A crash or a cancelled Run therefore loses nothing and
// redelivers whole transactions, which the sinks recognise as already applied. When a
// worker starts and its consumer still has unacknowledged messages, the consumer is
// recreated at the acknowledged floor, so they come again at once rather than after AckWait.
//
// # Ordering and parallelism
//
// Transactions are applied in parallel (Config.Workers) with per-row ordering: a
// transaction waits for every earlier transaction of the same origin that touches one of
// its rows (database, table, primary key); transactions on disjoint rows, even of the same
// table, run concurrently. A DDL transaction, or one whose rows cannot be keyed, is a
// barrier: it waits for all earlier transactions and all later ones wait for it.
// Back-pressure: at most Config.MaxInFlight transactions are queued or running (the
// consumer stops reading), and the JetStream consumer holds at most Config.MaxAckPending
// unacknowledged messages. A transaction with more events than MaxAckPending cannot be
// assembled: the status says so.
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
// version so a late older change does not resurrect the row. Changes that are refused
// (ErrRefused) are counted in music_apply_refused_total, shown in the status and skipped;
// other failures are retried with backoff and block the origin's later transactions on the
// same rows, with the error in the status.
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
// One worker per (local site, origin): two running on the same durable consumer would
// split its messages and acknowledge each other's with AckAll.
// Events written before the commit clock existed (no ts_us) carry whole seconds: in the
// store two such changes of one row by one origin in one second tie (see
// Version.WriteTimestamp). Commit clocks of different sites are as good as their hosts'
// clock synchronisation (NTP): a site whose clock runs ahead wins conflicts it should lose.
//
// # Metrics
//
// music_apply_transactions_total, music_apply_rows_total{outcome}, music_apply_conflicts_total,
// music_apply_refused_total, music_apply_errors_total, music_apply_lag_milliseconds{origin,table}
// (0 once caught up), music_apply_lag_seconds (histogram), music_apply_pending_messages,
// music_apply_duration_seconds{sink}.
package apply
