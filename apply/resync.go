package apply

import (
	"context"
	"fmt"
	"time"

	"github.com/music-coord/music/changeevent"
)

// Reference is where a resync reads a table's rows: the MUSIC store (apply/cassandra) or a
// peer site's MariaDB (apply/mariadb.Peer). Scan hands every row as a snapshot event (op
// "r") carrying its version in Source (origin, GTID, commit time), in batches of at most
// batch rows.
type Reference interface {
	Columns(ctx context.Context, db, table string) ([]changeevent.Column, error)
	Scan(ctx context.Context, db, table string, batch int, fn func([]*changeevent.Event) error) error
}

// Store is where a resync reads a table's latest state: the MUSIC store.
type Store = Reference

// TableCreator is a sink that can create a missing table (a joining site).
type TableCreator interface {
	EnsureTable(ctx context.Context, db, table string, cols []changeevent.Column) (bool, error)
}

// Repairer is a sink that can make a table hold exactly a reference's rows (apply/mariadb):
// rows missing are inserted, rows whose content differs are overwritten, rows the
// reference does not hold are deleted, and the version metadata is set to the reference's,
// whatever it said before, while concurrent replays keep the conflict rule.
type Repairer interface {
	Repair(ctx context.Context, ref Reference, db, table string, opt RepairOptions, progress func(ResyncProgress)) (ResyncProgress, error)
}

// RepairOptions tunes a repair.
type RepairOptions struct {
	Batch int // rows per batch (one local transaction each); default 500
	// KeepRecent protects local rows the reference does not hold whose recorded version
	// is at most this much older than the start of the repair (or newer): changes the
	// reference cannot have seen yet. Default 1 minute; negative: none.
	KeepRecent time.Duration
	// Quarantine, if set, is the running workers' set of quarantined tables: the table is
	// released from it when the resync starts, so changes arriving from then on are applied
	// again (those skipped while it was quarantined are repaired by the resync itself).
	Quarantine *QuarantineSet
}

// ResyncProgress reports a resync's progress.
type ResyncProgress struct {
	DB, Table string
	Rows      int // rows read from the reference so far
	// Result: Applied = rows written (missing or different), Duplicates = rows already
	// identical with the same version, Conflicts = rows kept because a newer change is
	// recorded here (it reached this site before the reference).
	Result
	Local     int // local rows examined for deletion (rows the reference may not hold)
	Deleted   int // local rows deleted because the reference does not hold them
	Kept      int // local rows the reference does not hold, kept as too recent for it
	Versioned int // rows whose version metadata alone was set (content already right)
	Phase     string
	Started   time.Time
	Done      bool
}

// Rate is the rows read and examined per second so far.
func (p ResyncProgress) Rate() float64 {
	s := time.Since(p.Started).Seconds()
	if s <= 0 {
		return 0
	}
	return float64(p.Rows+p.Local) / s
}

// Resync makes db.table in dst hold exactly the rows of src (the MUSIC store or a peer
// site), in batches of batch rows, while the workers keep following the streams. A
// missing table is created first if dst can. A dst that is a Repairer (the MariaDB sink)
// repairs the table exactly: see Repairer and apply/mariadb. Any other sink gets the
// reference's rows applied under the conflict rule (rows it does not hold are left alone).
// progress (may be nil) is called after every batch and at the end.
func Resync(ctx context.Context, src Reference, dst Sink, db, table string, batch int, progress func(ResyncProgress)) (ResyncProgress, error) {
	return ResyncWith(ctx, src, dst, db, table, RepairOptions{Batch: batch}, progress)
}

// ResyncWith is Resync with all repair options.
func ResyncWith(ctx context.Context, src Reference, dst Sink, db, table string, opt RepairOptions, progress func(ResyncProgress)) (ResyncProgress, error) {
	p := ResyncProgress{DB: db, Table: table, Started: time.Now()}
	if opt.Batch <= 0 {
		opt.Batch = 500
	}
	if opt.Quarantine != nil {
		opt.Quarantine.Release(db + "." + table)
	}
	if tc, ok := dst.(TableCreator); ok {
		cols, err := src.Columns(ctx, db, table)
		if err != nil {
			return p, err
		}
		if _, err := tc.EnsureTable(ctx, db, table, cols); err != nil {
			return p, err
		}
	}
	if r, ok := dst.(Repairer); ok {
		p, err := r.Repair(ctx, src, db, table, opt, progress)
		if err != nil {
			return p, fmt.Errorf("apply: resync %s.%s into %s: %w", db, table, dst.Name(), err)
		}
		return p, nil
	}
	p.Phase = "copy"
	err := src.Scan(ctx, db, table, opt.Batch, func(events []*changeevent.Event) error {
		// One transaction per run of rows with one version: a sink that stamps a whole
		// transaction with Txn.Version (the MUSIC store) stamps each row with its own.
		txns, err := NewSnapshotTxns(events)
		if err != nil {
			return err
		}
		for _, tx := range txns {
			res, err := dst.Apply(ctx, tx)
			if err != nil {
				return err
			}
			p.Applied, p.Duplicates, p.Conflicts = p.Applied+res.Applied, p.Duplicates+res.Duplicates, p.Conflicts+res.Conflicts
		}
		p.Rows += len(events)
		if progress != nil {
			progress(p)
		}
		return nil
	})
	if err != nil {
		return p, fmt.Errorf("apply: resync %s.%s into %s: %w", db, table, dst.Name(), err)
	}
	p.Done, p.Phase = true, "done"
	if progress != nil {
		progress(p)
	}
	return p, nil
}
