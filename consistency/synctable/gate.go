package synctable

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/changeevent"
)

// NATS subjects between the gateways and the apply agents (core NATS, not streams: a
// lost message only costs a poll interval).
const (
	// claimedSubject carries a Claim that went through, so apply agents waiting for it
	// look again at once.
	claimedSubject = "music.sync.claimed"
)

// storedSubject carries, from a site's apply agent to its gateway, how far the site's own
// commits are in every sink (the MUSIC store among them): Progress.
func storedSubject(site string) string { return "music.sync.stored." + changeevent.Token(site) }

// progressSubject is a request to a site's apply agent for the same, answered at once
// (the gateway asks when it missed a notice).
func progressSubject(site string) string { return "music.sync.progress." + changeevent.Token(site) }

// Progress is how far a site's own commits are finished by its apply agent.
type Progress struct {
	Done   int64   `json:"done"`   // every own commit up to this GTID seq is finished
	Failed []int64 `json:"failed"` // recent own commits on sync tables that were not applied
}

// Gate is the apply agent's side of sync tables (apply.SyncGate): a transaction on a sync
// table is applied, at every site and in the store, only once its origin has claimed it
// in the table's epoch (Epochs.Judge), and then with its epoch's version; a transaction
// its origin committed without owning the table is fenced out. The own-stream worker's
// gate also tells the site's gateway when a commit is in the store (Progress).
type Gate struct {
	site   string
	tables *Tables
	epochs *Epochs
	nc     *nats.Conn
	log    *zap.Logger
	poll   time.Duration // longest wait between two looks at a pending commit

	mu       sync.Mutex
	received int64         // highest own seq received
	inflight map[int64]int // own seqs received and not finished
	failed   []int64       // recent own sync commits not applied
	wake     chan struct{} // closed (and replaced) when a claim notice arrives
	subs     []*nats.Subscription
}

// NewGate returns the gate of site's apply agent. nc may be nil (no notices: waits poll).
func NewGate(site string, tables *Tables, epochs *Epochs, nc *nats.Conn, log *zap.Logger) (*Gate, error) {
	g := &Gate{site: site, tables: tables, epochs: epochs, nc: nc, log: log, poll: 50 * time.Millisecond,
		inflight: map[int64]int{}, wake: make(chan struct{})}
	if nc == nil {
		return g, nil
	}
	claimed, err := nc.Subscribe(claimedSubject, func(*nats.Msg) { g.notify() })
	if err != nil {
		return nil, fmt.Errorf("synctable: subscribe %s: %w", claimedSubject, err)
	}
	progress, err := nc.Subscribe(progressSubject(site), func(m *nats.Msg) {
		g.mu.Lock()
		b, _ := json.Marshal(g.progressLocked())
		g.mu.Unlock()
		_ = m.Respond(b)
	})
	if err != nil {
		claimed.Unsubscribe()
		return nil, fmt.Errorf("synctable: subscribe %s: %w", progressSubject(site), err)
	}
	g.subs = []*nats.Subscription{claimed, progress}
	return g, nil
}

// Close stops listening.
func (g *Gate) Close() {
	for _, s := range g.subs {
		_ = s.Unsubscribe()
	}
}

func (g *Gate) notify() {
	g.mu.Lock()
	close(g.wake)
	g.wake = make(chan struct{})
	g.mu.Unlock()
}

// SyncTables implements apply.SyncGate: the ownership units (Tables.Unit) tx touches.
func (g *Gate) SyncTables(tx *apply.Txn) []string {
	if tx.IsDDL() || tx.Resync {
		return nil // schema changes and resync rows are not owned commits (see docs/SYNC_TABLES.md)
	}
	var out []string
	seen := map[string]bool{}
	for _, e := range tx.Events {
		if u, ok := g.tables.Unit(e.Source.DB, e.Source.Table); ok && !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	return out
}

// Admit implements apply.SyncGate: it waits while the origin owns a table and has not
// claimed tx yet.
func (g *Gate) Admit(ctx context.Context, tx *apply.Txn, tables []string) (map[string]apply.Version, error) {
	if tx.Resync {
		return nil, nil // rows of the store or a snapshot: versions of their own
	}
	seq := int64(tx.GTID.Seq)
	t0 := time.Now()
	defer func() { g.log.Debug("sync admit", zap.String("gtid", tx.ID), zap.Duration("waited", time.Since(t0))) }()
	versions := map[string]apply.Version{} // per table of a unit
	for _, t := range tables {
		wait := time.Millisecond
		for {
			g.mu.Lock()
			wake := g.wake
			g.mu.Unlock()
			v, ep, err := g.epochs.Judge(ctx, t, tx.Origin, seq)
			if err != nil {
				return nil, err
			}
			if v == Claimed {
				for _, e := range tx.Events {
					if u, _ := g.tables.Unit(e.Source.DB, e.Source.Table); u == t {
						versions[e.Source.DB+"."+e.Source.Table] = apply.Version{TsUs: ep.Version(seq), Domain: tx.GTID.Domain, Seq: tx.GTID.Seq}
					}
				}
				break
			}
			if v == Fenced {
				return nil, fmt.Errorf("%w: %s seq %d of %s: %s's epoch ended at seq %d (fence %d)",
					apply.ErrFenced, t, seq, tx.Origin, tx.Origin, ep.Last, ep.Fence)
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-wake:
			case <-time.After(wait):
				wait = min(wait*2, g.poll)
			}
		}
	}
	return versions, nil
}

// Received implements apply.SyncGate.
func (g *Gate) Received(tx *apply.Txn) {
	g.log.Debug("sync received", zap.String("gtid", tx.ID))
	g.mu.Lock()
	defer g.mu.Unlock()
	seq := int64(tx.GTID.Seq)
	g.inflight[seq]++
	g.received = max(g.received, seq)
}

// Done implements apply.SyncGate: the watermark moves, and the gateway is told.
func (g *Gate) Done(tx *apply.Txn, applied bool) {
	seq := int64(tx.GTID.Seq)
	g.log.Debug("sync done", zap.String("gtid", tx.ID), zap.Bool("applied", applied))
	g.mu.Lock()
	if g.inflight[seq]--; g.inflight[seq] <= 0 {
		delete(g.inflight, seq)
	}
	if !applied && len(tx.Sync) > 0 || !applied && len(g.SyncTables(tx)) > 0 {
		g.failed = append(g.failed, seq)
		if len(g.failed) > 1000 {
			g.failed = g.failed[len(g.failed)-1000:]
		}
	}
	p := g.progressLocked()
	g.mu.Unlock()
	if g.nc == nil {
		return
	}
	b, _ := json.Marshal(p)
	if err := g.nc.Publish(storedSubject(g.site), b); err != nil {
		g.log.Warn("sync: cannot tell the gateway how far commits are stored; it will ask", zap.Error(err))
	}
}

// progressLocked is the site's own-stream watermark: every own transaction up to Done
// that was received is finished (the stream delivers in commit order), and which of the
// recent ones on sync tables were not applied.
func (g *Gate) progressLocked() Progress {
	w := g.received
	for seq := range g.inflight {
		w = min(w, seq-1)
	}
	return Progress{Done: w, Failed: append([]int64(nil), g.failed...)}
}
