package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gocql/gocql"
)

// exec runs a write. With h nil it is eventual (ONE; conditions as a lightweight
// transaction); with h it is critical (QUORUM, stamped from h's lock reference;
// conditions checked by a QUORUM read, which the lock makes safe).
func (s *Store) exec(ctx context.Context, o *op, h *holder) error {
	if len(o.conds) > 0 {
		if h == nil {
			return s.execCAS(ctx, o)
		}
		if err := s.checkConditions(ctx, o); err != nil {
			return err
		}
	}
	ts, cl := o.ts, o.cl
	if h != nil {
		ts, cl = h.Timestamp(time.Now()), gocql.Quorum
	}
	cql, args := writeCQL(o, ts, false)
	err := s.sess.Query(cql, args...).WithContext(ctx).Consistency(cl).Exec()
	return classify(opName(o.kind)+" "+o.t.ref(), err)
}

func opName(k opKind) string {
	return [...]string{"insert into", "update", "delete from", "select from"}[k]
}

// writeCQL builds the statement and its arguments; cas adds the IF clause.
func writeCQL(o *op, ts int64, cas bool) (string, []any) {
	var using []string
	var args []any
	if o.ttl > 0 && o.kind != opDelete {
		using, args = append(using, "TTL ?"), append(args, o.ttl)
	}
	if ts > 0 {
		using, args = append(using, "TIMESTAMP ?"), append(args, ts)
	}
	u := ""
	if len(using) > 0 {
		u = " USING " + strings.Join(using, " AND ")
	}
	var cql string
	switch o.kind {
	case opInsert:
		cols, vals := sortedPairs(o.values)
		marks := strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ")
		return fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)%s", o.t.ref(), strings.Join(cols, ", "), marks, u),
			append(vals, args...)
	case opUpdate:
		cols, vals := sortedPairs(o.values)
		cql = "UPDATE " + o.t.ref() + u + " SET " + joinEq(cols, ", ")
		args = append(args, vals...)
	case opDelete:
		cql = "DELETE " + strings.Join(o.cols, ", ") + " FROM " + o.t.ref() + u
	}
	kcols, kvals := sortedPairs(o.key)
	cql += where(kcols)
	args = append(args, kvals...)
	if cas {
		ccols, cvals := sortedPairs(o.conds)
		cql += " IF " + joinEq(ccols, " AND ")
		args = append(args, cvals...)
	}
	return cql, args
}

func (s *Store) execCAS(ctx context.Context, o *op) error {
	cql, args := writeCQL(o, 0, true)
	applied, err := s.sess.Query(cql, args...).WithContext(ctx).MapScanCAS(map[string]any{})
	if err != nil {
		return classify(opName(o.kind)+" "+o.t.ref(), err)
	}
	if !applied {
		return fmt.Errorf("%w: %s %s", ErrConditionFailed, opName(o.kind), o.t.ref())
	}
	return nil
}

func (s *Store) checkConditions(ctx context.Context, o *op) error {
	rows, err := s.read(ctx, &op{kind: opSelect, t: o.t, key: o.key, limit: 2}, true)
	if err != nil {
		return err
	}
	if len(rows) != 1 {
		return fmt.Errorf("%w: %s: no such row", ErrConditionFailed, o.t.ref())
	}
	for c, want := range o.conds {
		if keyText(rows[0][c]) != keyText(want) {
			return fmt.Errorf("%w: %s: %s is %v", ErrConditionFailed, o.t.ref(), c, rows[0][c])
		}
	}
	return nil
}
