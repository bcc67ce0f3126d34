// Package ddl classifies the schema changes capture reads from the binlog and apply
// replays, with the TiDB SQL parser (github.com/pingcap/tidb/pkg/parser): the statement
// kind and every table it touches come from the parser's syntax tree, never from matching
// the text.
//
// # What is recognised
//
//	CREATE TABLE (plain, ... LIKE, ... SELECT), ALTER TABLE (every form; RENAME TO,
//	RENAME COLUMN / CHANGE COLUMN renames and primary-key changes are reported),
//	DROP TABLE (one or more tables), RENAME TABLE (one or more pairs, a swap included),
//	TRUNCATE, CREATE/DROP INDEX (as ALTER of the table), CREATE/ALTER/DROP DATABASE
//	(and SCHEMA), CREATE/ALTER/DROP SEQUENCE (a MariaDB sequence is a table).
//
// Views, routines, triggers, events, users, grants and table maintenance (ANALYZE,
// OPTIMIZE, ...) are not schema changes of mirrored data: Kind is "" and capture ignores
// them. Temporary tables are never mirrored (Kind "").
//
// # MariaDB-only syntax
//
// The TiDB parser speaks MySQL. A statement it refuses is parsed again after a small
// pre-normalisation of MariaDB-only syntax that does not change which tables are touched:
// CREATE OR REPLACE (reported as Replace), WITH/WITHOUT SYSTEM VERSIONING,
// ADD/DROP SYSTEM VERSIONING, PERIOD FOR SYSTEM_TIME, WAIT n/NOWAIT, ALTER ONLINE TABLE,
// column attributes INVISIBLE and COMPRESSED, the column types INET4, INET6 and UUID,
// ALGORITHM=NOCOPY, the table options ENCRYPTED, ENCRYPTION_KEY_ID, PAGE_CHECKSUM and
// IETF_QUOTES. The normalised text only serves the
// classification: the statement replayed is always the original one.
//
// A statement still refused that starts like a data-definition statement (CREATE, ALTER,
// DROP, RENAME or TRUNCATE of anything but a view, routine, trigger, event, user, role or
// server) is Opaque: Kind "OPAQUE", no tables known. Capture publishes it as a schema
// change of its default database; apply replays it verbatim at MariaDB (which does
// understand it) and the MUSIC store refuses it, visibly (the worker quarantines it and
// `music status` names the statement). Nothing is dropped silently.
package ddl

import (
	"regexp"
	"strings"
	"sync"

	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"
	_ "github.com/pingcap/tidb/pkg/parser/test_driver" // value expressions of the parser
)

// Kinds of statements. The event's DDL.Kind is Info.Verb for table statements and Kind for
// database and opaque statements.
const (
	CreateTable    = "CREATE TABLE"
	AlterTable     = "ALTER TABLE"
	DropTable      = "DROP TABLE"
	RenameTable    = "RENAME TABLE"
	TruncateTable  = "TRUNCATE TABLE"
	CreateIndex    = "CREATE INDEX"
	DropIndex      = "DROP INDEX"
	CreateDatabase = "CREATE DATABASE"
	AlterDatabase  = "ALTER DATABASE"
	DropDatabase   = "DROP DATABASE"
	CreateSequence = "CREATE SEQUENCE"
	AlterSequence  = "ALTER SEQUENCE"
	DropSequence   = "DROP SEQUENCE"
	Opaque         = "OPAQUE"
)

// Name is a table, qualified.
type Name struct{ DB, Table string }

// String is db.table.
func (n Name) String() string { return n.DB + "." + n.Table }

// Rename is one table renamed (RENAME TABLE pair or ALTER TABLE ... RENAME TO).
type Rename struct{ From, To Name }

// ColumnRename is a column renamed by ALTER TABLE (RENAME COLUMN or CHANGE COLUMN).
type ColumnRename struct{ From, To string }

// Info is what a statement changes.
type Info struct {
	// Kind is one of the constants above, or "" when the statement is not a schema change
	// of mirrored data.
	Kind string
	// Verb is CREATE, ALTER, DROP, RENAME or TRUNCATE for table statements (index
	// statements are ALTER), the statement's Kind otherwise.
	Verb string
	// Tables are every table the statement changes, in statement order; for renames the
	// old name then the new one of each pair. Empty for database and opaque statements.
	Tables []Name
	// Renames are the tables renamed, in the order they happen.
	Renames []Rename
	// ColumnRenames are the columns an ALTER TABLE renames.
	ColumnRenames []ColumnRename
	// PrimaryKey is set when an ALTER TABLE (or CREATE/DROP INDEX) changes the primary key.
	PrimaryKey bool
	// Database is the database of a database statement.
	Database string
	// Like is the source table of CREATE TABLE ... LIKE.
	Like *Name
	// Select marks CREATE TABLE ... SELECT.
	Select bool
	// Replace marks CREATE OR REPLACE.
	Replace bool
	// IfExists / IfNotExists as written.
	IfExists, IfNotExists bool
	// Normalised is set when the statement parsed only after the MariaDB pre-normalisation.
	Normalised bool
	// Err is the parser's error for an Opaque statement.
	Err error
}

// IsDatabase reports whether the statement is a database statement.
func (i *Info) IsDatabase() bool {
	return i.Kind == CreateDatabase || i.Kind == AlterDatabase || i.Kind == DropDatabase
}

var parsers = sync.Pool{New: func() any { return parser.New() }}

// Parse classifies stmt, run with default database schema (names without a database are
// in schema).
func Parse(schema, stmt string) *Info {
	p := parsers.Get().(*parser.Parser)
	defer parsers.Put(p)
	node, err := p.ParseOneStmt(stmt, "", "")
	if err == nil {
		return classify(schema, node)
	}
	norm, replace := normalise(stmt)
	if norm != stmt {
		if node, err2 := p.ParseOneStmt(norm, "", ""); err2 == nil {
			info := classify(schema, node)
			info.Normalised, info.Replace = true, info.Replace || replace
			return info
		}
	}
	if looksLikeDDL(stmt) {
		return &Info{Kind: Opaque, Verb: Opaque, Err: err}
	}
	return &Info{Err: err}
}

func classify(schema string, node ast.StmtNode) *Info {
	info := &Info{}
	name := func(t *ast.TableName) Name {
		n := Name{DB: t.Schema.O, Table: t.Name.O}
		if n.DB == "" {
			n.DB = schema
		}
		return n
	}
	switch s := node.(type) {
	case *ast.CreateTableStmt:
		if s.TemporaryKeyword != ast.TemporaryNone {
			return info
		}
		info.Kind, info.Verb, info.IfNotExists = CreateTable, "CREATE", s.IfNotExists
		info.Tables = []Name{name(s.Table)}
		if s.ReferTable != nil {
			like := name(s.ReferTable)
			info.Like = &like
		}
		info.Select = s.Select != nil
	case *ast.AlterTableStmt:
		info.Kind, info.Verb = AlterTable, "ALTER"
		t := name(s.Table)
		info.Tables = []Name{t}
		for _, spec := range s.Specs {
			alterSpec(info, spec, t, name)
		}
	case *ast.DropTableStmt:
		if s.IsView || s.TemporaryKeyword != ast.TemporaryNone {
			return info
		}
		info.Kind, info.Verb, info.IfExists = DropTable, "DROP", s.IfExists
		for _, t := range s.Tables {
			info.Tables = append(info.Tables, name(t))
		}
	case *ast.RenameTableStmt:
		info.Kind, info.Verb = RenameTable, "RENAME"
		for _, tt := range s.TableToTables {
			from, to := name(tt.OldTable), name(tt.NewTable)
			info.Tables = append(info.Tables, from, to)
			info.Renames = append(info.Renames, Rename{From: from, To: to})
		}
	case *ast.TruncateTableStmt:
		info.Kind, info.Verb = TruncateTable, "TRUNCATE"
		info.Tables = []Name{name(s.Table)}
	case *ast.CreateIndexStmt:
		info.Kind, info.Verb = CreateIndex, "ALTER"
		info.Tables = []Name{name(s.Table)}
		info.PrimaryKey = strings.EqualFold(s.IndexName, "PRIMARY")
	case *ast.DropIndexStmt:
		info.Kind, info.Verb = DropIndex, "ALTER"
		info.Tables = []Name{name(s.Table)}
		info.PrimaryKey = strings.EqualFold(s.IndexName, "PRIMARY")
	case *ast.CreateDatabaseStmt:
		info.Kind, info.Verb, info.Database, info.IfNotExists = CreateDatabase, CreateDatabase, s.Name.O, s.IfNotExists
	case *ast.AlterDatabaseStmt:
		info.Kind, info.Verb, info.Database = AlterDatabase, AlterDatabase, s.Name.O
		if s.AlterDefaultDatabase || info.Database == "" {
			info.Database = schema
		}
	case *ast.DropDatabaseStmt:
		info.Kind, info.Verb, info.Database, info.IfExists = DropDatabase, DropDatabase, s.Name.O, s.IfExists
	case *ast.CreateSequenceStmt:
		info.Kind, info.Verb, info.IfNotExists = CreateSequence, "CREATE", s.IfNotExists
		info.Tables = []Name{name(s.Name)}
	case *ast.AlterSequenceStmt:
		info.Kind, info.Verb = AlterSequence, "ALTER"
		info.Tables = []Name{name(s.Name)}
	case *ast.DropSequenceStmt:
		info.Kind, info.Verb, info.IfExists = DropSequence, "DROP", s.IfExists
		for _, t := range s.Sequences {
			info.Tables = append(info.Tables, name(t))
		}
	}
	return info
}

func alterSpec(info *Info, spec *ast.AlterTableSpec, t Name, name func(*ast.TableName) Name) {
	switch spec.Tp {
	case ast.AlterTableRenameTable:
		to := name(spec.NewTable)
		if to != t {
			info.Tables = append(info.Tables, to)
			info.Renames = append(info.Renames, Rename{From: t, To: to})
		}
	case ast.AlterTableRenameColumn:
		if spec.OldColumnName != nil && spec.NewColumnName != nil && spec.OldColumnName.Name.O != spec.NewColumnName.Name.O {
			info.ColumnRenames = append(info.ColumnRenames, ColumnRename{From: spec.OldColumnName.Name.O, To: spec.NewColumnName.Name.O})
		}
	case ast.AlterTableChangeColumn:
		if spec.OldColumnName != nil && len(spec.NewColumns) == 1 && spec.OldColumnName.Name.O != spec.NewColumns[0].Name.Name.O {
			info.ColumnRenames = append(info.ColumnRenames, ColumnRename{From: spec.OldColumnName.Name.O, To: spec.NewColumns[0].Name.Name.O})
		}
	case ast.AlterTableDropPrimaryKey:
		info.PrimaryKey = true
	case ast.AlterTableAddConstraint:
		if spec.Constraint != nil && spec.Constraint.Tp == ast.ConstraintPrimaryKey {
			info.PrimaryKey = true
		}
	case ast.AlterTableDropIndex:
		if strings.EqualFold(spec.Name, "PRIMARY") {
			info.PrimaryKey = true
		}
	}
	// A column defined with PRIMARY KEY (ADD/MODIFY/CHANGE ... PRIMARY KEY).
	for _, c := range spec.NewColumns {
		for _, o := range c.Options {
			if o.Tp == ast.ColumnOptionPrimaryKey {
				info.PrimaryKey = true
			}
		}
	}
	for _, c := range spec.NewConstraints {
		if c.Tp == ast.ConstraintPrimaryKey {
			info.PrimaryKey = true
		}
	}
}

// MariaDB-only syntax the pre-normalisation removes (see the package doc).
var (
	orReplace    = regexp.MustCompile(`(?is)^(\s*(?:/\*.*?\*/\s*)*CREATE\s+)OR\s+REPLACE\s+`)
	mariadbNoise = []*regexp.Regexp{
		regexp.MustCompile(`(?i)\bWITH(?:OUT)?\s+SYSTEM\s+VERSIONING\b`),
		regexp.MustCompile(`(?i)\b(?:ADD|DROP)\s+SYSTEM\s+VERSIONING\b`),
		regexp.MustCompile(`(?i),?\s*(?:ADD\s+)?PERIOD\s+FOR\s+SYSTEM_TIME\s*\([^)]*\)`),
		regexp.MustCompile(`(?i)\b(?:WAIT\s+\d+|NOWAIT)\b`),
		regexp.MustCompile(`(?i)\bINVISIBLE\b`),
		regexp.MustCompile(`(?i)\bCOMPRESSED\b`),
		regexp.MustCompile(`(?i)\b(?:ENCRYPTED|ENCRYPTION_KEY_ID|PAGE_CHECKSUM|IETF_QUOTES)\s*=?\s*\w+`),
	}
	// MariaDB-only column types (after a column name) and ALGORITHM=NOCOPY.
	mariadbTypes = regexp.MustCompile("(?i)((?:`[^`]*`|\\w+)\\s+)(?:INET6|INET4|UUID)\\b")
	nocopy       = regexp.MustCompile(`(?i)\bALGORITHM\s*=?\s*NOCOPY\b`)
	alterOnline  = regexp.MustCompile(`(?is)^(\s*ALTER\s+)(?:ONLINE\s+|IGNORE\s+)+(TABLE\b)`)
	leadingDDL   = regexp.MustCompile(`(?is)^\s*(?:/\*.*?\*/\s*)*(CREATE|ALTER|DROP|RENAME|TRUNCATE)\b(.*)$`)
	notData      = regexp.MustCompile(`(?is)^\s*(?:OR\s+REPLACE\s+)?(?:DEFINER\s*=\s*\S+\s+)?(?:SQL\s+SECURITY\s+\w+\s+)?(?:ALGORITHM\s*=\s*\w+\s+)?(?:AGGREGATE\s+)?(VIEW|PROCEDURE|FUNCTION|TRIGGER|EVENT|USER|ROLE|SERVER|PACKAGE|LOGFILE|TABLESPACE)\b`)
)

// normalise rewrites MariaDB-only syntax into what the TiDB parser accepts; replace tells
// whether CREATE OR REPLACE was removed.
func normalise(stmt string) (string, bool) {
	s := stmt
	replace := orReplace.MatchString(s)
	s = orReplace.ReplaceAllString(s, "${1}")
	s = alterOnline.ReplaceAllString(s, "${1}${2}")
	s = mariadbTypes.ReplaceAllString(s, "${1}VARCHAR(64)")
	s = nocopy.ReplaceAllString(s, "ALGORITHM=INPLACE")
	for _, re := range mariadbNoise {
		s = re.ReplaceAllString(s, " ")
	}
	return s, replace
}

// looksLikeDDL tells an unparsed statement that may change mirrored data definitions from
// one about views, routines, triggers, users and the like.
func looksLikeDDL(stmt string) bool {
	m := leadingDDL.FindStringSubmatch(stmt)
	if m == nil {
		return false
	}
	return !notData.MatchString(m[2])
}
