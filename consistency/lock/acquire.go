package lock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/zap"
)

// Acquire reports whether ref holds its lock now and renews its lease (unless it was
// renewed within the last tenth of its period). Like Check, it may answer from the
// holder cache (see heldCache) when no renewal is due. It returns the holding, or a
// *HolderError (errors.Is ErrNotHolder) when ref waits behind others, or ErrNotFound
// when ref is gone. Expired references ahead of ref are released by force.
func (s *Service) Acquire(ctx context.Context, ref string) (Holding, error) {
	return s.acquire(ctx, ref, 0)
}

// AcquireWithLease is Acquire that first sets ref's lease period to d.
func (s *Service) AcquireWithLease(ctx context.Context, ref string, d time.Duration) (Holding, error) {
	return s.acquire(ctx, ref, d)
}

func (s *Service) acquire(ctx context.Context, ref string, d time.Duration) (Holding, error) {
	return s.verify(ctx, ref, request{d: d, renew: true})
}

// Check is Acquire without renewing the lease: critical operations use it to verify
// that ref holds its lock.
func (s *Service) Check(ctx context.Context, ref string) (Holding, error) {
	return s.verify(ctx, ref, request{})
}

// verify answers from the holder cache when it can (see heldCache), and otherwise asks
// ZooKeeper and caches the answer.
func (s *Service) verify(ctx context.Context, ref string, req request) (Holding, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return Holding{}, err
	}
	now := s.now()
	e, ok, watching := s.held.get(r, now, s.conn.State() == zk.StateHasSession)
	if ok && !(req.renew && e.lease.renewDue(now, req.d)) {
		return e.h, nil
	}
	req.watch = s.held.ttl > 0 && !watching
	o, err := s.status(ctx, r, req)
	if err == nil {
		s.held.put(o, now)
	}
	return o.Holding, err
}

// request is what a status check does besides verifying: set the lease period to d
// (if positive), renew the lease, watch the reference's znode.
type request struct {
	d            time.Duration
	renew, watch bool
}

// owned is a verified holding with the lease it was verified against.
type owned struct {
	Holding
	lease lease
	watch <-chan zk.Event // set if requested
}

func (s *Service) status(ctx context.Context, r Ref, req request) (owned, error) {
	for attempt := 0; attempt < 5; attempt++ {
		if err := ctx.Err(); err != nil {
			return owned{}, err
		}
		o, retry, err := s.statusOnce(r, req)
		if !retry {
			return o, err
		}
	}
	return owned{}, fmt.Errorf("lock: %s: queue kept changing", r)
}

func (s *Service) statusOnce(r Ref, req request) (o owned, retry bool, err error) {
	mine := s.readAsync(s.refPath(r, Write), req.watch) // shares a round trip with the listing
	q, err := s.queue(r.Name)
	if err != nil {
		return owned{}, false, err
	}
	i := q.find(r.Seq)
	if i < 0 {
		return owned{}, false, fmt.Errorf("%w: %s", ErrNotFound, r)
	}
	me := q.entries[i]
	for _, e := range q.entries[:i] {
		if !blocks(e, me.typ) {
			continue
		}
		gone, err := s.releaseIfExpired(r.Name, e)
		if err != nil {
			return owned{}, false, err
		}
		if !gone {
			return owned{}, false, &HolderError{Ref: r.String(), Holder: s.holdersOf(r.Name, q)}
		}
		q.unsynced = true
	}
	if me.typ != Write {
		mine = s.readAsync(s.refPath(r, me.typ), req.watch)
	}
	o, ok, err := s.own(r, me, <-mine, req)
	if err != nil || !ok {
		return owned{}, !ok && err == nil, err
	}
	o.Holding = Holding{Ref: r, Type: me.typ, Created: time.UnixMicro(o.lease.Created), Unsynced: q.unsynced}
	return o, false, nil
}

// nodeData is the result of a read of a znode.
type nodeData struct {
	data  []byte
	st    *zk.Stat
	watch <-chan zk.Event
	err   error
}

// readAsync reads znode p in the background, so that the read is pipelined with what
// the caller sends meanwhile on the same session.
func (s *Service) readAsync(p string, watch bool) <-chan nodeData {
	ch := make(chan nodeData, 1)
	go func() {
		var d nodeData
		if watch {
			d.data, d.st, d.watch, d.err = s.conn.GetW(p)
		} else {
			d.data, d.st, d.err = s.conn.Get(p)
		}
		ch <- d
	}()
	return ch
}

// own checks (and renews) the caller's own lease, as read in nd. ok=false asks for a
// retry.
func (s *Service) own(r Ref, me entry, nd nodeData, req request) (owned, bool, error) {
	if errors.Is(nd.err, zk.ErrNoNode) {
		return owned{}, false, fmt.Errorf("%w: %s", ErrNotFound, r)
	}
	if nd.err != nil {
		return owned{}, false, fmt.Errorf("lock: read %s: %w", r, nd.err)
	}
	l := decodeLease(nd.data)
	now := s.now()
	if l.expired(now) {
		if _, err := s.forceRelease(r.Name, me, nd.st.Version); err != nil {
			return owned{}, false, err
		}
		return owned{}, false, fmt.Errorf("%w: %s: lease expired", ErrNotFound, r)
	}
	if !req.renew || !l.renewDue(now, req.d) {
		return owned{lease: l, watch: nd.watch}, true, nil
	}
	if req.d > 0 {
		l.LeaseMS = req.d.Milliseconds()
	}
	l.renew(now)
	_, err := s.conn.Set(s.refPath(r, me.typ), l.encode(), nd.st.Version) // fires nd.watch
	switch {
	case errors.Is(err, zk.ErrBadVersion):
		return owned{}, false, nil
	case errors.Is(err, zk.ErrNoNode):
		return owned{}, false, fmt.Errorf("%w: %s", ErrNotFound, r)
	case err != nil:
		return owned{}, false, fmt.Errorf("lock: renew %s: %w", r, err)
	}
	return owned{lease: l}, true, nil
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
		s.held.forget(Ref{Name: n, Seq: e.seq})
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
