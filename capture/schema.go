package capture

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"

	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/ddl"
)

// SchemaVersion is one version of a table's schema: the DDL that made it, at its GTID.
type SchemaVersion struct {
	GTID string `json:"gtid"`
	DDL  string `json:"ddl"`
	// Columns are the table's declared columns as information_schema showed them when
	// capture processed the DDL. They only refine SQL types (and tell JSON from LONGTEXT);
	// values are always decoded with the binlog's own table map, which describes the
	// table exactly as it was when the row was written.
	Columns []changeevent.Column `json:"columns,omitempty"`
}

// SchemaHistory is a table's schema versions in binlog order.
type SchemaHistory struct {
	DB       string          `json:"db"`
	Table    string          `json:"table"`
	Versions []SchemaVersion `json:"versions"`
}

// schemaTracker keeps the schema history and each table's version at the reader's
// position. Only the reading goroutine uses it.
type schemaTracker struct {
	st      *state
	db      *sql.DB
	hist    map[string]*SchemaHistory
	current map[string]*SchemaVersion
	initial map[string][]changeevent.Column
}

func newSchemaTracker(ctx context.Context, st *state, db *sql.DB, start Position) (*schemaTracker, error) {
	hist, err := st.loadHistories(ctx)
	if err != nil {
		return nil, err
	}
	t := &schemaTracker{st: st, db: db, hist: hist, current: map[string]*SchemaVersion{}, initial: map[string][]changeevent.Column{}}
	// The version in force at start is the last one whose DDL the start position contains:
	// a restart that replays old binlog sees the old schema version again.
	for name, h := range hist {
		for i := range h.Versions {
			g, err := ParseGTID(h.Versions[i].GTID)
			if err == nil && start.Contains(g) {
				t.current[name] = &h.Versions[i]
			}
		}
	}
	return t, nil
}

// version returns the table's schema version id and the declared columns to refine types.
func (t *schemaTracker) version(ctx context.Context, db, table string) (string, []changeevent.Column) {
	name := db + "." + table
	if v := t.current[name]; v != nil {
		return v.GTID, v.Columns
	}
	cols, ok := t.initial[name]
	if !ok {
		cols, _ = t.describe(ctx, db, table)
		t.initial[name] = cols
	}
	return "", cols
}

// onDDL records a schema change at gtid in the history of every table it touches
// (touched: the tables of the statement, or every known table of a dropped database),
// following renames: a renamed table's new name takes the history of its old name (in
// statement order, so a swap through a temporary name ends with each history under its
// new name), and the old name gets a version without columns (the table is gone under
// that name). Each touched table's new version holds information_schema's columns as
// capture reads them now. A DDL already in a touched history (a replay after restart)
// only moves the current versions back to the recorded ones. keep tells which tables'
// histories are stored (the captured ones).
func (t *schemaTracker) onDDL(ctx context.Context, gtid GTID, info *ddl.Info, touched []ddl.Name, stmt string, keep func(ddl.Name) bool) error {
	id := gtid.String()
	replay := false
	for _, n := range touched {
		if h := t.hist[n.String()]; h != nil {
			for i := range h.Versions {
				if h.Versions[i].GTID == id {
					replay = true
				}
			}
		}
	}
	if replay {
		for _, n := range touched {
			if h := t.hist[n.String()]; h != nil {
				for i := range h.Versions {
					if h.Versions[i].GTID == id {
						t.current[n.String()] = &h.Versions[i]
					}
				}
			}
		}
		return nil
	}
	// carried[name]: the versions the table now under name brings along; gone: the name
	// was renamed away and nothing took it.
	carried := map[string][]SchemaVersion{}
	moved, gone := map[string]bool{}, map[string]bool{}
	versionsOf := func(name string) []SchemaVersion {
		if v, ok := carried[name]; ok {
			return v
		}
		if h := t.hist[name]; h != nil {
			return h.Versions
		}
		return nil
	}
	for _, r := range info.Renames {
		from, to := r.From.String(), r.To.String()
		v := versionsOf(from)
		carried[to], moved[to], gone[to] = v, true, false
		carried[from], moved[from], gone[from] = nil, true, true
	}
	seen := map[string]bool{}
	for _, n := range touched {
		name := n.String()
		if seen[name] || n.DB == "" {
			continue
		}
		seen[name] = true
		var versions []SchemaVersion
		if moved[name] && !gone[name] {
			versions = append(versions, carried[name]...)
		} else if h := t.hist[name]; h != nil {
			versions = append(versions, h.Versions...)
		}
		var cols []changeevent.Column
		if !gone[name] {
			var err error
			if cols, err = t.describe(ctx, n.DB, n.Table); err != nil {
				return err
			}
		}
		h := &SchemaHistory{DB: n.DB, Table: n.Table, Versions: append(versions, SchemaVersion{GTID: id, DDL: stmt, Columns: cols})}
		t.hist[name] = h
		t.current[name] = &h.Versions[len(h.Versions)-1]
		delete(t.initial, name)
		if keep(n) {
			if err := t.st.saveHistory(ctx, h); err != nil {
				return err
			}
		}
	}
	return nil
}

// tablesOf lists the tables of db the history knows (for DROP DATABASE).
func (t *schemaTracker) tablesOf(db string) []ddl.Name {
	var out []ddl.Name
	for _, h := range t.hist {
		if h.DB == db {
			out = append(out, ddl.Name{DB: h.DB, Table: h.Table})
		}
	}
	return out
}

var jsonCheck = regexp.MustCompile("(?i)json_valid\\(`([^`]+)`\\)")

// describe reads the table's declared columns from information_schema (nil if the table
// does not exist now).
func (t *schemaTracker) describe(ctx context.Context, db, table string) ([]changeevent.Column, error) {
	rows, err := t.db.QueryContext(ctx, `SELECT COLUMN_NAME, COLUMN_TYPE, DATA_TYPE, IS_NULLABLE, COLUMN_KEY
		FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=? AND TABLE_NAME=? ORDER BY ORDINAL_POSITION`, db, table)
	if err != nil {
		return nil, fmt.Errorf("describe %s.%s: %w", db, table, err)
	}
	defer rows.Close()
	var cols []changeevent.Column
	for rows.Next() {
		var name, colType, dataType, nullable, key string
		if err := rows.Scan(&name, &colType, &dataType, &nullable, &key); err != nil {
			return nil, fmt.Errorf("describe %s.%s: %w", db, table, err)
		}
		cols = append(cols, changeevent.Column{Name: name, SQLType: colType, Kind: changeevent.KindOf(dataType, colType),
			Nullable: nullable == "YES", PK: key == "PRI"})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("describe %s.%s: %w", db, table, err)
	}
	json := map[string]bool{}
	crow, err := t.db.QueryContext(ctx, `SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS
		WHERE CONSTRAINT_SCHEMA=? AND TABLE_NAME=?`, db, table)
	if err == nil {
		for crow.Next() {
			var clause string
			if crow.Scan(&clause) == nil {
				for _, m := range jsonCheck.FindAllStringSubmatch(clause, -1) {
					json[m[1]] = true
				}
			}
		}
		crow.Close()
	}
	for i := range cols {
		if json[cols[i].Name] && cols[i].Kind == changeevent.KindString {
			cols[i].Kind, cols[i].SQLType = changeevent.KindJSON, "json"
		}
	}
	return cols, nil
}

// refine returns the table map's columns with SQL types (and JSON) from the declared
// columns when these describe the same columns; otherwise the table map's own.
func refine(cols []changeevent.Column, declared []changeevent.Column) []changeevent.Column {
	if len(declared) != len(cols) {
		return cols
	}
	out := make([]changeevent.Column, len(cols))
	copy(out, cols)
	for i := range out {
		d := declared[i]
		if d.Name != out[i].Name {
			return cols
		}
		switch {
		case d.Kind == out[i].Kind:
			out[i].SQLType = d.SQLType
		case d.Kind == changeevent.KindJSON && out[i].Kind == changeevent.KindString:
			out[i].Kind, out[i].SQLType = changeevent.KindJSON, d.SQLType
		}
	}
	return out
}

// ddlTarget is a table.
type ddlTarget struct{ db, table string }

// parseDDL returns a table statement's verb (CREATE, ALTER, DROP, RENAME, TRUNCATE; "" if
// it is not a table DDL: database, opaque or not a schema change) and the tables it
// touches, relative to the default schema. The classification is internal/ddl's (the TiDB
// parser).
func parseDDL(schema, stmt string) (string, []ddlTarget) {
	info := ddl.Parse(schema, stmt)
	if len(info.Tables) == 0 {
		return "", nil
	}
	var out []ddlTarget
	for _, n := range info.Tables {
		out = append(out, ddlTarget{db: n.DB, table: n.Table})
	}
	return info.Verb, out
}
