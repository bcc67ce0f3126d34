package capture

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"go.uber.org/zap"

	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/ddl"
)

// skipReplicationFlag is LOG_EVENT_SKIP_REPLICATION_F: the event was written by a session
// with @@skip_replication=1.
const skipReplicationFlag = 0x8000

// Version is the capture's version in every event's source block.
const Version = "music-capture/1"

// reader turns binlog events into batches, one source transaction at a time. It runs in
// one goroutine and owns all of its state.
type reader struct {
	c      *Capturer
	p      *pipeline
	lazy   *lazyRows // rows events are decoded only when published
	schema *schemaTracker

	pos Position // after the last complete transaction
	// clockUs is the site's commit clock: the commit time (µs) given to the last complete
	// transaction of the site's domain. The binlog keeps whole seconds only, so each
	// transaction gets the wall clock at capture, kept inside its binlog second, and
	// strictly after the one before: max(binlog s, min(now, binlog s + 999999 µs),
	// clockUs + 1). Commit times thus strictly increase in GTID order (apply's
	// last-writer-wins never orders two changes of one site against their commit order,
	// and the Cassandra write timestamp needs no sequence number), and follow real time to
	// the millisecond while capture keeps up.
	clockUs int64
	file    string
	logPos  uint32
	tables  map[uint64]*tableSchema
	noPK    map[string]bool
	stopped map[string]error

	txn  txnState
	snap *snapshotState
	xa   xaState // prepared XA transactions waiting for their completion (see xa.go)

	// db checks for a gap before the session's first transaction of the own domain: it
	// must follow start (the checkpoint's own GTID, nil if none), see Capturer.checkGap.
	db      *sql.DB
	start   *GTID
	ownSeen bool
}

type txnState struct {
	active     bool
	gtid       GTID
	gtidStr    string
	ts         uint32
	tsUs       int64  // commit time on the site's commit clock
	skip       string // reason when the transaction is not published
	standalone bool
	buf        []*changeevent.Event
	subjects   []string
	count      int // events of the transaction so far
	streamed   bool
	tables     map[string]struct{}
	touched    []snapTouch // keys of snapshotting tables changed by the transaction
	xa         xaKind      // an XA PREPARE or XA completion group (see xa.go)
	xid        xid         // its XID, from the GTID event
	xidOK      bool
	before     resumePoint // the resume point just before an XA PREPARE group
}

func (r *reader) run(ctx context.Context, streamer *replication.BinlogStreamer) error {
	events := make(chan *replication.BinlogEvent, 256)
	errc := make(chan error, 1)
	go func() {
		for {
			ev, err := streamer.GetEvent(ctx)
			if err != nil {
				errc <- err
				return
			}
			select {
			case events <- ev:
			case <-ctx.Done():
				errc <- ctx.Err()
				return
			}
		}
	}()
	for {
		select {
		case ev := <-events:
			if err := r.handle(ctx, ev); err != nil {
				return err
			}
		case err := <-errc:
			return classifyBinlogError(err, r.pos, r.c.cfg.DomainID)
		case req := <-r.c.snapReqs:
			r.startSnapshot(ctx, req)
		case ch := <-r.snapChunks():
			if err := r.onChunk(ctx, ch); err != nil {
				return err
			}
		}
	}
}

func (r *reader) handle(ctx context.Context, ev *replication.BinlogEvent) error {
	if ev.Header.LogPos > 0 {
		r.logPos = ev.Header.LogPos
	}
	switch e := ev.Event.(type) {
	case *replication.RotateEvent:
		r.file = string(e.NextLogName)
		r.logPos = uint32(e.Position)
	case *replication.MariadbGTIDEvent:
		return r.begin(ctx, ev, e)
	case *replication.RowsEvent:
		return r.rows(ctx, ev, e)
	case *replication.XIDEvent:
		return r.commit(ctx, ev)
	case *replication.QueryEvent:
		return r.query(ctx, ev, e)
	case *replication.GenericEvent:
		if ev.Header.EventType == replication.XA_PREPARE_LOG_EVENT {
			return r.prepare(ctx, ev, e.Data)
		}
	case *replication.HeartbeatEvent:
		if !r.txn.active {
			r.c.m.LagMs.Set(0)
			r.c.st.lagMs.Store(0)
			if r.p.idle() {
				r.c.progressed() // caught up, nothing unacknowledged
			}
		}
		return r.flushSnapshot(ctx)
	}
	return nil
}

func (r *reader) begin(ctx context.Context, ev *replication.BinlogEvent, e *replication.MariadbGTIDEvent) error {
	if r.txn.active {
		// A transaction without its commit (the dump restarted): drop the partial one; its
		// events are sent again with the same message ids.
		r.c.log.Warn("transaction without commit dropped", zap.String("gtid", r.txn.gtidStr))
	}
	g := GTID{Domain: e.GTID.DomainID, Server: ev.Header.ServerID, Seq: e.GTID.SequenceNumber}
	if g.Domain == r.c.cfg.DomainID && !r.ownSeen {
		r.ownSeen = true
		if err := r.c.checkGap(ctx, r.db, r.start, g, r.file, ev.Header.LogPos-ev.Header.EventSize); err != nil {
			return err
		}
	}
	r.txn = txnState{active: true, gtid: g, gtidStr: g.String(), ts: ev.Header.Timestamp, standalone: e.IsStandalone(),
		buf: r.txn.buf[:0], subjects: r.txn.subjects[:0], tables: r.txn.tables, touched: r.txn.touched[:0]}
	r.txn.tsUs = commitClock(ev.Header.Timestamp, time.Now().UnixMicro(), r.clockUs)
	if r.txn.tables == nil {
		r.txn.tables = map[string]struct{}{}
	}
	clear(r.txn.tables)
	r.beginXA(ev, e)
	switch {
	case g.Domain != r.c.cfg.DomainID:
		r.txn.skip = "other_domain"
	case ev.Header.Flags&skipReplicationFlag != 0 && r.c.cfg.DropSkipReplication:
		r.txn.skip = "skip_replication"
	}
	return nil
}

// table returns the decoder of a table-map event's table (nil if it is not captured).
func (r *reader) table(ctx context.Context, tm *replication.TableMapEvent) *tableSchema {
	if ts := r.tables[tm.TableID]; ts != nil && ts.db == string(tm.Schema) && ts.table == string(tm.Table) &&
		len(ts.cols) == int(tm.ColumnCount) && string(ts.types) == string(tm.ColumnType) {
		return ts
	}
	ts := newTableSchema(tm)
	ts.types = append([]byte(nil), tm.ColumnType...)
	ts.captured = r.c.filter.Match(ts.db, ts.table)
	ts.subject = changeevent.Subject(r.c.cfg.Site, ts.db, ts.table)
	if ts.captured {
		ts.version, ts.declared = r.schema.version(ctx, ts.db, ts.table)
		ts.columns = refine(ts.columns, ts.declared)
		name := ts.db + "." + ts.table
		if !ts.hasPK && !r.noPK[name] {
			r.noPK[name] = true
			r.c.m.NoPK.Set(float64(len(r.noPK)))
			r.c.log.Warn("table without primary key: its events use all columns as key",
				zap.String("db", ts.db), zap.String("table", ts.table))
		}
	}
	r.tables[tm.TableID] = ts
	return ts
}

func (r *reader) rows(ctx context.Context, ev *replication.BinlogEvent, e *replication.RowsEvent) error {
	defer r.lazy.take(e, false) //nolint:errcheck // drops the body of an event not published
	if !r.txn.active || r.txn.skip != "" {
		return nil
	}
	ts := r.table(ctx, e.Table)
	if !ts.captured {
		return nil
	}
	name := ts.db + "." + ts.table
	if r.stopped[name] != nil {
		return nil
	}
	if ts.err != nil {
		r.stopTable(name, ts.err)
		return nil
	}
	if err := r.lazy.take(e, true); err != nil {
		return fmt.Errorf("decode rows event at %s:%d: %w", r.file, ev.Header.LogPos, err)
	}
	var op changeevent.Op
	step := 1
	switch ev.Header.EventType {
	case replication.WRITE_ROWS_EVENTv0, replication.WRITE_ROWS_EVENTv1, replication.WRITE_ROWS_EVENTv2:
		op = changeevent.OpCreate
	case replication.UPDATE_ROWS_EVENTv0, replication.UPDATE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv2,
		replication.PARTIAL_UPDATE_ROWS_EVENT:
		op, step = changeevent.OpUpdate, 2
	case replication.DELETE_ROWS_EVENTv0, replication.DELETE_ROWS_EVENTv1, replication.DELETE_ROWS_EVENTv2:
		op = changeevent.OpDelete
	default:
		return nil
	}
	r.txn.tables[name] = struct{}{}
	snapping := r.snap != nil && r.snap.db == ts.db && r.snap.table == ts.table
	for i := 0; i+step <= len(e.Rows); i += step {
		evt := &changeevent.Event{Op: op, Columns: ts.columns, SchemaVersion: ts.version}
		first, err := ts.convertRow(e.Rows[i])
		if err != nil {
			r.stopTable(name, err)
			return nil
		}
		switch op {
		case changeevent.OpCreate:
			evt.After, evt.Key = first, ts.key(first)
		case changeevent.OpDelete:
			evt.Before, evt.Key = first, ts.key(first)
		case changeevent.OpUpdate:
			after, err := ts.convertRow(e.Rows[i+1])
			if err != nil {
				r.stopTable(name, err)
				return nil
			}
			evt.Before, evt.After, evt.Key = first, after, ts.key(after)
			if snapping {
				r.txn.touched = append(r.txn.touched, snapTouch{key: keyString(ts.key(first))})
			}
		}
		if snapping {
			r.txn.touched = append(r.txn.touched, snapTouch{key: keyString(evt.Key)})
		}
		r.source(evt, ts.db, ts.table, ev.Header.LogPos)
		if err := r.add(ctx, evt, ts.subject); err != nil {
			return err
		}
	}
	return nil
}

func (r *reader) source(evt *changeevent.Event, db, table string, pos uint32) {
	evt.Source = changeevent.Source{Version: Version, Connector: "mariadb", Name: r.c.cfg.Site,
		ServerID: r.txn.gtid.Server, GTID: r.txn.gtidStr, File: r.file, Pos: pos, Row: r.txn.count,
		TsMs: r.txn.tsUs / 1000, TsUs: r.txn.tsUs, DB: db, Table: table, Snapshot: "false"}
	evt.TsMs = time.Now().UnixMilli()
	evt.Transaction = changeevent.Transaction{ID: r.txn.gtidStr, Index: r.txn.count}
}

// add appends an event to the transaction; past MaxTxnBuffer the transaction streams:
// everything but the newest event goes out with Total 0.
func (r *reader) add(ctx context.Context, evt *changeevent.Event, subject string) error {
	r.txn.count++
	r.txn.buf = append(r.txn.buf, evt)
	r.txn.subjects = append(r.txn.subjects, subject)
	if len(r.txn.buf) <= r.c.cfg.MaxTxnBuffer || r.txn.xa == xaPrepare {
		return nil // a prepared XA transaction is held whole until its XA COMMIT (xa.go)
	}
	if !r.txn.streamed {
		r.txn.streamed = true
		r.c.log.Info("large transaction: streaming it", zap.String("gtid", r.txn.gtidStr),
			zap.Int("buffered", len(r.txn.buf)))
	}
	n := len(r.txn.buf) - 1
	b := &batch{events: append([]*changeevent.Event(nil), r.txn.buf[:n]...), subjects: append([]string(nil), r.txn.subjects[:n]...)}
	r.txn.buf = append(r.txn.buf[:0], r.txn.buf[n])
	r.txn.subjects = append(r.txn.subjects[:0], r.txn.subjects[n])
	return r.p.submit(ctx, b)
}

func (r *reader) stopTable(name string, err error) {
	if r.stopped[name] != nil {
		return
	}
	r.stopped[name] = err
	r.c.m.StoppedTables.Set(float64(len(r.stopped)))
	r.c.m.Errors.WithLabelValues("table").Inc()
	r.c.setTableError(name, err)
	r.c.log.Error("table stopped", zap.String("table", name), zap.Error(err))
}

// commit ends the transaction: its events go out with their row count, and the batch
// carries the position after it for the checkpoint (or, while a prepared XA transaction
// is open, the position before the oldest one: see reader.resume).
func (r *reader) commit(ctx context.Context, ev *replication.BinlogEvent) error {
	if !r.txn.active {
		return nil
	}
	r.txn.active = false
	if r.txn.gtid.Domain == r.c.cfg.DomainID {
		r.pos[r.txn.gtid.Domain] = r.txn.gtid
		r.clockUs = r.txn.tsUs
	}
	b := &batch{endPos: r.resume(), txns: 1}
	if n := len(r.txn.buf); n > 0 {
		total := r.txn.count
		for _, e := range r.txn.buf {
			if !r.txn.streamed {
				e.Transaction.Total = total
			}
		}
		last := r.txn.buf[n-1]
		last.Transaction.Total, last.Transaction.Last = total, true
		b.events = append([]*changeevent.Event(nil), r.txn.buf...)
		b.subjects = append([]string(nil), r.txn.subjects...)
	} else {
		b.txns = 0
		reason := r.txn.skip
		if reason == "" {
			reason = "filtered"
		}
		r.c.m.Skipped.WithLabelValues(reason).Inc()
	}
	lag := time.Now().UnixMilli() - int64(ev.Header.Timestamp)*1000
	if lag < 0 {
		lag = 0
	}
	r.c.m.LagMs.Set(float64(lag))
	r.c.st.lagMs.Store(lag)
	for name := range r.txn.tables {
		db, table, _ := strings.Cut(name, ".")
		r.c.m.TableLagMs.WithLabelValues(db, table).Set(float64(lag))
	}
	r.noteTouched()
	if err := r.p.submit(ctx, b); err != nil {
		return err
	}
	return r.flushSnapshot(ctx)
}

func (r *reader) query(ctx context.Context, ev *replication.BinlogEvent, e *replication.QueryEvent) error {
	q := strings.TrimSpace(string(e.Query))
	if len(q) > 3 && strings.EqualFold(q[:3], "XA ") {
		return r.xaQuery(ctx, ev, q)
	}
	switch strings.ToUpper(q) {
	case "BEGIN":
		return nil
	case "COMMIT":
		return r.commit(ctx, ev)
	case "ROLLBACK":
		r.txn.active = false
		return nil
	}
	if !r.txn.active {
		return nil
	}
	if !r.txn.standalone {
		// A statement inside a row-based transaction: SAVEPOINT and the like, or the
		// CREATE TABLE of a CREATE TABLE ... SELECT, which MariaDB logs (ROW format) as the
		// table's definition followed by the selected rows in one transaction.
		return r.ddl(ctx, string(e.Schema), q, true)
	}
	if err := r.ddl(ctx, string(e.Schema), q, false); err != nil {
		return err
	}
	return r.commit(ctx, ev)
}

// ddl records a schema change in the history of every table it touches (following
// renames) and publishes it as ONE OpDDL event (see the package doc: Schema history).
// inTxn marks a DDL inside a transaction with rows (CREATE TABLE ... SELECT): it goes out
// before the rows as a transaction of its own, id "<gtid>/ddl", so that the rows, under
// the GTID, find the table at every site.
func (r *reader) ddl(ctx context.Context, schema, stmt string, inTxn bool) error {
	info := ddl.Parse(schema, stmt)
	if info.Kind == "" {
		return nil // not a schema change of mirrored data (view, routine, user, SAVEPOINT, ...)
	}
	if inTxn && info.Kind != ddl.CreateTable {
		r.c.log.Warn("schema change inside a transaction with rows not mirrored", zap.String("gtid", r.txn.gtidStr),
			zap.String("statement", stmt))
		return nil
	}
	clear(r.tables) // table ids and versions change with DDL
	touched := info.Tables
	var srcDB, srcTable string
	captured := false
	switch {
	case info.IsDatabase():
		srcDB = info.Database
		captured = srcDB != "" && r.c.filter.Match(srcDB, "*")
		if info.Kind == ddl.DropDatabase {
			touched = r.schema.tablesOf(srcDB)
		}
	case info.Kind == ddl.Opaque:
		srcDB = schema
		captured = schema != "" && r.c.filter.Match(schema, "*")
	default:
		// The event's database is the statement's default one when a name relies on it
		// (apply runs the statement there); its table is the first one touched.
		srcDB = info.Tables[0].DB
		for _, t := range info.Tables {
			captured = captured || t.DB != "" && r.c.filter.Match(t.DB, t.Table)
			if t.DB == schema && schema != "" {
				srcDB = schema
			}
		}
		for _, t := range info.Tables {
			if t.DB == srcDB {
				srcTable = t.Table
				break
			}
		}
	}
	if !captured || srcDB == "" {
		return nil
	}
	keep := func(n ddl.Name) bool { return r.c.filter.Match(n.DB, n.Table) }
	if err := r.schema.onDDL(ctx, r.txn.gtid, info, touched, stmt, keep); err != nil {
		return err
	}
	if r.txn.skip != "" {
		return nil
	}
	if info.Verb == "CREATE" || info.Verb == "TRUNCATE" || info.Verb == "DROP" || info.Verb == "RENAME" || info.Kind == ddl.DropDatabase {
		for _, t := range touched {
			if name := t.String(); r.stopped[name] != nil {
				// A table recreated, emptied or renamed starts afresh (resnapshot it if it had rows).
				delete(r.stopped, name)
				r.c.setTableError(name, nil)
				r.c.m.StoppedTables.Set(float64(len(r.stopped)))
			}
		}
	}
	kind := info.Verb
	var declared []changeevent.Column
	if srcTable != "" && srcTable != "*" {
		final := ddl.Name{DB: srcDB, Table: srcTable}
		for _, rn := range info.Renames {
			if rn.From == final {
				final = rn.To
			}
		}
		_, declared = r.schema.version(ctx, final.DB, final.Table)
	}
	evt := &changeevent.Event{Op: changeevent.OpDDL, DDL: &changeevent.DDL{Statement: stmt, Kind: kind},
		SchemaVersion: r.txn.gtidStr, Columns: declared}
	if srcTable == "" {
		srcTable = "*" // a change of the database (or opaque): status and quarantine name it db.*
	}
	subject := changeevent.Subject(r.c.cfg.Site, srcDB, srcTable)
	r.c.log.Info("schema change", zap.String("gtid", r.txn.gtidStr), zap.String("db", srcDB),
		zap.String("table", srcTable), zap.String("kind", info.Kind), zap.Bool("opaque", info.Kind == ddl.Opaque))
	if inTxn {
		r.source(evt, srcDB, srcTable, r.logPos)
		evt.Source.Row = 0
		evt.Transaction = changeevent.Transaction{ID: r.txn.gtidStr + "/ddl", Index: 0, Total: 1, Last: true}
		return r.p.submit(ctx, &batch{events: []*changeevent.Event{evt}, subjects: []string{subject}})
	}
	r.source(evt, srcDB, srcTable, r.logPos)
	return r.add(ctx, evt, subject)
}

// classifyBinlogError turns the server's refusal of the dump position (MariaDB error 1236)
// into a *PurgedError.
func classifyBinlogError(err error, pos Position, domain uint32) error {
	var me *mysql.MyError
	if errors.As(err, &me) && me.Code == mysql.ER_MASTER_FATAL_ERROR_READING_BINLOG ||
		err != nil && strings.Contains(err.Error(), "ERROR 1236") {
		pe := &PurgedError{Position: pos.Only(domain).String(), Domain: domain, Err: err}
		if g, ok := pos[domain]; ok {
			pe.LostFrom = next(g)
		}
		return pe
	}
	return err
}

func keyString(k changeevent.Row) string {
	data, _ := json.Marshal(k)
	return string(data)
}

// commitClock is the commit time (µs) of a transaction whose binlog time is sec, read at
// now (µs), after one stamped prev: the wall clock kept inside the binlog second, and
// strictly after prev.
func commitClock(sec uint32, now, prev int64) int64 {
	lo := int64(sec) * 1_000_000
	return max(lo, min(now, lo+999_999), prev+1)
}
