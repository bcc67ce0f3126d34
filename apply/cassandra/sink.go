package cassandra

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/gocql/gocql"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/changeevent"
)

// Config configures the sink.
type Config struct {
	Keyspace    string      `yaml:"keyspace"`
	Replication Replication `yaml:"replication"` // used by EnsureKeyspace
	Concurrency int         `yaml:"concurrency"` // concurrent writes per transaction; default 32
}

// Sink writes transactions into the MUSIC store. It is safe for concurrent use.
type Sink struct {
	session  *gocql.Session
	keyspace string // raw name
	ks       string // quoted
	conc     int
	log      *zap.Logger

	mu     sync.Mutex
	tables map[string]*table        // by db.table
	multi  map[string]*table        // tables without a primary key and sequences, by db.table (multiset.go)
	gates  map[string]*sync.RWMutex // by db.table (see gate in schema.go)
}

var _ apply.Sink = (*Sink)(nil)

// EnsureKeyspace creates the keyspace with its replication if it does not exist.
func EnsureKeyspace(ctx context.Context, session *gocql.Session, cfg Config) error {
	ks, err := quote(cfg.Keyspace, 48)
	if err != nil {
		return fmt.Errorf("cassandra: keyspace: %w", err)
	}
	repl, err := cfg.Replication.CQL()
	if err != nil {
		return err
	}
	if err := session.Query("CREATE KEYSPACE IF NOT EXISTS " + ks + " WITH replication = " + repl).WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("cassandra: create keyspace %s: %w", ks, err)
	}
	return nil
}

// New returns a sink writing into cfg.Keyspace, which must exist (see EnsureKeyspace); it
// creates the registry table music_tables there.
func New(ctx context.Context, session *gocql.Session, cfg Config, log *zap.Logger) (*Sink, error) {
	ks, err := quote(cfg.Keyspace, 48)
	if err != nil {
		return nil, fmt.Errorf("cassandra: keyspace: %w", err)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 32
	}
	s := &Sink{session: session, keyspace: cfg.Keyspace, ks: ks, conc: cfg.Concurrency,
		log: log.With(zap.String("sink", "cassandra")), tables: map[string]*table{}, multi: map[string]*table{}}
	stmt := "CREATE TABLE IF NOT EXISTS " + ks + ".music_tables (cql_table text PRIMARY KEY, db text, tbl text, columns text)"
	if err := session.Query(stmt).WithContext(ctx).Exec(); err != nil {
		return nil, fmt.Errorf("cassandra: create music_tables: %w", err)
	}
	stmt = "CREATE TABLE IF NOT EXISTS " + ks + ".music_multiset_ops (cql_table text, op text, val text, PRIMARY KEY ((cql_table, op)))"
	if err := session.Query(stmt).WithContext(ctx).Exec(); err != nil {
		return nil, fmt.Errorf("cassandra: create music_multiset_ops: %w", err)
	}
	return s, nil
}

// Name is "cassandra".
func (s *Sink) Name() string { return "cassandra" }

// Apply writes the last change of every row of tx with tx's write timestamp.
func (s *Sink) Apply(ctx context.Context, tx *apply.Txn) (apply.Result, error) {
	wt, err := tx.Version.WriteTimestamp()
	if err != nil {
		return apply.Result{}, err
	}
	if tx.IsDDL() {
		if e := tx.Events[0]; multisetColumns(e.Columns) && e.Source.Table != "" &&
			(strings.EqualFold(e.DDL.Kind, "CREATE") || strings.EqualFold(e.DDL.Kind, "ALTER")) {
			if _, err := s.ensureMultiset(ctx, e.Source.DB, e.Source.Table, e.Columns); err != nil {
				return apply.Result{}, err
			}
			return apply.Result{Applied: 1}, nil
		}
		return s.applyDDL(ctx, tx)
	}
	keyed, multi := splitMultiset(tx)
	final, err := lastChanges(keyed)
	if err != nil {
		return apply.Result{}, err
	}
	var rows []apply.RowChange
	for _, c := range final {
		if emptyKey(c) {
			if c.Image == nil {
				continue // the store cannot hold such a row, so there is nothing to delete
			}
			return apply.Result{}, fmt.Errorf("%w: cassandra: %s.%s key %s: an empty primary key cannot be stored "+
				"(Cassandra: key may not be empty); the row stays at the sites only", apply.ErrRefused,
				c.Event.Source.DB, c.Event.Source.Table, c.Key)
		}
		rows = append(rows, c)
	}
	// The tables' gates are held until every row is written: a rebuild (a primary key
	// change) waits, so it never drops a row written after it copied the table.
	tables, release, err := s.writable(ctx, rows)
	if err != nil {
		return apply.Result{}, err
	}
	defer release()
	var multiApplied int
	if len(multi) > 0 {
		if multiApplied, err = s.applyMultiset(ctx, tx, multi, wt); err != nil {
			return apply.Result{}, fmt.Errorf("cassandra: apply %s from %s: %w", tx.ID, tx.Origin, err)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.conc)
	var batch *gocql.Batch
	size := 0
	flush := func() {
		if batch == nil {
			return
		}
		b := batch
		batch, size = nil, 0
		g.Go(func() error { return s.session.ExecuteBatch(b) })
	}
	batchWT := wt
	for _, c := range rows {
		t := tables[c.Event.Source.DB+"."+c.Event.Source.Table]
		stmt, args, err := statement(t, tx, c)
		if err != nil {
			_ = g.Wait()
			return apply.Result{}, err
		}
		// A sync table's rows carry the version the sync gate gave them.
		rowWT, err := tx.VersionFor(c.Event.Source.DB, c.Event.Source.Table).WriteTimestamp()
		if err != nil {
			_ = g.Wait()
			return apply.Result{}, err
		}
		n := approxSize(args)
		if size+n > maxBatchBytes || rowWT != batchWT {
			flush() // a big row goes alone: Cassandra fails multi-row batches over 640 KiB
		}
		if batch == nil {
			batch, batchWT = s.session.NewBatch(gocql.UnloggedBatch).WithTimestamp(rowWT).WithContext(gctx), rowWT
		}
		batch.Query(stmt, args...)
		if size += n; len(batch.Entries) >= maxBatchRows || size >= maxBatchBytes {
			flush()
		}
	}
	flush()
	if err := g.Wait(); err != nil {
		return apply.Result{}, fmt.Errorf("cassandra: apply %s from %s: %w", tx.ID, tx.Origin, err)
	}
	return apply.Result{Applied: len(final) + multiApplied}, nil
}

// lastChanges returns each row's last change in tx, in order of first appearance.
// A transaction's rows go to the store in unlogged batches (all under the transaction's
// write timestamp): fewer requests than one per row, and small enough to stay under
// Cassandra's batch size warning (5 KiB by default).
const (
	maxBatchRows  = 32
	maxBatchBytes = 4 << 10
)

// approxSize estimates the bytes a row's values take in a batch.
func approxSize(args []any) int {
	n := 0
	for _, a := range args {
		switch v := a.(type) {
		case string:
			n += len(v)
		case []byte:
			n += len(v)
		default:
			n += 8
		}
	}
	return n + 16
}

func lastChanges(events []*changeevent.Event) ([]apply.RowChange, error) {
	idx := map[string]int{}
	var out []apply.RowChange
	for _, e := range events {
		cs, err := apply.Changes(e)
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			k := apply.TableKey(e) + "\x00" + c.Key
			if i, ok := idx[k]; ok {
				out[i] = c
				continue
			}
			idx[k] = len(out)
			out = append(out, c)
		}
	}
	return out, nil
}

// emptyKey reports whether c's row has a one-column primary key whose value is empty (""
// or no bytes): Cassandra refuses an empty partition key.
func emptyKey(c apply.RowChange) bool {
	pk := apply.PKColumns(c.Event.Columns)
	if len(pk) != 1 {
		return false
	}
	row := c.Image
	if row == nil {
		row = c.Event.Before
	}
	switch v := row[pk[0].Name].(type) {
	case string:
		return v == ""
	case []byte:
		return len(v) == 0
	}
	return false
}

// statement builds the INSERT of an image or the DELETE of a key.
func statement(t *table, tx *apply.Txn, c apply.RowChange) (string, []any, error) {
	e := c.Event
	kinds := map[string]changeevent.Kind{}
	for _, col := range e.Columns {
		kinds[col.Name] = col.Kind
	}
	if c.Image == nil {
		var where []string
		var args []any
		for _, name := range t.pk { // the store's key: the row's, or a finer one (keyFits)
			col := changeevent.Column{Name: name, Kind: kinds[name]}
			v, err := cqlValue(col.Kind, e.Before[col.Name])
			if err != nil {
				return "", nil, err
			}
			where = append(where, `"`+col.Name+`"=?`)
			args = append(args, v)
		}
		return "DELETE FROM " + t.name + " WHERE " + strings.Join(where, " AND "), args, nil
	}
	var names, marks []string
	var args []any
	for _, col := range e.Columns {
		raw, ok := c.Image[col.Name]
		if !ok {
			continue
		}
		v, err := cqlValue(col.Kind, raw)
		if err != nil {
			return "", nil, err
		}
		names = append(names, `"`+col.Name+`"`)
		marks = append(marks, "?")
		args = append(args, v)
	}
	names = append(names, "music_origin", "music_gtid", "music_version")
	marks = append(marks, "?", "?", "?")
	wt, _ := tx.VersionFor(c.Event.Source.DB, c.Event.Source.Table).WriteTimestamp()
	args = append(args, tx.Origin, tx.ID, wt)
	return "INSERT INTO " + t.name + " (" + strings.Join(names, ",") + ") VALUES (" + strings.Join(marks, ",") + ")", args, nil
}

// Tables without a primary key, and sequences, in the store.
//
// A table without a primary key is a multiset: its store table has two key columns of its
// own, music_row (partition key: the SHA-256 of the row's full image, in hex) and
// music_copy (clustering key: the change that inserted the copy, "<gtid>:<index>"), so
// identical rows are distinct copies and an insert written again (a redelivery, or another
// agent with --store-all-origins) is the same copy. A DELETE (or the old image of an
// UPDATE) removes one copy of its image: the copy is claimed in music_multiset_ops with a
// lightweight transaction (so two deletes of two identical rows never pick the same copy),
// and the claim is remembered under the change's id (so a redelivered delete removes the
// same copy, not a second one); claims expire after multisetClaimTTL. The delete's write
// timestamp is at least the copy's (multiset changes commute; they are not subject to
// last writer wins). Snapshot rows (op r) only make sure the store holds as many copies
// of an image as the message has. A sequence (one row) is kept under music_row
// "sequence" with last writer wins, like a keyed row. music_tables registers the source
// columns only, so Scan (and music verify) read one row per copy.

const multisetClaimTTL = 7 * 24 * 3600

// multisetColumns reports whether cols have no primary key (a multiset or a sequence).
func multisetColumns(cols []changeevent.Column) bool {
	return len(cols) > 0 && len(apply.PKColumns(cols)) == 0
}

func splitMultiset(tx *apply.Txn) (keyed, multi []*changeevent.Event) {
	for _, e := range tx.Events {
		if multisetColumns(e.Columns) {
			multi = append(multi, e)
		} else {
			keyed = append(keyed, e)
		}
	}
	return keyed, multi
}

// sequenceColumns are the columns of a MariaDB sequence table.
var sequenceColumns = []string{"next_not_cached_value", "minimum_value", "maximum_value", "start_value",
	"increment", "cache_size", "cycle_option", "cycle_count"}

func isSequence(cols []changeevent.Column) bool {
	if len(cols) != len(sequenceColumns) {
		return false
	}
	for i, c := range cols {
		if c.Name != sequenceColumns[i] {
			return false
		}
	}
	return true
}

// ensureMultiset creates (or extends) the store table of a table without a primary key.
func (s *Sink) ensureMultiset(ctx context.Context, db, tbl string, cols []changeevent.Column) (*table, error) {
	key := db + "." + tbl
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.multi[key]; t != nil && t.covers(cols) {
		return t, nil
	}
	name := TableName(db, tbl)
	t, err := s.openTable(ctx, db, tbl)
	if err != nil {
		return nil, err
	}
	exists := len(t.columns) > 0
	var defs []string
	for _, c := range cols {
		if _, clash := metaColumns[c.Name]; clash || c.Name == "music_row" || c.Name == "music_copy" {
			return nil, fmt.Errorf("%w: column %q clashes with a MUSIC column", apply.ErrRefused, c.Name)
		}
		q, err := quote(c.Name, 64)
		if err != nil {
			return nil, err
		}
		typ, err := CQLType(c.Kind)
		if err != nil {
			return nil, err
		}
		if have, ok := t.columns[c.Name]; ok && have != typ {
			return nil, fmt.Errorf("%w: %s column %q changed type from %s to %s: resync the table", apply.ErrRefused, t.name, c.Name, have, typ)
		} else if exists && !ok {
			if err := s.session.Query("ALTER TABLE " + t.name + " ADD " + q + " " + typ).WithContext(ctx).Exec(); err != nil {
				return nil, fmt.Errorf("cassandra: alter %s: %w", t.name, err)
			}
		}
		defs = append(defs, q+" "+typ)
		t.columns[c.Name] = typ
	}
	if !exists {
		for c, typ := range metaColumns {
			defs = append(defs, c+" "+typ)
		}
		stmt := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (music_row text, music_copy text, %s, PRIMARY KEY ((music_row), music_copy))",
			t.name, strings.Join(defs, ", "))
		if err := s.session.Query(stmt).WithContext(ctx).Exec(); err != nil {
			return nil, fmt.Errorf("cassandra: create %s: %w", t.name, err)
		}
		s.log.Info("music store table created (no primary key: one row per copy)", zap.String("table", t.name))
	} else if len(t.pk) != 1 || t.pk[0] != "music_row" {
		return nil, fmt.Errorf("%w: %s has primary key %v, the source table has none: resync the table", apply.ErrRefused, t.name, t.pk)
	}
	b, _ := json.Marshal(cols)
	if err := s.session.Query("UPDATE "+s.ks+".music_tables SET columns=? WHERE cql_table=?", string(b), name).
		WithContext(ctx).Exec(); err != nil {
		return nil, fmt.Errorf("cassandra: register columns of %s: %w", name, err)
	}
	s.multi[key] = t
	return t, nil
}

// applyMultiset writes the changes of tables without a primary key, in order.
func (s *Sink) applyMultiset(ctx context.Context, tx *apply.Txn, events []*changeevent.Event, wt int64) (int, error) {
	n := 0
	snap := map[string]int{} // snapshot rows: copies of each image in this message
	for _, e := range events {
		t, err := s.ensureMultiset(ctx, e.Source.DB, e.Source.Table, e.Columns)
		if err != nil {
			return n, err
		}
		id := e.Source.GTID
		if id == "" {
			id = e.Transaction.ID
		}
		id += ":" + strconv.Itoa(e.Transaction.Index)
		seq := isSequence(e.Columns)
		switch {
		case seq && e.After != nil:
			err = s.writeCopy(ctx, t, tx, e, e.After, "sequence", "", wt)
		case seq:
			continue
		case e.Op == changeevent.OpRead:
			row := imageHash(e.Columns, e.After)
			snap[row]++
			var have int
			if err := s.session.Query("SELECT COUNT(*) FROM "+t.name+" WHERE music_row=?", row).WithContext(ctx).Scan(&have); err != nil {
				return n, err
			}
			if have >= snap[row] {
				continue
			}
			err = s.writeCopy(ctx, t, tx, e, e.After, row, id, wt)
		default:
			if e.Before != nil {
				if err := s.deleteCopy(ctx, t, e, id, wt); err != nil {
					return n, err
				}
			}
			if e.After != nil {
				err = s.writeCopy(ctx, t, tx, e, e.After, imageHash(e.Columns, e.After), id, wt)
			}
		}
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func imageHash(cols []changeevent.Column, img changeevent.Row) string {
	k, _ := apply.EncodeKey(cols, img)
	sum := sha256.Sum256([]byte(k))
	return hex.EncodeToString(sum[:])
}

func (s *Sink) writeCopy(ctx context.Context, t *table, tx *apply.Txn, e *changeevent.Event, img changeevent.Row, row, copy string, wt int64) error {
	names, marks := []string{"music_row", "music_copy"}, []string{"?", "?"}
	args := []any{row, copy}
	for _, col := range e.Columns {
		raw, ok := img[col.Name]
		if !ok {
			continue
		}
		v, err := cqlValue(col.Kind, raw)
		if err != nil {
			return err
		}
		names, marks, args = append(names, `"`+col.Name+`"`), append(marks, "?"), append(args, v)
	}
	names, marks = append(names, "music_origin", "music_gtid", "music_version"), append(marks, "?", "?", "?")
	args = append(args, tx.Origin, tx.ID, wt)
	return s.session.Query("INSERT INTO "+t.name+" ("+strings.Join(names, ",")+") VALUES ("+strings.Join(marks, ",")+") USING TIMESTAMP ?",
		append(args, wt)...).WithContext(ctx).Exec()
}

// deleteCopy removes one copy of e's before image (see the multiset notes above).
func (s *Sink) deleteCopy(ctx context.Context, t *table, e *changeevent.Event, id string, wt int64) error {
	cqlTable := strings.TrimPrefix(t.name, s.ks+".")
	row := imageHash(e.Columns, e.Before)
	var chosen string
	err := s.session.Query("SELECT val FROM "+s.ks+".music_multiset_ops WHERE cql_table=? AND op=?", cqlTable, "op:"+id).
		WithContext(ctx).Scan(&chosen)
	if err != nil && err != gocql.ErrNotFound {
		return err
	}
	if chosen == "" {
		iter := s.session.Query("SELECT music_copy FROM "+t.name+" WHERE music_row=?", row).WithContext(ctx).Iter()
		var copies []string
		var c string
		for iter.Scan(&c) {
			copies = append(copies, c)
		}
		if err := iter.Close(); err != nil {
			return err
		}
		for _, c := range copies {
			prev := map[string]any{}
			applied, err := s.session.Query("INSERT INTO "+s.ks+".music_multiset_ops (cql_table, op, val) VALUES (?,?,?) IF NOT EXISTS USING TTL ?",
				cqlTable, "copy:"+row+"/"+c, id, multisetClaimTTL).WithContext(ctx).MapScanCAS(prev)
			if err != nil {
				return err
			}
			if applied || prev["val"] == id {
				chosen = c
				break
			}
		}
		if chosen == "" {
			s.log.Warn("conflict: no copy of the row in the store (deleted already)", zap.String("table", t.name), zap.String("change", id))
			return nil
		}
		if err := s.session.Query("INSERT INTO "+s.ks+".music_multiset_ops (cql_table, op, val) VALUES (?,?,?) USING TTL ?",
			cqlTable, "op:"+id, chosen, multisetClaimTTL).WithContext(ctx).Exec(); err != nil {
			return err
		}
	}
	ts := wt
	var have int64
	if err := s.session.Query("SELECT WRITETIME(music_version) FROM "+t.name+" WHERE music_row=? AND music_copy=?", row, chosen).
		WithContext(ctx).Scan(&have); err == nil && have >= ts {
		ts = have + 1
	}
	return s.session.Query("DELETE FROM "+t.name+" USING TIMESTAMP ? WHERE music_row=? AND music_copy=?", ts, row, chosen).WithContext(ctx).Exec()
}
