package mariadb

import (
	"context"
	"fmt"
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
//
// Order: the worker applies an origin's transactions in parallel, ordered per row only, but
// a child's insert must not overtake its parent's (1452), nor a parent's delete or re-key
// overtake its children's insert (the children would be orphaned rather than cascaded, and
// the site would diverge). The sink is therefore an apply.OrderHinter: the tables linked
// by foreign keys at this site form groups (connected components of
// information_schema.REFERENTIAL_CONSTRAINTS, a self-referencing table a group of its
// own), and OrderKeys gives every table of a group the key "fk:<group>", so the origin's
// transactions touching any table of a group apply one after the other, in origin order,
// as on a native replica; other tables and rows keep their parallelism. The groups are
// read again after every replayed DDL and at least every minute (a local schema change).
//
// Errors 1451/1452 can still come from another origin's transaction not applied yet (a
// child inserted at site b of a parent inserted at site a): they are retried (the other
// transaction comes), and after 20 tries the transaction is replayed without checks, logged
// as an error (a possible divergence: no cascade, a child without its parent) and counted
// in music_apply_fk_unchecked_total{db,table}.
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

// tableInfoCache caches tableInfo per db.table, and the foreign key groups; a DDL replay
// or a minute's age refreshes them.
type tableInfoCache struct {
	mu sync.Mutex
	m  map[string]*tableInfo

	gen      uint64               // bumped by forget: a read begun before is not kept
	groups   map[[2]string]string // (db, table) -> its foreign key group's order key
	groupsAt time.Time
	reading  sync.Mutex // one read of the groups at a time
}

func (c *tableInfoCache) forget() {
	c.mu.Lock()
	c.m, c.groups = nil, nil
	c.gen++
	c.mu.Unlock()
}

// OrderKeys implements apply.OrderHinter: a table linked by foreign keys to others (or to
// itself) gets its group's key, "fk:<db>\x00<table>" of the group's first table in name
// order, so the transactions touching the group apply in origin order (see engine.go).
func (s *Sink) OrderKeys(ctx context.Context, db, table string) ([]string, error) {
	g, err := s.fkGroups(ctx)
	if err != nil {
		return nil, err
	}
	if k, ok := g[[2]string{db, table}]; ok {
		return []string{k}, nil
	}
	return nil, nil
}

var _ apply.OrderHinter = (*Sink)(nil)

// fkGroups returns the foreign key groups (cached, see tableInfoCache).
func (s *Sink) fkGroups(ctx context.Context) (map[[2]string]string, error) {
	c := &s.tables
	fresh := func() (map[[2]string]string, bool) {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.groups, c.groups != nil && time.Since(c.groupsAt) < tableInfoTTL
	}
	if g, ok := fresh(); ok {
		return g, nil
	}
	c.reading.Lock()
	defer c.reading.Unlock()
	if g, ok := fresh(); ok {
		return g, nil
	}
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	at := time.Now()
	rs, err := s.db.QueryContext(ctx, "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, UNIQUE_CONSTRAINT_SCHEMA, REFERENCED_TABLE_NAME "+
		"FROM information_schema.REFERENTIAL_CONSTRAINTS")
	if err != nil {
		return nil, fmt.Errorf("mariadb: read foreign keys: %w", err)
	}
	var links [][2][2]string
	for rs.Next() {
		var l [2][2]string
		if err := rs.Scan(&l[0][0], &l[0][1], &l[1][0], &l[1][1]); err != nil {
			rs.Close()
			return nil, fmt.Errorf("mariadb: read foreign keys: %w", err)
		}
		links = append(links, l)
	}
	if err := rs.Close(); err != nil {
		return nil, fmt.Errorf("mariadb: read foreign keys: %w", err)
	}
	g := fkGroupKeys(links)
	c.mu.Lock()
	if c.gen == gen { // no DDL replayed meanwhile
		c.groups, c.groupsAt = g, at
	}
	c.mu.Unlock()
	return g, nil
}

// fkGroupKeys returns, for every table of links (child, parent), the order key of its
// connected component: "fk:" and the component's least table, db and name joined by NUL.
func fkGroupKeys(links [][2][2]string) map[[2]string]string {
	parent := map[[2]string][2]string{}
	var find func(t [2]string) [2]string
	find = func(t [2]string) [2]string {
		p, ok := parent[t]
		if !ok || p == t {
			parent[t] = t
			return t
		}
		r := find(p)
		parent[t] = r
		return r
	}
	less := func(a, b [2]string) bool { return a[0] < b[0] || (a[0] == b[0] && a[1] < b[1]) }
	for _, l := range links {
		a, b := find(l[0]), find(l[1])
		switch {
		case a == b:
		case less(a, b):
			parent[b] = a
		default:
			parent[a] = b
		}
	}
	out := make(map[[2]string]string, len(parent))
	for t := range parent {
		r := find(t)
		out[t] = "fk:" + r[0] + "\x00" + r[1]
	}
	return out
}

// fkUnchecked reports a transaction replayed without foreign key checks after its foreign
// key errors persisted: another origin's transaction it depends on has not come (or the
// sites' schemas differ). No cascade was performed for it: a possible divergence.
func (s *Sink) fkUnchecked(tx *apply.Txn, err error) {
	var tables []string
	seen := map[[2]string]bool{}
	for _, e := range tx.Events {
		t := [2]string{e.Source.DB, e.Source.Table}
		if !seen[t] {
			seen[t] = true
			tables = append(tables, t[0]+"."+t[1])
			s.fkUncheckedN.WithLabelValues(t[0], t[1]).Inc()
		}
	}
	s.log.Error("possible divergence: foreign key error persists; replaying without foreign key checks "+
		"(no cascades for this transaction); compare the tables with music verify and resync them if they differ",
		zap.String("gtid", tx.ID), zap.String("origin", tx.Origin), zap.Strings("tables", tables), zap.Error(err))
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
