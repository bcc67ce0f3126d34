package synctable

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/music-coord/music/recipes/prom"
)

// Options tune a Coordinator. Zero fields take the defaults.
type Options struct {
	// AcquireTimeout bounds the wait for a table's ownership (default 10s); the client
	// then gets ER_LOCK_WAIT_TIMEOUT naming the table and its owner.
	AcquireTimeout time.Duration
	// CatchUpTimeout bounds the wait, after a takeover, until this site has applied
	// every commit the previous owners acknowledged (default 60s).
	CatchUpTimeout time.Duration
	// CommitTimeout bounds the wait, after MariaDB committed, until the commit is claimed
	// and in the MUSIC store (default 30s); the client then gets an error saying the
	// outcome is unknown.
	CommitTimeout time.Duration
	// MetaSchema is the apply agent's metadata schema at this site (default "music").
	MetaSchema string
}

func (o *Options) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.AcquireTimeout, 10*time.Second)
	def(&o.CatchUpTimeout, time.Minute)
	def(&o.CommitTimeout, 30*time.Second)
	if o.MetaSchema == "" {
		o.MetaSchema = "music"
	}
}

// Coordinator is the gateway's side of sync tables at one site: it takes a table's
// ownership (prom) before a transaction uses it, catches up with the previous owners'
// commits when ownership arrives, claims each commit in the table's epoch (Epochs) and
// holds the commit's answer until the site's apply agent has it in the MUSIC store.
type Coordinator struct {
	site   string
	tables *Tables
	owners *prom.Manager
	epochs *Epochs
	db     *sql.DB // the site's MariaDB, directly (not through the gateway)
	nc     *nats.Conn
	opt    Options
	log    *zap.Logger

	mu       sync.Mutex
	current  map[string]*epochState // table -> this site's open epoch
	conns    map[uint32]map[string]held
	progress Progress
	wake     chan struct{} // closed (and replaced) when progress moves
	sub      *nats.Subscription
	stats    Stats
}

// Stats are counters for status and tests.
type Stats struct {
	Takeovers   int64 `json:"takeovers"`
	Commits     int64 `json:"commits"`
	Fenced      int64 `json:"fenced"`
	Busy        int64 `json:"busy"`
	Unconfirmed int64 `json:"unconfirmed"`
}

type held struct {
	own     prom.Ownership
	release func()
}

// epochState is an open epoch and its claims: one claim at a time goes to the store, for
// the highest commit waiting (a claim covers every earlier commit of the epoch).
type epochState struct {
	mu       sync.Mutex
	cond     *sync.Cond
	ep       Epoch
	want     int64
	inflight bool
	lost     error // set once a claim found the ownership gone
}

// NewCoordinator returns the coordinator of site; it registers itself with owners
// (OnAcquire) and listens to the site's apply agent on nc.
func NewCoordinator(site string, tables *Tables, owners *prom.Manager, epochs *Epochs, db *sql.DB, nc *nats.Conn, opt Options, log *zap.Logger) (*Coordinator, error) {
	opt.defaults()
	c := &Coordinator{site: site, tables: tables, owners: owners, epochs: epochs, db: db, nc: nc, opt: opt, log: log,
		current: map[string]*epochState{}, conns: map[uint32]map[string]held{}, wake: make(chan struct{})}
	sub, err := nc.Subscribe(storedSubject(site), func(m *nats.Msg) {
		var p Progress
		if json.Unmarshal(m.Data, &p) == nil {
			c.advance(p)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("synctable: subscribe %s: %w", storedSubject(site), err)
	}
	c.sub = sub
	owners.OnAcquire(c.takeOver)
	if err := c.ensureHeartbeat(context.Background()); err != nil {
		sub.Unsubscribe()
		return nil, err
	}
	return c, nil
}

// Close stops listening; ownerships are the Manager's to release.
func (c *Coordinator) Close() { _ = c.sub.Unsubscribe() }

// Stats returns the counters.
func (c *Coordinator) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Tables is the sync table patterns.
func (c *Coordinator) Tables() *Tables { return c.tables }

// Epoch returns this site's open epoch of table, if it owns it.
func (c *Coordinator) Epoch(table string) (Epoch, bool) {
	c.mu.Lock()
	st := c.current[table]
	c.mu.Unlock()
	if st == nil {
		return Epoch{}, false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.ep, st.lost == nil
}

func (c *Coordinator) advance(p Progress) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.Done > c.progress.Done {
		c.progress.Done = p.Done
	}
	c.progress.Failed = p.Failed
	close(c.wake)
	c.wake = make(chan struct{})
}

// BusyError is a table whose ownership did not come in time.
type BusyError struct {
	Table, Owner string
	Waited       time.Duration
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("MUSIC: sync table %s is owned by site %s; ownership not obtained within %s", e.Table, e.Owner, e.Waited.Round(time.Millisecond))
}

// Acquire makes connection conn's transaction an owner-user of the sync tables names
// ("db.table"), taking the ownership of their units (Tables.Unit) first. Units already
// held by the transaction are skipped.
func (c *Coordinator) Acquire(ctx context.Context, conn uint32, names []string) error {
	var tables []string // ownership units
	seen := map[string]bool{}
	for _, n := range names {
		db, tb, _ := strings.Cut(n, ".")
		if u, ok := c.tables.Unit(db, tb); ok && !seen[u] {
			seen[u] = true
			tables = append(tables, u)
		}
	}
	sort.Strings(tables) // the same order everywhere: two sites never wait for each other's second unit
	var got []string     // taken by this call: given back if a later one fails
	giveBack := func() {
		c.mu.Lock()
		var hs []held
		for _, t := range got {
			hs = append(hs, c.conns[conn][t])
			delete(c.conns[conn], t)
		}
		c.mu.Unlock()
		for _, h := range hs {
			h.release()
		}
	}
	for _, t := range tables {
		c.mu.Lock()
		_, have := c.conns[conn][t]
		c.mu.Unlock()
		if have {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, c.opt.AcquireTimeout)
		own, release, err := c.owners.Use(actx, t)
		cancel()
		if err != nil {
			giveBack()
			var busy *prom.BusyError
			if errors.As(err, &busy) {
				c.count(func(s *Stats) { s.Busy++ })
				return &BusyError{Table: t, Owner: busy.Owner, Waited: busy.Waited}
			}
			return fmt.Errorf("MUSIC: ownership of sync table %s: %w", t, err)
		}
		c.mu.Lock()
		if c.conns[conn] == nil {
			c.conns[conn] = map[string]held{}
		}
		c.conns[conn][t] = held{own: own, release: release}
		c.mu.Unlock()
		got = append(got, t)
	}
	return nil
}

// Ended releases what conn's transaction held.
func (c *Coordinator) Ended(conn uint32) {
	c.mu.Lock()
	hs := c.conns[conn]
	delete(c.conns, conn)
	c.mu.Unlock()
	for _, h := range hs {
		h.release()
	}
}

// FencedError is a commit made without the table's ownership: MariaDB committed it here,
// and it will not be applied anywhere else.
type FencedError struct {
	Table, GTID string
	Err         error
}

func (e *FencedError) Error() string {
	return fmt.Sprintf("MUSIC: commit %s on sync table %s is fenced out (this site lost the table's ownership before the commit was claimed): it is not mirrored; %v", e.GTID, e.Table, e.Err)
}

// Committed claims conn's commit gtid in the epoch of every table its transaction held,
// then waits until the site's apply agent has it in the MUSIC store.
func (c *Coordinator) Committed(ctx context.Context, conn uint32, gtid string) error {
	seq, err := gtidSeq(gtid)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.opt.CommitTimeout)
	defer cancel()
	c.mu.Lock()
	hs := c.conns[conn]
	c.mu.Unlock()
	t0 := time.Now()
	for t, h := range hs {
		if err := c.claim(ctx, t, h.own.Fence, seq); err != nil {
			if errors.Is(err, ErrLostOwnership) {
				c.count(func(s *Stats) { s.Fenced++ })
				return &FencedError{Table: t, GTID: gtid, Err: err}
			}
			c.count(func(s *Stats) { s.Unconfirmed++ })
			return fmt.Errorf("MUSIC: commit %s on sync table %s not confirmed (its outcome at the other sites is unknown): %w", gtid, t, err)
		}
	}
	if len(hs) > 0 {
		_ = c.nc.Publish(claimedSubject, nil)
	}
	t1 := time.Now()
	defer func() {
		c.log.Debug("sync commit", zap.String("gtid", gtid), zap.Duration("claim", t1.Sub(t0)), zap.Duration("stored", time.Since(t1)))
	}()
	if err := c.waitStored(ctx, seq); err != nil {
		c.count(func(s *Stats) { s.Unconfirmed++ })
		return fmt.Errorf("MUSIC: commit %s not confirmed durable in the MUSIC store within %s (is the apply agent of site %s running?): %w",
			gtid, c.opt.CommitTimeout, c.site, err)
	}
	c.count(func(s *Stats) { s.Commits++ })
	return nil
}

func (c *Coordinator) count(f func(*Stats)) {
	c.mu.Lock()
	f(&c.stats)
	c.mu.Unlock()
}

// claim gets seq claimed in table's open epoch of fence.
func (c *Coordinator) claim(ctx context.Context, table string, fence, seq int64) error {
	c.mu.Lock()
	st := c.current[table]
	c.mu.Unlock()
	if st == nil || st.ep.Fence != fence {
		return fmt.Errorf("%w: no open epoch of %s with fence %d here", ErrLostOwnership, table, fence)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.want = max(st.want, seq)
	for st.ep.Last < seq {
		if st.lost != nil {
			return st.lost
		}
		if st.inflight {
			st.cond.Wait()
			continue
		}
		st.inflight = true
		ep, want := st.ep, st.want
		st.mu.Unlock()
		next, err := c.epochs.Claim(ctx, ep, want)
		st.mu.Lock()
		st.inflight = false
		st.cond.Broadcast()
		switch {
		case errors.Is(err, ErrLostOwnership):
			st.lost = err
		case err != nil:
			return err
		default:
			st.ep.Last = max(st.ep.Last, next.Last)
		}
	}
	return nil
}

// waitStored waits until the site's apply agent has finished every own commit up to seq,
// and seq was applied. A commit the agent never receives (it touched no mirrored row)
// is passed by a heartbeat this site writes while it waits.
func (c *Coordinator) waitStored(ctx context.Context, seq int64) error {
	beat := time.NewTicker(200 * time.Millisecond)
	defer beat.Stop()
	ask := time.NewTicker(time.Second)
	defer ask.Stop()
	for {
		c.mu.Lock()
		p, wake := c.progress, c.wake
		c.mu.Unlock()
		if p.Done >= seq {
			for _, f := range p.Failed {
				if f == seq {
					return fmt.Errorf("the apply agent did not apply commit seq %d (its table is quarantined or it was fenced out; see music status)", seq)
				}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-beat.C:
			if err := c.heartbeat(ctx); err != nil {
				c.log.Warn("sync: heartbeat write failed", zap.Error(err))
			}
		case <-ask.C:
			if m, err := c.nc.RequestWithContext(ctx, progressSubject(c.site), nil); err == nil {
				var p Progress
				if json.Unmarshal(m.Data, &p) == nil {
					c.advance(p)
				}
			}
		}
	}
}

// The heartbeat table lives outside the metadata schema so that capture mirrors it: a
// write to it is an own commit the apply agent receives after any earlier one.
const heartbeatTable = "music_sync.heartbeat"

func (c *Coordinator) ensureHeartbeat(ctx context.Context) error {
	for _, q := range []string{"CREATE DATABASE IF NOT EXISTS music_sync",
		"CREATE TABLE IF NOT EXISTS " + heartbeatTable + " (site VARCHAR(64) PRIMARY KEY, at TIMESTAMP(6) NOT NULL) ENGINE=InnoDB"} {
		if _, err := c.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("synctable: create %s: %w", heartbeatTable, err)
		}
	}
	return nil
}

func (c *Coordinator) heartbeat(ctx context.Context) error {
	_, err := c.db.ExecContext(ctx, "REPLACE INTO "+heartbeatTable+" (site, at) VALUES (?, UTC_TIMESTAMP(6))", c.site)
	return err
}

// takeOver is prom's OnAcquire: open this site's epoch of the table, then wait until
// this site has applied every commit the other sites claimed on it.
func (c *Coordinator) takeOver(ctx context.Context, now, prev prom.Ownership) error {
	table := now.Resource
	start, err := c.localSeq(ctx)
	if err != nil {
		return err
	}
	ep, final, err := c.epochs.TakeOver(ctx, table, c.site, now.Fence, start, time.Now())
	if err != nil {
		return err
	}
	st := &epochState{ep: ep}
	st.cond = sync.NewCond(&st.mu)
	c.mu.Lock()
	c.current[table] = st
	c.stats.Takeovers++
	c.mu.Unlock()
	db, tb, _ := strings.Cut(table, ".")
	cctx, cancel := context.WithTimeout(ctx, c.opt.CatchUpTimeout)
	defer cancel()
	for site, want := range final.Claimed {
		if site == c.site {
			continue
		}
		wait := time.Millisecond
		for {
			var have int64
			err := c.db.QueryRowContext(cctx, "SELECT seq FROM "+c.opt.MetaSchema+".sync_applied WHERE db = ? AND tbl = ? AND origin = ?",
				db, tb, site).Scan(&have)
			if err != nil && !errors.Is(err, sql.ErrNoRows) && !isMissingTable(err) {
				return fmt.Errorf("synctable: read catch-up progress of %s: %w", table, err)
			}
			if have >= want {
				break
			}
			select {
			case <-cctx.Done():
				return fmt.Errorf("MUSIC: catching up on sync table %s: site %s's commits up to seq %d are acknowledged, this site has applied up to %d after %s (is this site's apply agent running?)",
					table, site, want, have, c.opt.CatchUpTimeout)
			case <-time.After(wait):
				wait = min(wait*2, 50*time.Millisecond)
			}
		}
	}
	c.log.Info("sync table taken over", zap.String("table", table), zap.Int64("fence", now.Fence),
		zap.String("previous_owner", prev.Site), zap.Int64("start", ep.Start), zap.Int64("base", ep.Base))
	return nil
}

func isMissingTable(err error) bool { return err != nil && strings.Contains(err.Error(), "1146") }

// localSeq is the last GTID seq of this site's own domain in its binlog.
func (c *Coordinator) localSeq(ctx context.Context) (int64, error) {
	var domain uint32
	var pos string
	if err := c.db.QueryRowContext(ctx, "SELECT @@global.gtid_domain_id, @@global.gtid_binlog_pos").Scan(&domain, &pos); err != nil {
		return 0, fmt.Errorf("synctable: read the binlog position: %w", err)
	}
	for _, g := range strings.Split(pos, ",") {
		parts := strings.Split(strings.TrimSpace(g), "-")
		if len(parts) == 3 && parts[0] == strconv.FormatUint(uint64(domain), 10) {
			return strconv.ParseInt(parts[2], 10, 64)
		}
	}
	return 0, nil
}

func gtidSeq(gtid string) (int64, error) {
	parts := strings.Split(strings.TrimSpace(gtid), "-")
	if len(parts) != 3 {
		return 0, fmt.Errorf("synctable: gtid %q: want domain-server-seq", gtid)
	}
	return strconv.ParseInt(parts[2], 10, 64)
}
