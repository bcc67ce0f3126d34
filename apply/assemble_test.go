package apply

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/music-coord/music/changeevent"
)

func ev(id string, index, total int) *changeevent.Event {
	return &changeevent.Event{Op: changeevent.OpCreate, After: changeevent.Row{},
		Source:      changeevent.Source{Name: "x", GTID: "1-1-1", DB: "d", Table: "t"},
		Transaction: changeevent.Transaction{ID: id, Index: index, Total: total}}
}

// body encodes events as one message body (NDJSON).
func body(t testing.TB, events ...*changeevent.Event) []byte {
	t.Helper()
	var out []byte
	for i, e := range events {
		data, err := changeevent.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			out = append(out, '\n')
		}
		out = append(out, data...)
	}
	return out
}

// add files events as one message at seq.
func add(t testing.TB, a *assembler, seq uint64, events ...*changeevent.Event) (*assembled, bool, error) {
	t.Helper()
	done, _, _, dup, err := a.add(events, body(t, events...), []uint64{seq})
	return done, dup, err
}

func TestAssemblerCompletesInAnyOrderAndSpotsDuplicates(t *testing.T) {
	a := newAssembler(10)
	if done, dup, _ := add(t, a, 11, ev("t1", 1, 2)); done != nil || dup {
		t.Fatal("complete after one of two events")
	}
	if _, dup, _ := add(t, a, 12, ev("t1", 1, 2)); !dup {
		t.Fatal("same index twice not a duplicate")
	}
	done, _, _ := add(t, a, 10, ev("t1", 0, 2))
	if done == nil || len(done.events) != 2 || done.events[0].Transaction.Index != 0 || len(done.seqs) != 2 {
		t.Fatalf("assembled %+v, want both events in index order and 2 seqs", done)
	}
	if _, dup, _ := add(t, a, 13, ev("t1", 0, 2)); !dup {
		t.Fatal("event of a finished transaction not a duplicate")
	}
}

func TestAssemblerMultiEventMessages(t *testing.T) {
	a := newAssembler(10)
	// A whole transaction in one message.
	done, _, err := add(t, a, 1, ev("t1", 0, 3), ev("t1", 1, 3), ev("t1", 2, 3))
	if err != nil || done == nil || len(done.events) != 3 || len(done.seqs) != 1 {
		t.Fatalf("one-message transaction: %+v, %v", done, err)
	}
	// A transaction over three messages, the middle one delivered last.
	if done, _, _ := add(t, a, 2, ev("t2", 0, 5), ev("t2", 1, 5)); done != nil {
		t.Fatal("complete too early")
	}
	if done, _, _ := add(t, a, 4, ev("t2", 4, 5)); done != nil {
		t.Fatal("complete too early")
	}
	done, _, err = add(t, a, 3, ev("t2", 2, 5), ev("t2", 3, 5))
	if err != nil || done == nil || len(done.events) != 5 || len(done.seqs) != 3 {
		t.Fatalf("three-message transaction: %+v, %v", done, err)
	}
	for i, e := range done.events {
		if e.Transaction.Index != i {
			t.Fatalf("event %d has index %d", i, e.Transaction.Index)
		}
	}
	if _, err := NewTxn(done.events); err != nil {
		t.Fatal(err)
	}
}

// A streamed transaction: Total 0 on every event but the last, which carries Last and
// the total.
func TestAssemblerStreamedTransaction(t *testing.T) {
	a := newAssembler(10)
	const n = 2500
	var seq uint64
	for i := 0; i < n-1; i += 500 {
		var evs []*changeevent.Event
		for j := i; j < min(i+500, n-1); j++ {
			evs = append(evs, ev("big", j, 0))
		}
		seq++
		if done, _, err := add(t, a, seq, evs...); done != nil || err != nil {
			t.Fatalf("complete (%v) or refused (%v) before the last event", done != nil, err)
		}
	}
	last := ev("big", n-1, n)
	last.Transaction.Last = true
	done, _, err := add(t, a, seq+1, last)
	if err != nil || done == nil || len(done.events) != n || len(done.seqs) != int(seq+1) {
		t.Fatalf("streamed transaction: %v, %v", done != nil, err)
	}
	tx, err := NewTxn(done.events)
	if err != nil || len(tx.Events) != n {
		t.Fatalf("NewTxn: %v", err)
	}
	// The last event may come before a missing one (redelivery): still waits for it.
	b := newAssembler(10)
	l := ev("s", 2, 3)
	l.Transaction.Last = true
	if done, _, _ := add(t, b, 1, ev("s", 0, 0), l); done != nil {
		t.Fatal("complete with event 1 missing")
	}
	if done, _, _ := add(t, b, 2, ev("s", 1, 0)); done == nil || len(done.events) != 3 {
		t.Fatal("not complete with all three events")
	}
}

func TestAssemblerRefusesInconsistentTransactions(t *testing.T) {
	for name, evs := range map[string][]*changeevent.Event{
		"index beyond total": {ev("t", 0, 2), ev("t", 2, 2)},
		"totals differ":      {ev("t", 0, 2), ev("t", 1, 3)},
		"mixed ids":          {ev("t", 0, 2), ev("u", 1, 2)},
		"last without total": {ev("t", 0, 0), func() *changeevent.Event { e := ev("t", 1, 0); e.Transaction.Last = true; return e }()},
	} {
		a := newAssembler(10)
		done, p, _, _, err := a.add(evs, body(t, evs...), []uint64{7})
		if err == nil || done != nil || len(p.seqs) != 1 || p.tables[0] != "d.t" {
			t.Errorf("%s: err %v, want a refusal of d.t holding seq 7", name, err)
		}
		if _, dup, _ := add(t, a, 8, ev("t", 1, 2)); !dup {
			t.Errorf("%s: a later event of the refused transaction is not recognised", name)
		}
	}
}

func TestNewTxnAndSnapshotTxns(t *testing.T) {
	if _, err := NewTxn([]*changeevent.Event{ev("t", 0, 0), ev("t", 1, 0)}); err == nil {
		t.Fatal("a streamed transaction without its last event accepted")
	}
	if _, err := NewTxn([]*changeevent.Event{ev("t", 0, 0), ev("t", 1, 2)}); err != nil {
		t.Fatal(err)
	}
	snap := func(row int, gtid string, tsMs int64) *changeevent.Event {
		return &changeevent.Event{Op: changeevent.OpRead, After: changeevent.Row{"id": int64(row)},
			Columns:     []changeevent.Column{{Name: "id", Kind: changeevent.KindInt, PK: true}},
			Source:      changeevent.Source{Name: "x", GTID: gtid, TsMs: tsMs, DB: "d", Table: "t", Snapshot: "true"},
			Transaction: changeevent.Transaction{ID: "snapshot:d.t:5", Index: row}}
	}
	evs := []*changeevent.Event{snap(0, "1-1-9", 100), snap(1, "1-1-9", 100), snap(2, "1-1-9", 101)}
	if _, err := NewTxn(evs); err == nil {
		t.Fatal("snapshot rows accepted as a transaction")
	}
	txs, err := NewSnapshotTxns(evs)
	if err != nil || len(txs) != 2 || len(txs[0].Events) != 2 || !txs[0].Resync || txs[0].ID != "1-1-9" ||
		txs[1].Version.TsUs != 101000 {
		t.Fatalf("snapshot txns %+v, %v: want two (one per version), resync, id the gtid", txs, err)
	}
}

func TestSubjectTableAndTransient(t *testing.T) {
	if got := subjectTable(changeevent.Subject("a", "my.db", "t 1")); got != "my.db.t 1" {
		t.Fatalf("subject table %q", got)
	}
	if got := subjectTable(changeevent.Subject("a", "db", "_")); got != "db.*" {
		t.Fatalf("subject table %q", got)
	}
	if !Transient(fmt.Errorf("x: %w", context.DeadlineExceeded)) || !Transient(errors.New("dial tcp: connection refused")) {
		t.Fatal("outages not transient")
	}
	if Transient(errors.New("Key may not be empty")) || Transient(errors.New("Error 1146 (42S02): Table 'd.t' doesn't exist")) {
		t.Fatal("a bad change is transient")
	}
}

func TestQuarantineSet(t *testing.T) {
	q := NewQuarantineSet()
	n := 0
	q.notify(func() { n++ })
	if !q.Quarantine("d.t", "first") || q.Quarantine("d.t", "second") {
		t.Fatal("Quarantine reports")
	}
	if got := q.Quarantined()["d.t"].Reason; got != "first" || q.anyOf([]string{"d.u", "d.t"}) != "d.t" {
		t.Fatalf("reason %q", got)
	}
	if !q.Release("d.t") || q.Release("d.t") || q.IsQuarantined("d.t") || n != 2 {
		t.Fatalf("release, notifications %d", n)
	}
}

func TestTrackerAcksEachDoneMessage(t *testing.T) {
	var acked []uint64
	tr := newTracker(nil)
	tr.ack = func(seq uint64, _ acker) { acked = append(acked, seq) }
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
