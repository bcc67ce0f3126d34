package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/music-coord/music/consistency/lock"
)

// holder is a verified lock holding for one operation.
type holder struct{ lock.Holding }

// run dispatches o by mode: eventual calls f(nil); critical checks ref and calls f with
// the holding; atomic takes and releases a lock around f.
func (s *Store) run(ctx context.Context, o *op, mode Mode, ref string, f func(*holder) error) error {
	switch mode {
	case Eventual, "":
		return f(nil)
	case EventualNB:
		if err := s.stampAsHolder(ctx, o); err != nil {
			return err
		}
		return f(nil)
	case Critical:
		h, err := s.guard(ctx, o, ref)
		if err != nil {
			return err
		}
		return f(h)
	case Atomic, AtomicDeleteLock:
		return s.atomic(ctx, o, f)
	}
	return invalid("consistencyInfo.type must be eventual, critical, atomic, eventual_nb or atomic_delete_lock, got %q", mode)
}

// stampAsHolder sets o's timestamp to the one the row's current lock holder would write
// with now; with no holder it leaves o as it is.
func (s *Store) stampAsHolder(ctx context.Context, o *op) error {
	name, err := o.rowLockName()
	if err != nil {
		return err
	}
	refs, err := s.locks.Holders(ctx, name)
	if errors.Is(err, lock.ErrNoHolder) || errors.Is(err, lock.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	h, err := s.locks.Check(ctx, refs[0])
	if err != nil {
		return nil // the holder left meanwhile: nothing to order against but older writes
	}
	o.ts = h.Timestamp(time.Now())
	return nil
}

// lockName returns the lock name of the row whose key values are in m. As ONAP MUSIC
// does, it names the row by its first primary key column only, so every row of a
// partition whose key has several columns shares the lock of the first column's value.
func (o *op) lockName(m map[string]any) (string, error) {
	c := o.t.partition[0]
	v, ok := m[c]
	if !ok || v == nil {
		return "", invalid("critical and atomic operations need the primary key column %s", c)
	}
	return o.t.ref() + "." + keyText(v), nil
}

// LockName returns the lock name of the row of keyspace.table whose key values are in
// key, as critical and atomic operations name it.
func (s *Store) LockName(ctx context.Context, keyspace, table string, key map[string]any) (string, error) {
	o, err := s.prepare(ctx, opSelect, keyspace, table, nil, key, nil)
	if err != nil {
		return "", err
	}
	return o.lockName(o.key)
}

func (o *op) rowLockName() (string, error) {
	if o.kind == opInsert {
		return o.lockName(o.values)
	}
	return o.lockName(o.key)
}

// guard checks that ref holds the lock of o's row and repairs the row if needed.
func (s *Store) guard(ctx context.Context, o *op, ref string) (*holder, error) {
	if ref == "" {
		return nil, fmt.Errorf("%w: a critical operation needs consistencyInfo.lockId", ErrLock)
	}
	r, err := lock.ParseRef(ref)
	if err != nil {
		return nil, invalid("%v", err)
	}
	name, err := o.rowLockName()
	if err != nil {
		return nil, err
	}
	if r.Name.String() != name {
		return nil, fmt.Errorf("%w: lock %s is not the lock of row %s", ErrLock, ref, name)
	}
	h, err := s.locks.Check(ctx, ref)
	if err != nil {
		return nil, lockError(err)
	}
	if o.kind != opSelect && h.Type != lock.Write {
		return nil, fmt.Errorf("%w: lock %s is a read lock; a critical write needs a write lock", ErrLock, ref)
	}
	return s.repair(ctx, o, name, h)
}

func lockError(err error) error {
	if errors.Is(err, lock.ErrNotHolder) || errors.Is(err, lock.ErrNotFound) {
		return fmt.Errorf("%w: %w", ErrLock, err)
	}
	return err
}

func (s *Store) atomic(ctx context.Context, o *op, f func(*holder) error) error {
	name, err := o.rowLockName()
	if err != nil {
		return err
	}
	r, err := s.locks.Create(ctx, name, lock.Write, "atomic", s.AtomicLease)
	if err != nil {
		return err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := s.locks.Release(rctx, r.String()); err != nil {
			s.log.Warn("atomic operation could not release its lock", zap.String("lock", r.String()), zap.Error(err))
		}
	}()
	wctx, cancel := context.WithTimeout(ctx, s.AtomicWait)
	defer cancel()
	lh, err := s.locks.Wait(wctx, r.String())
	if err != nil {
		return lockError(err)
	}
	h, err := s.repair(ctx, o, name, lh)
	if err != nil {
		return err
	}
	return f(h)
}

// repair brings a key whose previous holder was released by force up to date: it reads
// the partition at QUORUM and rewrites it under h's timestamp, then marks the lock synced.
func (s *Store) repair(ctx context.Context, o *op, name string, lh lock.Holding) (*holder, error) {
	h := &holder{lh}
	if !lh.Unsynced {
		return h, nil
	}
	key := map[string]any{}
	src := o.key
	if o.kind == opInsert {
		src = o.values
	}
	for _, c := range o.t.partition {
		key[c] = src[c]
	}
	rows, err := s.read(ctx, &op{kind: opSelect, t: o.t, key: key, limit: MaxRows}, true)
	if err != nil {
		return nil, fmt.Errorf("repair %s: %w", name, err)
	}
	ts := h.Timestamp(h.Created)
	for _, row := range rows {
		vals := map[string]any{}
		for c, v := range row {
			if v != nil {
				vals[c] = v
			}
		}
		cql, args := writeCQL(&op{kind: opInsert, t: o.t, values: vals}, ts, false)
		if err := s.sess.Query(cql, args...).WithContext(ctx).Consistency(consistency(true)).Exec(); err != nil {
			return nil, classify("repair "+name, err)
		}
	}
	s.log.Info("repaired key after a forced lock release", zap.String("lock", name), zap.Int("rows", len(rows)))
	return h, s.locks.MarkSynced(ctx, name)
}
