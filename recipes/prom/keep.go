package prom

import (
	"errors"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/zap"
)

// holding is one ownership of a resource by this Manager, from its claim until it is
// yielded or lost. ver belongs to the keeper; the other fields are guarded by
// Manager.mu.
type holding struct {
	own        Ownership
	rec        record    // the record as this Manager wrote it
	prev       record    // the record the claim replaced
	since      time.Time // claim time on the local clock, for MinHold
	ver        int32     // znode version after our last write
	validUntil time.Time // the lease as this Manager may trust it
	inflight   int
	ready      bool // OnAcquire succeeded: uses may be admitted
	draining   bool // about to yield: admit no new use
	aborted    bool // OnAcquire failed: release without BeforeYield
	wake       chan struct{}
}

// admits reports whether a new use may start on h.
func (h *holding) admits(now time.Time) bool {
	return h.ready && !h.draining && !h.aborted && now.Before(h.validUntil)
}

// poke wakes h's keeper.
func (h *holding) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

type step int

const (
	stepWait step = iota
	stepYield
	stepLose
)

// keep runs from claim to the end of h: it renews the lease every Lease/4 and yields r
// when asked (or aborted, or closing) once no use is in flight, or reports the loss when
// the lease ran out.
func (m *Manager) keep(r *resource, h *holding) {
	defer m.wg.Done()
	done := make(chan struct{})
	defer close(done)
	asks := m.watchRequests(r.path, done)
	asked := false
	var renewing <-chan renewal
	nextRenew := h.since.Add(m.opt.Lease / 4)
	for {
		st, d, closing := m.decide(r, h, asked, renewing != nil)
		switch st {
		case stepYield:
			m.yield(r, h)
			return
		case stepLose:
			m.lose(r, h)
			return
		}
		if renewing == nil && !closing {
			if now := time.Now(); !now.Before(nextRenew) {
				renewing = m.renew(r.path, h.rec, h.ver)
				nextRenew = now.Add(m.opt.Lease / 4)
			}
			d = min(d, time.Until(nextRenew))
		}
		t := time.NewTimer(d)
		select {
		case asked = <-asks:
		case res := <-renewing:
			renewing = nil
			m.renewed(r, h, res)
		case <-h.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// decide says what the keeper does next, or how long it may wait at most, and whether
// the Manager is closing.
func (m *Manager) decide(r *resource, h *holding, asked, renewing bool) (step, time.Duration, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	left := h.validUntil.Sub(now)
	if left <= 0 {
		return stepLose, 0, m.closed
	}
	if !asked && !h.aborted && !m.closed {
		if h.draining { // the requester gave up
			h.draining = false
			r.notify()
		}
		return stepWait, left, false
	}
	if hold := h.since.Add(m.opt.MinHold).Sub(now); hold > 0 && !h.aborted && !m.closed {
		return stepWait, min(hold, left), false
	}
	if !h.draining {
		h.draining = true
		r.notify()
	}
	if h.inflight > 0 || renewing {
		return stepWait, left, m.closed
	}
	return stepYield, 0, m.closed
}

// watchRequests sends on the returned channel whether other Managers ask for the
// resource at p, each time its request nodes change, until done is closed.
func (m *Manager) watchRequests(p string, done <-chan struct{}) <-chan bool {
	ch := make(chan bool, 1)
	mine := "req-" + m.instance + "-"
	go func() {
		for {
			kids, _, ev, err := m.conn.ChildrenW(p)
			var retry <-chan time.Time
			if err != nil {
				retry = time.After(m.opt.Lease / 20)
			} else {
				asked := false
				for _, k := range kids {
					asked = asked || !strings.HasPrefix(k, mine)
				}
				select { // keep only the latest answer
				case <-ch:
				default:
				}
				ch <- asked
			}
			select {
			case <-ev:
			case <-retry:
			case <-done:
				return
			}
		}
	}()
	return ch
}

// renewal is the result of one renewal: the record's version, and when the successful
// write was sent (zero: the write was an earlier one whose answer was lost).
type renewal struct {
	sent time.Time
	ver  int32
	err  error
}

// renew rewrites rec at version ver in the background.
func (m *Manager) renew(p string, rec record, ver int32) <-chan renewal {
	ch := make(chan renewal, 1)
	go func() {
		sent := time.Now()
		st, err := m.conn.Set(p, rec.encode(), ver)
		if err == nil {
			ch <- renewal{sent: sent, ver: st.Version}
			return
		}
		if errors.Is(err, zk.ErrBadVersion) {
			if v, ok := m.stillOurs(p, rec); ok {
				ch <- renewal{ver: v}
				return
			}
		}
		ch <- renewal{err: err}
	}()
	return ch
}

// stillOurs reports whether the record at p is still rec (an earlier write of ours
// succeeded without our seeing the answer), and its version.
func (m *Manager) stillOurs(p string, rec record) (int32, bool) {
	data, st, err := m.conn.Get(p)
	if err != nil || decodeRecord(data) != rec {
		return 0, false
	}
	return st.Version, true
}

func (m *Manager) renewed(r *resource, h *holding, res renewal) {
	switch {
	case res.err == nil:
		h.ver = res.ver
		if !res.sent.IsZero() {
			m.mu.Lock()
			h.validUntil = res.sent.Add(m.validity())
			m.mu.Unlock()
		}
	case errors.Is(res.err, zk.ErrBadVersion), errors.Is(res.err, zk.ErrNoNode):
		m.mu.Lock()
		h.validUntil = time.Time{} // taken over: decide reports the loss
		m.mu.Unlock()
	default:
		m.log.Warn("renew lease", zap.String("resource", r.name), zap.Error(res.err))
	}
}

// yield calls BeforeYield (unless the acquisition was aborted) and writes r's record
// free. If the write fails the record is left to expire, or to this Manager's next
// claim.
func (m *Manager) yield(r *resource, h *holding) {
	m.mu.Lock()
	aborted, f := h.aborted, m.beforeYield
	m.mu.Unlock()
	last := h.rec
	if aborted {
		last = h.prev
	} else if f != nil {
		f(h.own)
	}
	last.Free = true
	_, err := m.conn.Set(r.path, last.encode(), h.ver)
	if errors.Is(err, zk.ErrBadVersion) {
		if v, ok := m.stillOurs(r.path, h.rec); ok {
			_, err = m.conn.Set(r.path, last.encode(), v)
		}
	}
	m.mu.Lock()
	r.h = nil
	r.notify()
	m.mu.Unlock()
	if err != nil {
		m.log.Warn("release", zap.String("resource", r.name), zap.Error(err))
		return
	}
	yields.WithLabelValues(m.site).Inc()
	m.log.Debug("released", zap.String("resource", r.name), zap.Int64("fence", h.own.Fence))
}

// lose ends h after its lease ran out and reports the loss.
func (m *Manager) lose(r *resource, h *holding) {
	m.mu.Lock()
	r.h = nil
	r.notify()
	ready, f := h.ready, m.onLost
	m.mu.Unlock()
	lost.WithLabelValues(m.site).Inc()
	m.log.Warn("ownership lost", zap.String("resource", r.name), zap.Int64("fence", h.own.Fence))
	if ready && f != nil {
		f(h.own)
	}
}
