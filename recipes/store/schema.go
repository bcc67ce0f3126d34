package store

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// KeyspaceSpec describes a keyspace. Replication is ONAP's replicationInfo, e.g.
// {"class": "SimpleStrategy", "replication_factor": 3} or
// {"class": "NetworkTopologyStrategy", "dc1": 3, "dc2": 3}.
type KeyspaceSpec struct {
	Name          string
	Replication   map[string]any
	DurableWrites *bool // nil means true
}

// CreateKeyspace creates the keyspace if it does not exist.
func (s *Store) CreateKeyspace(ctx context.Context, k KeyspaceSpec) error {
	name, err := Ident("keyspace", k.Name)
	if err != nil {
		return err
	}
	repl, err := replication(k.Replication)
	if err != nil {
		return err
	}
	durable := k.DurableWrites == nil || *k.DurableWrites
	cql := fmt.Sprintf("CREATE KEYSPACE IF NOT EXISTS %s WITH replication = %s AND durable_writes = %t", name, repl, durable)
	return classify("create keyspace "+name, s.sess.Query(cql).WithContext(ctx).Exec())
}

func replication(in map[string]any) (string, error) {
	class, _ := in["class"].(string)
	class = strings.TrimPrefix(class, "org.apache.cassandra.locator.")
	if class != "SimpleStrategy" && class != "NetworkTopologyStrategy" {
		return "", invalid("replicationInfo.class must be SimpleStrategy or NetworkTopologyStrategy, got %q", class)
	}
	parts := []string{fmt.Sprintf("'class': '%s'", class)}
	keys := make([]string, 0, len(in))
	for k := range in {
		if k != "class" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if class == "SimpleStrategy" && k != "replication_factor" || !dcRE.MatchString(k) {
			return "", invalid("replicationInfo: key %q is not allowed for %s", k, class)
		}
		n, err := convertScalar("int", in[k])
		if err != nil || n.(int) < 1 || n.(int) > 99 {
			return "", invalid("replicationInfo.%s must be a replica count from 1 to 99", k)
		}
		parts = append(parts, fmt.Sprintf("'%s': %d", k, n))
	}
	if len(parts) == 1 {
		return "", invalid("replicationInfo needs replication_factor or data centre replica counts")
	}
	return "{" + strings.Join(parts, ", ") + "}", nil
}

// DropKeyspace drops the keyspace.
func (s *Store) DropKeyspace(ctx context.Context, name string) error {
	name, err := Ident("keyspace", name)
	if err != nil {
		return err
	}
	defer s.invalidate(name, "")
	return classify("drop keyspace "+name, s.sess.Query("DROP KEYSPACE "+name).WithContext(ctx).Exec())
}

// TableSpec describes a table.
type TableSpec struct {
	Keyspace, Name  string
	Columns         map[string]string // column -> CQL type
	PartitionKey    []string
	ClusteringKey   []string
	ClusteringOrder map[string]string // clustering column -> ASC or DESC
	// Properties are CQL table options (ONAP's JsonTable.properties), such as
	// default_time_to_live: 60, comment: "x" or compaction: {"class": "..."}. Names
	// must be table options; values strings, numbers, booleans or maps of those.
	Properties map[string]any
}

// CreateTable creates the table if it does not exist.
func (s *Store) CreateTable(ctx context.Context, t TableSpec) error {
	cql, err := createTableCQL(t)
	if err != nil {
		return err
	}
	ks, _ := Ident("keyspace", t.Keyspace)
	tb, _ := Ident("table", t.Name)
	defer s.invalidate(ks, tb)
	return classify("create table "+ks+"."+tb, s.sess.Query(cql).WithContext(ctx).Exec())
}

func createTableCQL(t TableSpec) (string, error) {
	ks, err := Ident("keyspace", t.Keyspace)
	if err != nil {
		return "", err
	}
	tb, err := Ident("table", t.Name)
	if err != nil {
		return "", err
	}
	if len(t.Columns) == 0 {
		return "", invalid("table %s needs fields", tb)
	}
	cols, err := columnDefs(t.Columns)
	if err != nil {
		return "", err
	}
	pk, err := idents("partition key", t.PartitionKey)
	if err != nil {
		return "", err
	}
	ck, err := idents("clustering key", t.ClusteringKey)
	if err != nil {
		return "", err
	}
	if len(pk) == 0 {
		return "", invalid("table %s needs a primary key", tb)
	}
	for _, c := range append(slices.Clone(pk), ck...) {
		if _, ok := t.Columns[c]; !ok {
			return "", invalid("key column %s is not among the fields", c)
		}
	}
	key := "(" + strings.Join(pk, ", ") + ")"
	if len(ck) > 0 {
		key += ", " + strings.Join(ck, ", ")
	}
	cql := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s (%s, PRIMARY KEY (%s))", ks, tb, strings.Join(cols, ", "), key)
	opts, err := tableOptions(t, ck)
	if err != nil {
		return "", err
	}
	if len(opts) > 0 {
		cql += " WITH " + strings.Join(opts, " AND ")
	}
	return cql, nil
}

func columnDefs(in map[string]string) ([]string, error) {
	var cols []string
	for name, typ := range in {
		c, err := Ident("column", name)
		if err != nil {
			return nil, err
		}
		ct, err := ColumnType(typ)
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", c, err)
		}
		cols = append(cols, c+" "+ct)
	}
	slices.Sort(cols)
	return cols, nil
}

func tableOptions(t TableSpec, ck []string) ([]string, error) {
	var opts, order []string
	for _, c := range ck {
		dir := strings.ToUpper(t.ClusteringOrder[c])
		switch dir {
		case "":
			dir = "ASC"
		case "ASC", "DESC":
		default:
			return nil, invalid("clustering order of %s must be ASC or DESC", c)
		}
		order = append(order, c+" "+dir)
	}
	for c := range t.ClusteringOrder {
		if !slices.Contains(ck, strings.ToLower(c)) {
			return nil, invalid("clustering order names %s, which is not a clustering column", c)
		}
	}
	if len(t.ClusteringOrder) > 0 {
		opts = append(opts, "CLUSTERING ORDER BY ("+strings.Join(order, ", ")+")")
	}
	names := make([]string, 0, len(t.Properties))
	for k := range t.Properties {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		name := strings.ToLower(k)
		if !tableProperties[name] {
			return nil, invalid("table property %q is not a CQL table option", k)
		}
		v, err := propertyValue(t.Properties[k], true)
		if err != nil {
			return nil, fmt.Errorf("table property %s: %w", name, err)
		}
		opts = append(opts, name+" = "+v)
	}
	return opts, nil
}

// tableProperties are the CQL table options a table create may set.
var tableProperties = map[string]bool{"additional_write_policy": true, "bloom_filter_fp_chance": true,
	"caching": true, "cdc": true, "comment": true, "compaction": true, "compression": true,
	"crc_check_chance": true, "dclocal_read_repair_chance": true, "default_time_to_live": true,
	"gc_grace_seconds": true, "max_index_interval": true, "memtable_flush_period_in_ms": true,
	"min_index_interval": true, "read_repair": true, "read_repair_chance": true, "speculative_retry": true}

var numberRE = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$`)

// propertyValue renders a property value as a CQL literal: strings quoted (quotes
// doubled), numbers checked, maps (when allowed) as {'k': v}.
func propertyValue(v any, mapOK bool) (string, error) {
	switch x := v.(type) {
	case string:
		return "'" + strings.ReplaceAll(x, "'", "''") + "'", nil
	case json.Number:
		if !numberRE.MatchString(string(x)) {
			return "", invalid("%q is not a number", x)
		}
		return string(x), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case bool:
		return strconv.FormatBool(x), nil
	case map[string]any:
		if !mapOK {
			break
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			pv, err := propertyValue(x[k], false)
			if err != nil {
				return "", err
			}
			parts[i] = "'" + strings.ReplaceAll(k, "'", "''") + "': " + pv
		}
		return "{" + strings.Join(parts, ", ") + "}", nil
	}
	return "", invalid("value %v is not a string, number, boolean or map of those", v)
}

// DropTable drops the table.
func (s *Store) DropTable(ctx context.Context, keyspace, name string) error {
	ks, err := Ident("keyspace", keyspace)
	if err != nil {
		return err
	}
	tb, err := Ident("table", name)
	if err != nil {
		return err
	}
	defer s.invalidate(ks, tb)
	return classify("drop table "+ks+"."+tb, s.sess.Query("DROP TABLE "+ks+"."+tb).WithContext(ctx).Exec())
}

// CreateIndex creates a secondary index on a column; an empty index name lets Cassandra
// choose one.
func (s *Store) CreateIndex(ctx context.Context, keyspace, name, column, index string) error {
	ks, err := Ident("keyspace", keyspace)
	if err != nil {
		return err
	}
	tb, err := Ident("table", name)
	if err != nil {
		return err
	}
	col, err := Ident("column", column)
	if err != nil {
		return err
	}
	idx := ""
	if index != "" {
		if idx, err = Ident("index", index); err != nil {
			return err
		}
	}
	cql := fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s.%s (%s)", idx, ks, tb, col)
	return classify("create index on "+ks+"."+tb+"."+col, s.sess.Query(cql).WithContext(ctx).Exec())
}
