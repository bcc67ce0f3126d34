package capture

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strings"

	"github.com/music-coord/music/changeevent"
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

// onDDL records a DDL on db.table at gtid. A DDL already in the history (a replay after
// restart) keeps its recorded columns.
func (t *schemaTracker) onDDL(ctx context.Context, gtid GTID, db, table, stmt string) error {
	name := db + "." + table
	h := t.hist[name]
	if h == nil {
		h = &SchemaHistory{DB: db, Table: table}
		t.hist[name] = h
	}
	id := gtid.String()
	for i := range h.Versions {
		if h.Versions[i].GTID == id {
			t.current[name] = &h.Versions[i]
			return nil
		}
	}
	cols, err := t.describe(ctx, db, table)
	if err != nil {
		return err
	}
	h.Versions = append(h.Versions, SchemaVersion{GTID: id, DDL: stmt, Columns: cols})
	t.current[name] = &h.Versions[len(h.Versions)-1]
	delete(t.initial, name)
	return t.st.saveHistory(ctx, h)
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

// DDL parsing: the statement's verb and the tables it touches.
var (
	ddlComments = regexp.MustCompile(`(?s)/\*.*?\*/|--[^\n]*|#[^\n]*`)
	ident       = "(?:`(?:[^`]|``)+`|[A-Za-z0-9_$]+)"
	qname       = ident + `(?:\s*\.\s*` + ident + `)?`
	ddlTable    = regexp.MustCompile(`(?is)^(CREATE|ALTER|DROP|TRUNCATE|RENAME)\s+(?:OR\s+REPLACE\s+)?(?:TEMPORARY\s+|ONLINE\s+|IGNORE\s+)*(TABLE|TABLES|INDEX|UNIQUE\s+INDEX|FULLTEXT\s+INDEX|SPATIAL\s+INDEX|DATABASE|SCHEMA)?\s*(?:IF\s+(?:NOT\s+)?EXISTS\s+)?(.*)$`)
	qnameRe     = regexp.MustCompile(qname)
	onTable     = regexp.MustCompile(`(?is)\bON\s+(` + qname + `)`)
)

// ddlTarget is a table a DDL statement changes.
type ddlTarget struct{ db, table string }

// parseDDL returns the statement's verb (CREATE, ALTER, DROP, RENAME, TRUNCATE; "" if it
// is not a table DDL) and the tables it touches, relative to the default schema.
func parseDDL(schema, stmt string) (string, []ddlTarget) {
	s := strings.TrimSpace(ddlComments.ReplaceAllString(stmt, " "))
	m := ddlTable.FindStringSubmatch(s)
	if m == nil {
		return "", nil
	}
	verb, object, rest := strings.ToUpper(m[1]), strings.ToUpper(m[2]), m[3]
	switch {
	case object == "DATABASE" || object == "SCHEMA":
		return "", nil
	case strings.HasSuffix(object, "INDEX"):
		on := onTable.FindStringSubmatch(rest)
		if on == nil {
			return "", nil
		}
		return "ALTER", []ddlTarget{splitName(schema, on[1])}
	case object == "" && verb != "TRUNCATE":
		return "", nil // CREATE VIEW/USER/... are not table DDL
	}
	var targets []ddlTarget
	switch verb {
	case "RENAME":
		// RENAME TABLE a TO b, c TO d
		for _, pair := range splitTopLevel(rest) {
			names := qnameRe.FindAllString(pair, -1)
			for _, n := range names {
				if strings.EqualFold(n, "TO") || strings.EqualFold(n, "WAIT") || strings.EqualFold(n, "NOWAIT") {
					continue
				}
				targets = append(targets, splitName(schema, n))
			}
		}
	case "DROP":
		for _, part := range splitTopLevel(rest) {
			if n := qnameRe.FindString(part); n != "" && !strings.EqualFold(n, "RESTRICT") && !strings.EqualFold(n, "CASCADE") {
				targets = append(targets, splitName(schema, n))
			}
		}
	default:
		if n := qnameRe.FindString(rest); n != "" {
			targets = append(targets, splitName(schema, n))
		}
		if verb == "ALTER" {
			if r := regexp.MustCompile(`(?i)\bRENAME\s+(?:TO\s+|AS\s+)?(` + qname + `)`).FindStringSubmatch(rest); r != nil {
				targets = append(targets, splitName(schema, r[1]))
			}
		}
	}
	return verb, targets
}

func splitTopLevel(s string) []string {
	var parts []string
	depth, start, quoted := 0, 0, false
	for i, r := range s {
		switch {
		case r == '`':
			quoted = !quoted
		case quoted:
		case r == '(':
			depth++
		case r == ')':
			depth--
		case r == ',' && depth == 0:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

func unquote(id string) string {
	id = strings.TrimSpace(id)
	if strings.HasPrefix(id, "`") && strings.HasSuffix(id, "`") && len(id) >= 2 {
		return strings.ReplaceAll(id[1:len(id)-1], "``", "`")
	}
	return id
}

func splitName(schema, name string) ddlTarget {
	parts := regexp.MustCompile(`^(` + ident + `)\s*\.\s*(` + ident + `)$`).FindStringSubmatch(strings.TrimSpace(name))
	if parts != nil {
		return ddlTarget{db: unquote(parts[1]), table: unquote(parts[2])}
	}
	return ddlTarget{db: schema, table: unquote(name)}
}
