package apply_test

import (
	"context"
	"testing"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/apply/applytest"
	"github.com/music-coord/music/internal/testenv"
)

// A site that never saw the streams joins from the MUSIC store: the table is created, the
// rows arrive with their versions, so an older streamed change still loses afterwards.
func TestResyncJoinsFromStore(t *testing.T) {
	site := testenv.Sites(t)[2]
	db := testenv.NewDatabase(t, site)
	pool := site.Open(t, db)
	store, _, _ := storeSink(t)
	kv := applytest.KV(db)
	x, y := applytest.NewOrigin("x", 3), applytest.NewOrigin("y", 4)
	ctx := context.Background()
	for i := range 600 {
		if _, err := store.Apply(ctx, x.Txn(5000, kv.Insert(applytest.Row(int64(i), "x")))); err != nil {
			t.Fatal(err)
		}
	}
	null := applytest.Row(7, "")
	null["v"], null["b"], null["n"] = nil, []byte{}, nil
	for _, tx := range []*apply.Txn{
		y.Txn(6000, kv.Update(applytest.Row(5, "x"), applytest.Row(5, "y"))),
		y.Txn(6000, kv.Delete(applytest.Row(6, "x"))),
		y.Txn(6000, kv.Update(applytest.Row(7, "x"), null)),
	} {
		if _, err := store.Apply(ctx, tx); err != nil {
			t.Fatal(err)
		}
	}
	sink := openSink(t, site)
	var calls int
	p, err := apply.Resync(ctx, store, sink, db, "kv", 250, func(apply.ResyncProgress) { calls++ })
	if err != nil {
		t.Fatal(err)
	}
	if p.Rows != 599 || p.Applied != 599 || !p.Done || calls != 4 {
		t.Fatalf("progress %+v after %d calls, want 599 rows applied in 3 batches + done", p, calls)
	}
	var n int
	var v5 string
	if err := pool.QueryRow("SELECT COUNT(*), (SELECT v FROM kv WHERE id=5) FROM kv").Scan(&n, &v5); err != nil || n != 599 || v5 != "y" {
		t.Fatalf("joined table: %d rows, row 5 %q (%v); want 599 rows, row 5 = y", n, v5, err)
	}
	var isNull, emptyBlob bool
	if err := pool.QueryRow("SELECT v IS NULL AND n IS NULL, b = '' FROM kv WHERE id=7").Scan(&isNull, &emptyBlob); err != nil || !isNull || !emptyBlob {
		t.Fatalf("row 7: NULLs %v, empty blob %v (%v): NULL and empty must survive the store", isNull, emptyBlob, err)
	}
	// Again: nothing changes. An older change from the stream loses.
	if p, err = apply.Resync(ctx, store, sink, db, "kv", 500, nil); err != nil || p.Duplicates != 599 {
		t.Fatalf("second resync %+v (%v), want 599 duplicates", p, err)
	}
	res, err := sink.Apply(ctx, x.Txn(5500, kv.Update(applytest.Row(5, "x"), applytest.Row(5, "old"))))
	if err != nil || res.Conflicts != 1 {
		t.Fatalf("older streamed change: %+v (%v), want a conflict", res, err)
	}
}
