package apply

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestSchedulerKeepsRowOrderAndRunsDisjointRowsInParallel(t *testing.T) {
	s := newScheduler(16, 4)
	ctx := context.Background()
	var mu sync.Mutex
	var order []string
	record := func(name string, d time.Duration) func() {
		return func() {
			time.Sleep(d)
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
		}
	}
	// t1 and t3 share row x; t2 is disjoint and finishes first although submitted second.
	_ = s.submit(ctx, []string{"x"}, record("t1", 50*time.Millisecond))
	_ = s.submit(ctx, []string{"y"}, record("t2", 0))
	_ = s.submit(ctx, []string{"x", "z"}, record("t3", 0))
	// A transaction that touches one row twice must not wait for itself.
	_ = s.submit(ctx, []string{"w", "w"}, record("t4", 0))
	_ = s.submit(ctx, nil, record("barrier", 0))
	_ = s.submit(ctx, []string{"y"}, record("t5", 0))
	done := make(chan struct{})
	go func() { s.wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("scheduler stuck; ran %v", order)
	}
	pos := map[string]int{}
	for i, n := range order {
		pos[n] = i
	}
	if len(order) != 6 || pos["t1"] > pos["t3"] || pos["t2"] > pos["t1"] || pos["barrier"] < pos["t3"] ||
		pos["barrier"] < pos["t4"] || pos["t5"] < pos["barrier"] {
		t.Fatalf("order %v", order)
	}
}
