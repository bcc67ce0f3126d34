package synctable

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/music-coord/music/consistency/gateway"
)

// MariaDB error codes the gateway answers with.
const (
	erLockWaitTimeout   = 1205 // ownership not obtained in time: the client retries, as after a lock wait timeout
	erErrorDuringCommit = 1180 // committed here but fenced out, or not confirmed durable
	erUnknown           = 1105
)

// Hooks adapts the coordinator to the gateway.
func (c *Coordinator) Hooks() gateway.Hooks { return hooks{c} }

type hooks struct{ c *Coordinator }

// IsSync implements gateway.Hooks; "*" stands for any database or table.
func (h hooks) IsSync(db, table string) bool {
	if db != "*" && table != "*" {
		return h.c.tables.Sync(db, table)
	}
	for _, p := range h.c.tables.Patterns() {
		pd, _, _ := strings.Cut(p, ".")
		if ok, _ := path.Match(pd, strings.ToLower(db)); ok || db == "*" {
			return true
		}
	}
	return false
}

// Acquire implements gateway.Hooks. A table "*" (a statement the gateway could not
// parse) stands for every sync table of its database, and a database "*" for every
// database's.
func (h hooks) Acquire(ctx context.Context, conn uint32, tables []gateway.Table) error {
	var names []string
	for _, t := range tables {
		if t.Name != "*" {
			names = append(names, t.DB+"."+t.Name)
			continue
		}
		all, err := h.c.syncTablesOf(ctx, t.DB)
		if err != nil {
			return &gateway.SQLError{Code: erUnknown, State: "HY000", Message: "MUSIC: list the sync tables a statement may touch: " + err.Error()}
		}
		names = append(names, all...)
	}
	err := h.c.Acquire(ctx, conn, names)
	var busy *BusyError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &busy):
		return &gateway.SQLError{Code: erLockWaitTimeout, State: "HY000", Message: busy.Error()}
	}
	return &gateway.SQLError{Code: erUnknown, State: "HY000", Message: err.Error()}
}

// Committed implements gateway.Hooks.
func (h hooks) Committed(ctx context.Context, conn uint32, _ []gateway.Table, gtid string) error {
	if err := h.c.Committed(ctx, conn, gtid); err != nil {
		return &gateway.SQLError{Code: erErrorDuringCommit, State: "HY000", Message: err.Error()}
	}
	return nil
}

// Ended implements gateway.Hooks.
func (h hooks) Ended(conn uint32, _ []gateway.Table) { h.c.Ended(conn) }

// syncTablesOf lists the sync tables of db ("*": of every database) at this site.
func (c *Coordinator) syncTablesOf(ctx context.Context, db string) ([]string, error) {
	q, args := "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'", []any{}
	if db != "*" {
		q, args = q+" AND table_schema = ?", append(args, db)
	}
	rows, err := c.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var d, t string
		if err := rows.Scan(&d, &t); err != nil {
			return nil, err
		}
		if c.tables.Sync(d, t) {
			out = append(out, d+"."+t)
		}
	}
	return out, rows.Err()
}
