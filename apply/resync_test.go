package apply_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/apply/applytest"
	"github.com/music-coord/music/changeevent"
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
	if p.Rows != 599 || p.Applied != 599 || p.Deleted != 0 || !p.Done || calls < 4 {
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

// The operator's case: at a site, rows were deleted and changed, and others added, with the
// binlog off (drift, as after a restore from a backup). The version metadata still says
// every change is applied, yet the resync from the MUSIC store brings back exactly the
// store's rows.
func TestResyncRepairsDriftFromStore(t *testing.T) {
	site := testenv.Sites(t)[2]
	db := testenv.NewDatabase(t, site)
	pool := site.Open(t, db)
	if _, err := pool.Exec(applytest.KVDDL); err != nil {
		t.Fatal(err)
	}
	store, _, _ := storeSink(t)
	sink := openSink(t, site)
	kv := applytest.KV(db)
	x := applytest.NewOrigin("x", 3)
	ctx := context.Background()
	base := time.Now().Add(-time.Hour).UnixMilli()
	for i := 0; i < 400; i += 10 {
		var evs []*changeevent.Event
		for j := i; j < i+10; j++ {
			evs = append(evs, kv.Insert(applytest.Row(int64(j), "x")))
		}
		tx := x.Txn(base+int64(i), evs...)
		for _, s := range []apply.Sink{store, sink} {
			if _, err := s.Apply(ctx, tx); err != nil {
				t.Fatal(err)
			}
		}
	}
	want, wantSum := tableContent(t, pool)
	conn, err := pool.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"SET SESSION sql_log_bin=0", "DELETE FROM kv WHERE id % 3 = 0", "UPDATE kv SET v='drift', n=NULL WHERE id % 5 = 1",
		"INSERT INTO kv (id, v) VALUES (1000,'extra'),(1001,'extra')", "SET SESSION sql_log_bin=1"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	if got, _ := tableContent(t, pool); got == want {
		t.Fatal("no drift")
	}
	p, err := apply.Resync(ctx, store, sink, db, "kv", 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, sum := tableContent(t, pool); got != want || sum != wantSum {
		t.Fatalf("after the resync (%+v): checksum %s, want %s; rows\n%s\nwant\n%s", p, sum, wantSum, got, want)
	}
	if p.Rows != 400 || p.Deleted != 2 || p.Applied != 134+80-27 {
		t.Fatalf("progress %+v: want 400 rows read, 187 written, 2 deleted", p)
	}
}

// tableContent is every row of kv, in key order, and CHECKSUM TABLE.
func tableContent(t *testing.T, db *sql.DB) (string, string) {
	t.Helper()
	rs, err := db.Query("SELECT id, COALESCE(v,'NULL'), COALESCE(n,'NULL'), COALESCE(u,'NULL'), COALESCE(HEX(b),'NULL'), COALESCE(CAST(t AS CHAR),'NULL') FROM kv ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		var c [6]string
		if err := rs.Scan(&c[0], &c[1], &c[2], &c[3], &c[4], &c[5]); err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.Join(c[:], "|"))
	}
	var name string
	var sum sql.NullString
	if err := db.QueryRow("CHECKSUM TABLE kv").Scan(&name, &sum); err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, "\n"), fmt.Sprint(sum.String)
}
