package cassandra

import (
	"context"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/changeevent"
)

// Streamed transactions (apply.StreamSink): each chunk is written as it comes, like a
// transaction of its own (Apply: the last change of each of its rows), under the whole
// transaction's write timestamp. The store therefore shows a huge transaction's rows
// progressively, before the sites commit it; if it is aborted and applied again (a
// failure, a crash, a redelivery) the same cells are written again with the same
// timestamp, which changes nothing. If it is given up (refused, quarantined), the rows
// already written stay, in tables that are quarantined and need a resync anyway.
//
// Limit: a row changed in two different chunks of one streamed transaction is written
// twice with the same timestamp, and Cassandra then keeps the greater cell value (a
// delete wins), not necessarily the later change. Capture's chunks are one table's
// consecutive events, so this takes a transaction over 10,000 events that changes the
// same row more than once, far apart.

var _ apply.StreamSink = (*Sink)(nil)

type stream struct {
	s  *Sink
	tx apply.Txn
}

// BeginStream checks the transaction's write timestamp; nothing is held.
func (s *Sink) BeginStream(_ context.Context, tx *apply.Txn) (apply.Stream, error) {
	if _, err := tx.Version.WriteTimestamp(); err != nil {
		return nil, err
	}
	st := &stream{s: s, tx: *tx}
	st.tx.Events = nil
	return st, nil
}

func (st *stream) Apply(ctx context.Context, events []*changeevent.Event) (apply.Result, error) {
	t := st.tx
	t.Events = events
	return st.s.Apply(ctx, &t)
}

func (st *stream) Commit(context.Context) (apply.Result, error) { return apply.Result{}, nil }

func (st *stream) Abort() {}
