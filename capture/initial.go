package capture

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// initialSnapshotKey in the state bucket tracks the initial snapshot: written when capture
// starts without checkpoint and Config.InitialSnapshot is set, updated after each table,
// so a restart in the middle resumes with the tables not done yet.
const initialSnapshotKey = "initial_snapshot"

type initialSnapshot struct {
	Complete bool     `json:"complete"`
	Done     []string `json:"done"`
}

func (s *state) markInitialSnapshot(ctx context.Context, v initialSnapshot) error {
	data, _ := json.Marshal(v)
	if _, err := s.kv.Put(ctx, initialSnapshotKey, data); err != nil {
		return fmt.Errorf("write initial snapshot state: %w", err)
	}
	return nil
}

// runInitialSnapshot snapshots every captured table that existed when capture first
// started, one after the other, retrying after restarts of the binlog session.
func (c *Capturer) runInitialSnapshot(ctx context.Context, js jetstream.JetStream) {
	select {
	case <-c.ready:
	case <-ctx.Done():
		return
	}
	kv, err := js.KeyValue(ctx, c.cfg.StateBucket)
	if err != nil {
		c.log.Error("initial snapshot: state bucket", zap.Error(err))
		return
	}
	st := &state{kv: kv}
	e, err := kv.Get(ctx, initialSnapshotKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return // not the first start, or no initial snapshot asked for
	}
	if err != nil {
		c.log.Error("initial snapshot: read state", zap.Error(err))
		return
	}
	var is initialSnapshot
	if err := json.Unmarshal(e.Value(), &is); err != nil || is.Complete {
		return
	}
	db, err := c.openDB()
	if err != nil {
		return
	}
	defer db.Close()
	tables, err := c.capturedTables(ctx, db)
	if err != nil {
		c.log.Error("initial snapshot: list tables", zap.Error(err))
		return
	}
	c.log.Info("initial snapshot", zap.Int("tables", len(tables)), zap.Int("done", len(is.Done)))
	for _, t := range tables {
		name := t.db + "." + t.table
		if slices.Contains(is.Done, name) {
			continue
		}
		for {
			err := c.Snapshot(ctx, t.db, t.table)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			c.log.Warn("initial snapshot of a table failed; retrying", zap.String("table", name), zap.Error(err))
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return
			}
		}
		is.Done = append(is.Done, name)
		if err := st.markInitialSnapshot(ctx, is); err != nil {
			c.log.Warn("initial snapshot", zap.Error(err))
		}
	}
	is.Complete = true
	if err := st.markInitialSnapshot(ctx, is); err != nil {
		c.log.Warn("initial snapshot", zap.Error(err))
	}
	c.log.Info("initial snapshot complete", zap.Int("tables", len(tables)))
}

// capturedTables lists the base tables that pass the filter.
func (c *Capturer) capturedTables(ctx context.Context, db *sql.DB) ([]ddlTarget, error) {
	rows, err := db.QueryContext(ctx, `SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES
		WHERE TABLE_TYPE='BASE TABLE' ORDER BY TABLE_SCHEMA, TABLE_NAME`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ddlTarget
	for rows.Next() {
		var t ddlTarget
		if err := rows.Scan(&t.db, &t.table); err != nil {
			return nil, err
		}
		if c.filter.Match(t.db, t.table) {
			out = append(out, t)
		}
	}
	return out, rows.Err()
}
