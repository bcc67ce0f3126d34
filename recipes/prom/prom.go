package prom

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

var (
	// ErrName means a resource or site name is empty, ".", ".." or contains "/".
	ErrName = errors.New("prom: name must be non-empty and contain no '/'")
	// ErrClosed means the Manager was closed.
	ErrClosed = errors.New("prom: manager closed")
)

// BusyError says that ownership was not obtained within the caller's wait.
type BusyError struct {
	Resource string
	Owner    string // site owning the resource as last seen ("" if unknown)
	Waited   time.Duration
	Err      error // the context's error
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("prom: %s is owned by site %q (waited %s)", e.Resource, e.Owner, e.Waited.Round(time.Millisecond))
}

func (e *BusyError) Unwrap() error { return e.Err }

// Options configure a Manager. Zero fields take the defaults.
type Options struct {
	Root    string        // ZooKeeper root for prom nodes, default "/music/prom"
	Lease   time.Duration // owner lease, default 5s; an owner that stops renewing loses ownership after it
	MinHold time.Duration // an owner keeps a resource at least this long before yielding, default 20ms
	Log     *zap.Logger
}

// Ownership is one site's ownership of a resource.
type Ownership struct {
	Resource string
	Site     string
	Fence    int64 // strictly increasing per resource across all owners, ever
	Since    time.Time
}

// Manager acquires, holds and yields resources for one site. It is safe for concurrent
// use.
type Manager struct {
	conn     *zk.Conn
	site     string
	instance string // site.<random>: names this Manager in records and request nodes
	opt      Options
	log      *zap.Logger
	ctx      context.Context // canceled by Close
	cancel   context.CancelFunc
	wg       sync.WaitGroup // keepers and acquisitions
	waited   prometheus.Observer

	mu          sync.Mutex
	res         map[string]*resource
	closed      bool
	onAcquire   func(ctx context.Context, now, prev Ownership) error
	beforeYield func(o Ownership)
	onLost      func(o Ownership)
}

// resource is this Manager's state for one resource; fields are guarded by Manager.mu.
type resource struct {
	name, path string
	h          *holding      // nil unless this site owns the resource
	acquiring  bool          // a Use call runs the acquisition
	changed    chan struct{} // closed (and replaced) when h, h.ready, h.draining or acquiring change
	lastOwner  string        // owner site last read from the record, for BusyError

	// staleness of another owner's record, kept by the acquiring Use call only
	seenZxid int64
	seenAt   time.Time
}

func (r *resource) notify() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// New returns a Manager for site that keeps its nodes under opt.Root, creating the root
// if needed. The Manager uses conn but does not close it.
func New(conn *zk.Conn, site string, opt Options) (*Manager, error) {
	if err := checkName(site); err != nil {
		return nil, fmt.Errorf("prom: site %q: %w", site, err)
	}
	if opt.Root == "" {
		opt.Root = "/music/prom"
	}
	opt.Root = path.Clean("/" + opt.Root)
	if opt.Lease <= 0 {
		opt.Lease = 5 * time.Second
	}
	if opt.MinHold <= 0 {
		opt.MinHold = 20 * time.Millisecond
	}
	if opt.Log == nil {
		opt.Log = zap.NewNop()
	}
	if err := mkdirs(conn, opt.Root); err != nil {
		return nil, fmt.Errorf("prom: create root %s: %w", opt.Root, err)
	}
	id := make([]byte, 6)
	_, _ = rand.Read(id)
	m := &Manager{conn: conn, site: site, instance: site + "." + hex.EncodeToString(id), opt: opt,
		res: map[string]*resource{}, waited: waitSeconds.WithLabelValues(site)}
	m.log = opt.Log.With(zap.String("site", site), zap.String("instance", m.instance))
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m, nil
}

func mkdirs(conn *zk.Conn, p string) error {
	cur := ""
	for _, part := range strings.Split(strings.Trim(p, "/"), "/") {
		cur += "/" + part
		if _, err := conn.Create(cur, nil, 0, acl); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return err
		}
	}
	return nil
}

var acl = zk.WorldACL(zk.PermAll)

func checkName(s string) error {
	if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\x00") {
		return ErrName
	}
	return nil
}

// Site returns the site this Manager acquires for.
func (m *Manager) Site() string { return m.site }

// OnAcquire sets the function called each time this site becomes owner of a resource,
// with the new ownership and the previous owner's (zero if none). It runs synchronously
// in the Use call that acquired, before any use is admitted, while the lease is renewed;
// ctx is that call's context, also canceled by Close. An error aborts the acquisition:
// the resource is released (the record keeps prev as last owner) and Use returns the
// error.
func (m *Manager) OnAcquire(f func(ctx context.Context, now, prev Ownership) error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.onAcquire = f
}

// BeforeYield sets the function called before this site releases a resource on request
// or at Close, when no use is in flight and none will be admitted. It runs in the
// resource's keeper, which does not renew the lease meanwhile: it must end well within
// the lease.
func (m *Manager) BeforeYield(f func(o Ownership)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.beforeYield = f
}

// OnLost sets the function called when this site loses an ownership without yielding it
// (the lease ran out: renewals failed, the session was lost, or another site took the
// resource over). Uses are no longer admitted on that ownership; the next Use acquires
// the resource again, with a new fence.
func (m *Manager) OnLost(f func(o Ownership)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.onLost = f
}

// Owner reports the current owner as ZooKeeper's record says (ok false: nobody). It
// does not judge whether the owner's lease has run out.
func (m *Manager) Owner(ctx context.Context, resource string) (o Ownership, ok bool, err error) {
	if err := checkName(resource); err != nil {
		return Ownership{}, false, fmt.Errorf("prom: resource %q: %w", resource, err)
	}
	if err := ctx.Err(); err != nil {
		return Ownership{}, false, err
	}
	data, _, err := m.conn.Get(m.path(resource))
	if errors.Is(err, zk.ErrNoNode) {
		return Ownership{}, false, nil
	}
	if err != nil {
		return Ownership{}, false, fmt.Errorf("prom: read %s: %w", resource, err)
	}
	rec := decodeRecord(data)
	if rec.Free || rec.Site == "" {
		return Ownership{}, false, nil
	}
	return rec.ownership(resource), true, nil
}

// Owned lists the resources this site owns now, by name.
func (m *Manager) Owned() []Ownership {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Ownership
	now := time.Now()
	for _, r := range m.res {
		if h := r.h; h != nil && h.ready && now.Before(h.validUntil) {
			out = append(out, h.own)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Resource < out[j].Resource })
	return out
}

// Close stops admitting uses and acquisitions, waits for the uses in flight to end (at
// most until the lease runs out: it stops renewing), calls BeforeYield and releases
// every resource this site owns. It is idempotent; it does not close the ZooKeeper
// connection.
func (m *Manager) Close() error {
	m.mu.Lock()
	if !m.closed {
		m.closed = true
		m.cancel()
		for _, r := range m.res {
			if r.h != nil {
				r.h.poke()
			}
		}
	}
	m.mu.Unlock()
	m.wg.Wait()
	return nil
}

func (m *Manager) path(resource string) string { return m.opt.Root + "/" + resource }

// resource returns the state for name, creating it.
func (m *Manager) resource(name string) *resource {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.res[name]
	if r == nil {
		r = &resource{name: name, path: m.path(name), changed: make(chan struct{})}
		m.res[name] = r
	}
	return r
}

// validity is how long after sending a successful renewal (or claim) the owner may
// trust it: the lease less a tenth for clock rate differences between sites.
func (m *Manager) validity() time.Duration { return m.opt.Lease - m.opt.Lease/10 }
