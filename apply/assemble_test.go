package apply

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/music-coord/music/changeevent"
)

func ev(id string, index, total int) *changeevent.Event {
	return &changeevent.Event{Transaction: changeevent.Transaction{ID: id, Index: index, Total: total}}
}

func TestAssemblerCompletesInAnyOrderAndSpotsDuplicates(t *testing.T) {
	a := newAssembler(10)
	if evs, _, dup := a.add(ev("t1", 1, 2), 11); evs != nil || dup {
		t.Fatal("complete after one of two events")
	}
	if _, _, dup := a.add(ev("t1", 1, 2), 12); !dup {
		t.Fatal("same index twice not a duplicate")
	}
	evs, seqs, _ := a.add(ev("t1", 0, 2), 10)
	if len(evs) != 2 || evs[0].Transaction.Index != 0 || len(seqs) != 2 {
		t.Fatalf("events %v seqs %v, want both in index order", evs, seqs)
	}
	if _, _, dup := a.add(ev("t1", 0, 2), 13); !dup {
		t.Fatal("event of a finished transaction not a duplicate")
	}
}

func TestTrackerAcksEachDoneMessage(t *testing.T) {
	var acked []uint64
	tr := newTracker(nil)
	tr.ack = func(seq uint64, _ jetstream.Msg) { acked = append(acked, seq) }
	for _, s := range []uint64{1, 2, 3, 4} {
		tr.add(s, nil)
	}
	tr.complete(2, 3)
	if len(acked) != 2 || acked[0] != 2 || acked[1] != 3 {
		t.Fatalf("acked %v, want [2 3]: each done message, not a floor", acked)
	}
	if tr.add(4, nil) {
		t.Fatal("a held message was taken again")
	}
	if !tr.add(3, nil) {
		t.Fatal("a redelivery of an acknowledged message (its ack lost) must be taken again")
	}
	tr.complete(1, 3, 4)
	if len(acked) != 5 || tr.held() != 0 {
		t.Fatalf("acked %v, held %d", acked, tr.held())
	}
}

func TestSchedulerKeepsPerKeyOrderAndBarriers(t *testing.T) {
	s := newScheduler(100, 4)
	ctx := context.Background()
	var mu sync.Mutex
	var order []string
	run := func(name string, d time.Duration) func() {
		return func() {
			time.Sleep(d)
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
		}
	}
	_ = s.submit(ctx, []string{"k1"}, run("a", 100*time.Millisecond))
	_ = s.submit(ctx, []string{"k2"}, run("b", 0))
	_ = s.submit(ctx, []string{"k1", "k3"}, run("c", 0))
	_ = s.submit(ctx, nil, run("ddl", 0))
	_ = s.submit(ctx, []string{"k4"}, run("d", 0))
	s.wait()
	pos := map[string]int{}
	for i, n := range order {
		pos[n] = i
	}
	if !(pos["b"] < pos["a"] && pos["a"] < pos["c"] && pos["c"] < pos["ddl"] && pos["ddl"] < pos["d"]) {
		t.Fatalf("order %v: want b before a (disjoint rows run in parallel), a before c (same row), ddl after all earlier, d after ddl", order)
	}
}
