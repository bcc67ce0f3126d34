package mariadb

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/changeevent"
)

// batch is consecutive row changes of one table written by one statement.
type batch struct {
	table   string   // quoted db.table
	delete  bool     // DELETE by key, else upsert of the image
	plain   bool     // a sequence's state: plain INSERT (it replaces the state), one row
	update  bool     // UPDATE of a changed primary key: rows hold the image, then the old key
	keys    []string // update: key columns
	columns []string // upsert: image columns; delete: key columns
	rows    [][]any
}

func (b *batch) sql() string {
	cols := make([]string, len(b.columns))
	for i, c := range b.columns {
		cols[i] = "`" + c + "`"
	}
	tuple := placeholders(len(cols))
	tuples := make([]string, len(b.rows))
	for i := range tuples {
		tuples[i] = tuple
	}
	if b.delete {
		lhs := "(" + strings.Join(cols, ",") + ")"
		return "DELETE FROM " + b.table + " WHERE " + lhs + " IN (" + join(tuples) + ")"
	}
	if b.plain {
		return "INSERT INTO " + b.table + " (" + strings.Join(cols, ",") + ") VALUES " + join(tuples)
	}
	if b.update {
		set := make([]string, len(cols))
		for i, c := range cols {
			set[i] = c + "=?"
		}
		where := make([]string, len(b.keys))
		for i, k := range b.keys {
			where[i] = "`" + k + "`=?"
		}
		return "UPDATE " + b.table + " SET " + strings.Join(set, ",") + " WHERE " + strings.Join(where, " AND ")
	}
	upd := make([]string, len(cols))
	for i, c := range cols {
		upd[i] = c + "=VALUES(" + c + ")"
	}
	return "INSERT INTO " + b.table + " (" + strings.Join(cols, ",") + ") VALUES " + join(tuples) +
		" ON DUPLICATE KEY UPDATE " + strings.Join(upd, ",")
}

func (b *batch) args() []any {
	var out []any
	for _, r := range b.rows {
		out = append(out, r...)
	}
	return out
}

// writeRows writes the winning changes in transaction order, batching consecutive changes
// of the same shape. It returns the number of row changes written.
func (s *Sink) writeRows(ctx context.Context, tx *sql.Tx, p *plan, win map[metaKey]bool) (int, error) {
	var changes []apply.RowChange
	for _, c := range p.changes {
		if win[newMetaKey(c)] {
			changes = append(changes, c)
		}
	}
	if p.fk {
		return s.writeChangesFK(ctx, tx, changes)
	}
	return s.writeChanges(ctx, tx, changes)
}

// writeChangesFK writes changes like writeChanges, but an update that changes a primary
// key (a delete of the old key followed by the new image, from one event) becomes one
// UPDATE, so that InnoDB cascades it (ON UPDATE CASCADE) as at the origin. If no row has
// the old key here, the new image is written as usual.
func (s *Sink) writeChangesFK(ctx context.Context, tx *sql.Tx, changes []apply.RowChange) (int, error) {
	n, start := 0, 0
	for i := 0; i+1 < len(changes); i++ {
		del, img := changes[i], changes[i+1]
		if del.Image != nil || img.Image == nil || del.Event != img.Event || del.Event.Op != changeevent.OpUpdate {
			continue
		}
		m, err := s.writeChanges(ctx, tx, changes[start:i])
		n += m
		if err != nil {
			return n, err
		}
		b, row, err := shape(img)
		if err != nil {
			return n, err
		}
		b.update = true
		for _, col := range apply.PKColumns(del.Event.Columns) {
			b.keys = append(b.keys, col.Name)
			row = append(row, sqlValue(col.Kind, del.Event.Before[col.Name]))
		}
		b.rows = [][]any{row}
		r, err := tx.ExecContext(ctx, b.sql(), b.args()...)
		if err != nil {
			return n, fmt.Errorf("write %s: %w", b.table, err)
		}
		start = i + 2
		if a, _ := r.RowsAffected(); a == 0 {
			start = i + 1 // no row with the old key here: write the new image
		}
		n++
		i++
	}
	m, err := s.writeChanges(ctx, tx, changes[start:])
	return n + m, err
}

// writeChanges writes changes in order, batching consecutive changes of the same shape.
func (s *Sink) writeChanges(ctx context.Context, tx *sql.Tx, changes []apply.RowChange) (int, error) {
	var cur *batch
	n := 0
	flush := func() error {
		if cur == nil || len(cur.rows) == 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, cur.sql(), cur.args()...); err != nil {
			return fmt.Errorf("write %s: %w", cur.table, err)
		}
		cur = nil
		return nil
	}
	for _, c := range changes {
		if c.Image == nil && IsSequence(c.Event.Columns) {
			continue // a sequence's row is never deleted but by DROP SEQUENCE
		}
		b, row, err := shape(c)
		if err != nil {
			return n, err
		}
		if cur == nil || !cur.same(b) || len(cur.rows) >= s.batch || cur.plain {
			if err := flush(); err != nil {
				return n, err
			}
			cur = b
		}
		cur.rows = append(cur.rows, row)
		n++
	}
	return n, flush()
}

func (b *batch) same(o *batch) bool {
	return b.table == o.table && b.delete == o.delete && b.plain == o.plain && strings.Join(b.columns, "\x00") == strings.Join(o.columns, "\x00")
}

// shape returns the (empty) batch a change belongs to and the change's values.
func shape(c apply.RowChange) (*batch, []any, error) {
	e := c.Event
	table, err := quoteTable(e.Source.DB, e.Source.Table)
	if err != nil {
		return nil, nil, err
	}
	b := &batch{table: table, delete: c.Image == nil, plain: c.Image != nil && IsSequence(e.Columns)}
	img, cols := c.Image, e.Columns
	if b.delete {
		img, cols = e.Before, apply.PKColumns(e.Columns)
	}
	var row []any
	for _, col := range cols {
		v, ok := img[col.Name]
		if !ok {
			continue
		}
		if _, err := quote(col.Name); err != nil {
			return nil, nil, err
		}
		b.columns = append(b.columns, col.Name)
		row = append(row, sqlValue(col.Kind, v))
	}
	if len(b.columns) == 0 {
		return nil, nil, fmt.Errorf("%w: %s.%s: empty row image", apply.ErrMalformed, e.Source.DB, e.Source.Table)
	}
	return b, row, nil
}

// sqlValue converts an event value for binding. float32 is widened exactly; the server
// rounds it back to the same FLOAT.
func sqlValue(kind changeevent.Kind, v any) any {
	if f, ok := v.(float32); ok {
		return float64(f)
	}
	return v
}
