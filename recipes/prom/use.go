package prom

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/zap"
)

// ErrLost means the ownership was lost while OnAcquire ran.
var ErrLost = errors.New("prom: ownership lost")

// Use blocks until this site owns resource, marks one use in flight and returns the
// ownership and a release func that ends the use (calling it again does nothing).
// While any use is in flight the site does not yield the resource. If another site owns
// it, Use asks it to yield, or takes it over once the owner's lease has run out. When
// ctx ends first Use returns a *BusyError naming the owner. When this site already owns
// the resource Use costs no ZooKeeper round trip. A caller needing several resources at
// once should Use them in one global order (by name), so that two sites never wait for
// each other's uses in flight.
func (m *Manager) Use(ctx context.Context, resource string) (Ownership, func(), error) {
	if err := checkName(resource); err != nil {
		return Ownership{}, nil, fmt.Errorf("prom: resource %q: %w", resource, err)
	}
	start := time.Now()
	r := m.resource(resource)
	for {
		h, wait, lead, err := m.admit(r)
		switch {
		case err != nil:
			return Ownership{}, nil, err
		case lead:
			h, err = m.acquire(ctx, r, start)
			if err != nil {
				return Ownership{}, nil, err
			}
			fallthrough
		case h != nil:
			m.waited.Observe(time.Since(start).Seconds())
			var once sync.Once
			return h.own, func() { once.Do(func() { m.endUse(h) }) }, nil
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return Ownership{}, nil, m.busy(ctx, r, start, ctx.Err())
		}
	}
}

// admit counts a use if this site owns r and admits uses. Otherwise the caller either
// runs the acquisition (lead) or waits for r to change.
func (m *Manager) admit(r *resource) (h *holding, wait <-chan struct{}, lead bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		return nil, nil, false, ErrClosed
	case r.h != nil && r.h.admits(time.Now()):
		r.h.inflight++
		return r.h, nil, false, nil
	case r.h == nil && !r.acquiring:
		r.acquiring = true
		m.wg.Add(1)
		return nil, nil, true, nil
	}
	return nil, r.changed, false, nil
}

func (m *Manager) endUse(h *holding) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h.inflight--; h.inflight == 0 {
		h.poke()
	}
}

// busy turns err, when it is the end of ctx, into a *BusyError (ErrClosed at Close).
func (m *Manager) busy(ctx context.Context, r *resource, start time.Time, err error) error {
	if ctx.Err() == nil || !errors.Is(err, ctx.Err()) {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	owner := r.lastOwner
	if r.h != nil {
		owner = m.site
	}
	return &BusyError{Resource: r.name, Owner: owner, Waited: time.Since(start), Err: ctx.Err()}
}

// acquire makes this site the owner of r and returns the holding with the caller's use
// counted. The record is claimed when it is free, names this Manager (an ownership it
// lost) or has not changed for the owner's lease; otherwise acquire asks for it with a
// request node and waits for the record to change.
func (m *Manager) acquire(ctx context.Context, r *resource, start time.Time) (*holding, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(m.ctx, cancel)()
	var req request
	defer func() {
		req.drop(m)
		m.mu.Lock()
		r.acquiring = false
		r.notify()
		m.mu.Unlock()
		m.wg.Done()
	}()
	for {
		rec, st, watch, err := m.read(ctx, r)
		if err != nil {
			return nil, m.busy(ctx, r, start, err)
		}
		stale, left := m.stale(r, rec, st)
		if rec.Free || rec.Instance == m.instance || stale {
			req.drop(m)
			h, err := m.claim(ctx, r, rec, st, stale && !rec.Free && rec.Instance != m.instance)
			if errors.Is(err, zk.ErrBadVersion) {
				continue
			}
			if err != nil {
				return nil, m.busy(ctx, r, start, err)
			}
			return h, nil
		}
		if err := req.ensure(ctx, m, r); err != nil {
			return nil, m.busy(ctx, r, start, err)
		}
		t := time.NewTimer(left)
		select {
		case <-watch:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// read reads r's record with a watch, creating the node if it is missing.
func (m *Manager) read(ctx context.Context, r *resource) (record, *zk.Stat, <-chan zk.Event, error) {
	type result struct {
		data  []byte
		st    *zk.Stat
		watch <-chan zk.Event
	}
	for {
		res, err := call(ctx, func() (res result, err error) {
			res.data, res.st, res.watch, err = m.conn.GetW(r.path)
			return res, err
		}, nil)
		if errors.Is(err, zk.ErrNoNode) {
			_, err = call(ctx, func() (string, error) { return m.conn.Create(r.path, nil, 0, acl) }, nil)
			if err == nil || errors.Is(err, zk.ErrNodeExists) {
				continue
			}
		}
		if err != nil {
			return record{}, nil, nil, fmt.Errorf("prom: read %s: %w", r.name, err)
		}
		rec := decodeRecord(res.data)
		m.mu.Lock()
		r.lastOwner = rec.Site
		if rec.Free {
			r.lastOwner = ""
		}
		m.mu.Unlock()
		return rec, res.st, res.watch, nil
	}
}

// stale reports whether the record has stayed at st's state for the owner's lease, timed
// on this host's clock from when this Manager first saw that state, and if not, how long
// it has left.
func (m *Manager) stale(r *resource, rec record, st *zk.Stat) (bool, time.Duration) {
	now := time.Now()
	if st.Mzxid != r.seenZxid {
		r.seenZxid, r.seenAt = st.Mzxid, now
	}
	left := rec.lease(m.opt.Lease) - now.Sub(r.seenAt)
	return left <= 0, max(left, time.Millisecond)
}

// claim writes this Manager into r's record if the record is still at st's version and
// runs OnAcquire. zk.ErrBadVersion means the record changed meanwhile.
func (m *Manager) claim(ctx context.Context, r *resource, rec record, st *zk.Stat, failover bool) (*holding, error) {
	now := time.Now()
	mine := record{Site: m.site, Instance: m.instance, Fence: st.Mzxid, SinceMS: now.UnixMilli(),
		LeaseMS: m.opt.Lease.Milliseconds()}
	free := rec
	free.Free = true
	nst, err := call(ctx, func() (*zk.Stat, error) { return m.conn.Set(r.path, mine.encode(), st.Version) },
		func(st *zk.Stat) { _, _ = m.conn.Set(r.path, free.encode(), st.Version) }) // abandoned claim
	if err != nil {
		return nil, fmt.Errorf("prom: claim %s: %w", r.name, err)
	}
	h := &holding{own: mine.ownership(r.name), rec: mine, prev: rec, since: now, ver: nst.Version,
		validUntil: now.Add(m.validity()), inflight: 1, wake: make(chan struct{}, 1)}
	prev := rec.ownership(r.name)
	m.mu.Lock()
	r.h = h
	m.wg.Add(1)
	f := m.onAcquire
	m.mu.Unlock()
	go m.keep(r, h)
	m.counted(h.own, prev, failover)
	if f != nil {
		if err := f(ctx, h.own, prev); err != nil {
			m.mu.Lock()
			h.aborted = true
			m.mu.Unlock()
			m.endUse(h)
			return nil, fmt.Errorf("prom: acquire %s: %w", r.name, err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if r.h != h {
		return nil, fmt.Errorf("%w: %s during OnAcquire", ErrLost, r.name)
	}
	h.ready = true
	r.notify()
	return h, nil
}

func (m *Manager) counted(now, prev Ownership, failover bool) {
	acquisitions.WithLabelValues(m.site).Inc()
	if prev.Site != "" && prev.Site != m.site {
		moves.WithLabelValues(m.site).Inc()
	}
	if failover {
		failovers.WithLabelValues(m.site).Inc()
		m.log.Warn("took over an expired ownership", zap.String("resource", now.Resource),
			zap.String("prev_site", prev.Site), zap.Int64("prev_fence", prev.Fence), zap.Int64("fence", now.Fence))
		return
	}
	m.log.Debug("acquired", zap.String("resource", now.Resource), zap.Int64("fence", now.Fence),
		zap.String("prev_site", prev.Site))
}

// request is an acquisition's request node, which asks the owner to yield. It is
// ephemeral: it is created again if the session that created it is gone.
type request struct {
	path    string
	session int64
}

func (q *request) ensure(ctx context.Context, m *Manager, r *resource) error {
	sid := m.conn.SessionID()
	if q.path != "" && q.session == sid {
		return nil
	}
	p, err := call(ctx, func() (string, error) {
		return m.conn.Create(r.path+"/req-"+m.instance+"-", nil, zk.FlagEphemeral|zk.FlagSequence, acl)
	}, func(p string) { _ = m.conn.Delete(p, -1) })
	if err != nil {
		return fmt.Errorf("prom: ask for %s: %w", r.name, err)
	}
	q.path, q.session = p, sid
	return nil
}

// drop deletes the request node in the background: the owner ignores this Manager's
// requests, so nothing waits for it.
func (q *request) drop(m *Manager) {
	if p := q.path; p != "" {
		q.path = ""
		go func() { _ = m.conn.Delete(p, -1) }()
	}
}

// call runs f, a ZooKeeper call, and returns early with ctx's error if ctx ends first (a
// call queued while the connection is down waits for the reconnection). If f succeeds
// after call returned, undo (when not nil) reverts its effect.
func call[T any](ctx context.Context, f func() (T, error), undo func(T)) (T, error) {
	type result struct {
		v   T
		err error
	}
	var mu sync.Mutex
	gone := false
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		mu.Lock()
		late := gone
		if !late {
			ch <- result{v, err}
		}
		mu.Unlock()
		if late && err == nil && undo != nil {
			undo(v)
		}
	}()
	select {
	case res := <-ch:
		return res.v, res.err
	case <-ctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	gone = true
	select {
	case res := <-ch: // answered meanwhile
		return res.v, res.err
	default:
		var zero T
		return zero, ctx.Err()
	}
}
