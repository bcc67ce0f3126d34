package mariadb_test

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/apply/applytest"
	"github.com/music-coord/music/apply/mariadb"
	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/testenv"
)

// pair is a reference site and a drifted target site holding the same database.
type pair struct {
	name             string
	ref, dst         *sql.DB
	refSink, dstSink *mariadb.Sink
	peer             *mariadb.Peer
	kv               applytest.Table
}

func newPair(t *testing.T) *pair {
	t.Helper()
	sites := testenv.Sites(t)
	a, c := sites[0], sites[2]
	name := testenv.NewDatabase(t, a, c)
	ctx := context.Background()
	p := &pair{name: name, ref: a.Open(t, name), dst: c.Open(t, name), kv: applytest.KV(name)}
	for _, db := range []*sql.DB{p.ref, p.dst} {
		if _, err := db.Exec(applytest.KVDDL); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	for _, s := range []struct {
		site testenv.Site
		dst  **mariadb.Sink
	}{{a, &p.refSink}, {c, &p.dstSink}} {
		*s.dst, err = mariadb.Open(ctx, mariadb.Config{DSN: s.site.DSN(""), MetaSchema: "music_test", BatchRows: 50}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		sink := *s.dst
		t.Cleanup(func() { sink.Close() })
	}
	if p.peer, err = mariadb.OpenPeer(a.DSN(""), "music_test", "a"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.peer.Close() })
	return p
}

// both applies tx at both sites.
func (p *pair) both(t *testing.T, tx *apply.Txn) {
	t.Helper()
	for _, s := range []*mariadb.Sink{p.refSink, p.dstSink} {
		if _, err := s.Apply(context.Background(), tx); err != nil {
			t.Fatal(err)
		}
	}
}

// drift changes dst outside the binlog and outside MUSIC (sql_log_bin=0), as a restore from
// an old backup or a manual fix would.
func drift(t *testing.T, db *sql.DB, stmts ...string) {
	t.Helper()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range append(append([]string{"SET SESSION sql_log_bin=0"}, stmts...), "SET SESSION sql_log_bin=1") {
		if _, err := conn.ExecContext(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func checksum(t *testing.T, db *sql.DB) string {
	t.Helper()
	var name string
	var sum sql.NullString
	if err := db.QueryRow("CHECKSUM TABLE kv").Scan(&name, &sum); err != nil {
		t.Fatal(err)
	}
	return sum.String
}

// content is every column of every row, in key order.
func content(t *testing.T, db *sql.DB) string {
	t.Helper()
	rs, err := db.Query("SELECT id, COALESCE(v,'NULL'), COALESCE(n,'NULL'), COALESCE(u,'NULL'), COALESCE(HEX(b),'NULL'), COALESCE(CAST(t AS CHAR),'NULL') FROM kv ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		var cols [6]string
		if err := rs.Scan(&cols[0], &cols[1], &cols[2], &cols[3], &cols[4], &cols[5]); err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.Join(cols[:], "|"))
	}
	return strings.Join(out, "\n")
}

// versions is row_versions of the table: key -> version and deleted flag.
func versions(t *testing.T, db *sql.DB, name string) map[string]string {
	t.Helper()
	rs, err := db.Query("SELECT pk, ts_us, domain_id, seq, deleted FROM music_test.row_versions WHERE db=? AND tbl='kv'", name)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	out := map[string]string{}
	for rs.Next() {
		var pk string
		var ts int64
		var d, seq uint64
		var del bool
		if err := rs.Scan(&pk, &ts, &d, &seq, &del); err != nil {
			t.Fatal(err)
		}
		out[pk] = fmt.Sprintf("%d/%d/%d deleted=%v", ts, d, seq, del)
	}
	return out
}

// A drifted site (rows deleted, changed and added with sql_log_bin=0, a tombstoned row
// back) is repaired from a peer site: afterwards it holds exactly the peer's rows, its
// versions are the peer's, a second repair changes nothing, and an older streamed change
// still loses.
func TestRepairFromPeerFixesDrift(t *testing.T) {
	p := newPair(t)
	ctx := context.Background()
	x := applytest.NewOrigin("x", 7)
	base := time.Now().Add(-time.Hour).UnixMilli()
	for i := 0; i < 300; i += 10 {
		var evs []*changeevent.Event
		for j := i; j < i+10; j++ {
			evs = append(evs, p.kv.Insert(applytest.Row(int64(j), "v")))
		}
		p.both(t, x.Txn(base+int64(i), evs...))
	}
	p.both(t, x.Txn(base+400, p.kv.Delete(applytest.Row(5, "v"))))
	p.both(t, x.Txn(base+401, p.kv.Update(applytest.Row(6, "v"), applytest.Row(6, "changed"))))
	drift(t, p.dst,
		"DELETE FROM kv WHERE id BETWEEN 100 AND 139",          // 40 missing
		"UPDATE kv SET v='drift' WHERE id BETWEEN 200 AND 229", // 30 different
		"UPDATE kv SET t=NULL, b='' WHERE id=6",
		"INSERT INTO kv (id, v) VALUES "+valuesList(1000, 20, "extra"), // 20 extra, never seen by MUSIC
		"INSERT INTO kv (id, v) VALUES (5, 'back')",                    // a tombstoned row back
	)
	if checksum(t, p.ref) == checksum(t, p.dst) {
		t.Fatal("no drift")
	}
	var calls int
	prog, err := p.dstSink.Repair(ctx, p.peer, p.name, "kv", apply.RepairOptions{Batch: 64}, func(apply.ResyncProgress) { calls++ })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("progress %+v after %d calls", prog, calls)
	if prog.Rows != 299 || prog.Applied != 71 || prog.Deleted != 21 || prog.Local != 320 || !prog.Done {
		t.Fatalf("progress %+v: want 299 rows read, 71 written (40 missing, 31 different), 21 deleted", prog)
	}
	if a, c := checksum(t, p.ref), checksum(t, p.dst); a != c {
		t.Fatalf("CHECKSUM TABLE: reference %s, repaired %s", a, c)
	}
	if a, c := content(t, p.ref), content(t, p.dst); a != c {
		t.Fatalf("rows differ after the repair:\nreference\n%s\nrepaired\n%s", a, c)
	}
	va, vc := versions(t, p.ref, p.name), versions(t, p.dst, p.name)
	for k, v := range va {
		if vc[k] != v {
			t.Errorf("version of %s: reference %s, repaired %s", k, v, vc[k])
		}
	}
	for i := 1000; i < 1020; i++ {
		if v := vc[fmt.Sprintf("[%d]", i)]; !strings.HasSuffix(v, "deleted=true") {
			t.Errorf("extra row %d: version %q, want a tombstone", i, v)
		}
	}
	// Again: nothing to do.
	prog, err = p.dstSink.Repair(ctx, p.peer, p.name, "kv", apply.RepairOptions{Batch: 64}, nil)
	if err != nil || prog.Applied != 0 || prog.Deleted != 0 || prog.Versioned != 0 || prog.Duplicates != 299 {
		t.Fatalf("second repair %+v (%v): want 299 unchanged", prog, err)
	}
	// The conflict rule holds: an older change loses, a newer one wins.
	y := applytest.NewOrigin("y", 8)
	if res, err := p.dstSink.Apply(ctx, y.Txn(base-1, p.kv.Update(applytest.Row(200, "v"), applytest.Row(200, "old")))); err != nil || res.Conflicts != 1 {
		t.Fatalf("older change after the repair: %+v (%v), want a conflict", res, err)
	}
	if res, err := p.dstSink.Apply(ctx, y.Txn(base+1000, p.kv.Insert(applytest.Row(1000, "new")))); err != nil || res.Applied != 1 {
		t.Fatalf("newer change of a repaired-away row: %+v (%v), want applied", res, err)
	}
}

func valuesList(from, n int, v string) string {
	var parts []string
	for i := from; i < from+n; i++ {
		parts = append(parts, fmt.Sprintf("(%d,'%s')", i, v))
	}
	return strings.Join(parts, ",")
}

// While a repair runs, another goroutine keeps replaying newer changes of the same table
// through the sink (updates and deletes of reference rows, inserts of rows the reference
// does not hold): every one of them survives, and every other row ends as the reference's.
func TestRepairKeepsConcurrentNewerChanges(t *testing.T) {
	p := newPair(t)
	ctx := context.Background()
	x, y := applytest.NewOrigin("x", 7), applytest.NewOrigin("y", 8)
	base := time.Now().Add(-time.Hour).UnixMilli()
	const n = 600
	for i := 0; i < n; i += 20 {
		var evs []*changeevent.Event
		for j := i; j < i+20; j++ {
			evs = append(evs, p.kv.Insert(applytest.Row(int64(j), "ref")))
		}
		p.both(t, x.Txn(base+int64(i), evs...))
	}
	drift(t, p.dst,
		"DELETE FROM kv WHERE id % 7 = 0",
		"UPDATE kv SET v='drift' WHERE id % 5 = 0",
		"INSERT INTO kv (id, v) VALUES "+valuesList(5000, 50, "extra"),
	)
	// expected: the reference, then the newer changes in order.
	expected := map[int64]string{}
	for i := int64(0); i < n; i++ {
		expected[i] = "ref"
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	var applyErr error
	var newer int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				if i > 30 {
					return
				}
			default:
			}
			id := int64((i * 37) % n)
			var tx *apply.Txn
			switch i % 3 {
			case 0:
				v := fmt.Sprintf("new%d", i)
				tx = y.Txn(time.Now().UnixMilli(), p.kv.Update(applytest.Row(id, "?"), applytest.Row(id, v)))
				expected[id] = v
			case 1:
				tx = y.Txn(time.Now().UnixMilli(), p.kv.Delete(applytest.Row(id, "?")))
				delete(expected, id)
			case 2:
				id = int64(10000 + i)
				tx = y.Txn(time.Now().UnixMilli(), p.kv.Insert(applytest.Row(id, "ins")))
				expected[id] = "ins"
			}
			res, err := p.dstSink.Apply(ctx, tx)
			if err != nil || res.Applied != 1 {
				applyErr = fmt.Errorf("newer change %d: %+v (%v)", i, res, err)
				return
			}
			newer++
			time.Sleep(2 * time.Millisecond)
		}
	}()
	prog, err := p.dstSink.Repair(ctx, p.peer, p.name, "kv", apply.RepairOptions{Batch: 25}, nil)
	close(done)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if applyErr != nil {
		t.Fatal(applyErr)
	}
	t.Logf("repair %+v with %d newer changes replayed meanwhile", prog, newer)
	var want []string
	for id, v := range expected {
		want = append(want, fmt.Sprintf("%d=%s", id, v))
	}
	sort.Slice(want, func(i, j int) bool {
		var a, b int64
		fmt.Sscan(strings.Split(want[i], "=")[0], &a)
		fmt.Sscan(strings.Split(want[j], "=")[0], &b)
		return a < b
	})
	if got := rows(t, p.dst); got != strings.Join(want, " ") {
		t.Fatalf("after the repair with concurrent newer changes:\n got %s\nwant %s", got, strings.Join(want, " "))
	}
}

// An application write at the repaired site that the reference does not have yet is
// deleted or overwritten by the repair, and comes back when its own-stream record arrives.
func TestRepairThenOwnStreamRestoresLocalWrites(t *testing.T) {
	p := newPair(t)
	ctx := context.Background()
	x := applytest.NewOrigin("x", 7)
	base := time.Now().Add(-time.Hour).UnixMilli()
	p.both(t, x.Txn(base, p.kv.Insert(applytest.Row(1, "ref")), p.kv.Insert(applytest.Row(2, "ref"))))
	f := &fixture{sink: p.dstSink, db: p.dst, name: p.name, kv: p.kv}
	ins := "INSERT INTO kv (id, v) VALUES (?, ?) ON DUPLICATE KEY UPDATE v=VALUES(v)"
	g1 := localWrite(t, f, ins, 1, "local")
	g3 := localWrite(t, f, ins, 3, "local")
	if _, err := p.dstSink.Repair(ctx, p.peer, p.name, "kv", apply.RepairOptions{Batch: 10}, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := rows(t, p.dst), "1=ref 2=ref"; got != want {
		t.Fatalf("after the repair: %q, want %q", got, want)
	}
	now := time.Now().UnixMilli()
	row := func(id int64, v string) changeevent.Row {
		return changeevent.Row{"id": id, "v": v, "n": nil, "u": nil, "b": nil, "t": nil}
	}
	for _, tx := range []*apply.Txn{
		ownTxn(t, g1, now, p.kv.Update(applytest.Row(1, "ref"), row(1, "local"))),
		ownTxn(t, g3, now, p.kv.Insert(row(3, "local"))),
	} {
		if _, err := p.dstSink.Apply(ctx, tx); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := rows(t, p.dst), "1=local 2=ref 3=local"; got != want {
		t.Fatalf("after the own stream: %q, want %q", got, want)
	}
}
