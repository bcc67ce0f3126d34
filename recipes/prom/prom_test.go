package prom_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/music-coord/music/internal/testenv"
	"github.com/music-coord/music/recipes/prom"
)

const table = "bank.accounts"

func TestUseOwnedAndOwner(t *testing.T) {
	root, zk := testenv.ZKRoot(t), testenv.ZooKeeper(t)
	a := newSite(t, "A", root, zk, prom.Options{})
	var acquired []prom.Ownership
	a.OnAcquire(func(_ context.Context, now, prev prom.Ownership) error {
		if prev != (prom.Ownership{}) {
			t.Errorf("first acquisition: prev = %+v, want zero", prev)
		}
		acquired = append(acquired, now)
		return nil
	})
	o, release := use(t, a, table, 5*time.Second)
	if got, want := o.Site, "A"; got != want {
		t.Fatalf("owner = %q, want %q", got, want)
	}
	start := time.Now()
	o2, release2 := use(t, a, table, time.Second) // owned: no ZooKeeper round trip
	if d := time.Since(start); d > 5*time.Millisecond {
		t.Errorf("Use of an owned resource took %s", d)
	}
	release()
	release2()
	release2() // idempotent
	if o2 != o || len(acquired) != 1 {
		t.Fatalf("second use: %+v (acquisitions %d), want %+v once", o2, len(acquired), o)
	}
	got, ok, err := a.Owner(context.Background(), table)
	if err != nil || !ok || got != o {
		t.Fatalf("Owner = %+v, %v, %v; want %+v", got, ok, err, o)
	}
	if owned := a.Owned(); len(owned) != 1 || owned[0] != o {
		t.Fatalf("Owned = %+v", owned)
	}
	if _, ok, _ := a.Owner(context.Background(), "bank.other"); ok {
		t.Fatal("Owner of an unused resource: ok")
	}
	if _, _, err := a.Use(context.Background(), "a/b"); !errors.Is(err, prom.ErrName) {
		t.Fatalf("Use(a/b) = %v, want ErrName", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := a.Owner(context.Background(), table); ok {
		t.Fatal("owner after Close")
	}
	if _, _, err := a.Use(context.Background(), table); !errors.Is(err, prom.ErrClosed) {
		t.Fatalf("Use after Close = %v, want ErrClosed", err)
	}
}

func TestMoveOnDemand(t *testing.T) {
	root, zk := testenv.ZKRoot(t), testenv.ZooKeeper(t)
	opt := prom.Options{MinHold: 20 * time.Millisecond}
	a, b := newSite(t, "A", root, zk, opt), newSite(t, "B", root, zk, opt)
	var yielded atomic.Int32
	a.BeforeYield(func(prom.Ownership) { yielded.Add(1) })
	var prev prom.Ownership
	b.OnAcquire(func(_ context.Context, _, p prom.Ownership) error { prev = p; return nil })

	oa, release := use(t, a, table, 5*time.Second)
	release()
	time.Sleep(opt.MinHold)
	start := time.Now()
	ob, release := use(t, b, table, 5*time.Second)
	moved := time.Since(start)
	release()
	t.Logf("move A->B took %s", moved)
	if moved > opt.MinHold+200*time.Millisecond {
		t.Errorf("move took %s", moved)
	}
	if ob.Site != "B" || ob.Fence <= oa.Fence || prev != oa || yielded.Load() != 1 {
		t.Fatalf("B got %+v with prev %+v (A had %+v), yields %d", ob, prev, oa, yielded.Load())
	}
	if owned := a.Owned(); len(owned) != 0 {
		t.Fatalf("A still owns %+v", owned)
	}

	// A restarted (a new Manager, same site name) asks B back: the fence grows again.
	a.Close()
	a2 := newSite(t, "A", root, zk, opt)
	oa2, release := use(t, a2, table, 5*time.Second)
	release()
	if oa2.Site != "A" || oa2.Fence <= ob.Fence {
		t.Fatalf("A after restart got %+v, B had %+v", oa2, ob)
	}
}

func TestInFlightUseBlocksYield(t *testing.T) {
	root, zk := testenv.ZKRoot(t), testenv.ZooKeeper(t)
	a, b := newSite(t, "A", root, zk, prom.Options{}), newSite(t, "B", root, zk, prom.Options{})
	_, release := use(t, a, table, 5*time.Second)
	got := make(chan prom.Ownership)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		o, r, err := b.Use(ctx, table)
		if err != nil {
			t.Error(err)
			close(got)
			return
		}
		r()
		got <- o
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case o := <-got:
		t.Fatalf("B acquired %+v while A's use was in flight", o)
	default:
	}
	// A drains: its new uses wait (and would ask for the resource back).
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, _, err := a.Use(ctx, table)
	cancel()
	var busy *prom.BusyError
	if !errors.As(err, &busy) {
		t.Fatalf("A's new use while draining: %v, want BusyError", err)
	}
	ended := time.Now()
	release()
	if o := <-got; o.Site != "B" {
		t.Fatalf("B got %+v", o)
	}
	t.Logf("B acquired %s after A's use ended", time.Since(ended))
}

func TestBusyError(t *testing.T) {
	root, zk := testenv.ZKRoot(t), testenv.ZooKeeper(t)
	a, b := newSite(t, "A", root, zk, prom.Options{}), newSite(t, "B", root, zk, prom.Options{})
	_, release := use(t, a, table, 5*time.Second)
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	_, _, err := b.Use(ctx, table)
	var busy *prom.BusyError
	if !errors.As(err, &busy) {
		t.Fatalf("Use = %v, want *BusyError", err)
	}
	if busy.Owner != "A" || busy.Resource != table || busy.Waited < 150*time.Millisecond ||
		!errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("BusyError = %+v", busy)
	}
	t.Log(err)
	// B gave up its request: A admits uses again instead of draining for nobody.
	_, release2 := use(t, a, table, time.Second)
	release2()
}

func TestOnAcquireErrorAborts(t *testing.T) {
	root, zk := testenv.ZKRoot(t), testenv.ZooKeeper(t)
	a, b, c := newSite(t, "A", root, zk, prom.Options{}), newSite(t, "B", root, zk, prom.Options{}),
		newSite(t, "C", root, zk, prom.Options{})
	oa, release := use(t, a, table, 5*time.Second)
	release()
	catchUp := errors.New("catch-up failed")
	b.OnAcquire(func(context.Context, prom.Ownership, prom.Ownership) error { return catchUp })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := b.Use(ctx, table); !errors.Is(err, catchUp) {
		t.Fatalf("Use = %v, want the OnAcquire error", err)
	}
	var prev prom.Ownership
	c.OnAcquire(func(_ context.Context, _, p prom.Ownership) error { prev = p; return nil })
	oc, release := use(t, c, table, 5*time.Second)
	release()
	if prev != oa || oc.Site != "C" {
		t.Fatalf("C got %+v with prev %+v, want prev %+v (the aborted B is no owner)", oc, prev, oa)
	}
}

func TestFailover(t *testing.T) {
	root, zk := testenv.ZKRoot(t), testenv.ZooKeeper(t)
	opt := prom.Options{Lease: time.Second}
	a, b := newSite(t, "A", root, zk, opt), newSite(t, "B", root, zk, opt)
	oa, release := use(t, a, table, 5*time.Second)
	release()
	var prev prom.Ownership
	b.OnAcquire(func(_ context.Context, _, p prom.Ownership) error { prev = p; return nil })
	a.conn.Close() // A's process dies: no Close, no renewal
	start := time.Now()
	ob, release := use(t, b, table, 10*time.Second)
	release()
	took := time.Since(start)
	t.Logf("failover took %s (lease %s)", took, opt.Lease)
	if took > opt.Lease+500*time.Millisecond {
		t.Errorf("failover took %s", took)
	}
	if ob.Site != "B" || ob.Fence <= oa.Fence || prev != oa {
		t.Fatalf("B got %+v with prev %+v, A had %+v", ob, prev, oa)
	}
}

func TestPartitionedOwnerLearnsItLost(t *testing.T) {
	root, zk := testenv.ZKRoot(t), testenv.ZooKeeper(t)
	px := newProxy(t)
	opt := prom.Options{Lease: time.Second}
	a, b := newSite(t, "A", root, px.addr(), opt), newSite(t, "B", root, zk, opt)
	lostCh := make(chan prom.Ownership, 1)
	a.OnLost(func(o prom.Ownership) { lostCh <- o })
	oa, release := use(t, a, table, 5*time.Second)
	release()

	px.partition()
	cut := time.Now()
	select {
	case o := <-lostCh:
		t.Logf("A learned it lost after %s", time.Since(cut))
		if o != oa {
			t.Fatalf("lost %+v, want %+v", o, oa)
		}
	case <-time.After(3 * opt.Lease):
		t.Fatal("A not told it lost")
	}
	if since := time.Since(cut); since > opt.Lease {
		t.Errorf("A claimed ownership for %s after the partition", since)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	if o, _, err := a.Use(ctx, table); err == nil {
		t.Fatalf("partitioned A admitted a use on %+v", o)
	}
	cancel()
	if owned := a.Owned(); len(owned) != 0 {
		t.Fatalf("partitioned A reports %+v", owned)
	}
	ob, release := use(t, b, table, 10*time.Second)
	release()
	t.Logf("B took over after %s", time.Since(cut))
	if ob.Fence <= oa.Fence {
		t.Fatalf("fence %d after %d", ob.Fence, oa.Fence)
	}

	px.heal()
	oa2, release := use(t, a, table, 20*time.Second)
	release()
	if oa2.Site != "A" || oa2.Fence <= ob.Fence {
		t.Fatalf("A after the partition got %+v, B had %+v", oa2, ob)
	}
}

// TestMutualExclusion runs uses at three sites for two seconds: a use of one site never
// overlaps a use of another, fences never go back, and ownership moves many times; in
// the second case site C's process dies half-way, possibly while it owns the resource.
func TestMutualExclusion(t *testing.T) {
	for _, tc := range []struct {
		name string
		kill bool
	}{{"on demand", false}, {"owner dies", true}} {
		t.Run(tc.name, func(t *testing.T) { testMutualExclusion(t, tc.kill) })
	}
}

func testMutualExclusion(t *testing.T, kill bool) {
	root, zk := testenv.ZKRoot(t), testenv.ZooKeeper(t)
	opt := prom.Options{MinHold: 5 * time.Millisecond, Lease: time.Second}
	var (
		mu        sync.Mutex
		inSection = map[string]int{}
		lastFence int64
		lastSite  string
		moves     int
		uses      atomic.Int64
		counter   int64
		lastEntry time.Time
		maxGap    time.Duration
	)
	enter := func(o prom.Ownership) error {
		mu.Lock()
		defer mu.Unlock()
		if !lastEntry.IsZero() {
			maxGap = max(maxGap, time.Since(lastEntry))
		}
		lastEntry = time.Now()
		for s, n := range inSection {
			if s != o.Site && n > 0 {
				return fmt.Errorf("%s entered with fence %d while %s had %d uses in flight", o.Site, o.Fence, s, n)
			}
		}
		if o.Fence < lastFence || o.Site != lastSite && o.Fence == lastFence {
			return fmt.Errorf("%s entered with fence %d after %s's %d", o.Site, o.Fence, lastSite, lastFence)
		}
		if o.Site != lastSite {
			moves++
		}
		lastFence, lastSite = o.Fence, o.Site
		inSection[o.Site]++
		counter++
		return nil
	}
	leave := func(o prom.Ownership) {
		mu.Lock()
		defer mu.Unlock()
		inSection[o.Site]--
	}
	var wg sync.WaitGroup
	var killed atomic.Bool
	start := time.Now()
	stop := start.Add(2 * time.Second)
	for _, name := range []string{"A", "B", "C"} {
		s := newSite(t, name, root, zk, opt)
		for range 4 {
			wg.Go(func() {
				for time.Now().Before(stop) {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					o, release, err := s.Use(ctx, table)
					cancel()
					if err != nil {
						if !(name == "C" && killed.Load()) {
							t.Errorf("%s: %v", name, err)
						}
						return
					}
					err = enter(o)
					if kill && name == "C" && time.Since(start) > time.Second && killed.CompareAndSwap(false, true) {
						s.conn.Close() // dies while owning, uses in flight; they go on until the lease runs out
						t.Logf("C died at %s owning fence %d", time.Since(start).Round(time.Millisecond), o.Fence)
					}
					time.Sleep(200 * time.Microsecond)
					if err == nil {
						leave(o)
					}
					release()
					uses.Add(1)
					if err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	t.Logf("%d uses, %d moves between sites in %s; longest pause %s", uses.Load(), moves,
		time.Since(start).Round(time.Millisecond), maxGap)
	if moves < 5 || counter != uses.Load() || kill && !killed.Load() {
		t.Fatalf("moves %d, counter %d, uses %d", moves, counter, uses.Load())
	}
}

func TestCloseWaitsForUsesAndReleases(t *testing.T) {
	root, zk := testenv.ZKRoot(t), testenv.ZooKeeper(t)
	a := newSite(t, "A", root, zk, prom.Options{})
	var yielded []prom.Ownership
	a.BeforeYield(func(o prom.Ownership) { yielded = append(yielded, o) })
	o, release := use(t, a, table, 5*time.Second)
	closed := make(chan struct{})
	go func() { _ = a.Close(); close(closed) }()
	time.Sleep(100 * time.Millisecond)
	select {
	case <-closed:
		t.Fatal("Close returned while a use was in flight")
	default:
	}
	release()
	<-closed
	if len(yielded) != 1 || yielded[0] != o {
		t.Fatalf("BeforeYield got %+v, want [%+v]", yielded, o)
	}
	if got, ok, err := a.Owner(context.Background(), table); ok || err != nil {
		t.Fatalf("owner after Close: %+v %v", got, err)
	}
}

func TestHandler(t *testing.T) {
	root, zk := testenv.ZKRoot(t), testenv.ZooKeeper(t)
	a := newSite(t, "A", root, zk, prom.Options{})
	o, release := use(t, a, table, 5*time.Second)
	release()
	srv := httptest.NewServer(prom.Handler(a.Manager))
	defer srv.Close()
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/MUSIC/rest/v2/prom/" + table, 200, fmt.Sprintf(`{"fence":%d,"owner":"A","resource":"bank.accounts","since":%q}`,
			o.Fence, o.Since.UTC().Format(time.RFC3339Nano))},
		{"/MUSIC/rest/v2/prom/bank.none", 404, `{"error":"no owner","resource":"bank.none"}`},
		{"/MUSIC/rest/v2/prom", 200, fmt.Sprintf(`{"owned":[{"fence":%d,"owner":"A","resource":"bank.accounts","since":%q}],"site":"A"}`,
			o.Fence, o.Since.UTC().Format(time.RFC3339Nano))},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, err := http.Get(srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body any
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(body)
			if resp.StatusCode != tc.code || string(got) != tc.want {
				t.Fatalf("GET %s = %d %s, want %d %s", tc.path, resp.StatusCode, got, tc.code, tc.want)
			}
		})
	}
}

func BenchmarkUseOwned(b *testing.B) {
	root, zk := testenv.ZKRoot(b), testenv.ZooKeeper(b)
	a := newSite(b, "A", root, zk, prom.Options{})
	_, release := use(b, a, table, 5*time.Second)
	release()
	for b.Loop() {
		_, release, err := a.Use(context.Background(), table)
		if err != nil {
			b.Fatal(err)
		}
		release()
	}
}

// BenchmarkMove moves the resource back and forth between two idle sites.
func BenchmarkMove(b *testing.B) {
	root, zk := testenv.ZKRoot(b), testenv.ZooKeeper(b)
	opt := prom.Options{MinHold: time.Nanosecond}
	sites := []*site{newSite(b, "A", root, zk, opt), newSite(b, "B", root, zk, opt)}
	i := 0
	for b.Loop() {
		_, release := use(b, sites[i%2], table, 5*time.Second)
		release()
		i++
	}
}

// BenchmarkZooKeeperRoundTrip is the unit the costs above are counted in.
func BenchmarkZooKeeperRoundTrip(b *testing.B) {
	conn := connect(b, testenv.ZooKeeper(b))
	for b.Loop() {
		if _, _, err := conn.Get("/"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkZooKeeperWrite is a write's round trip (the server syncs its log).
func BenchmarkZooKeeperWrite(b *testing.B) {
	root := testenv.ZKRoot(b)
	conn := connect(b, testenv.ZooKeeper(b))
	for b.Loop() {
		if _, err := conn.Set(root, nil, -1); err != nil {
			b.Fatal(err)
		}
	}
}
