package mariadb

import (
	"context"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/music-coord/music/apply"
)

// Engine-side effects of replayed rows: foreign key cascades and triggers.
//
// A cascade (ON DELETE/UPDATE CASCADE, SET NULL) is done by InnoDB and is not in the row
// binlog, so the other sites must perform it themselves: a transaction touching a table
// that has foreign keys (as child or parent) is replayed with foreign_key_checks=1, and an
// update that changes a primary key is replayed as an UPDATE (not delete + insert), so
// InnoDB cascades exactly what it cascaded at the origin. The cascaded rows' own changes
// are not in the stream (the origin did not binlog them), so nothing is done twice.
// Parallel apply may run a child's insert before its parent's, or a parent's delete before
// its children's (ON DELETE RESTRICT): errors 1451/1452 are retried (the other transaction
// comes), and after 20 tries the transaction is replayed without checks, with a warning.
//
// Triggers fire for every SQL statement, so a replayed row fires the local copy of the
// origin's trigger again, although the trigger's own writes come from the origin's binlog.
// A trigger on a mirrored table must therefore skip replays: replays (and resync and
// own-stream repairs) always run with @@skip_replication=1, so a trigger body guarded with
// IF @@skip_replication = 0 THEN ... END IF fires for the application's writes only. A
// table whose trigger does not mention skip_replication is reported once (warning) and
// counted in music_apply_unguarded_triggers_total: its trigger fires twice.

// tableInfo is what the sink knows of a table's engine-side effects.
type tableInfo struct {
	fk         bool // child or parent of a foreign key
	unguarded  int  // triggers whose body does not test skip_replication
	readAt     time.Time
	warnedTrig bool
}

// tableInfoCache caches tableInfo per db.table; a DDL replay or a minute's age refreshes it.
type tableInfoCache struct {
	mu sync.Mutex
	m  map[string]*tableInfo
}

func (c *tableInfoCache) forget() {
	c.mu.Lock()
	c.m = nil
	c.mu.Unlock()
}

const tableInfoTTL = time.Minute

// engineEffects reads (or recalls) the foreign keys and triggers of tx's tables, warns once
// about unguarded triggers, and reports whether tx needs foreign_key_checks=1.
func (s *Sink) engineEffects(ctx context.Context, tx *apply.Txn) (fk bool, err error) {
	seen := map[[2]string]bool{}
	for _, e := range tx.Events {
		k := [2]string{e.Source.DB, e.Source.Table}
		if seen[k] {
			continue
		}
		seen[k] = true
		ti, err := s.tableInfo(ctx, k[0], k[1])
		if err != nil {
			return false, err
		}
		fk = fk || ti.fk
	}
	return fk, nil
}

func (s *Sink) tableInfo(ctx context.Context, db, table string) (*tableInfo, error) {
	name := db + "." + table
	s.tables.mu.Lock()
	ti := s.tables.m[name]
	s.tables.mu.Unlock()
	if ti != nil && time.Since(ti.readAt) < tableInfoTTL {
		return ti, nil
	}
	nti := &tableInfo{readAt: time.Now()}
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.REFERENTIAL_CONSTRAINTS "+
		"WHERE (CONSTRAINT_SCHEMA=? AND TABLE_NAME=?) OR (UNIQUE_CONSTRAINT_SCHEMA=? AND REFERENCED_TABLE_NAME=?)",
		db, table, db, table).Scan(&n); err != nil {
		return nil, err
	}
	nti.fk = n > 0
	rs, err := s.db.QueryContext(ctx, "SELECT TRIGGER_NAME, ACTION_STATEMENT FROM information_schema.TRIGGERS "+
		"WHERE EVENT_OBJECT_SCHEMA=? AND EVENT_OBJECT_TABLE=?", db, table)
	if err != nil {
		return nil, err
	}
	var names []string
	for rs.Next() {
		var tn, body string
		if err := rs.Scan(&tn, &body); err != nil {
			rs.Close()
			return nil, err
		}
		if !strings.Contains(strings.ToLower(body), "skip_replication") {
			nti.unguarded++
			names = append(names, tn)
		}
	}
	if err := rs.Close(); err != nil {
		return nil, err
	}
	s.tables.mu.Lock()
	defer s.tables.mu.Unlock()
	if s.tables.m == nil {
		s.tables.m = map[string]*tableInfo{}
	}
	if old := s.tables.m[name]; old != nil {
		nti.warnedTrig = old.warnedTrig && nti.unguarded > 0
	}
	if nti.unguarded > 0 && !nti.warnedTrig {
		nti.warnedTrig = true
		s.unguarded.WithLabelValues(db, table).Add(float64(nti.unguarded))
		s.log.Warn("table has triggers that fire again for replayed rows (their effects also arrive from the origin); "+
			"guard their bodies with IF @@skip_replication = 0 THEN ... END IF",
			zap.String("db", db), zap.String("table", table), zap.Strings("triggers", names))
	}
	s.tables.m[name] = nti
	return nti, nil
}
