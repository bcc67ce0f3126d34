package capture

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/music-coord/music/changeevent"
)

// A snapshot publishes a table's existing rows (op r) while the binlog keeps streaming,
// with no gap and no lost concurrent write, without locks and without writing to the
// source:
//
//  1. The reader registers the table; from then on it remembers the key of every row
//     a captured transaction changes, with the binlog position of that transaction.
//  2. The snapshot reads the table in one START TRANSACTION WITH CONSISTENT SNAPSHOT,
//     whose binlog position P MariaDB reports exactly (binlog_snapshot_file/position),
//     ordered by primary key and cut into chunks of Config.SnapshotChunk rows.
//  3. The reader publishes a chunk once it has read the binlog up to P, leaving out the
//     rows changed after P: their newer state is already in the stream (or follows).
//
// So every row's last event in the stream is its state now. A table without primary
// key is read the same way (keyed by all its columns).

type snapRequest struct {
	db, table string
	done      chan error
}

type snapChunk struct {
	rows    []changeevent.Row
	file    string
	pos     uint32
	last    bool
	err     error
	emitted chan struct{}
}

type snapTouch struct{ key string }

type binlogPos struct {
	file string
	pos  uint32
}

func (a binlogPos) less(b binlogPos) bool {
	fa, fb := filepath.Base(a.file), filepath.Base(b.file)
	if fa != fb {
		return fa < fb
	}
	return a.pos < b.pos
}

type snapshotState struct {
	db, table string
	req       snapRequest
	cancel    context.CancelFunc
	chunks    chan *snapChunk
	pending   *snapChunk
	changed   map[string]binlogPos
	columns   []changeevent.Column
	keys      []string
	txnID     string
	rowNo     int
	progress  *SnapshotProgress
}

// SnapshotProgress is a snapshot's progress.
type SnapshotProgress struct {
	DB, Table   string
	Done, Total int64
	Started     time.Time
	RowsPerSec  float64
	ETA         time.Duration
	Finished    bool
	Err         error
}

// Snapshot publishes db.table's current rows as op "r" events while capture keeps
// streaming, and returns when all are published (not necessarily acknowledged). One
// snapshot runs at a time. Run must be running.
func (c *Capturer) Snapshot(ctx context.Context, db, table string) error {
	req := snapRequest{db: db, table: table, done: make(chan error, 1)}
	select {
	case c.snapReqs <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Snapshots returns the progress of the snapshots run so far.
func (c *Capturer) Snapshots() []SnapshotProgress {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []SnapshotProgress
	for _, p := range c.snapshots {
		out = append(out, *p)
	}
	return out
}

func (r *reader) snapChunks() chan *snapChunk {
	if r.snap == nil {
		return nil
	}
	return r.snap.chunks
}

func (r *reader) startSnapshot(ctx context.Context, req snapRequest) {
	if r.snap != nil {
		req.done <- fmt.Errorf("capture: snapshot of %s.%s is running; one at a time", r.snap.db, r.snap.table)
		return
	}
	if !r.c.filter.Match(req.db, req.table) {
		req.done <- fmt.Errorf("capture: %s.%s is not captured (include/exclude)", req.db, req.table)
		return
	}
	cols, err := r.schema.describe(ctx, req.db, req.table)
	if err == nil && len(cols) == 0 {
		err = fmt.Errorf("capture: snapshot: table %s.%s does not exist", req.db, req.table)
	}
	if err != nil {
		req.done <- err
		return
	}
	sctx, cancel := context.WithCancel(ctx)
	prog := &SnapshotProgress{DB: req.db, Table: req.table, Started: time.Now()}
	s := &snapshotState{db: req.db, table: req.table, req: req, cancel: cancel, chunks: make(chan *snapChunk),
		changed: map[string]binlogPos{}, columns: cols, progress: prog,
		txnID: fmt.Sprintf("snapshot:%s.%s:%d", req.db, req.table, prog.Started.UnixMilli())}
	for _, c := range cols {
		if c.PK {
			s.keys = append(s.keys, c.Name)
		}
	}
	if len(s.keys) == 0 {
		for _, c := range cols {
			s.keys = append(s.keys, c.Name)
		}
	}
	r.snap = s
	r.c.mu.Lock()
	r.c.snapshots[req.db+"."+req.table] = prog
	r.c.mu.Unlock()
	r.c.log.Info("snapshot started", zap.String("db", req.db), zap.String("table", req.table))
	go r.c.readSnapshot(sctx, s)
}

// noteTouched remembers, at a commit, the keys of the snapshotting table it changed.
func (r *reader) noteTouched() {
	if r.snap == nil || len(r.txn.touched) == 0 {
		return
	}
	at := binlogPos{r.file, r.logPos}
	for _, t := range r.txn.touched {
		r.snap.changed[t.key] = at
	}
}

func (r *reader) onChunk(ctx context.Context, ch *snapChunk) error {
	if ch.err != nil {
		r.finishSnapshot(ch.err)
		return nil
	}
	r.snap.pending = ch
	return r.flushSnapshot(ctx)
}

// flushSnapshot publishes the pending chunk once the reader is at or past its position.
func (r *reader) flushSnapshot(ctx context.Context) error {
	s := r.snap
	if s == nil || s.pending == nil || r.txn.active {
		return nil
	}
	ch := s.pending
	at := binlogPos{ch.file, ch.pos}
	if (binlogPos{r.file, r.logPos}).less(at) {
		return nil // the reader has not reached the snapshot's position yet
	}
	s.pending = nil
	gtid, server := "0-0-0", uint32(0)
	if g, ok := r.pos[r.c.cfg.DomainID]; ok {
		gtid, server = g.String(), g.Server
	}
	// The chunk holds each row as it was at the snapshot's position, or at the reader's
	// position for rows changed since (those are left out). Its version is the commit
	// clock of the last transaction read: every transaction the reader reads later has a
	// strictly later clock, so a change committed after this point always wins over the
	// chunk's row at every site, however late capture reads it.
	tsUs := r.clockUs
	if tsUs == 0 {
		tsUs = time.Now().UnixMicro()
	}
	subject := changeevent.Subject(r.c.cfg.Site, s.db, s.table)
	b := &batch{}
	for i, row := range ch.rows {
		key := changeevent.Row{}
		for _, k := range s.keys {
			key[k] = row[k]
		}
		if p, ok := s.changed[keyString(key)]; ok && at.less(p) {
			continue // changed after the snapshot: the stream has its newer state
		}
		flag := "true"
		if ch.last && i == len(ch.rows)-1 {
			flag = "last"
		}
		e := &changeevent.Event{Op: changeevent.OpRead, After: row, Key: key, Columns: s.columns,
			Source: changeevent.Source{Version: Version, Connector: "mariadb", Name: r.c.cfg.Site, ServerID: server,
				GTID: gtid, File: ch.file, Pos: ch.pos, Row: s.rowNo, TsMs: tsUs / 1000, TsUs: tsUs, DB: s.db, Table: s.table, Snapshot: flag},
			TsMs:        time.Now().UnixMilli(),
			Transaction: changeevent.Transaction{ID: s.txnID, Index: s.rowNo}}
		if v := r.schema.current[s.db+"."+s.table]; v != nil {
			e.SchemaVersion = v.GTID
		}
		s.rowNo++
		b.events = append(b.events, e)
		b.subjects = append(b.subjects, subject)
	}
	if len(b.events) > 0 {
		if err := r.p.submit(ctx, b); err != nil {
			return err
		}
	}
	close(ch.emitted)
	if ch.last {
		r.finishSnapshot(nil)
	}
	return nil
}

func (r *reader) finishSnapshot(err error) {
	s := r.snap
	r.snap = nil
	s.cancel()
	r.c.mu.Lock()
	s.progress.Finished, s.progress.Err = true, err
	p := *s.progress
	r.c.mu.Unlock()
	if err != nil {
		r.c.log.Error("snapshot failed", zap.String("db", s.db), zap.String("table", s.table), zap.Error(err))
	} else {
		r.c.log.Info("snapshot done", zap.String("db", s.db), zap.String("table", s.table), zap.Int64("rows", p.Done),
			zap.Duration("took", time.Since(p.Started)))
	}
	s.req.done <- err
}

// abortSnapshot ends a running snapshot when the session ends.
func (r *reader) abortSnapshot() {
	if r.snap != nil {
		r.finishSnapshot(errors.New("capture: snapshot interrupted by a capture restart; run it again"))
	}
}

// readSnapshot reads the table in one consistent snapshot and hands chunks to the reader.
func (c *Capturer) readSnapshot(ctx context.Context, s *snapshotState) {
	send := func(ch *snapChunk) bool {
		ch.emitted = make(chan struct{})
		select {
		case s.chunks <- ch:
		case <-ctx.Done():
			return false
		}
		select {
		case <-ch.emitted:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if err := c.scanSnapshot(ctx, s, send); err != nil && ctx.Err() == nil {
		send(&snapChunk{err: fmt.Errorf("capture: snapshot %s.%s: %w", s.db, s.table, err)})
	}
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

func (c *Capturer) scanSnapshot(ctx context.Context, s *snapshotState, send func(*snapChunk) bool) error {
	db, err := c.openDB()
	if err != nil {
		return err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	for _, q := range []string{"SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ", "START TRANSACTION WITH CONSISTENT SNAPSHOT"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	defer conn.ExecContext(context.Background(), "ROLLBACK") //nolint:errcheck
	var file string
	var pos uint32
	rows, err := conn.QueryContext(ctx, "SHOW STATUS LIKE 'binlog_snapshot_%'")
	if err != nil {
		return err
	}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return err
		}
		switch strings.ToLower(k) {
		case "binlog_snapshot_file":
			file = v
		case "binlog_snapshot_position":
			n, _ := strconv.ParseUint(v, 10, 32)
			pos = uint32(n)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	rows.Close()
	if file == "" {
		return errors.New("no binlog_snapshot_file: is the binlog enabled?")
	}
	table := quoteIdent(s.db) + "." + quoteIdent(s.table)
	var total int64
	if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table).Scan(&total); err != nil {
		return err
	}
	c.updateProgress(s, 0, total)
	names := make([]string, len(s.columns))
	for i, col := range s.columns {
		names[i] = quoteIdent(col.Name)
	}
	order := make([]string, len(s.keys))
	for i, k := range s.keys {
		order[i] = quoteIdent(k)
	}
	q := "SELECT " + strings.Join(names, ",") + " FROM " + table + " ORDER BY " + strings.Join(order, ",")
	data, err := conn.QueryContext(ctx, q)
	if err != nil {
		return err
	}
	defer data.Close()
	raw := make([]sql.RawBytes, len(s.columns))
	ptrs := make([]any, len(raw))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	var done int64
	chunk := &snapChunk{file: file, pos: pos}
	for data.Next() {
		if err := data.Scan(ptrs...); err != nil {
			return err
		}
		row, err := snapshotRow(s, raw)
		if err != nil {
			return err
		}
		chunk.rows = append(chunk.rows, row)
		if len(chunk.rows) > c.cfg.SnapshotChunk {
			// Hold the newest row back so the last chunk is known to be last.
			next := chunk.rows[len(chunk.rows)-1]
			chunk.rows = chunk.rows[:len(chunk.rows)-1]
			done += int64(len(chunk.rows))
			c.updateProgress(s, done, total)
			if !send(chunk) {
				return ctx.Err()
			}
			chunk = &snapChunk{file: file, pos: pos, rows: []changeevent.Row{next}}
		}
	}
	if err := data.Err(); err != nil {
		return err
	}
	chunk.last = true
	done += int64(len(chunk.rows))
	c.updateProgress(s, done, total)
	if !send(chunk) {
		return ctx.Err()
	}
	return nil
}

func (c *Capturer) updateProgress(s *snapshotState, done, total int64) {
	c.mu.Lock()
	p := s.progress
	p.Done, p.Total = done, max(total, done)
	el := time.Since(p.Started).Seconds()
	if el > 0 {
		p.RowsPerSec = float64(done) / el
	}
	if p.RowsPerSec > 0 {
		p.ETA = time.Duration(float64(p.Total-done) / p.RowsPerSec * float64(time.Second))
	}
	snap := *p
	c.mu.Unlock()
	c.m.SnapshotRows.WithLabelValues(s.db, s.table, "done").Set(float64(done))
	c.m.SnapshotRows.WithLabelValues(s.db, s.table, "total").Set(float64(snap.Total))
	c.m.SnapshotRate.WithLabelValues(s.db, s.table).Set(snap.RowsPerSec)
	c.m.SnapshotETA.WithLabelValues(s.db, s.table).Set(snap.ETA.Seconds())
	c.log.Info("snapshot progress", zap.String("db", s.db), zap.String("table", s.table), zap.Int64("done", done),
		zap.Int64("total", snap.Total), zap.Float64("rows_per_sec", snap.RowsPerSec), zap.Duration("eta", snap.ETA))
}

// snapshotRow converts a text-protocol row to changeevent values.
func snapshotRow(s *snapshotState, raw []sql.RawBytes) (changeevent.Row, error) {
	row := make(changeevent.Row, len(raw))
	for i, col := range s.columns {
		v, err := changeevent.FromText(col.Kind, raw[i])
		if err != nil {
			return nil, &UnrepresentableError{DB: s.db, Table: s.table, Column: col.Name, Reason: err.Error()}
		}
		row[col.Name] = v
	}
	return row, nil
}
