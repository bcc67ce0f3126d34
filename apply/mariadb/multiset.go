package mariadb

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/changeevent"
)

// Tables without a primary key, and sequences.
//
// A table without a primary key is a multiset of rows: two identical rows cannot be told
// apart, so a row is keyed by its full image and a change affects one copy, as MariaDB's
// own row applier does on a replica. Such changes are not subject to last writer wins
// (identical copies have no identity to version); inserts commute, and an UPDATE or DELETE
// changes exactly one row whose every column equals the before image (LIMIT 1). The worker
// orders them (a transaction whose rows have no key is a barrier), so one origin's changes
// apply in its commit order. Idempotence: row_versions keeps, per table and origin, the
// version of the last transaction applied from that origin (pk "multiset:<origin>"); a
// transaction not newer than it is a re-delivery and is not applied again.
//
// A sequence (CREATE SEQUENCE) is a one-row table without a primary key whose every
// NEXTVAL/SETVAL is binlogged as a write of the whole row. Its changes are keyed by a
// constant key (one row) and go through last writer wins like any keyed row; the write is
// a plain INSERT into the sequence, which replaces its state.

// sequenceColumns are the columns of every MariaDB sequence table, in order.
var sequenceColumns = []string{"next_not_cached_value", "minimum_value", "maximum_value", "start_value",
	"increment", "cache_size", "cycle_option", "cycle_count"}

// sequenceKey is the key of a sequence's one row.
const sequenceKey = `["sequence"]`

// IsSequence reports whether cols are a MariaDB sequence table's.
func IsSequence(cols []changeevent.Column) bool {
	if len(cols) != len(sequenceColumns) {
		return false
	}
	for i, c := range cols {
		if c.Name != sequenceColumns[i] || c.PK {
			return false
		}
	}
	return true
}

// IsMultiset reports whether e is a row change of a table without a primary key that is
// not a sequence.
func IsMultiset(e *changeevent.Event) bool {
	return e.Op != changeevent.OpDDL && len(apply.PKColumns(e.Columns)) == 0 && !IsSequence(e.Columns)
}

// rowChanges is apply.Changes, with a sequence's row keyed by the constant sequenceKey.
func rowChanges(e *changeevent.Event) ([]apply.RowChange, error) {
	if !IsSequence(e.Columns) {
		return apply.Changes(e)
	}
	switch e.Op {
	case changeevent.OpCreate, changeevent.OpRead, changeevent.OpUpdate:
		return []apply.RowChange{{Event: e, Key: sequenceKey, Image: e.After}}, nil
	case changeevent.OpDelete:
		return []apply.RowChange{{Event: e, Key: sequenceKey}}, nil
	}
	return nil, fmt.Errorf("%w: op %q is not a row change", apply.ErrMalformed, e.Op)
}

// multisetMark is the row_versions key of a table's per-origin mark.
func multisetMark(db, table, origin string) (metaKey, string) {
	text := "multiset:" + origin
	return metaKey{db, table, sha256.Sum256([]byte(text))}, text
}

// applyMultiset applies the row changes of tables without a primary key (p.multi) in tx
// order, unless a table's mark says this origin's transaction was already applied.
func (s *Sink) applyMultiset(ctx context.Context, tx *sql.Tx, t *apply.Txn, p *plan, res *apply.Result) error {
	byTable := map[[2]string][]*changeevent.Event{}
	var order [][2]string
	for _, e := range p.multi {
		k := [2]string{e.Source.DB, e.Source.Table}
		if _, ok := byTable[k]; !ok {
			order = append(order, k)
		}
		byTable[k] = append(byTable[k], e)
	}
	for _, k := range order {
		events := byTable[k]
		origin, ver := t.Origin, version{t.Version, t.Origin, t.ID}
		if t.Resync {
			// Snapshot rows: no transaction order to keep; each chunk only makes sure the
			// table holds at least as many copies of each image as the chunk does.
			n, err := s.ensureCopies(ctx, tx, events)
			res.Applied += n
			if err != nil {
				return err
			}
			continue
		}
		mk, text := multisetMark(k[0], k[1], origin)
		var st apply.Version
		err := tx.QueryRowContext(ctx, "SELECT ts_us,domain_id,seq FROM "+s.meta+".row_versions WHERE db=? AND tbl=? AND pk_hash=? FOR UPDATE",
			mk.db, mk.table, mk.hash[:]).Scan(&st.TsUs, &st.Domain, &st.Seq)
		switch {
		case err == sql.ErrNoRows:
		case err != nil:
			return fmt.Errorf("read multiset mark: %w", err)
		case ver.v.Compare(st) <= 0:
			res.Duplicates += len(events)
			continue
		}
		if !t.Own {
			for _, e := range events {
				found, err := s.writeMultiset(ctx, tx, e)
				if err != nil {
					return err
				}
				if found {
					res.Applied++
				} else {
					res.Conflicts++
					s.log.Warn("conflict: no row of a table without primary key matches the change's before image (already changed here)",
						zap.String("db", k[0]), zap.String("table", k[1]), zap.String("op", string(e.Op)),
						zap.String("origin", origin), zap.String("gtid", t.ID))
				}
			}
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+s.meta+".row_versions (db,tbl,pk_hash,ts_us,domain_id,seq,origin,gtid,deleted,pk) "+
			"VALUES (?,?,?,?,?,?,?,?,0,?) ON DUPLICATE KEY UPDATE ts_us=VALUES(ts_us), domain_id=VALUES(domain_id), seq=VALUES(seq), gtid=VALUES(gtid)",
			mk.db, mk.table, mk.hash[:], ver.v.TsUs, ver.v.Domain, ver.v.Seq, origin, t.ID, text); err != nil {
			return fmt.Errorf("write multiset mark: %w", err)
		}
	}
	return nil
}

// writeMultiset applies one change to one copy; found is false when an UPDATE or DELETE
// found no row equal to its before image.
func (s *Sink) writeMultiset(ctx context.Context, tx *sql.Tx, e *changeevent.Event) (found bool, err error) {
	table, err := quoteTable(e.Source.DB, e.Source.Table)
	if err != nil {
		return false, err
	}
	var q string
	var args []any
	switch e.Op {
	case changeevent.OpCreate, changeevent.OpRead:
		cols, vals, err := imageColumns(e.Columns, e.After)
		if err != nil {
			return false, err
		}
		q, args = "INSERT INTO "+table+" ("+strings.Join(cols, ",")+") VALUES "+placeholders(len(cols)), vals
	case changeevent.OpDelete:
		where, wargs, err := matchImage(e.Columns, e.Before)
		if err != nil {
			return false, err
		}
		q, args = "DELETE FROM "+table+" WHERE "+where+" LIMIT 1", wargs
	case changeevent.OpUpdate:
		cols, vals, err := imageColumns(e.Columns, e.After)
		if err != nil {
			return false, err
		}
		set := make([]string, len(cols))
		for i, c := range cols {
			set[i] = c + "=?"
		}
		where, wargs, err := matchImage(e.Columns, e.Before)
		if err != nil {
			return false, err
		}
		q, args = "UPDATE "+table+" SET "+strings.Join(set, ",")+" WHERE "+where+" LIMIT 1", append(vals, wargs...)
	default:
		return false, fmt.Errorf("%w: op %q is not a row change", apply.ErrMalformed, e.Op)
	}
	r, err := tx.ExecContext(ctx, q, args...)
	if err != nil {
		return false, fmt.Errorf("write %s: %w", table, err)
	}
	if e.Op == changeevent.OpUpdate {
		// Rows affected counts changed rows only; an update to the same image matched.
		return true, nil
	}
	n, _ := r.RowsAffected()
	return n > 0, nil
}

// ensureCopies makes the table hold at least as many copies of each image as events has
// (snapshot rows of a table without a primary key), and returns the rows inserted.
func (s *Sink) ensureCopies(ctx context.Context, tx *sql.Tx, events []*changeevent.Event) (int, error) {
	type group struct {
		e *changeevent.Event
		n int
	}
	groups := map[string]*group{}
	var order []string
	for _, e := range events {
		if e.After == nil {
			continue
		}
		k, err := apply.EncodeKey(e.Columns, e.After)
		if err != nil {
			return 0, err
		}
		if g := groups[k]; g != nil {
			g.n++
			continue
		}
		groups[k] = &group{e, 1}
		order = append(order, k)
	}
	inserted := 0
	for _, k := range order {
		g := groups[k]
		table, err := quoteTable(g.e.Source.DB, g.e.Source.Table)
		if err != nil {
			return inserted, err
		}
		where, args, err := matchImage(g.e.Columns, g.e.After)
		if err != nil {
			return inserted, err
		}
		var have int
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table+" WHERE "+where+" FOR UPDATE", args...).Scan(&have); err != nil {
			return inserted, fmt.Errorf("count copies in %s: %w", table, err)
		}
		for ; have < g.n; have++ {
			if _, err := s.writeMultiset(ctx, tx, g.e); err != nil {
				return inserted, err
			}
			inserted++
		}
	}
	return inserted, nil
}

// imageColumns returns the quoted columns of img and their values.
func imageColumns(cols []changeevent.Column, img changeevent.Row) ([]string, []any, error) {
	var names []string
	var vals []any
	for _, c := range cols {
		v, ok := img[c.Name]
		if !ok {
			continue
		}
		q, err := quote(c.Name)
		if err != nil {
			return nil, nil, err
		}
		names = append(names, q)
		vals = append(vals, sqlValue(c.Kind, v))
	}
	if len(names) == 0 {
		return nil, nil, fmt.Errorf("%w: empty row image", apply.ErrMalformed)
	}
	return names, vals, nil
}

// matchImage is a WHERE clause matching a row equal to img in every column (NULL-safe).
// A FLOAT column is compared with the value rounded to FLOAT, as the server stores it.
func matchImage(cols []changeevent.Column, img changeevent.Row) (string, []any, error) {
	names, vals, err := imageColumns(cols, img)
	if err != nil {
		return "", nil, err
	}
	kinds := map[string]changeevent.Kind{}
	for _, c := range cols {
		kinds["`"+c.Name+"`"] = c.Kind
	}
	conds := make([]string, len(names))
	for i, n := range names {
		switch kinds[n] {
		case changeevent.KindFloat:
			conds[i] = n + "<=>CAST(? AS FLOAT)"
		default:
			conds[i] = n + "<=>?"
		}
	}
	return strings.Join(conds, " AND "), vals, nil
}
