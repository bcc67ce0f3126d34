package gateway

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"go.uber.org/zap"
)

// session is what the gateway tracks of the backend session to run the hooks.
type session struct {
	db       string              // current database
	dbKnown  bool                // false after a USE whose outcome is unclear: ask the backend
	stmts    map[uint32]stmtInfo // tables of each prepared statement
	lastStmt uint32              // the last one prepared (MariaDB's statement id -1 means it)
	named    map[string][]Table  // tables of SQL-level prepared statements, by name

	inTrans    bool // SERVER_STATUS_IN_TRANS of the last OK/EOF
	stateKnown bool // false after an ERR, until the next OK/EOF
	xa         bool // in an XA transaction

	txn       *txn   // the transaction that called Acquire, nil if none
	gtid      string // @@last_gtid as last read
	gtidFresh bool   // no command that may commit ran since gtid was read
}

// txn is a transaction that called Acquire.
type txn struct {
	tables []Table        // acquired, in order
	have   map[Table]bool // the same
	gtid   string         // @@last_gtid before it began, or at its last commit
}

// errXA refuses sync tables inside XA transactions, whose commit may come from another
// connection (XA COMMIT of a prepared transaction), out of the gateway's sight.
var errXA = &SQLError{Code: 1399, State: "XAE07", Message: "gateway: sync tables cannot be used in XA transactions"}

func (s *session) reset() {
	s.stmts, s.named, s.lastStmt, s.xa, s.gtidFresh = map[uint32]stmtInfo{}, map[string][]Table{}, 0, false, false
}

func (s *session) noteStatus(st uint16) {
	s.inTrans, s.stateKnown = st&mysql.SERVER_STATUS_IN_TRANS != 0, true
}

// inspect finds the tables command p touches (COM_QUERY, COM_STMT_EXECUTE, ...) and, for
// COM_STMT_PREPARE, those of the statement prepared.
func (c *conn) inspect(p packet) (stmtInfo, error) {
	switch p.data[0] {
	case mysql.COM_QUERY, mysql.COM_STMT_PREPARE:
		if err := c.ensureDB(); err != nil {
			return stmtInfo{}, err
		}
		info := inspect(c.db, string(p.data[1:]), c.named)
		if p.data[0] == mysql.COM_STMT_PREPARE {
			info = stmtInfo{prepare: &stmtInfo{tables: info.tables, ends: info.ends}}
		}
		return info, nil
	case mysql.COM_STMT_EXECUTE, comStmtBulkExecute: // not COM_STMT_FETCH: MariaDB materialises cursors
		if len(p.data) < 5 {
			return stmtInfo{}, fmt.Errorf("%w: statement command without an id", ErrProtocol)
		}
		id := binary.LittleEndian.Uint32(p.data[1:])
		if id == 0xFFFFFFFF {
			id = c.lastStmt
		}
		return c.stmts[id], nil
	}
	return stmtInfo{}, nil
}

// after updates the session from a command's outcome.
func (c *conn) after(p packet, r *response, info stmtInfo) {
	switch p.data[0] {
	case mysql.COM_QUERY:
		if info.hasUse {
			c.db, c.dbKnown = info.use, !r.sawErr
		}
		maps.Copy(c.named, info.named)
		c.xa = c.xa && !info.xaEnd || info.xaStart && !r.sawErr
	case mysql.COM_INIT_DB:
		if !r.sawErr {
			c.db, c.dbKnown = string(p.data[1:]), true
		}
	case mysql.COM_STMT_PREPARE:
		if !r.sawErr && c.hooks != nil {
			c.stmts[r.stmtID], c.lastStmt = *info.prepare, r.stmtID
		}
	case mysql.COM_RESET_CONNECTION:
		c.session.reset()
		c.dbKnown = false
	}
}

// acquire calls Acquire for the sync tables among all that the transaction has not
// acquired yet. refusal is the hook's error (the statement must not run), err a failure
// of the backend.
func (c *conn) acquire(all []Table) (refusal, err error) {
	var tables []Table
	for _, t := range all {
		if c.txn != nil && c.txn.have[t] || slices.Contains(tables, t) || !c.hooks.IsSync(t.DB, t.Name) {
			continue
		}
		tables = append(tables, t)
	}
	if len(tables) == 0 {
		return nil, nil
	}
	if c.xa {
		return errXA, nil
	}
	if c.txn == nil {
		if !c.gtidFresh {
			if _, _, err := c.backendState(); err != nil {
				return nil, err
			}
		}
		c.txn = &txn{gtid: c.gtid, have: map[Table]bool{}}
	}
	start := time.Now()
	err = c.hooks.Acquire(c.clientCtx, c.id, tables)
	c.g.metrics.hooks.WithLabelValues("acquire").Observe(time.Since(start).Seconds())
	if err != nil {
		c.g.metrics.errors.WithLabelValues("acquire").Inc()
		return err, nil
	}
	for _, t := range tables {
		c.txn.have[t] = true
	}
	c.txn.tables = append(c.txn.tables, tables...)
	return nil, nil
}

// settle runs when a transaction that acquired tables may have ended, after the whole
// response arrived, with the part of it held since. It asks the backend whether the
// session is still in a transaction and whether @@last_gtid moved (a commit), calls
// Committed for a commit, sends the held packets (or an ERR instead if Committed failed),
// then calls Ended if the transaction is over.
func (c *conn) settle(held []packet) error {
	t := c.txn
	inTrans, gtid, err := c.backendState()
	if err != nil {
		return err
	}
	if gtid != t.gtid && gtid != "" {
		t.gtid = gtid
		if len(t.tables) > 0 {
			start := time.Now()
			err := c.hooks.Committed(c.g.hard, c.id, t.tables, gtid)
			c.g.metrics.hooks.WithLabelValues("committed").Observe(time.Since(start).Seconds())
			if err != nil {
				c.g.metrics.errors.WithLabelValues("committed").Inc()
				c.log.Warn("gateway: commit not made durable", zap.String("gtid", gtid), zap.Error(err))
				held = []packet{errPacket(held[0].seq, sqlError(err))}
			}
		}
	}
	for _, p := range held {
		c.toClient(p)
	}
	if !inTrans {
		c.endTxn()
	}
	return nil
}

// endIfIdle ends the transaction if the backend is not in one (a refused statement
// started none).
func (c *conn) endIfIdle() error {
	if c.txn == nil {
		return nil
	}
	if !c.stateKnown {
		if _, _, err := c.backendState(); err != nil {
			return err
		}
	}
	if !c.inTrans {
		c.endTxn()
	}
	return nil
}

// endTxn calls Ended for the open transaction, if any.
func (c *conn) endTxn() {
	if t := c.txn; t != nil {
		c.txn = nil
		c.hooks.Ended(c.id, t.tables)
	}
}

// backendState asks the backend whether the session is in a transaction and its
// @@last_gtid ("" before the first commit).
func (c *conn) backendState() (inTrans bool, gtid string, err error) {
	row, err := c.query("SELECT @@in_transaction, @@last_gtid")
	if err != nil {
		return false, "", err
	}
	if len(row) != 2 {
		return false, "", fmt.Errorf("%w: transaction state query returned %d columns", ErrProtocol, len(row))
	}
	c.inTrans, c.stateKnown = row[0] == "1", true
	c.gtid, c.gtidFresh = row[1], true
	return c.inTrans, c.gtid, nil
}

// ensureDB asks the backend for the current database when the gateway lost track of it.
func (c *conn) ensureDB() error {
	if c.dbKnown {
		return nil
	}
	row, err := c.query("SELECT DATABASE()")
	if err != nil {
		return err
	}
	if len(row) != 1 {
		return fmt.Errorf("%w: SELECT DATABASE() returned %d columns", ErrProtocol, len(row))
	}
	c.db, c.dbKnown = row[0], true
	return nil
}

// query runs sql on the backend for the gateway itself, between client commands, and
// returns its first row.
func (c *conn) query(sql string) ([]string, error) {
	row, err := c.own(append([]byte{mysql.COM_QUERY}, sql...))
	if err == nil && row == nil {
		err = errors.New("backend: " + sql + ": no row")
	}
	return row, err
}

// own sends a command of the gateway's own to the backend and returns the first row of
// its response. An ERR from the backend is an error.
func (c *conn) own(cmd []byte) ([]string, error) {
	if err := c.send(packet{data: cmd}); err != nil {
		return nil, err
	}
	r := newResponse(respResult, c.caps&uint64(mysql.CLIENT_DEPRECATE_EOF) != 0)
	var row []string
	for !r.done {
		p, err := c.recv()
		if err != nil {
			return nil, err
		}
		if err := r.feed(p.data); err != nil {
			return nil, err
		}
		switch {
		case r.row && row == nil:
			if row, err = textRow(p.data); err != nil {
				return nil, err
			}
		case r.isErr:
			return nil, fmt.Errorf("backend: %q: %w", cmd, parseErr(p.data))
		case r.hasStatus:
			c.noteStatus(r.status)
		}
	}
	return row, nil
}
