package apply

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/music-coord/music/changeevent"
)

// A transaction that touches one row twice must not wait for itself.
func TestSchedulerTransactionTouchingARowTwice(t *testing.T) {
	s := newScheduler(4, 2)
	ran := make(chan struct{})
	if err := s.submit(context.Background(), []string{"w", "w"}, func() { close(ran) }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("the transaction waits for itself")
	}
}

// A schema change is remembered until done: waitSchema returns only then, and keyed
// transactions submitted after it still wait for it (a barrier).
func TestSchedulerWaitSchema(t *testing.T) {
	s := newScheduler(8, 4)
	ctx := context.Background()
	if err := s.waitSchema(ctx); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	ddl := &Txn{Events: []*changeevent.Event{{Op: changeevent.OpDDL}}}
	if err := s.submitTxn(ctx, ddl, nil, func() { <-release }); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- s.waitSchema(ctx) }()
	select {
	case <-waited:
		t.Fatal("waitSchema returned before the schema change was done")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	select {
	case err := <-waited:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waitSchema still waiting after the schema change")
	}
	s.wait()
	s.mu.Lock()
	remembered := s.schema != nil
	s.mu.Unlock()
	if remembered {
		t.Fatal("a done schema change is still remembered")
	}
	// A cancelled wait returns the context's error.
	block := make(chan struct{})
	defer close(block)
	if err := s.submitTxn(ctx, ddl, nil, func() { <-block }); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := s.waitSchema(cctx); err == nil {
		t.Fatal("waitSchema returned nil for a schema change still running")
	}
}

// Transactions sharing an order key (an OrderHinter's, e.g. a foreign key group) run in
// submission order although their rows differ; others run beside them.
func TestSchedulerOrderKeysSerialise(t *testing.T) {
	s := newScheduler(16, 4)
	ctx := context.Background()
	release := make(chan struct{})
	var order []int
	var mu sync.Mutex
	note := func(i int) func() {
		return func() {
			if i == 0 {
				<-release
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		}
	}
	for i, keys := range [][]string{{"d.parent\x00[1]", "fk:g"}, {"d.child\x00[10]", "fk:g"}, {"d.other\x00[1]"}} {
		if err := s.submit(ctx, keys, note(i)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(order)
		mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the unrelated transaction did not run beside the group")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	s.wait()
	if fmt.Sprint(order) != "[2 0 1]" {
		t.Fatalf("order %v, want [2 0 1]", order)
	}
}
