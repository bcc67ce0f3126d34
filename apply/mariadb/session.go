package mariadb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Session state. Every statement the sink runs goes through withSession (or withReplay,
// below) on a dedicated *sql.Conn: the variables a replay needs are set first, and the connection goes back to
// the pool only after resetSession put every one of them back to the server's default,
// whatever happened in between (a failed statement, a rolled-back transaction, a cancelled
// context). If the reset fails, or the session changed something that cannot be reset
// (USE of a replayed DDL), the connection is discarded rather than pooled: nothing the
// sink sets (sql_log_bin=0, skip_replication=1, an origin's gtid_domain_id, server_id or
// gtid_seq_no, ...) can ever leak into a later use of a pooled connection.
//
// The variables a DSN may set at connect (time_zone, sql_mode, foreign_key_checks,
// tx_isolation) go back to the DSN's value, the others to the global one.
func resetSession(params map[string]string) string {
	q := "SET SESSION sql_log_bin=1, skip_replication=0, gtid_seq_no=0," +
		" gtid_domain_id=@@global.gtid_domain_id, server_id=@@global.server_id"
	for _, v := range []string{"time_zone", "sql_mode", "foreign_key_checks", "tx_isolation"} {
		val, ok := params[v]
		if v == "tx_isolation" && !ok {
			val, ok = params["transaction_isolation"]
		}
		if !ok {
			val = "@@global." + v
		}
		q += ", " + v + "=" + val
	}
	return q
}

// replaySession is the common part of every replay session: no foreign key checks, UTC,
// exact values, READ COMMITTED.
const replaySession = "SET SESSION time_zone='+00:00', sql_mode='NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'," +
	" foreign_key_checks=0, tx_isolation='READ-COMMITTED'"

// localReplay is a replay in the local domain flagged skip_replication (resync, own-stream
// repairs). gtid_seq_no is always set: 0 lets the server choose.
const localReplay = replaySession + ", skip_replication=1, gtid_domain_id=@@global.gtid_domain_id," +
	" server_id=@@global.server_id, gtid_seq_no=0"

// outsideBinlog is a session whose writes are not binlogged (metadata, created tables).
const outsideBinlog = "SET SESSION sql_log_bin=0"

// withSession runs fn on a dedicated connection after setup (if not empty), then resets
// the session (see resetSession). discard drops the connection instead of resetting it.
func (s *Sink) withSession(ctx context.Context, setup string, discard bool, fn func(conn *sql.Conn) error) (err error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer func() { s.release(ctx, conn, discard) }()
	if setup != "" {
		if _, err := conn.ExecContext(ctx, setup); err != nil {
			return err
		}
	}
	return fn(conn)
}

// release resets conn's session and returns it to the pool, or discards it when asked to
// or when the reset fails. The reset runs even if ctx is done (with a short timeout of its
// own): a cancelled apply must not leave its session behind.
func (s *Sink) release(ctx context.Context, conn *sql.Conn, discard bool) {
	if !discard {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_, err := conn.ExecContext(rctx, s.reset)
		cancel()
		if err != nil {
			discard = true
			if !errors.Is(err, driver.ErrBadConn) && !errors.Is(err, sql.ErrConnDone) {
				s.log.Warn("cannot reset a session; discarding the connection", zap.Error(err))
			}
		}
	}
	if discard {
		_ = conn.Raw(func(any) error { return driver.ErrBadConn }) // the pool closes it
	}
	_ = conn.Close()
}

// Replay sessions. A replay's settings (replayBase) are the same for every transaction of
// an origin but gtid_seq_no, so setting them up and resetting them around each
// transaction costs two round trips of eight for a one-row transaction. withReplay keeps a
// connection that replayed successfully apart from the pool, in its replay session, and
// hands it to the next replay: one with the same base then sets only gtid_seq_no (an own
// transaction's local replay nothing at all), one with another base sets everything. The
// rule of withSession still holds for the pool: a connection goes back to it only through
// release, reset to the defaults; one whose replay failed goes back at once that way. At
// most half the pool's connections are kept so (none with max_conns 1).

// replayConn is a connection kept in the session of base.
type replayConn struct {
	conn *sql.Conn
	base string
}

// replayConns holds the idle replay connections.
type replayConns struct {
	mu     sync.Mutex
	idle   []replayConn
	max    int
	closed bool
}

// take returns an idle connection, one in session base if there is one.
func (r *replayConns) take(base string) (replayConn, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.idle)
	if n == 0 {
		return replayConn{}, false
	}
	i := n - 1
	for j := range r.idle {
		if r.idle[j].base == base {
			i = j
		}
	}
	rc := r.idle[i]
	r.idle = append(r.idle[:i], r.idle[i+1:]...)
	return rc, true
}

// put keeps rc for the next replay; false when there is no room (the caller releases it).
func (r *replayConns) put(rc replayConn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || len(r.idle) >= r.max {
		return false
	}
	r.idle = append(r.idle, rc)
	return true
}

// close closes the idle connections; later ones are not kept.
func (r *replayConns) close() {
	r.mu.Lock()
	idle := r.idle
	r.idle, r.closed = nil, true
	r.mu.Unlock()
	for _, rc := range idle {
		_ = rc.conn.Close()
	}
}

// withReplay runs fn on a connection in the replay session base with gtid_seq_no set by
// seq (see replayBase). After fn succeeds the connection is kept in its session for the
// next replay (or released, reset, when no room is left); after any failure it is
// released at once (reset, or discarded when the reset fails).
func (s *Sink) withReplay(ctx context.Context, base, seq string, fn func(conn *sql.Conn) error) error {
	rc, ok := s.replay.take(base)
	if !ok {
		conn, err := s.db.Conn(ctx)
		if err != nil {
			return err
		}
		rc = replayConn{conn: conn}
	}
	setup := base + seq
	if rc.base == base {
		setup = ""
		if seq != "" {
			setup = "SET SESSION " + strings.TrimPrefix(seq, ", ")
		}
	}
	if setup != "" {
		if _, err := rc.conn.ExecContext(ctx, setup); err != nil {
			s.release(ctx, rc.conn, false)
			return err
		}
	}
	rc.base = base
	if err := fn(rc.conn); err != nil {
		s.release(ctx, rc.conn, false)
		return err
	}
	if !s.replay.put(rc) {
		s.release(ctx, rc.conn, false)
	}
	return nil
}
