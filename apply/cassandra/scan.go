package cassandra

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"

	"gopkg.in/inf.v0"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/changeevent"
)

// Tables lists the source tables the store holds, as db.table.
func (s *Sink) Tables(ctx context.Context) ([][2]string, error) {
	iter := s.session.Query("SELECT db, tbl FROM " + s.ks + ".music_tables").WithContext(ctx).Iter()
	var out [][2]string
	var db, tbl string
	for iter.Scan(&db, &tbl) {
		out = append(out, [2]string{db, tbl})
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("cassandra: list tables: %w", err)
	}
	return out, nil
}

// Columns returns the source columns registered for db.table.
func (s *Sink) Columns(ctx context.Context, db, table string) ([]changeevent.Column, error) {
	var raw string
	if err := s.session.Query("SELECT columns FROM "+s.ks+".music_tables WHERE cql_table=?", TableName(db, table)).
		WithContext(ctx).Scan(&raw); err != nil {
		return nil, fmt.Errorf("cassandra: columns of %s.%s: %w", db, table, err)
	}
	var cols []changeevent.Column
	if err := json.Unmarshal([]byte(raw), &cols); err != nil || len(cols) == 0 {
		return nil, fmt.Errorf("%w: no columns registered for %s.%s", apply.ErrRefused, db, table)
	}
	return cols, nil
}

// Scan reads every row of db.table from the store, page by page, and calls fn with batches
// of at most batch rows as snapshot events (op "r") carrying each row's origin, GTID and
// commit time, so a sink applies them under the same conflict rule as the streams.
func (s *Sink) Scan(ctx context.Context, db, table string, batch int, fn func([]*changeevent.Event) error) error {
	cols, err := s.Columns(ctx, db, table)
	if err != nil {
		return err
	}
	name, err := quote(TableName(db, table), 48)
	if err != nil {
		return err
	}
	names := ""
	for _, c := range cols {
		q, err := quote(c.Name, 64)
		if err != nil {
			return err
		}
		names += q + ","
	}
	iter := s.session.Query("SELECT " + names + "music_version, music_origin, music_gtid FROM " + s.ks + "." + name).
		WithContext(ctx).PageSize(batch).Iter()
	var events []*changeevent.Event
	for {
		dest := scanDest(cols)
		if !iter.Scan(dest...) {
			break
		}
		e, err := rowEvent(db, table, cols, dest)
		if err != nil {
			iter.Close()
			return err
		}
		events = append(events, e)
		if len(events) >= batch {
			if err := fn(events); err != nil {
				iter.Close()
				return err
			}
			events = nil
		}
	}
	if err := iter.Close(); err != nil {
		return fmt.Errorf("cassandra: scan %s: %w", name, err)
	}
	if len(events) > 0 {
		return fn(events)
	}
	return nil
}

// scanDest allocates pointer-to-pointer destinations, so a null cell scans as nil.
func scanDest(cols []changeevent.Column) []any {
	dest := make([]any, 0, len(cols)+3)
	for _, c := range cols {
		switch c.Kind {
		case changeevent.KindInt, changeevent.KindYear:
			dest = append(dest, new(*int64))
		case changeevent.KindUint, changeevent.KindBit:
			dest = append(dest, new(*big.Int))
		case changeevent.KindFloat:
			dest = append(dest, new(*float32))
		case changeevent.KindDouble:
			dest = append(dest, new(*float64))
		case changeevent.KindDecimal:
			dest = append(dest, new(*inf.Dec))
		case changeevent.KindBytes:
			dest = append(dest, new(*[]byte))
		default:
			dest = append(dest, new(*string))
		}
	}
	return append(dest, new(int64), new(string), new(string))
}

// rowEvent turns a scanned store row back into a snapshot event with exact Go values.
func rowEvent(db, table string, cols []changeevent.Column, dest []any) (*changeevent.Event, error) {
	n := len(cols)
	wt, origin, gtid := *dest[n].(*int64), *dest[n+1].(*string), *dest[n+2].(*string)
	after := changeevent.Row{}
	for i, c := range cols {
		v, err := fromCQL(dest[i])
		if err != nil {
			return nil, fmt.Errorf("%w: %s.%s column %s: %v", apply.ErrMalformed, db, table, c.Name, err)
		}
		after[c.Name] = v
	}
	return &changeevent.Event{Op: changeevent.OpRead, After: after, Columns: cols,
		Source: changeevent.Source{Connector: "music-store", Name: origin, GTID: gtid, TsMs: apply.VersionOf(wt).TsUs / 1000, TsUs: apply.VersionOf(wt).TsUs,
			DB: db, Table: table, Snapshot: "true"}}, nil
}

// fromCQL dereferences a scan destination into the event's Go type for the column.
func fromCQL(d any) (any, error) {
	switch p := d.(type) {
	case **int64:
		if *p == nil {
			return nil, nil
		}
		return **p, nil
	case **big.Int:
		if *p == nil {
			return nil, nil
		}
		if !(*p).IsUint64() {
			return nil, fmt.Errorf("varint %s out of range", *p)
		}
		return (*p).Uint64(), nil
	case **float32:
		if *p == nil {
			return nil, nil
		}
		return **p, nil
	case **float64:
		if *p == nil {
			return nil, nil
		}
		return **p, nil
	case **inf.Dec:
		if *p == nil {
			return nil, nil
		}
		return (*p).String(), nil
	case **[]byte:
		if *p == nil {
			return nil, nil
		}
		if **p == nil {
			return []byte{}, nil // an empty blob, not NULL
		}
		return **p, nil
	case **string:
		if *p == nil {
			return nil, nil
		}
		return **p, nil
	}
	return nil, fmt.Errorf("unexpected destination %T", d)
}
