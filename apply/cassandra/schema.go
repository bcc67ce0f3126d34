package cassandra

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/changeevent"
)

// Replication is a keyspace's replication: SimpleStrategy with Factor, or
// NetworkTopologyStrategy with a factor per data centre (one per site).
type Replication struct {
	Class       string         `yaml:"class"`
	Factor      int            `yaml:"factor"`
	DataCenters map[string]int `yaml:"data_centers"`
}

// CQL renders the replication map, validating it.
func (r Replication) CQL() (string, error) {
	switch r.Class {
	case "SimpleStrategy":
		if r.Factor < 1 {
			return "", fmt.Errorf("replication.factor: %d, want at least 1", r.Factor)
		}
		return fmt.Sprintf("{'class': 'SimpleStrategy', 'replication_factor': %d}", r.Factor), nil
	case "NetworkTopologyStrategy":
		if len(r.DataCenters) == 0 {
			return "", fmt.Errorf("replication.data_centers: empty for NetworkTopologyStrategy")
		}
		parts := []string{"'class': 'NetworkTopologyStrategy'"}
		for dc, n := range r.DataCenters {
			if !identRE.MatchString(dc) || n < 1 {
				return "", fmt.Errorf("replication.data_centers: %q: %d is not a valid data centre and factor", dc, n)
			}
			parts = append(parts, fmt.Sprintf("'%s': %d", dc, n))
		}
		return "{" + strings.Join(parts, ", ") + "}", nil
	}
	return "", fmt.Errorf("replication.class: %q is not SimpleStrategy or NetworkTopologyStrategy", r.Class)
}

// table is what the sink knows of one MUSIC store table.
type table struct {
	name    string            // quoted keyspace.table
	columns map[string]string // column -> CQL type
	pk      []string
}

// metaColumns are the columns the sink adds to every table.
var metaColumns = map[string]string{"music_origin": "text", "music_gtid": "text", "music_version": "bigint"}

// ensureTable returns the table of e's db.table, creating it or adding columns so that it
// holds every column of e.
func (s *Sink) ensureTable(ctx context.Context, db, tbl string, cols []changeevent.Column) (*table, error) {
	key := db + "." + tbl
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.tables[key]; t != nil && t.covers(cols) {
		return t, nil
	}
	name := TableName(db, tbl)
	qname, err := quote(name, 48)
	if err != nil {
		return nil, err
	}
	if err := s.register(ctx, name, db, tbl); err != nil {
		return nil, err
	}
	t, err := s.describe(ctx, name)
	if err != nil {
		return nil, err
	}
	t.name = s.ks + "." + qname
	if len(t.columns) == 0 {
		if err := s.create(ctx, t, cols); err != nil {
			return nil, err
		}
	} else if err := s.alter(ctx, t, cols); err != nil {
		return nil, err
	}
	b, _ := json.Marshal(cols)
	if err := s.session.Query("UPDATE "+s.ks+".music_tables SET columns=? WHERE cql_table=?", string(b), name).
		WithContext(ctx).Exec(); err != nil {
		return nil, fmt.Errorf("cassandra: register columns of %s: %w", name, err)
	}
	s.tables[key] = t
	return t, nil
}

func (t *table) covers(cols []changeevent.Column) bool {
	for _, c := range cols {
		if typ, _ := CQLType(c.Kind); t.columns[c.Name] != typ {
			return false
		}
	}
	return true
}

// register claims name for db.table in music_tables, refusing a name another table holds.
func (s *Sink) register(ctx context.Context, name, db, tbl string) error {
	prev := map[string]any{}
	applied, err := s.session.Query("INSERT INTO "+s.ks+".music_tables (cql_table, db, tbl) VALUES (?,?,?) IF NOT EXISTS",
		name, db, tbl).WithContext(ctx).MapScanCAS(prev)
	if err != nil {
		return fmt.Errorf("cassandra: register table %s: %w", name, err)
	}
	if !applied && (prev["db"] != db || prev["tbl"] != tbl) {
		return fmt.Errorf("%w: Cassandra table %s already holds %v.%v, not %s.%s", apply.ErrRefused, name, prev["db"], prev["tbl"], db, tbl)
	}
	return nil
}

// describe reads a table's columns from system_schema (none if it does not exist).
func (s *Sink) describe(ctx context.Context, name string) (*table, error) {
	t := &table{columns: map[string]string{}}
	iter := s.session.Query("SELECT column_name, type, kind, position FROM system_schema.columns WHERE keyspace_name=? AND table_name=?",
		s.keyspace, name).WithContext(ctx).Iter()
	var col, typ, kind string
	var pos int
	pk := map[int]string{}
	for iter.Scan(&col, &typ, &kind, &pos) {
		t.columns[col] = typ
		if kind == "partition_key" {
			pk[pos] = col
		}
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("cassandra: describe %s: %w", name, err)
	}
	for i := range len(pk) {
		t.pk = append(t.pk, pk[i])
	}
	return t, nil
}

func (s *Sink) create(ctx context.Context, t *table, cols []changeevent.Column) error {
	var defs, pk []string
	for _, c := range cols {
		if _, clash := metaColumns[c.Name]; clash {
			return fmt.Errorf("%w: column %q clashes with a MUSIC column", apply.ErrRefused, c.Name)
		}
		q, err := quote(c.Name, 64)
		if err != nil {
			return err
		}
		typ, err := CQLType(c.Kind)
		if err != nil {
			return err
		}
		defs = append(defs, q+" "+typ)
		t.columns[c.Name] = typ
		if c.PK {
			pk = append(pk, q)
			t.pk = append(t.pk, c.Name)
		}
	}
	if len(pk) == 0 {
		return fmt.Errorf("%w: table %s has no primary key", apply.ErrRefused, t.name)
	}
	for c, typ := range metaColumns {
		defs = append(defs, c+" "+typ)
		t.columns[c] = typ
	}
	stmt := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (%s, PRIMARY KEY ((%s)))", t.name, strings.Join(defs, ", "), strings.Join(pk, ", "))
	if err := s.session.Query(stmt).WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("cassandra: create %s: %w", t.name, err)
	}
	s.log.Info("music store table created", zap.String("table", t.name))
	return nil
}

func (s *Sink) alter(ctx context.Context, t *table, cols []changeevent.Column) error {
	var pk []string
	for _, c := range cols {
		if c.PK {
			pk = append(pk, c.Name)
		}
	}
	if len(pk) > 0 && strings.Join(pk, ",") != strings.Join(t.pk, ",") {
		// The primary key changed (rows carry the binlog's own key, a DDL event the key
		// capture read): Cassandra cannot change a key, so the table is rebuilt with it,
		// every row keeping its write timestamp.
		name := strings.TrimPrefix(strings.TrimPrefix(t.name, s.ks+"."), `"`)
		name = strings.TrimSuffix(name, `"`)
		dst, err := s.rebuild(ctx, "key:"+strings.Join(pk, ","), name, cols, nil)
		if err != nil {
			return err
		}
		if dst != nil {
			t.columns, t.pk = dst.columns, dst.pk
		}
		pk = nil
	}
	for _, c := range cols {
		typ, err := CQLType(c.Kind)
		if err != nil {
			return err
		}
		have, ok := t.columns[c.Name]
		switch {
		case ok && have == typ:
			continue
		case ok:
			return fmt.Errorf("%w: %s column %q changed type from %s to %s: resync the table", apply.ErrRefused, t.name, c.Name, have, typ)
		}
		q, err := quote(c.Name, 64)
		if err != nil {
			return err
		}
		if err := s.session.Query("ALTER TABLE " + t.name + " ADD " + q + " " + typ).WithContext(ctx).Exec(); err != nil {
			return fmt.Errorf("cassandra: alter %s: %w", t.name, err)
		}
		t.columns[c.Name] = typ
		s.log.Info("music store column added", zap.String("table", t.name), zap.String("column", c.Name))
	}
	if len(pk) > 0 && strings.Join(pk, ",") != strings.Join(t.pk, ",") {
		return fmt.Errorf("%w: %s primary key changed from %v to %v: resync the table", apply.ErrRefused, t.name, t.pk, pk)
	}
	return nil
}
