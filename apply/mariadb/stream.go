package mariadb

import (
	"context"
	"database/sql"
	"fmt"
	"sync"

	"go.uber.org/zap"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/changeevent"
)

// Streamed transactions (apply.StreamSink): a transaction too large to hold is replayed
// message by message in ONE local transaction on one session, opened by BeginStream and
// committed by Commit, so it is invisible until committed and a failure or crash
// part-way (the connection drops) rolls all of it back. Each chunk goes through the same
// plan and applyTx (lockVersions ... FOR UPDATE, the conflict rule, applyOwn for the own
// stream) as a whole transaction does; the row locks taken are held until the commit.
//
// A row changed in more than one chunk: the first chunk records the transaction's own
// version for it, so a later chunk finds that version (a "duplicate"). Later chunks
// therefore write a row at the transaction's own version again (plan.again), unless the
// first chunk already met rows at that version: then the transaction had been committed
// before (a redelivery) and duplicates are skipped as usual. Writing them again in
// that case would be harmless too: every change of such a row is replayed in order, so it
// ends with the transaction's final image.
//
// Foreign key checks stay off for streamed transactions (no cascades are performed):
// a huge transaction is replayed as its rows, in the session of replaySetup.

var _ apply.StreamSink = (*Sink)(nil)

// noSeq remembers the streamed transactions whose origin gtid_seq_no the server refused,
// so their next attempt lets the server choose one (as Apply does). Entries go at commit.
var noSeq sync.Map // streamKey -> struct{}

type streamKey struct {
	s  *Sink
	id string
}

type stream struct {
	s       *Sink
	tx      apply.Txn // the header; Events is set per chunk
	conn    *sql.Conn
	sqlTx   *sql.Tx
	chunks  int
	again   bool
	useSeq  bool
	failed  bool
	started context.Context
}

// BeginStream opens the session and the local transaction a streamed transaction is
// replayed in.
func (s *Sink) BeginStream(ctx context.Context, tx *apply.Txn) (apply.Stream, error) {
	_, refused := noSeq.Load(streamKey{s, tx.ID})
	st := &stream{s: s, tx: *tx, useSeq: !refused, started: ctx}
	st.tx.Events = nil
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("mariadb: apply %s from %s: %w", tx.ID, tx.Origin, err)
	}
	if _, err := conn.ExecContext(ctx, replaySetup(&st.tx, st.useSeq)); err != nil {
		s.release(ctx, conn, true)
		return nil, fmt.Errorf("mariadb: apply %s from %s: session: %w", tx.ID, tx.Origin, err)
	}
	sqlTx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		s.release(ctx, conn, true)
		return nil, fmt.Errorf("mariadb: apply %s from %s: begin: %w", tx.ID, tx.Origin, err)
	}
	st.conn, st.sqlTx = conn, sqlTx
	return st, nil
}

// Apply replays one chunk of the transaction inside its local transaction.
func (st *stream) Apply(ctx context.Context, events []*changeevent.Event) (apply.Result, error) {
	if st.sqlTx == nil {
		return apply.Result{}, fmt.Errorf("mariadb: apply %s: stream ended", st.tx.ID)
	}
	t := st.tx
	t.Events = events
	p, err := newPlan(&t)
	if err != nil {
		return apply.Result{}, err
	}
	p.again = st.again
	res, err := st.s.applyTx(ctx, st.sqlTx, &t, p)
	if err != nil {
		return res, st.fail(err, "chunk %d", st.chunks)
	}
	if st.chunks == 0 {
		st.again = res.Duplicates == 0 // duplicates in the first chunk: applied before
		if !st.again {
			st.s.log.Info("streamed transaction applied before; replaying it for rows changed since",
				zap.String("gtid", st.tx.ID), zap.Int("duplicates", res.Duplicates))
		}
	}
	st.chunks++
	return res, nil
}

// Commit commits the local transaction and gives the session back.
func (st *stream) Commit(ctx context.Context) (apply.Result, error) {
	if st.sqlTx == nil {
		return apply.Result{}, fmt.Errorf("mariadb: commit %s: stream ended", st.tx.ID)
	}
	err := st.sqlTx.Commit()
	st.sqlTx = nil
	if err != nil {
		err = st.fail(err, "commit")
		st.Abort()
		return apply.Result{}, err
	}
	noSeq.Delete(streamKey{st.s, st.tx.ID})
	st.s.release(ctx, st.conn, false)
	st.conn = nil
	return apply.Result{}, nil
}

// Abort rolls the local transaction back (if still open) and gives the session back; the
// connection is dropped after a failure.
func (st *stream) Abort() {
	if st.sqlTx != nil {
		if err := st.sqlTx.Rollback(); err != nil {
			st.failed = true
		}
		st.sqlTx = nil
	}
	if st.conn != nil {
		st.s.release(context.WithoutCancel(st.started), st.conn, st.failed)
		st.conn = nil
	}
}

func (st *stream) fail(err error, what string, args ...any) error {
	st.failed = true
	if errNumber(err) == errGTIDOutOfOrder && st.useSeq {
		st.s.log.Warn("server refused the origin gtid_seq_no; the streamed transaction is replayed with a server-chosen one",
			zap.String("gtid", st.tx.ID), zap.Error(err))
		noSeq.Store(streamKey{st.s, st.tx.ID}, struct{}{})
	}
	return fmt.Errorf("mariadb: apply %s from %s (streamed, %s): %w", st.tx.ID, st.tx.Origin, fmt.Sprintf(what, args...), err)
}
