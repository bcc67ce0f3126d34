package lock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/zap"
)

// Acquire reports whether ref holds its lock now and renews its lease. It returns the
// holding, or a *HolderError (errors.Is ErrNotHolder) when ref waits behind others, or
// ErrNotFound when ref is gone. Expired references ahead of ref are released by force.
func (s *Service) Acquire(ctx context.Context, ref string) (Holding, error) {
	return s.status(ctx, ref, 0, true)
}

// AcquireWithLease is Acquire that first sets ref's lease period to d.
func (s *Service) AcquireWithLease(ctx context.Context, ref string, d time.Duration) (Holding, error) {
	return s.status(ctx, ref, d, true)
}

// Check is Acquire without renewing the lease: critical operations use it to verify
// that ref holds its lock.
func (s *Service) Check(ctx context.Context, ref string) (Holding, error) {
	return s.status(ctx, ref, 0, false)
}

func (s *Service) status(ctx context.Context, refStr string, d time.Duration, renew bool) (Holding, error) {
	r, err := ParseRef(refStr)
	if err != nil {
		return Holding{}, err
	}
	for attempt := 0; attempt < 5; attempt++ {
		if err := ctx.Err(); err != nil {
			return Holding{}, err
		}
		h, retry, err := s.statusOnce(r, d, renew)
		if !retry {
			return h, err
		}
	}
	return Holding{}, fmt.Errorf("lock: %s: queue kept changing", r)
}

func (s *Service) statusOnce(r Ref, d time.Duration, renew bool) (h Holding, retry bool, err error) {
	q, err := s.queue(r.Name)
	if err != nil {
		return Holding{}, false, err
	}
	i := q.find(r.Seq)
	if i < 0 {
		return Holding{}, false, fmt.Errorf("%w: %s", ErrNotFound, r)
	}
	me := q.entries[i]
	for _, e := range q.entries[:i] {
		if !blocks(e, me.typ) {
			continue
		}
		gone, err := s.releaseIfExpired(r.Name, e)
		if err != nil {
			return Holding{}, false, err
		}
		if !gone {
			return Holding{}, false, &HolderError{Ref: r.String(), Holder: s.holdersOf(r.Name, q)}
		}
		q.unsynced = true
	}
	l, ok, err := s.own(r, me, d, renew)
	if err != nil || !ok {
		return Holding{}, !ok && err == nil, err
	}
	return Holding{Ref: r, Type: me.typ, Created: time.UnixMicro(l.Created), Unsynced: q.unsynced}, false, nil
}

// own reads (and renews) the caller's own lease. ok=false asks for a retry.
func (s *Service) own(r Ref, me entry, d time.Duration, renew bool) (lease, bool, error) {
	p := s.dir(r.Name) + "/" + me.node
	data, st, err := s.conn.Get(p)
	if errors.Is(err, zk.ErrNoNode) {
		return lease{}, false, fmt.Errorf("%w: %s", ErrNotFound, r)
	}
	if err != nil {
		return lease{}, false, fmt.Errorf("lock: read %s: %w", r, err)
	}
	l := decodeLease(data)
	now := s.now()
	if l.expired(now) {
		if _, err := s.forceRelease(r.Name, me, st.Version); err != nil {
			return lease{}, false, err
		}
		return lease{}, false, fmt.Errorf("%w: %s: lease expired", ErrNotFound, r)
	}
	if !renew {
		return l, true, nil
	}
	if d > 0 {
		l.LeaseMS = d.Milliseconds()
	}
	if l.Acquired == 0 {
		l.Acquired = now.UnixMilli()
	}
	l.renew(now)
	_, err = s.conn.Set(p, l.encode(), st.Version)
	switch {
	case errors.Is(err, zk.ErrBadVersion):
		return lease{}, false, nil
	case errors.Is(err, zk.ErrNoNode):
		return lease{}, false, fmt.Errorf("%w: %s", ErrNotFound, r)
	case err != nil:
		return lease{}, false, fmt.Errorf("lock: renew %s: %w", r, err)
	}
	return l, true, nil
}

// releaseIfExpired removes e by force if its lease has expired and reports whether e is
// gone.
func (s *Service) releaseIfExpired(n Name, e entry) (bool, error) {
	data, st, err := s.conn.Get(s.dir(n) + "/" + e.node)
	if errors.Is(err, zk.ErrNoNode) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("lock: read %s/%s: %w", n, e.node, err)
	}
	if !decodeLease(data).expired(s.now()) {
		return false, nil
	}
	return s.forceRelease(n, e, st.Version)
}

// forceRelease marks n unsynced, then deletes e if it is still at version ver.
func (s *Service) forceRelease(n Name, e entry, ver int32) (bool, error) {
	_, err := s.conn.Create(s.dir(n)+"/"+unsyncedNode, nil, 0, s.acl)
	if err != nil && !errors.Is(err, zk.ErrNodeExists) {
		return false, fmt.Errorf("lock: mark %s unsynced: %w", n, err)
	}
	err = s.conn.Delete(s.dir(n)+"/"+e.node, ver)
	switch {
	case err == nil:
		s.log.Warn("lock released by force after its lease expired",
			zap.String("lock", n.String()), zap.Int64("seq", e.seq))
		forcedReleases.Inc()
		return true, nil
	case errors.Is(err, zk.ErrNoNode):
		return true, nil
	case errors.Is(err, zk.ErrBadVersion):
		return false, nil // renewed meanwhile
	default:
		return false, fmt.Errorf("lock: force release %s$%d: %w", n, e.seq, err)
	}
}

// Wait blocks until ref holds its lock, ctx ends (ErrTimeout wrapping ctx's error) or ref
// is gone (ErrNotFound). It renews ref's lease while it waits.
func (s *Service) Wait(ctx context.Context, ref string) (Holding, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return Holding{}, err
	}
	for {
		h, err := s.Acquire(ctx, ref)
		if !errors.Is(err, ErrNotHolder) {
			if ctx.Err() != nil && err != nil {
				return h, fmt.Errorf("%w: %w", ErrTimeout, err)
			}
			return h, err
		}
		_, _, ch, werr := s.conn.ChildrenW(s.dir(r.Name))
		if werr != nil {
			ch = nil
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return Holding{}, fmt.Errorf("%w: %s: %w", ErrTimeout, ref, ctx.Err())
		}
		t.Stop()
	}
}
