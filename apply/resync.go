package apply

import (
	"context"
	"fmt"
	"time"

	"github.com/music-coord/music/changeevent"
)

// Store is where a resync reads a table's latest state: the MUSIC store.
type Store interface {
	Columns(ctx context.Context, db, table string) ([]changeevent.Column, error)
	Scan(ctx context.Context, db, table string, batch int, fn func([]*changeevent.Event) error) error
}

// TableCreator is a sink that can create a missing table (a joining site).
type TableCreator interface {
	EnsureTable(ctx context.Context, db, table string, cols []changeevent.Column) (bool, error)
}

// ResyncProgress reports a resync's progress.
type ResyncProgress struct {
	DB, Table string
	Rows      int // rows read from the store so far
	Result        // what the sink did with them
	Started   time.Time
	Done      bool
}

// Resync brings db.table in dst up to the MUSIC store's state, in batches of batch rows,
// while the workers keep following the streams: every row carries its version, so the
// conflict rule keeps whichever of the store's row and a streamed change is newer. A
// missing table is created first if dst can. Rows the store does not hold are left alone.
// progress (may be nil) is called after every batch and at the end.
func Resync(ctx context.Context, src Store, dst Sink, db, table string, batch int, progress func(ResyncProgress)) (ResyncProgress, error) {
	p := ResyncProgress{DB: db, Table: table, Started: time.Now()}
	if batch <= 0 {
		batch = 500
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
	err := src.Scan(ctx, db, table, batch, func(events []*changeevent.Event) error {
		tx, err := NewResyncTxn(events)
		if err != nil {
			return err
		}
		res, err := dst.Apply(ctx, tx)
		if err != nil {
			return err
		}
		p.Rows += len(events)
		p.Applied, p.Duplicates, p.Conflicts = p.Applied+res.Applied, p.Duplicates+res.Duplicates, p.Conflicts+res.Conflicts
		if progress != nil {
			progress(p)
		}
		return nil
	})
	if err != nil {
		return p, fmt.Errorf("apply: resync %s.%s into %s: %w", db, table, dst.Name(), err)
	}
	p.Done = true
	if progress != nil {
		progress(p)
	}
	return p, nil
}
