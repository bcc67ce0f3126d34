package lock

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-zookeeper/zk"
)

// Release removes ref from its queue. It returns ErrNotFound if ref is already gone.
func (s *Service) Release(ctx context.Context, ref string) error {
	r, err := ParseRef(ref)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	defer s.held.forget(r)
	for _, typ := range []Type{Write, Read} { // the sequence number names one of the two
		err := s.conn.Delete(s.refPath(r, typ), -1)
		if err == nil {
			return nil
		}
		if !errors.Is(err, zk.ErrNoNode) {
			return fmt.Errorf("lock: release %s: %w", r, err)
		}
	}
	return fmt.Errorf("%w: %s", ErrNotFound, r)
}

// Holders returns the references holding name's lock now: the head write reference, or
// the leading run of read references. Expired holders are released by force first. It
// returns ErrNoHolder when the queue is empty.
func (s *Service) Holders(ctx context.Context, name string) ([]string, error) {
	n, err := ParseName(name)
	if err != nil {
		return nil, err
	}
	for range 5 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		q, err := s.queue(n)
		if err != nil {
			return nil, err
		}
		expired, err := s.reapHeads(n, q)
		if err != nil {
			return nil, err
		}
		if !expired {
			if h := s.holdersOf(n, q); len(h) > 0 {
				return h, nil
			}
			return nil, fmt.Errorf("%w: %s", ErrNoHolder, n)
		}
	}
	return nil, fmt.Errorf("lock: %s: queue kept changing", n)
}

// reapHeads releases expired holders at the head of q; it reports whether it did.
func (s *Service) reapHeads(n Name, q queue) (bool, error) {
	any := false
	for i, e := range q.entries {
		if i > 0 && (e.typ == Write || q.entries[0].typ == Write) {
			break
		}
		gone, err := s.releaseIfExpired(n, e)
		if err != nil {
			return false, err
		}
		any = any || gone
	}
	return any, nil
}

func (s *Service) holdersOf(n Name, q queue) []string {
	var out []string
	for i, e := range q.entries {
		if i > 0 && (e.typ == Write || q.entries[0].typ == Write) {
			break
		}
		out = append(out, Ref{Name: n, Seq: e.seq}.String())
	}
	return out
}

// Enquire returns the first holder of name's lock (ErrNoHolder if none).
func (s *Service) Enquire(ctx context.Context, name string) (string, error) {
	h, err := s.Holders(ctx, name)
	if err != nil {
		return "", err
	}
	return h[0], nil
}

// Delete removes every reference queued for name, as a forced release: the name is
// marked unsynced if anything was queued. The name's node stays, so its sequence keeps
// growing.
func (s *Service) Delete(ctx context.Context, name string) error {
	n, err := ParseName(name)
	if err != nil {
		return err
	}
	q, err := s.queue(n)
	if err != nil {
		return err
	}
	for _, e := range q.entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := s.forceRelease(n, e, -1); err != nil {
			return err
		}
	}
	return nil
}

// MarkSynced clears name's unsynced mark once its holder repaired the key.
func (s *Service) MarkSynced(ctx context.Context, name string) error {
	n, err := ParseName(name)
	if err != nil {
		return err
	}
	err = s.conn.Delete(s.dir(n)+"/"+unsyncedNode, -1)
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return fmt.Errorf("lock: mark %s synced: %w", n, err)
	}
	return nil
}
