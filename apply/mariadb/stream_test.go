package mariadb_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/apply/applytest"
	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/testenv"
)

// streamedTxn stamps events as one streamed transaction of o and returns its header (a
// Txn without events) and the events in chunks of per.
func streamedTxn(t *testing.T, o *applytest.Origin, tsMs int64, per int, events ...*changeevent.Event) (*apply.Txn, [][]*changeevent.Event) {
	t.Helper()
	evs := o.Streamed(tsMs, events...)
	for i, e := range evs { // round trip, as delivered
		data, err := changeevent.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if evs[i], err = changeevent.Unmarshal(data); err != nil {
			t.Fatal(err)
		}
	}
	g, err := apply.ParseGTID(evs[0].Source.GTID)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := apply.EventVersion(evs[0])
	hdr := &apply.Txn{Origin: o.Name, ID: evs[0].Transaction.ID, GTID: g, Version: v}
	var chunks [][]*changeevent.Event
	for len(evs) > 0 {
		n := min(per, len(evs))
		chunks = append(chunks, evs[:n])
		evs = evs[n:]
	}
	return hdr, chunks
}

func count(t *testing.T, f *fixture) int {
	t.Helper()
	var n int
	if err := f.db.QueryRow("SELECT COUNT(*) FROM kv").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestStreamInvisibleUntilCommitted(t *testing.T) {
	f := newFixture(t, testenv.Sites(t)[1])
	o := applytest.NewOrigin("x", 7)
	var evs []*changeevent.Event
	for i := range 1000 {
		evs = append(evs, f.kv.Insert(applytest.Row(int64(i), "a")))
	}
	// Row 3 changes again in a later chunk, row 5 is deleted in a later chunk.
	evs = append(evs, f.kv.Update(applytest.Row(3, "a"), applytest.Row(3, "b")), f.kv.Delete(applytest.Row(5, "a")))
	hdr, chunks := streamedTxn(t, o, 1000, 300, evs...)
	ctx := context.Background()
	st, err := f.sink.BeginStream(ctx, hdr)
	if err != nil {
		t.Fatal(err)
	}
	var total apply.Result
	for i, c := range chunks {
		res, err := st.Apply(ctx, c)
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		total.Applied += res.Applied
		total.Duplicates += res.Duplicates
		if n := count(t, f); n != 0 {
			t.Fatalf("after chunk %d: %d rows visible before the commit", i, n)
		}
	}
	if _, err := st.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	st.Abort() // after a commit: nothing
	if n := count(t, f); n != 999 {
		t.Fatalf("%d rows after the commit, want 999", n)
	}
	var v string
	if err := f.db.QueryRow("SELECT v FROM kv WHERE id=3").Scan(&v); err != nil || v != "b" {
		t.Fatalf("row 3 = %q (%v), want its change of a later chunk", v, err)
	}
	if total.Applied != 1002 || total.Duplicates != 0 {
		t.Fatalf("result %+v, want 1002 applied", total)
	}
	// The whole transaction again (a redelivery after the commit): duplicates, no change.
	st, err = f.sink.BeginStream(ctx, hdr)
	if err != nil {
		t.Fatal(err)
	}
	total = apply.Result{}
	for _, c := range chunks {
		res, err := st.Apply(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		total.Applied += res.Applied
		total.Duplicates += res.Duplicates
	}
	if _, err := st.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if total.Applied != 0 || count(t, f) != 999 {
		t.Fatalf("redelivery: %+v, %d rows", total, count(t, f))
	}
}

func TestStreamFailureLeavesNothing(t *testing.T) {
	f := newFixture(t, testenv.Sites(t)[1])
	o := applytest.NewOrigin("x", 7)
	missing := applytest.KV(f.name)
	missing.Name = "missing"
	var evs []*changeevent.Event
	for i := range 600 {
		evs = append(evs, f.kv.Insert(applytest.Row(int64(i), "a")))
	}
	evs = append(evs, missing.Insert(applytest.Row(1, "x")))
	hdr, chunks := streamedTxn(t, o, 1000, 300, evs...)
	ctx := context.Background()
	st, err := f.sink.BeginStream(ctx, hdr)
	if err != nil {
		t.Fatal(err)
	}
	var failed error
	for _, c := range chunks {
		if _, failed = st.Apply(ctx, c); failed != nil {
			break
		}
	}
	if failed == nil {
		t.Fatal("a chunk writing a missing table succeeded")
	}
	st.Abort()
	if n := count(t, f); n != 0 {
		t.Fatalf("%d rows after a failed stream", n)
	}
	// Nothing recorded either: the same transaction, without the failing row, applies whole.
	hdr2, chunks2 := streamedTxn(t, o, 1001, 250, evs[:600]...)
	_ = hdr
	st, err = f.sink.BeginStream(ctx, hdr2)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks2 {
		if _, err := st.Apply(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(t, f); n != 600 {
		t.Fatalf("%d rows, want 600", n)
	}
	var versions int
	q := fmt.Sprintf("SELECT COUNT(*) FROM music_test.row_versions WHERE db='%s' AND gtid='%s'", f.name, hdr.ID)
	if err := f.db.QueryRow(q).Scan(&versions); err != nil || versions != 0 {
		t.Fatalf("%d versions recorded by the failed stream (%v)", versions, err)
	}
}
