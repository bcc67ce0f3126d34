package apply

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"
)

// ErrFenced marks a transaction on a sync table that its origin committed without
// holding the table's ownership (it lost it first, or the write bypassed the gateway): it
// is not applied anywhere, and the worker reports it (TableStatus.Fenced).
var ErrFenced = errors.New("apply: fenced out: committed without the sync table's ownership")

// SyncGate decides which transactions on sync tables may be applied, and in which
// version order (consistency/sync implements it). A transaction that touches no sync
// table does not reach it.
type SyncGate interface {
	// SyncTables returns the ownership units of the sync tables tx touches ("db.table",
	// or a pattern "db.t_*" naming several tables with one owner).
	SyncTables(tx *Txn) []string
	// Admit blocks until tx's origin is known to have committed it while owning every one
	// of units (claimed), and returns the version of tx at each of its sync tables
	// ("db.table"); or it returns an error wrapping ErrFenced when it never will be. Other
	// errors are retried.
	Admit(ctx context.Context, tx *Txn, tables []string) (map[string]Version, error)
	// Received is called in stream order for every transaction of the site's own stream
	// as it is assembled, and Done once it is finished: applied by every sink (applied
	// true), or fenced out, skipped or refused. The gate learns from them how far the
	// site's own commits are in the MUSIC store (the gateway holds a COMMIT until then).
	Received(tx *Txn)
	Done(tx *Txn, applied bool)
}

// syncKey is the scheduler key that orders one table's sync transactions: they apply in
// their origin's commit order, so "applied up to seq N" is a prefix (the gateway's
// catch-up relies on it).
func syncKey(table string) string { return table + "\x00\x00sync" }

// VersionFor is the version of tx's changes to db.table: the sync gate's, if it gave one.
func (t *Txn) VersionFor(db, table string) Version {
	if v, ok := t.TableVersions[db+"."+table]; ok {
		return v
	}
	return t.Version
}

// admitSync runs the gate for tx; false means tx is not to be applied (fenced out, and
// reported, or ctx ended: then stopped is true too).
func (w *Worker) admitSync(ctx context.Context, tx *Txn, tables []string) (ok, stopped bool) {
	g := w.cfg.Gate
	sync := g.SyncTables(tx)
	if len(sync) == 0 {
		return true, false
	}
	backoff := w.cfg.RetryBackoff
	for attempt := 1; ; attempt++ {
		versions, err := g.Admit(ctx, tx, sync)
		switch {
		case err == nil:
			tx.Sync, tx.TableVersions = sync, versions
			w.status.update(func(st *OriginStatus) {
				for t := range versions {
					ts := st.Tables[t]
					ts.Sync = true
					st.Tables[t] = ts
				}
			})
			return true, false
		case errors.Is(err, ErrFenced):
			w.fenced(tx, sync, err)
			return false, false
		case ctx.Err() != nil:
			return false, true
		}
		w.failed("sync", tx.ID, sync, attempt, err)
		w.log.Warn("sync gate failed; retrying", zap.String("gtid", tx.ID), zap.Strings("tables", sync), zap.Error(err))
		if Sleep(ctx, backoff) != nil {
			return false, true
		}
		backoff = min(backoff*2, w.cfg.MaxRetryBackoff)
	}
}

// fenced reports a transaction the gate fenced out: counted per table, logged; it is
// acknowledged without being applied (its origin's own copy is repaired there).
func (w *Worker) fenced(tx *Txn, tables []string, err error) {
	now := time.Now()
	w.status.update(func(st *OriginStatus) {
		st.Fenced++
		for _, t := range tables {
			ts := st.Tables[t]
			ts.Sync = true
			ts.Fenced++
			ts.LastFencedGTID, ts.LastFencedAt = tx.ID, now
			st.Tables[t] = ts
		}
	})
	for _, t := range tables {
		w.metrics.Fenced.WithLabelValues(w.cfg.Origin, t).Inc()
	}
	w.log.Error("sync transaction fenced out: committed at its origin without the table's ownership; not applied",
		zap.String("gtid", tx.ID), zap.Strings("tables", tables), zap.Bool("own", tx.Own), zap.Error(err))
}
