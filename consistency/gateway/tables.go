package gateway

import (
	"regexp"
	"strings"
	"sync"

	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"
	_ "github.com/pingcap/tidb/pkg/parser/test_driver" // value expressions of the parser
)

// stmtInfo is what the gateway learns from the text of a COM_QUERY or COM_STMT_PREPARE.
type stmtInfo struct {
	tables  []Table            // every table referenced, qualified; see the package doc for "*"
	prepare *stmtInfo          // COM_STMT_PREPARE: the statement prepared
	use     string             // database of the last USE
	hasUse  bool               //
	xaStart bool               // XA START / XA BEGIN
	xaEnd   bool               // XA COMMIT / XA ROLLBACK
	ends    bool               // COMMIT, ROLLBACK or BEGIN: may end a transaction and open the next
	named   map[string][]Table // SQL-level PREPARE name FROM ...: the statement's tables
}

var (
	parsers = sync.Pool{New: func() any { return parser.New() }}
	// The TiDB parser does not know XA; one XA statement is recognised by its text.
	xaStmt = regexp.MustCompile(`(?is)^\s*XA\s+(START|BEGIN|END|PREPARE|COMMIT|ROLLBACK|RECOVER)\b`)
)

// everything is the table set of a statement whose tables cannot be known.
func everything(db string) Table {
	if db == "" {
		db = "*"
	}
	return Table{DB: db, Name: "*"}
}

// inspect parses text (one or more statements) run with default database db. named are
// the tables of SQL-level prepared statements, by lower-case name.
func inspect(db, text string, named map[string][]Table) (info stmtInfo) {
	defer func() {
		if recover() != nil { // a parser bug: the statement's tables are unknown
			info = stmtInfo{tables: []Table{everything(db)}}
		}
	}()
	if m := xaStmt.FindStringSubmatch(text); m != nil {
		verb := strings.ToUpper(m[1])
		info.xaStart = verb == "START" || verb == "BEGIN"
		info.xaEnd = verb == "COMMIT" || verb == "ROLLBACK"
		return info
	}
	p := parsers.Get().(*parser.Parser)
	nodes, _, err := p.Parse(text, "", "")
	parsers.Put(p)
	if err != nil {
		info.tables = []Table{everything(db)}
		return info
	}
	for _, node := range nodes {
		switch s := node.(type) {
		case *ast.UseStmt:
			db, info.use, info.hasUse = s.DBName, s.DBName, true
		case *ast.CommitStmt, *ast.RollbackStmt, *ast.BeginStmt:
			info.ends = true
		case *ast.CallStmt: // a procedure may touch any table
			info.tables = append(info.tables, Table{DB: "*", Name: "*"})
		case *ast.PrepareStmt:
			if info.named == nil {
				info.named = map[string][]Table{}
			}
			name := strings.ToLower(s.Name)
			if s.SQLText != "" {
				info.named[name] = inspect(db, s.SQLText, nil).tables
			} else {
				info.named[name] = []Table{everything(db)}
			}
		case *ast.ExecuteStmt:
			ts, ok := named[strings.ToLower(s.Name)]
			if !ok {
				ts = []Table{everything(db)}
			}
			info.tables = append(info.tables, ts...)
		default:
			v := &tableCollector{db: db}
			node.Accept(v)
			info.tables = append(info.tables, v.tables...)
		}
	}
	return info
}

// tableCollector gathers every table name of a syntax tree.
type tableCollector struct {
	db     string
	tables []Table
}

func (v *tableCollector) Enter(n ast.Node) (ast.Node, bool) {
	if t, ok := n.(*ast.TableName); ok {
		db := t.Schema.O
		if db == "" {
			db = v.db
		}
		if db != "" { // without a database the statement fails at MariaDB
			v.tables = append(v.tables, Table{DB: db, Name: t.Name.O})
		}
	}
	return n, false
}

func (v *tableCollector) Leave(n ast.Node) (ast.Node, bool) { return n, true }
