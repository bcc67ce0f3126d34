package lock

import (
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// heldCache lets Check answer without ZooKeeper round trips for a reference it verified
// recently. A reference that holds its lock keeps holding it until its znode goes
// (nothing can queue ahead of it), so an entry is trusted while all of these hold:
//
//   - the data watch set on the reference's znode when it was verified has not fired.
//     Any change to the znode (release, forced release, Delete, a renewal), by any
//     server, fires it; ZooKeeper sends the notification in order with the session's
//     replies, so the entry is as current as a fresh read, less the notification's
//     time in flight, which a check followed by a write always had as a window;
//   - the session is connected;
//   - it was verified less than ttl ago: this bounds staleness should a watch be lost
//     across a reconnect (go-zookeeper re-registers watches asynchronously);
//   - its lease has more than ttl left by the local clock, so an expiring lease gets a
//     fresh check, which releases it by force, as without the cache;
//   - the name was not unsynced when verified (its holder repairs first).
//
// A write made under a trusted entry is fenced by the reference's timestamp like any
// other critical write. A zero ttl turns the cache off.
type heldCache struct {
	ttl     time.Duration
	mu      sync.Mutex
	m       map[Ref]heldEntry
	sweepAt int
}

type heldEntry struct {
	h        Holding
	lease    lease
	verified time.Time
	watch    <-chan zk.Event
}

func fired(ch <-chan zk.Event) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// get returns r's entry and whether it is trusted at now. watching reports that r's
// znode is still watched, so a refresh need not set another watch.
func (c *heldCache) get(r Ref, now time.Time, connected bool) (e heldEntry, ok, watching bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, found := c.m[r]
	if !found {
		return heldEntry{}, false, false
	}
	if fired(e.watch) {
		delete(c.m, r)
		return heldEntry{}, false, false
	}
	exp := e.lease.Expires
	ok = connected && now.Sub(e.verified) < c.ttl && (exp == 0 || now.Add(c.ttl).UnixMilli() < exp)
	return e, ok, true
}

// put records o, verified at now. Without a new watch it keeps the entry's old one.
func (c *heldCache) put(o owned, now time.Time) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	w := o.watch
	if old, ok := c.m[o.Ref]; ok {
		delete(c.m, o.Ref)
		if w == nil && !fired(old.watch) {
			w = old.watch
		}
	}
	if w == nil || o.Unsynced {
		return
	}
	if len(c.m) >= c.sweepAt {
		c.sweep(now)
	}
	c.m[o.Ref] = heldEntry{h: o.Holding, lease: o.lease, verified: now, watch: w}
}

// sweep drops entries that can no longer be trusted, at amortised constant cost.
func (c *heldCache) sweep(now time.Time) {
	if c.m == nil {
		c.m = map[Ref]heldEntry{}
	}
	for r, e := range c.m {
		if fired(e.watch) || e.lease.expired(now) {
			delete(c.m, r)
		}
	}
	c.sweepAt = 2*len(c.m) + 64
}

func (c *heldCache) forget(r Ref) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, r)
}
