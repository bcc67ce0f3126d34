package cassandra

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"

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
// holds every column of e, and rebuilding it when the row's primary key (the binlog's own,
// exact when the row was written) is not the store table's. Anything but a cache hit runs
// with the table's gate held for writing (see writable).
func (s *Sink) ensureTable(ctx context.Context, db, tbl string, cols []changeevent.Column) (*table, error) {
	key := db + "." + tbl
	s.mu.Lock()
	t := s.tables[key]
	s.mu.Unlock()
	if t != nil && t.covers(cols) {
		return t, nil
	}
	g := s.gate(key)
	g.Lock()
	defer g.Unlock()
	return s.ensureTableLocked(ctx, db, tbl, cols, true)
}

// ensureTableLocked is ensureTable with the table's gate held. keyed tells whether cols'
// primary key is in force: a row's is, a DDL event's may not be (capture reads it from
// information_schema when it processes the event, so it can be a later statement's key);
// without keyed a table that exists keeps its key (and registers it in its columns).
func (s *Sink) ensureTableLocked(ctx context.Context, db, tbl string, cols []changeevent.Column, keyed bool) (*table, error) {
	key := db + "." + tbl
	s.mu.Lock()
	if t := s.tables[key]; t != nil && keyed && t.covers(cols) {
		s.mu.Unlock()
		return t, nil
	}
	delete(s.tables, key)
	s.mu.Unlock()
	name := TableName(db, tbl)
	t, err := s.openTable(ctx, db, tbl)
	if err != nil {
		return nil, err
	}
	if len(t.columns) == 0 && keyed {
		// A rebuild for this key interrupted after the table was dropped: finish it.
		var pk []string
		for _, c := range cols {
			if c.PK {
				pk = append(pk, c.Name)
			}
		}
		dst, err := s.rebuild(ctx, "key:"+strings.Join(pk, ","), name, cols, nil, true)
		if err != nil {
			return nil, err
		}
		if dst != nil {
			t.columns, t.pk = dst.columns, dst.pk
		}
	}
	if len(t.columns) == 0 {
		if err := s.create(ctx, t, cols); err != nil {
			return nil, err
		}
	} else {
		if !keyed {
			cols = withKey(cols, t.pk)
		}
		if err := s.alter(ctx, t, cols, keyed); err != nil {
			return nil, err
		}
	}
	b, _ := json.Marshal(cols)
	if err := s.session.Query("UPDATE "+s.ks+".music_tables SET columns=? WHERE cql_table=?", string(b), name).
		WithContext(ctx).Exec(); err != nil {
		return nil, fmt.Errorf("cassandra: register columns of %s: %w", name, err)
	}
	s.mu.Lock()
	s.tables[key] = t
	s.mu.Unlock()
	return t, nil
}

// withKey returns cols with the primary key pk when cols hold every column of pk (cols
// themselves otherwise).
func withKey(cols []changeevent.Column, pk []string) []changeevent.Column {
	in := map[string]bool{}
	for _, k := range pk {
		in[k] = true
	}
	out := make([]changeevent.Column, len(cols))
	found := 0
	for i, c := range cols {
		out[i] = c
		out[i].PK = in[c.Name]
		if in[c.Name] {
			found++
		}
	}
	if found != len(pk) {
		return cols
	}
	return out
}

// covers reports whether t holds every column of cols with its type and, when cols have a
// primary key, has that key.
func (t *table) covers(cols []changeevent.Column) bool {
	var pk []string
	for _, c := range cols {
		if typ, _ := CQLType(c.Kind); t.columns[c.Name] != typ {
			return false
		}
		if c.PK {
			pk = append(pk, c.Name)
		}
	}
	return len(pk) == 0 || t.keyFits(cols)
}

// keyFits reports whether rows of cols can be written under t's primary key: it is cols'
// key, or a finer one (cols' key and more columns, all of cols). A row under an earlier,
// coarser key (one another origin wrote before it applied the key change) is written under
// the store's key rather than rebuilding the table back, which would merge rows.
func (t *table) keyFits(cols []changeevent.Column) bool {
	in, pk := map[string]bool{}, 0
	for _, c := range cols {
		in[c.Name] = true
		if c.PK {
			pk++
		}
	}
	store := map[string]bool{}
	for _, k := range t.pk {
		if !in[k] {
			return false
		}
		store[k] = true
	}
	for _, c := range cols {
		if c.PK && !store[c.Name] {
			return false
		}
	}
	return pk > 0 && len(t.pk) > 0
}

// gate returns the lock of db.table's store table: held for reading while rows are written
// into it (writable), for writing while it is created, altered, rebuilt, moved or dropped,
// so that no row is written into a table a rebuild has copied already.
func (s *Sink) gate(key string) *sync.RWMutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gates == nil {
		s.gates = map[string]*sync.RWMutex{}
	}
	g := s.gates[key]
	if g == nil {
		g = &sync.RWMutex{}
		s.gates[key] = g
	}
	return g
}

// writable ensures the store table of every change (ensureTable) and returns them by
// db.table with their gates held for reading; release lets them go. A table rebuilt or
// changed between the two is ensured again.
func (s *Sink) writable(ctx context.Context, changes []apply.RowChange) (map[string]*table, func(), error) {
	for {
		tables := map[string]*table{}
		for _, c := range changes {
			t, err := s.ensureTable(ctx, c.Event.Source.DB, c.Event.Source.Table, c.Event.Columns)
			if err != nil {
				return nil, nil, err
			}
			tables[c.Event.Source.DB+"."+c.Event.Source.Table] = t
		}
		keys := make([]string, 0, len(tables))
		for k := range tables {
			keys = append(keys, k)
		}
		sort.Strings(keys) // gates are taken in one order
		gates := make([]*sync.RWMutex, len(keys))
		for i, k := range keys {
			gates[i] = s.gate(k)
			gates[i].RLock()
		}
		release := func() {
			for _, g := range gates {
				g.RUnlock()
			}
		}
		s.mu.Lock()
		current := true
		for _, k := range keys {
			current = current && s.tables[k] == tables[k]
		}
		s.mu.Unlock()
		if current {
			return tables, release, nil
		}
		release()
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
	}
}

// lockTables takes the gates of names for writing (in one order) and returns their release.
func (s *Sink) lockTables(names []string) func() {
	sort.Strings(names)
	var gates []*sync.RWMutex
	for i, n := range names {
		if i > 0 && names[i-1] == n {
			continue
		}
		g := s.gate(n)
		g.Lock()
		gates = append(gates, g)
	}
	return func() {
		for _, g := range gates {
			g.Unlock()
		}
	}
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

func (s *Sink) alter(ctx context.Context, t *table, cols []changeevent.Column, keyed bool) error {
	var pk []string
	for _, c := range cols {
		if c.PK {
			pk = append(pk, c.Name)
		}
	}
	if !keyed {
		pk = nil // a DDL event's key need not be in force yet: the store keeps its own
	}
	if len(pk) > 0 && !t.keyFits(cols) {
		// The primary key changed (rows carry the binlog's own key): Cassandra cannot
		// change a key, so the table is rebuilt with it, every row keeping its write
		// timestamp. A row of the store without a value for the new key refuses it.
		name := strings.TrimPrefix(strings.TrimPrefix(t.name, s.ks+"."), `"`)
		name = strings.TrimSuffix(name, `"`)
		dst, err := s.rebuild(ctx, "key:"+strings.Join(pk, ","), name, cols, nil, true)
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
	return nil
}

// openTable registers db.tbl's store table name (music_tables) and describes the table as
// Cassandra has it now (no columns: not created yet), with its qualified quoted name.
func (s *Sink) openTable(ctx context.Context, db, tbl string) (*table, error) {
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
	return t, nil
}
