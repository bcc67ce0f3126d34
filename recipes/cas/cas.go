package cas

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/music-coord/music/consistency/lock"
	"github.com/music-coord/music/recipes/store"
)

var (
	// ErrBusy means the row's lock was not obtained within Config.Wait.
	ErrBusy = errors.New("cas: row lock not obtained in time")
	// ErrNoRow is what an update function returns when it needs the row and there is none.
	ErrNoRow = errors.New("cas: no such row")
)

// Locks is what CAS needs of the lock service.
type Locks interface {
	Create(ctx context.Context, name string, typ lock.Type, owner string, lease time.Duration) (lock.Ref, error)
	Wait(ctx context.Context, ref string) (lock.Holding, error)
	Release(ctx context.Context, ref string) error
}

var _ Locks = (*lock.Service)(nil)

// Config tunes CAS.
type Config struct {
	Wait  time.Duration // how long Swap waits for the row's lock (default 10s)
	Lease time.Duration // lease of the lock reference, bounding a crashed caller (default 30s)
}

// CAS runs compare-and-set operations on rows of MUSIC tables.
type CAS struct {
	store *store.Store
	locks Locks
	cfg   Config
	log   *zap.Logger
}

// New returns a CAS on st, locking rows with locks.
func New(st *store.Store, locks Locks, cfg Config, log *zap.Logger) *CAS {
	if cfg.Wait <= 0 {
		cfg.Wait = 10 * time.Second
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 30 * time.Second
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &CAS{store: st, locks: locks, cfg: cfg, log: log}
}

// Row names one row: its table and its key (at least the first primary key column).
type Row struct {
	Keyspace, Table string
	Key             map[string]any
}

// Change is what an update function decides to write. Insert writes a whole row (it must
// hold the key); Update sets columns of the row named by Row.Key. Both empty writes
// nothing.
type Change struct {
	Insert map[string]any
	Update map[string]any
}

// Swap reads row at quorum while holding its MUSIC lock, calls f with the row (nil when
// there is none) and writes f's change at quorum under the same lock, so no other
// critical, atomic or CAS operation on the row comes in between. It returns f's error
// unchanged and writes nothing then; ErrBusy when the lock did not come within
// Config.Wait; store errors otherwise. f may run at most once.
func (c *CAS) Swap(ctx context.Context, row Row, f func(cur map[string]any) (Change, error)) error {
	name, err := c.store.LockName(ctx, row.Keyspace, row.Table, row.Key)
	if err != nil {
		return err
	}
	ref, err := c.lock(ctx, name)
	if err != nil {
		return err
	}
	defer c.release(ctx, ref)
	rows, err := c.store.Select(ctx, store.Query{Keyspace: row.Keyspace, Table: row.Table, Key: row.Key,
		Limit: 1, Mode: store.Critical, LockRef: ref})
	if err != nil {
		return err
	}
	var cur map[string]any
	if len(rows) > 0 {
		cur = rows[0]
	}
	ch, err := f(cur)
	if err != nil {
		return err
	}
	return c.write(ctx, row, ref, ch)
}

func (c *CAS) write(ctx context.Context, row Row, ref string, ch Change) error {
	w := store.Write{Keyspace: row.Keyspace, Table: row.Table, Mode: store.Critical, LockRef: ref}
	if len(ch.Insert) > 0 {
		w.Values = ch.Insert
		if err := c.store.Insert(ctx, w); err != nil {
			return err
		}
	}
	if len(ch.Update) > 0 {
		w.Values, w.Key = ch.Update, row.Key
		return c.store.Update(ctx, w)
	}
	return nil
}

func (c *CAS) lock(ctx context.Context, name string) (string, error) {
	r, err := c.locks.Create(ctx, name, lock.Write, "cas", c.cfg.Lease)
	if err != nil {
		return "", err
	}
	ref := r.String()
	wctx, cancel := context.WithTimeout(ctx, c.cfg.Wait)
	defer cancel()
	if _, err := c.locks.Wait(wctx, ref); err != nil {
		c.release(ctx, ref)
		if errors.Is(err, lock.ErrTimeout) && ctx.Err() == nil {
			return "", fmt.Errorf("%w: %s", ErrBusy, name)
		}
		return "", err
	}
	return ref, nil
}

func (c *CAS) release(ctx context.Context, ref string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := c.locks.Release(rctx, ref); err != nil && !errors.Is(err, lock.ErrNotFound) {
		c.log.Warn("cas: could not release row lock", zap.String("lock", ref), zap.Error(err))
	}
}
