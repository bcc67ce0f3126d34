package lock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/music-coord/music/internal/testenv"
)

func newService(t *testing.T, opts ...Option) *Service {
	t.Helper()
	s, err := New(testenv.ZKConnect(t), testenv.ZKRoot(t)+"/locks", opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParse(t *testing.T) {
	for in, ok := range map[string]bool{
		"ks.tb.key": true, "ks.tb.a.b/c": true, "ks.tb.": false, "ks..k": false,
		"k-s.tb.k": false, "ks": false, "1ks.tb.k": false,
	} {
		if _, err := ParseName(in); (err == nil) != ok {
			t.Errorf("ParseName(%q) = %v, want ok=%v", in, err, ok)
		}
	}
	r, err := ParseRef("$ks.tb.a$b$42")
	if err != nil || r.Seq != 42 || r.Name.Key != "a$b" {
		t.Fatalf("ParseRef = %+v, %v", r, err)
	}
	for _, bad := range []string{"ks.tb.k$1", "$ks.tb.k$", "$ks.tb.k$-1", "$$1"} {
		if _, err := ParseRef(bad); !errors.Is(err, ErrBadRef) {
			t.Errorf("ParseRef(%q) = %v, want ErrBadRef", bad, err)
		}
	}
}

func TestQueue(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	a, err := s.Create(ctx, "ks.tb.k1", Write, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.Create(ctx, "ks.tb.k1", Write, "b", 0)
	if b.Seq <= a.Seq {
		t.Fatalf("sequence not increasing: %d then %d", a.Seq, b.Seq)
	}
	if _, err := s.Acquire(ctx, a.String()); err != nil {
		t.Fatalf("head: %v", err)
	}
	var he *HolderError
	if _, err := s.Acquire(ctx, b.String()); !errors.As(err, &he) || he.Holder[0] != a.String() {
		t.Fatalf("second: %v, want HolderError naming %s", err, a)
	}
	if h, err := s.Enquire(ctx, "ks.tb.k1"); err != nil || h != a.String() {
		t.Fatalf("Enquire = %q, %v", h, err)
	}
	if err := s.Release(ctx, a.String()); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, a.String()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("double release: %v", err)
	}
	if _, err := s.Acquire(ctx, b.String()); err != nil {
		t.Fatalf("after release: %v", err)
	}
	_ = s.Release(ctx, b.String())
	if _, err := s.Holders(ctx, "ks.tb.k1"); !errors.Is(err, ErrNoHolder) {
		t.Fatalf("empty Holders: %v", err)
	}
	c, _ := s.Create(ctx, "ks.tb.k1", Write, "c", 0)
	if c.Seq <= b.Seq {
		t.Fatalf("sequence reused after release: %d then %d", b.Seq, c.Seq)
	}
}

func TestReadLocks(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	r1, _ := s.Create(ctx, "ks.tb.r", Read, "", 0)
	r2, _ := s.Create(ctx, "ks.tb.r", Read, "", 0)
	w, _ := s.Create(ctx, "ks.tb.r", Write, "", 0)
	r3, _ := s.Create(ctx, "ks.tb.r", Read, "", 0)
	for _, r := range []Ref{r1, r2} {
		if _, err := s.Acquire(ctx, r.String()); err != nil {
			t.Fatalf("reader %s: %v", r, err)
		}
	}
	for _, r := range []Ref{w, r3} {
		if _, err := s.Acquire(ctx, r.String()); !errors.Is(err, ErrNotHolder) {
			t.Fatalf("%s behind readers/writer: %v", r, err)
		}
	}
	h, _ := s.Holders(ctx, "ks.tb.r")
	if len(h) != 2 {
		t.Fatalf("holders = %v, want the two readers", h)
	}
	_ = s.Release(ctx, r1.String())
	_ = s.Release(ctx, r2.String())
	if _, err := s.Acquire(ctx, w.String()); err != nil {
		t.Fatalf("writer: %v", err)
	}
}

// Many clients contend for one write lock; no two are ever inside at once.
func TestMutualExclusion(t *testing.T) {
	s := newService(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var inside, maxInside, total atomic.Int32
	var wg sync.WaitGroup
	for c := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 4 {
				r, err := s.Create(ctx, "ks.tb.hot", Write, fmt.Sprint(c), 0)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := s.Wait(ctx, r.String()); err != nil {
					t.Error(err)
					return
				}
				n := inside.Add(1)
				if n > maxInside.Load() {
					maxInside.Store(n)
				}
				total.Add(1)
				time.Sleep(time.Millisecond)
				inside.Add(-1)
				if err := s.Release(ctx, r.String()); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if got := maxInside.Load(); got != 1 {
		t.Fatalf("%d holders inside at once, want 1", got)
	}
	if total.Load() != 48 {
		t.Fatalf("%d critical sections, want 48", total.Load())
	}
}

func TestLeaseExpiryForcesRelease(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	a, _ := s.Create(ctx, "ks.tb.lease", Write, "a", 300*time.Millisecond)
	b, _ := s.Create(ctx, "ks.tb.lease", Write, "b", 0)
	ha, err := s.Acquire(ctx, a.String())
	if err != nil || ha.Unsynced {
		t.Fatalf("a: %+v %v", ha, err)
	}
	if _, err := s.Acquire(ctx, b.String()); !errors.Is(err, ErrNotHolder) {
		t.Fatalf("b before expiry: %v", err)
	}
	var hb Holding
	testenv.Eventually(t, 5*time.Second, func() error {
		hb, err = s.Acquire(ctx, b.String())
		return err
	})
	if !hb.Unsynced {
		t.Fatal("b holds after a forced release but the key is not marked unsynced")
	}
	if hb.Timestamp(time.Now()) <= ha.Timestamp(time.Now().Add(time.Hour)) {
		t.Fatal("later holder's timestamp is not above the earlier holder's")
	}
	if _, err := s.Check(ctx, a.String()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("stale holder check: %v, want ErrNotFound", err)
	}
	if err := s.MarkSynced(ctx, "ks.tb.lease"); err != nil {
		t.Fatal(err)
	}
	if hb, _ = s.Check(ctx, b.String()); hb.Unsynced {
		t.Fatal("still unsynced after MarkSynced")
	}
}

func TestReaper(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	for i := range 3 {
		if _, err := s.Create(ctx, fmt.Sprintf("ks.tb.k%d", i), Write, "", 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	keep, _ := s.Create(ctx, "ks.tb.keep", Write, "", -1)
	time.Sleep(200 * time.Millisecond)
	n, err := s.Reap(ctx)
	if err != nil || n != 3 {
		t.Fatalf("Reap = %d, %v; want 3", n, err)
	}
	if _, err := s.Acquire(ctx, keep.String()); err != nil {
		t.Fatalf("lease-less reference reaped: %v", err)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r, _ := s.Create(ctx, "ks.tb.bg", Write, "", 100*time.Millisecond)
	go s.RunReaper(rctx, 50*time.Millisecond)
	testenv.Eventually(t, 5*time.Second, func() error {
		if _, err := s.Check(ctx, r.String()); !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
}

func TestDelete(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	a, _ := s.Create(ctx, "ks.tb.d", Write, "", 0)
	if err := s.Delete(ctx, "ks.tb.d"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Acquire(ctx, a.String()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after Delete: %v", err)
	}
	b, _ := s.Create(ctx, "ks.tb.d", Write, "", 0)
	h, err := s.Acquire(ctx, b.String())
	if err != nil || !h.Unsynced || b.Seq <= a.Seq {
		t.Fatalf("after Delete: %+v %v (seq %d then %d)", h, err, a.Seq, b.Seq)
	}
}

func TestHeldCacheTrust(t *testing.T) {
	now := time.Now()
	r := Ref{Name: Name{"ks", "tb", "k"}, Seq: 1}
	for name, tc := range map[string]struct {
		verified  time.Time
		expires   time.Time // zero: no lease
		fire      bool
		connected bool
		want      bool
	}{
		"fresh":             {verified: now, expires: now.Add(time.Minute), connected: true, want: true},
		"no lease":          {verified: now, connected: true, want: true},
		"too old":           {verified: now.Add(-2 * time.Second), connected: true},
		"lease near expiry": {verified: now, expires: now.Add(500 * time.Millisecond), connected: true},
		"watch fired":       {verified: now, fire: true, connected: true},
		"disconnected":      {verified: now},
	} {
		t.Run(name, func(t *testing.T) {
			c := heldCache{ttl: time.Second}
			w := make(chan zk.Event, 1)
			var exp int64
			if !tc.expires.IsZero() {
				exp = tc.expires.UnixMilli()
			}
			c.put(owned{Holding: Holding{Ref: r}, lease: lease{LeaseMS: 60000, Expires: exp}, watch: w}, tc.verified)
			if tc.fire {
				w <- zk.Event{Type: zk.EventNodeDeleted}
				close(w)
			}
			if _, got, _ := c.get(r, now, tc.connected); got != tc.want {
				t.Fatalf("trusted = %v, want %v", got, tc.want)
			}
		})
	}
}

// A holding cached by one server is dropped when another server releases the reference
// and a new holder takes the lock: the stale holder's check fails.
func TestCheckCacheSeesReleaseElsewhere(t *testing.T) {
	root := testenv.ZKRoot(t) + "/locks"
	s1, err := New(testenv.ZKConnect(t), root, WithCheckCache(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	s2, err := New(testenv.ZKConnect(t), root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, _ := s1.Create(ctx, "ks.tb.c", Write, "a", -1) // no lease
	if _, err := s1.Acquire(ctx, a.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Check(ctx, a.String()); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s1.held.get(a, time.Now(), true); !ok {
		t.Fatal("verified holding not cached")
	}
	if err := s2.Release(ctx, a.String()); err != nil {
		t.Fatal(err)
	}
	b, _ := s2.Create(ctx, "ks.tb.c", Write, "b", 0)
	if _, err := s2.Acquire(ctx, b.String()); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 2*time.Second, func() error {
		if _, err := s1.Check(ctx, a.String()); !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("stale holder's check: %v, want ErrNotFound", err)
		}
		return nil
	})
	if _, err := s1.Check(ctx, b.String()); err != nil {
		t.Fatalf("new holder: %v", err)
	}
	if err := s1.Release(ctx, b.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Check(ctx, b.String()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("check right after a local release: %v, want ErrNotFound", err)
	}
}

// Acquire writes the lease only when a renewal is due or the period changes.
func TestAcquireRenewsWhenDue(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	a, _ := s.Create(ctx, "ks.tb.renew", Write, "", time.Minute)
	version := func() int32 {
		_, st, err := s.conn.Get(s.refPath(a, Write))
		if err != nil {
			t.Fatal(err)
		}
		return st.Version
	}
	for _, step := range []struct {
		d    time.Duration
		want int32
	}{{0, 0}, {time.Minute, 0}, {2 * time.Minute, 1}, {0, 1}} {
		if _, err := s.AcquireWithLease(ctx, a.String(), step.d); err != nil {
			t.Fatal(err)
		}
		if got := version(); got != step.want {
			t.Fatalf("after acquire with lease %v: lease version %d, want %d", step.d, got, step.want)
		}
	}
	s.now = func() time.Time { return time.Now().Add(30 * time.Second) }
	if _, err := s.Acquire(ctx, a.String()); err != nil || version() != 2 {
		t.Fatalf("due renewal: %v, version %d, want 2", err, version())
	}
}
