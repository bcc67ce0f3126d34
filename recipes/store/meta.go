package store

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/gocql/gocql"
)

const metaTTL = 30 * time.Second

// table is what the store knows of a table's columns.
type table struct {
	keyspace, name string
	types          map[string]string // column -> CQL type
	partition      []string          // partition key columns, in order
	clustering     []string          // clustering columns, in order
	loaded         time.Time
}

func (t *table) primary() []string { return append(slices.Clone(t.partition), t.clustering...) }

func (t *table) ref() string { return t.keyspace + "." + t.name }

// metaCache caches table metadata read from system_schema.
type metaCache struct {
	mu     sync.Mutex
	tables map[string]*table
}

func (s *Store) invalidate(ks, tb string) {
	s.meta.mu.Lock()
	defer s.meta.mu.Unlock()
	for k, t := range s.meta.tables {
		if t.keyspace == ks && (tb == "" || t.name == tb) {
			delete(s.meta.tables, k)
		}
	}
}

// table returns the metadata of ks.tb; fresh asks for a reload.
func (s *Store) table(ctx context.Context, ks, tb string, fresh bool) (*table, error) {
	key := ks + "." + tb
	s.meta.mu.Lock()
	t, ok := s.meta.tables[key]
	s.meta.mu.Unlock()
	if ok && !fresh && time.Since(t.loaded) < metaTTL {
		return t, nil
	}
	t, err := s.loadTable(ctx, ks, tb)
	if err != nil {
		return nil, err
	}
	s.meta.mu.Lock()
	s.meta.tables[key] = t
	s.meta.mu.Unlock()
	return t, nil
}

func (s *Store) loadTable(ctx context.Context, ks, tb string) (*table, error) {
	iter := s.sess.Query(`SELECT column_name, kind, position, type FROM system_schema.columns
		WHERE keyspace_name = ? AND table_name = ?`, ks, tb).WithContext(ctx).Consistency(gocql.One).Iter()
	t := &table{keyspace: ks, name: tb, types: map[string]string{}, loaded: time.Now()}
	type keyCol struct {
		name string
		pos  int
	}
	var part, clus []keyCol
	var name, kind, typ string
	var pos int
	for iter.Scan(&name, &kind, &pos, &typ) {
		t.types[name] = typ
		switch kind {
		case "partition_key":
			part = append(part, keyCol{name, pos})
		case "clustering":
			clus = append(clus, keyCol{name, pos})
		}
	}
	if err := iter.Close(); err != nil {
		return nil, classify("read schema of "+ks+"."+tb, err)
	}
	if len(t.types) == 0 {
		return nil, invalidNotFound("table %s.%s does not exist", ks, tb)
	}
	byPos := func(a, b keyCol) int { return a.pos - b.pos }
	slices.SortFunc(part, byPos)
	slices.SortFunc(clus, byPos)
	for _, c := range part {
		t.partition = append(t.partition, c.name)
	}
	for _, c := range clus {
		t.clustering = append(t.clustering, c.name)
	}
	return t, nil
}

// columns converts a map of column name to value into bound values, checking names and
// converting each value to its column's type. Unknown columns reload the metadata once.
func (s *Store) columns(ctx context.Context, t *table, in map[string]any) (*table, map[string]any, error) {
	out := make(map[string]any, len(in))
	for k, v := range in {
		col, err := Ident("column", k)
		if err != nil {
			return t, nil, err
		}
		typ, ok := t.types[col]
		if !ok && time.Since(t.loaded) > time.Second {
			if t, err = s.table(ctx, t.keyspace, t.name, true); err != nil {
				return t, nil, err
			}
			typ, ok = t.types[col]
		}
		if !ok {
			return t, nil, invalidNotFound("column %s does not exist in %s", col, t.ref())
		}
		cv, err := convert(typ, v)
		if err != nil {
			return t, nil, invalid("column %s (%s): %v", col, typ, err)
		}
		out[col] = cv
	}
	return t, out, nil
}
