package synctable

import (
	"fmt"
	"path"
	"strings"
)

// Tables says which tables are sync: patterns "db.table" where either part may use
// shell wildcards (path.Match: *, ?, [...]), compared case-insensitively. Every other
// table is async. Every site's agents and gateway must be given the same patterns.
type Tables struct{ patterns []string }

// NewTables checks the patterns.
func NewTables(patterns []string) (*Tables, error) {
	t := &Tables{}
	for _, p := range patterns {
		db, table, ok := strings.Cut(p, ".")
		if !ok || db == "" || table == "" {
			return nil, fmt.Errorf("sync table pattern %q: want db.table (wildcards allowed, e.g. bank.* or *.accounts)", p)
		}
		if _, err := path.Match(strings.ToLower(p), ""); err != nil {
			return nil, fmt.Errorf("sync table pattern %q: %v", p, err)
		}
		t.patterns = append(t.patterns, strings.ToLower(p))
	}
	return t, nil
}

// Sync reports whether db.table is a sync table.
func (t *Tables) Sync(db, table string) bool {
	_, ok := t.Unit(db, table)
	return ok
}

// Unit is the ownership unit of db.table: the first pattern that matches it. All the
// tables of one pattern ("camunda.act_*") have one owner and one sequence of epochs, so
// an application whose transactions span them (a workflow engine) moves one ownership,
// not one per table; list tables separately to own them separately.
func (t *Tables) Unit(db, table string) (string, bool) {
	if t == nil || db == "" || table == "" {
		return "", false
	}
	d, tb := strings.ToLower(db), strings.ToLower(table)
	for _, p := range t.patterns {
		pd, pt, _ := strings.Cut(p, ".")
		if okd, _ := path.Match(pd, d); okd {
			if okt, _ := path.Match(pt, tb); okt {
				return p, true
			}
		}
	}
	return "", false
}

// Patterns returns the patterns, for status.
func (t *Tables) Patterns() []string {
	if t == nil {
		return nil
	}
	return append([]string(nil), t.patterns...)
}

// Mode is "sync" or "async", for status.
func (t *Tables) Mode(db, table string) string {
	if t.Sync(db, table) {
		return "sync"
	}
	return "async"
}
