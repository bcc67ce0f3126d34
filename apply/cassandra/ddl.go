package cassandra

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/ddl"
)

// applyDDL reflects a schema change in the MUSIC store. The statement is classified with
// internal/ddl (the TiDB parser), as capture did:
//
//   - CREATE TABLE (plain, LIKE, SELECT; OR REPLACE drops the old table first) and
//     ALTER TABLE / CREATE INDEX / DROP INDEX: the table is created or its new columns
//     added from the event's columns.
//   - A renamed table (RENAME TABLE pairs in order, a swap included; ALTER TABLE ...
//     RENAME TO) moves: Cassandra cannot rename a table, so a table of the new name is
//     created with the old one's columns and key, every row is copied with its own write
//     timestamp (music_version holds it) and the old table is dropped.
//   - A changed primary key rebuilds the table the same way (through a temporary table,
//     then back under its name with the new key), when the statement changes the key and
//     every stored row has a value for it: a DDL event's columns may show a later
//     statement's key (see rebuildIfKeyChanged); rows, which carry the binlog's own key,
//     rebuild it otherwise (ensureTable). Rows are not written into a table while it is
//     rebuilt (the table's gate), and a rebuild that would lose a row is refused. A renamed column (RENAME COLUMN,
//     CHANGE) has its values copied to the new column, each with the row's write
//     timestamp; the old column stays, unused, as a dropped column does.
//   - DROP TABLE (one or more), TRUNCATE, DROP DATABASE (every table of the database)
//     are mirrored; CREATE/ALTER DATABASE need nothing.
//   - Anything else is refused (apply.ErrRefused naming the statement): a statement the
//     parser did not understand (opaque MariaDB-only syntax), a column type change.
//
// Multi-step changes are idempotent: each step done is recorded in music_ddl under
// origin and transaction, so a redelivered or retried DDL never moves a table twice.
func (s *Sink) applyDDL(ctx context.Context, tx *apply.Txn) (apply.Result, error) {
	e := tx.Events[0]
	db, tbl, stmt := e.Source.DB, e.Source.Table, e.DDL.Statement
	refuse := func(why string) (apply.Result, error) {
		// The statement comes first: `music status` shows the start of the error.
		return apply.Result{}, fmt.Errorf("%w: ddl %q (%s from %s) not mirrored in the MUSIC store: %s", apply.ErrRefused, stmt, tx.ID, tx.Origin, why)
	}
	info := ddl.Parse(db, stmt)
	prog, err := s.ddlProgress(ctx, tx)
	if err != nil {
		return apply.Result{}, err
	}
	// The tables the statement changes are locked: no row is written into them meanwhile.
	var locked []string
	for _, n := range info.Tables {
		locked = append(locked, n.String())
	}
	if info.Kind == ddl.DropDatabase {
		tables, err := s.registered(ctx)
		if err != nil {
			return apply.Result{}, err
		}
		for _, n := range tables {
			if n.DB == info.Database {
				locked = append(locked, n.String())
			}
		}
	}
	defer s.lockTables(locked)()
	switch info.Kind {
	case "":
		return refuse("not a schema change of a table or database")
	case ddl.Opaque:
		return refuse(fmt.Sprintf("the SQL parser does not understand the statement (%v); it is replayed verbatim at the sites only", info.Err))
	case ddl.CreateDatabase, ddl.AlterDatabase:
		return apply.Result{Applied: 1}, nil
	case ddl.DropDatabase:
		tables, err := s.registered(ctx)
		if err != nil {
			return apply.Result{}, err
		}
		for _, n := range tables {
			if n.DB == info.Database {
				if err := s.drop(ctx, n); err != nil {
					return apply.Result{}, err
				}
			}
		}
		return apply.Result{Applied: 1}, nil
	case ddl.DropTable, ddl.DropSequence:
		for _, n := range info.Tables {
			if err := s.drop(ctx, n); err != nil {
				return apply.Result{}, err
			}
		}
		return apply.Result{Applied: 1}, nil
	case ddl.TruncateTable:
		return s.dropOrTruncate(ctx, "TRUNCATE", info.Tables[0].DB, info.Tables[0].Table)
	case ddl.RenameTable:
		for _, r := range info.Renames {
			if err := prog.step(ctx, func() error { return s.move(ctx, r.From, r.To) }); err != nil {
				return apply.Result{}, err
			}
		}
		return apply.Result{Applied: 1}, nil
	}
	// CREATE/ALTER of a table (or index, sequence).
	final := info.Tables[0]
	if info.Replace && info.Kind == ddl.CreateTable {
		if err := prog.step(ctx, func() error { return s.drop(ctx, final) }); err != nil {
			return apply.Result{}, err
		}
	}
	for _, r := range info.Renames {
		if err := prog.step(ctx, func() error { return s.move(ctx, r.From, r.To) }); err != nil {
			return apply.Result{}, err
		}
		if r.From == final {
			final = r.To
		}
	}
	if len(e.Columns) == 0 || tbl == "" || tbl == "*" {
		return apply.Result{Applied: 1}, nil // created or altered from the next row events
	}
	colRenames := map[string]string{}
	for _, c := range info.ColumnRenames {
		colRenames[c.From] = c.To
	}
	named := func(err error) (apply.Result, error) {
		if errors.Is(err, apply.ErrRefused) {
			return refuse(strings.TrimPrefix(err.Error(), apply.ErrRefused.Error()+": "))
		}
		return apply.Result{}, fmt.Errorf("%w (ddl %s from %s: %q)", err, tx.ID, tx.Origin, stmt)
	}
	rebuilt, err := s.rebuildIfKeyChanged(ctx, tx, info, final, e.Columns, colRenames)
	if err != nil {
		return named(err)
	}
	if _, err := s.ensureTableLocked(ctx, final.DB, final.Table, e.Columns, false); err != nil {
		return named(err)
	}
	if !rebuilt && len(info.ColumnRenames) > 0 {
		if err := prog.step(ctx, func() error { return s.renameColumns(ctx, final, info.ColumnRenames, e.Columns) }); err != nil {
			return named(err)
		}
	}
	return apply.Result{Applied: 1}, nil
}

// progress counts the steps of one DDL done in the store (music_ddl).
type progress struct {
	s    *Sink
	id   string
	done int
	n    int
}

func (s *Sink) ddlProgress(ctx context.Context, tx *apply.Txn) (*progress, error) {
	if err := s.session.Query("CREATE TABLE IF NOT EXISTS " + s.ks + ".music_ddl (id text PRIMARY KEY, steps int)").
		WithContext(ctx).Exec(); err != nil {
		return nil, fmt.Errorf("cassandra: create music_ddl: %w", err)
	}
	p := &progress{s: s, id: tx.Origin + ":" + tx.ID}
	var steps int
	err := s.session.Query("SELECT steps FROM "+s.ks+".music_ddl WHERE id=?", p.id).WithContext(ctx).Scan(&steps)
	if err != nil && err.Error() != "not found" {
		return nil, fmt.Errorf("cassandra: read music_ddl: %w", err)
	}
	p.done = steps
	return p, nil
}

// step runs f unless a previous run of the same DDL did, and records it.
func (p *progress) step(ctx context.Context, f func() error) error {
	p.n++
	if p.n <= p.done {
		return nil
	}
	if err := f(); err != nil {
		return err
	}
	if err := p.s.session.Query("INSERT INTO "+p.s.ks+".music_ddl (id, steps) VALUES (?,?)", p.id, p.n).
		WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("cassandra: record music_ddl: %w", err)
	}
	p.done = p.n
	return nil
}

// registered lists the tables music_tables maps.
func (s *Sink) registered(ctx context.Context) ([]ddl.Name, error) {
	iter := s.session.Query("SELECT db, tbl FROM " + s.ks + ".music_tables").WithContext(ctx).Iter()
	var out []ddl.Name
	var db, tbl string
	for iter.Scan(&db, &tbl) {
		out = append(out, ddl.Name{DB: db, Table: tbl})
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("cassandra: list music_tables: %w", err)
	}
	return out, nil
}

func (s *Sink) drop(ctx context.Context, n ddl.Name) error {
	_, err := s.dropOrTruncate(ctx, "DROP TABLE IF EXISTS", n.DB, n.Table)
	return err
}

func (s *Sink) forget(keys ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		delete(s.tables, k)
		delete(s.multi, k)
	}
}

// describeName reads the store table of a CQL name, its quoted name set.
func (s *Sink) describeName(ctx context.Context, name string) (*table, error) {
	q, err := quote(name, 48)
	if err != nil {
		return nil, err
	}
	t, err := s.describe(ctx, name)
	if err != nil {
		return nil, err
	}
	t.name = s.ks + "." + q
	return t, nil
}

// createAs creates the table name with the columns of like and the primary key pk.
func (s *Sink) createAs(ctx context.Context, name string, columns map[string]string, pk []string) (*table, error) {
	q, err := quote(name, 48)
	if err != nil {
		return nil, err
	}
	t := &table{name: s.ks + "." + q, columns: map[string]string{}, pk: pk}
	names := make([]string, 0, len(columns))
	for c := range columns {
		names = append(names, c)
	}
	sort.Strings(names)
	var defs, keys []string
	for _, c := range names {
		defs = append(defs, `"`+c+`" `+columns[c])
		t.columns[c] = columns[c]
	}
	for _, c := range pk {
		keys = append(keys, `"`+c+`"`)
	}
	stmt := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (%s, PRIMARY KEY ((%s)))", t.name, strings.Join(defs, ", "), strings.Join(keys, ", "))
	if err := s.session.Query(stmt).WithContext(ctx).Exec(); err != nil {
		return nil, fmt.Errorf("cassandra: create %s: %w", t.name, err)
	}
	return t, nil
}

// move renames db.from to db.to in the store: a new table with the same columns and key,
// every row copied with its write timestamp, the old table dropped, music_tables updated.
// A missing source (moved already, or never stored) moves nothing.
func (s *Sink) move(ctx context.Context, from, to ddl.Name) error {
	src, err := s.describeName(ctx, TableName(from.DB, from.Table))
	if err != nil {
		return err
	}
	s.forget(from.String(), to.String())
	if len(src.columns) == 0 {
		return s.drop(ctx, to) // nothing stored under the old name: nothing may stay under the new one
	}
	if err := s.drop(ctx, to); err != nil {
		return err
	}
	dst, err := s.createAs(ctx, TableName(to.DB, to.Table), src.columns, src.pk)
	if err != nil {
		return err
	}
	n, err := s.copyRows(ctx, src, dst, nil)
	if err != nil {
		return err
	}
	var cols string
	_ = s.session.Query("SELECT columns FROM "+s.ks+".music_tables WHERE cql_table=?", TableName(from.DB, from.Table)).
		WithContext(ctx).Scan(&cols)
	if err := s.register(ctx, TableName(to.DB, to.Table), to.DB, to.Table); err != nil {
		return err
	}
	if cols != "" {
		if err := s.session.Query("UPDATE "+s.ks+".music_tables SET columns=? WHERE cql_table=?", cols, TableName(to.DB, to.Table)).
			WithContext(ctx).Exec(); err != nil {
			return fmt.Errorf("cassandra: register columns of %s: %w", dst.name, err)
		}
	}
	if err := s.drop(ctx, from); err != nil {
		return err
	}
	s.log.Info("music store table renamed", zap.String("from", src.name), zap.String("to", dst.name), zap.Int("rows", n))
	return nil
}

// rebuildIfKeyChanged rebuilds db.table when the statement changes the primary key (or
// renames a column of it) and the event's key differs from the store table's, or resumes a
// rebuild a crash interrupted: rows go to a temporary table, the table is created again
// with the new key and columns, rows come back (renamed columns under their new names),
// each with its write timestamp.
//
// The event's columns are information_schema's when capture processed it, which may be
// after later statements: its key may not be in force yet (a CREATE can already show the
// key a later ALTER gives). So another statement never changes the key, and neither does
// this one when a row of the store has no value for the event's key (a key of columns a
// later statement fills): the store keeps its key, and the rows, which carry the binlog's
// own key, rebuild the table when they come under the new one (ensureTable).
func (s *Sink) rebuildIfKeyChanged(ctx context.Context, tx *apply.Txn, info *ddl.Info, n ddl.Name, cols []changeevent.Column, colRenames map[string]string) (bool, error) {
	s.forget(n.String())
	name := TableName(n.DB, n.Table)
	cur, err := s.describeName(ctx, name)
	if err != nil {
		return false, err
	}
	change := info.PrimaryKey
	for _, k := range cur.pk {
		if _, ok := colRenames[k]; ok {
			change = true
		}
	}
	dst, err := s.rebuild(ctx, tx.Origin+":"+tx.ID, name, cols, colRenames, change)
	var gap *keyGapError
	if errors.As(err, &gap) {
		s.log.Info("music store table keeps its primary key: the event's key is not in force yet", zap.String("table", name),
			zap.Strings("key", cur.pk), zap.Strings("event key", gap.pk), zap.Int("rows without it", gap.rows))
		return false, nil
	}
	return dst != nil, err
}

// keyGapError: rows of the store have no value for a column of the new key.
type keyGapError struct {
	table string
	pk    []string
	rows  int
}

func (e *keyGapError) Error() string {
	return fmt.Sprintf("%s: %s primary key changed to %v, but %d rows of the store have no value for it: resync the table",
		apply.ErrRefused, e.table, e.pk, e.rows)
}

func (e *keyGapError) Unwrap() error { return apply.ErrRefused }

// rebuild is rebuildIfKeyChanged on the CQL table name (id names the change, for the
// temporary table). It returns the new table, or nil when the key did not change. Without
// change it only resumes an interrupted rebuild. Before the table is dropped every row must
// have a value for the new key (a *keyGapError otherwise, nothing changed), so no row is
// lost. The caller holds the table's gate.
func (s *Sink) rebuild(ctx context.Context, id, name string, cols []changeevent.Column, colRenames map[string]string, change bool) (*table, error) {
	var newPK []string
	for _, c := range cols {
		if c.PK {
			newPK = append(newPK, c.Name)
		}
	}
	if len(newPK) == 0 {
		return nil, nil // no key: ensureTable refuses it
	}
	sum := sha256.Sum256([]byte(id + ":" + name))
	tmpName := "music_rebuild_" + hex.EncodeToString(sum[:12])
	cur, err := s.describeName(ctx, name)
	if err != nil {
		return nil, err
	}
	tmp, err := s.describeName(ctx, tmpName)
	if err != nil {
		return nil, err
	}
	changed := change && len(cur.columns) > 0 && strings.Join(cur.pk, ",") != strings.Join(newPK, ",")
	if !changed && len(tmp.columns) == 0 {
		return nil, nil
	}
	if changed {
		if n, err := s.rowsWithoutKey(ctx, cur, newPK, colRenames); err != nil {
			return nil, err
		} else if n > 0 {
			return nil, &keyGapError{table: cur.name, pk: newPK, rows: n}
		}
		if len(tmp.columns) == 0 {
			if tmp, err = s.createAs(ctx, tmpName, cur.columns, cur.pk); err != nil {
				return nil, err
			}
		}
		if _, err := s.copyRows(ctx, cur, tmp, nil); err != nil {
			return nil, err
		}
		if err := s.session.Query("DROP TABLE IF EXISTS " + cur.name).WithContext(ctx).Exec(); err != nil {
			return nil, fmt.Errorf("cassandra: drop %s: %w", cur.name, err)
		}
	}
	// The table again, with the new key: columns of the event plus those the store kept.
	columns := map[string]string{}
	for c, typ := range tmp.columns {
		if to, ok := colRenames[c]; ok {
			c = to
		}
		columns[c] = typ
	}
	for _, c := range cols {
		typ, err := CQLType(c.Kind)
		if err != nil {
			return nil, err
		}
		if have, ok := columns[c.Name]; ok && have != typ {
			return nil, fmt.Errorf("%w: %s column %q changed type from %s to %s: resync the table", apply.ErrRefused, name, c.Name, have, typ)
		}
		columns[c.Name] = typ
	}
	dst, err := s.createAs(ctx, name, columns, newPK)
	if err != nil {
		return nil, err
	}
	rows, err := s.copyRows(ctx, tmp, dst, colRenames)
	if err != nil {
		return nil, err
	}
	if err := s.session.Query("DROP TABLE IF EXISTS " + tmp.name).WithContext(ctx).Exec(); err != nil {
		return nil, fmt.Errorf("cassandra: drop %s: %w", tmp.name, err)
	}
	s.log.Info("music store table rebuilt for a new primary key", zap.String("table", dst.name),
		zap.Strings("from", cur.pk), zap.Strings("to", newPK), zap.Int("rows", rows))
	return dst, nil
}

// rowsWithoutKey counts the rows of t that would have no value for a column of pk once
// their columns are renamed by rename (as copyRows does).
func (s *Sink) rowsWithoutKey(ctx context.Context, t *table, pk []string, rename map[string]string) (int, error) {
	var sel []string
	for _, k := range pk {
		var src []string
		for from, to := range rename {
			if to == k && t.columns[from] != "" {
				src = append(src, from)
			}
		}
		if _, renamed := rename[k]; !renamed && t.columns[k] != "" {
			src = append(src, k)
		}
		if len(src) == 0 {
			src = append(src, "") // no column gives the key a value
		}
		sort.Strings(src)
		sel = append(sel, src...)
		sel = append(sel, "|")
	}
	var quoted []string
	for _, c := range sel {
		if c != "" && c != "|" {
			quoted = append(quoted, `"`+c+`"`)
		}
	}
	if len(quoted) == 0 {
		// No key column exists: every row lacks it.
		var n int
		err := s.session.Query("SELECT COUNT(*) FROM " + t.name).WithContext(ctx).Scan(&n)
		return n, err
	}
	iter := s.session.Query("SELECT " + strings.Join(quoted, ",") + " FROM " + t.name).WithContext(ctx).PageSize(1000).Iter()
	missing := 0
	for {
		rd, err := iter.RowData()
		if err != nil {
			break
		}
		ptrs := make([]any, len(rd.Values))
		for i, v := range rd.Values {
			ptrs[i] = reflect.New(reflect.TypeOf(v)).Interface()
		}
		if !iter.Scan(ptrs...) {
			break
		}
		// Each key column (a group up to "|") needs one non-null source value.
		i, have, ok := 0, false, true
		for _, c := range sel {
			switch c {
			case "|":
				ok, have = ok && have, false
			case "":
			default:
				if !reflect.ValueOf(ptrs[i]).Elem().IsNil() {
					have = true
				}
				i++
			}
		}
		if !ok {
			missing++
		}
	}
	if err := iter.Close(); err != nil {
		return 0, fmt.Errorf("cassandra: read %s: %w", t.name, err)
	}
	return missing, nil
}

// renameColumns copies each renamed column's values to its new column, with each row's
// write timestamp. The old column stays, as a dropped column does (Cassandra 5 fails reads
// of a table whose dropped column still has data in memtables: "is not a subset of").
func (s *Sink) renameColumns(ctx context.Context, n ddl.Name, renames []ddl.ColumnRename, cols []changeevent.Column) error {
	t, err := s.describeName(ctx, TableName(n.DB, n.Table))
	if err != nil || len(t.columns) == 0 {
		return err
	}
	declared := map[string]bool{}
	for _, c := range cols {
		declared[c.Name] = true
	}
	for _, r := range renames {
		if _, ok := t.columns[r.From]; !ok || declared[r.From] || metaColumns[r.From] != "" {
			continue
		}
		if t.columns[r.To] == "" {
			// The event's columns (read after later statements) no longer have the new
			// name: the column is added, so a later rename of it finds its values.
			q, err := quote(r.To, 64)
			if err != nil {
				return err
			}
			if err := s.session.Query("ALTER TABLE " + t.name + " ADD " + q + " " + t.columns[r.From]).WithContext(ctx).Exec(); err != nil {
				return fmt.Errorf("cassandra: alter %s: %w", t.name, err)
			}
			t.columns[r.To] = t.columns[r.From]
		}
		if t.columns[r.From] != t.columns[r.To] {
			return fmt.Errorf("%w: %s column %q renamed to %q changed type from %s to %s: resync the table", apply.ErrRefused,
				t.name, r.From, r.To, t.columns[r.From], t.columns[r.To])
		}
		dst := &table{name: t.name, columns: map[string]string{r.To: t.columns[r.To]}, pk: t.pk}
		for _, k := range t.pk {
			dst.columns[k] = t.columns[k]
		}
		src := &table{name: t.name, columns: map[string]string{r.From: t.columns[r.From], "music_version": "bigint"}, pk: t.pk}
		for _, k := range t.pk {
			src.columns[k] = t.columns[k]
		}
		if _, err := s.copyRows(ctx, src, dst, map[string]string{r.From: r.To}); err != nil {
			return err
		}
		s.log.Info("music store column renamed", zap.String("table", t.name), zap.String("from", r.From), zap.String("to", r.To))
	}
	s.forget(n.String())
	return nil
}

// copyRows writes every row of src into dst (columns renamed by rename; those dst does
// not have and NULLs left out) with the row's write timestamp, music_version. It returns
// the rows copied.
func (s *Sink) copyRows(ctx context.Context, src, dst *table, rename map[string]string) (int, error) {
	var names []string
	for c := range src.columns {
		names = append(names, c)
	}
	sort.Strings(names)
	quoted := make([]string, len(names))
	for i, c := range names {
		quoted[i] = `"` + c + `"`
	}
	iter := s.session.Query("SELECT " + strings.Join(quoted, ",") + " FROM " + src.name).WithContext(ctx).PageSize(500).Iter()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(s.conc, 1))
	rows := 0
	for {
		rd, err := iter.RowData()
		if err != nil {
			break
		}
		// Scan into pointers to pointers: a NULL column scans as nil.
		ptrs := make([]any, len(rd.Values))
		for i, v := range rd.Values {
			ptrs[i] = reflect.New(reflect.TypeOf(v)).Interface()
		}
		if !iter.Scan(ptrs...) {
			break
		}
		var cols, marks []string
		var args []any
		var ts any
		at := map[string]int{} // dst column -> index in args
		for i, c := range names {
			pv := reflect.ValueOf(ptrs[i]).Elem()
			var val any
			if !pv.IsNil() {
				val = pv.Elem().Interface()
			}
			if c == "music_version" {
				ts = val
			}
			to := c
			r, renamed := rename[c]
			if renamed {
				to = r
			}
			if _, ok := dst.columns[to]; !ok || val == nil {
				continue // a NULL is left out: the new row has no such cell either
			}
			if j, ok := at[to]; ok {
				// Both a renamed column and one already under the new name: the renamed
				// one's value is the column's.
				if renamed {
					args[j] = val
				}
				continue
			}
			at[to] = len(args)
			cols, marks, args = append(cols, `"`+to+`"`), append(marks, "?"), append(args, val)
		}
		stmt := "INSERT INTO " + dst.name + " (" + strings.Join(cols, ",") + ") VALUES (" + strings.Join(marks, ",") + ")"
		if v, ok := ts.(int64); ok && v > 0 {
			stmt += fmt.Sprintf(" USING TIMESTAMP %d", v)
		}
		rows++
		g.Go(func() error {
			if err := s.session.Query(stmt, args...).WithContext(gctx).Exec(); err != nil {
				return fmt.Errorf("cassandra: copy into %s: %w", dst.name, err)
			}
			return nil
		})
	}
	werr := g.Wait()
	if err := iter.Close(); err != nil {
		return rows, fmt.Errorf("cassandra: read %s: %w", src.name, err)
	}
	return rows, werr
}

func (s *Sink) dropOrTruncate(ctx context.Context, verb, db, tbl string) (apply.Result, error) {
	name, err := quote(TableName(db, tbl), 48)
	if err != nil {
		return apply.Result{}, err
	}
	if verb == "TRUNCATE" {
		var n int
		if err := s.session.Query("SELECT COUNT(*) FROM system_schema.tables WHERE keyspace_name=? AND table_name=?",
			s.keyspace, TableName(db, tbl)).WithContext(ctx).Scan(&n); err != nil {
			return apply.Result{}, fmt.Errorf("cassandra: %w", err)
		}
		if n == 0 {
			return apply.Result{Applied: 1}, nil
		}
	}
	if err := s.session.Query(verb + " " + s.ks + "." + name).WithContext(ctx).Exec(); err != nil {
		return apply.Result{}, fmt.Errorf("cassandra: %s %s: %w", verb, name, err)
	}
	s.forget(db + "." + tbl)
	if verb != "TRUNCATE" {
		_ = s.session.Query("DELETE FROM "+s.ks+".music_tables WHERE cql_table=?", TableName(db, tbl)).WithContext(ctx).Exec()
	}
	s.log.Info("music store table changed by ddl", zap.String("statement", verb), zap.String("table", name))
	return apply.Result{Applied: 1}, nil
}
