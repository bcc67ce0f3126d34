package store

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/gocql/gocql"
)

// Mode is an operation's consistency flavour (ONAP's consistencyInfo.type).
type Mode string

const (
	Eventual Mode = "eventual" // consistency ONE (or Write.Consistency)
	Critical Mode = "critical" // caller holds the row's lock; QUORUM, fenced timestamps
	Atomic   Mode = "atomic"   // lock, critical operation, release, in one call
	// EventualNB is an eventual write stamped as if the row's current lock holder made
	// it now, so it orders with the critical writes (ONAP's eventual_nb); with no holder
	// it is a plain eventual write.
	EventualNB Mode = "eventual_nb"
	// AtomicDeleteLock is ONAP's atomic_delete_lock: atomic, whose lock is always
	// released (deleted) afterwards, as every atomic operation's is here.
	AtomicDeleteLock Mode = "atomic_delete_lock"
)

// MaxRows bounds the rows one Select returns.
const MaxRows = 10000

// Write is an insert, update or delete of one row.
type Write struct {
	Keyspace, Table string
	Values          map[string]any // insert: the row; update: the columns to set
	Key             map[string]any // update, delete: the row's primary key (WHERE)
	Conditions      map[string]any // update, delete: column values that must hold (IF)
	TTL             int            // seconds; 0 for none
	Mode            Mode
	LockRef         string // critical: the caller's lock reference
	// Timestamp is the write time in µs (USING TIMESTAMP) of an eventual write; 0 lets
	// Cassandra stamp it. Critical and atomic writes are stamped by their lock.
	Timestamp int64
	// Consistency is the level of an eventual write, an ONAP name (see
	// ValidConsistency); "" is ONE.
	Consistency string
	// Columns, for a delete, names the columns to delete instead of the row.
	Columns []string
}

// Query selects rows by key (a partial or empty key selects many).
type Query struct {
	Keyspace, Table string
	Key             map[string]any
	Limit           int // 0 means MaxRows
	Mode            Mode
	LockRef         string
}

type opKind int

const (
	opInsert opKind = iota
	opUpdate
	opDelete
	opSelect
)

// op is a checked operation: names validated, values converted.
type op struct {
	kind               opKind
	t                  *table
	values, key, conds map[string]any
	ttl, limit         int
	ts                 int64             // eventual: USING TIMESTAMP; 0 for none
	cl                 gocql.Consistency // eventual: the write's level
	cols               []string          // delete: the columns to delete; nil for the row
}

func (s *Store) prepare(ctx context.Context, kind opKind, ks, tb string, values, key, conds map[string]any) (*op, error) {
	ks, err := Ident("keyspace", ks)
	if err != nil {
		return nil, err
	}
	if tb, err = Ident("table", tb); err != nil {
		return nil, err
	}
	t, err := s.table(ctx, ks, tb, false)
	if err != nil {
		return nil, err
	}
	o := &op{kind: kind}
	if t, o.values, err = s.columns(ctx, t, values); err != nil {
		return nil, err
	}
	if t, o.key, err = s.columns(ctx, t, key); err != nil {
		return nil, err
	}
	if t, o.conds, err = s.columns(ctx, t, conds); err != nil {
		return nil, err
	}
	o.t = t
	return o, nil
}

// Insert writes a row.
func (s *Store) Insert(ctx context.Context, w Write) error {
	if len(w.Values) == 0 {
		return invalid("insert needs values")
	}
	return s.write(ctx, opInsert, w)
}

// Update sets columns of the row named by w.Key, if w.Conditions hold
// (ErrConditionFailed otherwise).
func (s *Store) Update(ctx context.Context, w Write) error {
	if len(w.Values) == 0 || len(w.Key) == 0 {
		return invalid("update needs values and the row's key")
	}
	return s.write(ctx, opUpdate, w)
}

// Delete removes the row named by w.Key, if w.Conditions hold.
func (s *Store) Delete(ctx context.Context, w Write) error {
	if len(w.Key) == 0 {
		return invalid("delete needs the row's key")
	}
	return s.write(ctx, opDelete, w)
}

func (s *Store) write(ctx context.Context, kind opKind, w Write) error {
	if w.TTL < 0 || w.Timestamp < 0 {
		return invalid("ttl and timestamp must not be negative")
	}
	o, err := s.prepare(ctx, kind, w.Keyspace, w.Table, w.Values, w.Key, w.Conditions)
	if err != nil {
		return err
	}
	o.ttl, o.ts, o.cl = w.TTL, w.Timestamp, gocql.One
	if w.Consistency != "" {
		c, ok := consistencies[strings.ToUpper(w.Consistency)]
		if !ok {
			return invalid("Invalid Consistency type %q", w.Consistency)
		}
		o.cl = c
		if strings.EqualFold(w.Consistency, "ANY") { // a write may take ANY; a read may not
			o.cl = gocql.Any
		}
	}
	if o.cols, err = o.deleteColumns(w.Columns); err != nil {
		return err
	}
	return s.run(ctx, o, w.Mode, w.LockRef, func(h *holder) error { return s.exec(ctx, o, h) })
}

// deleteColumns checks the columns a delete names: existing, not of the primary key.
func (o *op) deleteColumns(cols []string) ([]string, error) {
	if len(cols) > 0 && o.kind != opDelete {
		return nil, invalid("columns apply to a delete only")
	}
	out := make([]string, 0, len(cols))
	for _, c := range cols {
		id, err := Ident("column", c)
		if err != nil {
			return nil, err
		}
		if _, ok := o.t.types[id]; !ok {
			return nil, invalidNotFound("column %s does not exist in %s", id, o.t.ref())
		}
		if slices.Contains(o.t.primary(), id) {
			return nil, invalid("column %s is part of the primary key; delete the row", id)
		}
		out = append(out, id)
	}
	return out, nil
}

// Select returns the rows matching q.Key, each as column -> value.
func (s *Store) Select(ctx context.Context, q Query) ([]map[string]any, error) {
	o, err := s.prepare(ctx, opSelect, q.Keyspace, q.Table, nil, q.Key, nil)
	if err != nil {
		return nil, err
	}
	o.limit = q.Limit
	if o.limit <= 0 || o.limit > MaxRows {
		o.limit = MaxRows
	}
	var rows []map[string]any
	err = s.run(ctx, o, q.Mode, q.LockRef, func(h *holder) error {
		rows, err = s.read(ctx, o, h != nil)
		return err
	})
	return rows, err
}

// SelectEach calls each with every row matching q, reading page by page (q.Limit 0 reads
// every row), and stops at each's first error, which it returns. Critical and atomic
// selects check or take the lock first, as Select does.
func (s *Store) SelectEach(ctx context.Context, q Query, each func(map[string]any) error) error {
	o, err := s.prepare(ctx, opSelect, q.Keyspace, q.Table, nil, q.Key, nil)
	if err != nil {
		return err
	}
	o.limit = q.Limit
	return s.run(ctx, o, q.Mode, q.LockRef, func(h *holder) error {
		cols, args := sortedPairs(o.key)
		cql := "SELECT * FROM " + o.t.ref() + where(cols)
		if o.limit > 0 {
			cql += fmt.Sprintf(" LIMIT %d", o.limit)
		}
		iter := s.sess.Query(cql, args...).WithContext(ctx).Consistency(consistency(h != nil)).PageSize(pageSize).Iter()
		if err := scanRows(iter, each); err != nil {
			_ = iter.Close()
			return err
		}
		return classify("select from "+o.t.ref(), iter.Close())
	})
}

// pageSize is the rows SelectEach fetches per round trip.
const pageSize = 1000

func (s *Store) read(ctx context.Context, o *op, quorum bool) ([]map[string]any, error) {
	cols, args := sortedPairs(o.key)
	cql := "SELECT * FROM " + o.t.ref() + where(cols) + fmt.Sprintf(" LIMIT %d", o.limit)
	iter := s.sess.Query(cql, args...).WithContext(ctx).Consistency(consistency(quorum)).Iter()
	var rows []map[string]any
	_ = scanRows(iter, func(m map[string]any) error { rows = append(rows, m); return nil })
	return rows, classify("select from "+o.t.ref(), iter.Close())
}

// scanRows calls each with every row of iter as column -> value, a null column as nil
// (gocql's MapScan would give the type's zero value).
func scanRows(iter *gocql.Iter, each func(map[string]any) error) error {
	rd, err := iter.RowData()
	if err != nil {
		return err
	}
	dest := make([]any, len(rd.Values))
	for i, v := range rd.Values { // v is a *T; scan into **T, which gocql sets nil for null
		dest[i] = reflect.New(reflect.TypeOf(v)).Interface()
	}
	for iter.Scan(dest...) {
		m := make(map[string]any, len(dest))
		for i, c := range rd.Columns {
			p := reflect.ValueOf(dest[i]).Elem()
			if p.IsNil() {
				m[c] = nil
			} else {
				m[c] = p.Elem().Interface()
				p.SetZero()
			}
		}
		if err := each(m); err != nil {
			return err
		}
	}
	return nil
}

func consistency(quorum bool) gocql.Consistency {
	if quorum {
		return gocql.Quorum
	}
	return gocql.One
}

func sortedPairs(m map[string]any) ([]string, []any) {
	cols := make([]string, 0, len(m))
	for c := range m {
		cols = append(cols, c)
	}
	slices.Sort(cols)
	args := make([]any, len(cols))
	for i, c := range cols {
		args[i] = m[c]
	}
	return cols, args
}

func where(cols []string) string {
	if len(cols) == 0 {
		return ""
	}
	return " WHERE " + joinEq(cols, " AND ")
}

func joinEq(cols []string, sep string) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = c + " = ?"
	}
	return strings.Join(parts, sep)
}
