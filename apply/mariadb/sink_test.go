package mariadb_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/apply/applytest"
	"github.com/music-coord/music/apply/mariadb"
	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/testenv"
)

type fixture struct {
	sink *mariadb.Sink
	db   *sql.DB
	name string
	kv   applytest.Table
}

func newFixture(t testing.TB, site testenv.Site) *fixture {
	t.Helper()
	name := testenv.NewDatabase(t, site)
	ctx := context.Background()
	sink, err := mariadb.Open(ctx, mariadb.Config{DSN: site.DSN(""), MetaSchema: "music_test"}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	db := site.Open(t, name)
	if _, err := db.Exec(applytest.KVDDL); err != nil {
		t.Fatal(err)
	}
	return &fixture{sink: sink, db: db, name: name, kv: applytest.KV(name)}
}

func (f *fixture) apply(t testing.TB, tx *apply.Txn) apply.Result {
	t.Helper()
	res, err := f.sink.Apply(context.Background(), tx)
	if err != nil {
		t.Fatalf("apply %s: %v", tx.ID, err)
	}
	return res
}

// rows returns the table as "id=v" strings, ordered by id.
func rows(t *testing.T, db *sql.DB) string {
	t.Helper()
	rs, err := db.Query("SELECT id, COALESCE(v,'NULL') FROM kv ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		var id int64
		var v string
		if err := rs.Scan(&id, &v); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%d=%s", id, v))
	}
	return strings.Join(out, " ")
}

func TestApplyReplaysExactValuesOnce(t *testing.T) {
	f := newFixture(t, testenv.Sites(t)[1])
	o := applytest.NewOrigin("x", 7)
	tx := o.Txn(1000, f.kv.Insert(applytest.Row(1, "a")), f.kv.Insert(applytest.Row(2, "b")))
	if got := f.apply(t, tx); got.Applied != 2 {
		t.Fatalf("first apply = %+v, want 2 applied", got)
	}
	if got := f.apply(t, tx); got.Applied != 0 || got.Duplicates != 2 {
		t.Fatalf("re-delivery = %+v, want 2 duplicates and nothing applied", got)
	}
	var n, tm string
	var u uint64
	var b []byte
	if err := f.db.QueryRow("SELECT n, u, b, CAST(t AS CHAR) FROM kv WHERE id=2").Scan(&n, &u, &b, &tm); err != nil {
		t.Fatal(err)
	}
	if n != "2.5000" || u != 1<<63+2 || string(b) != "\x00\x02\xff" || tm != "2026-01-02 03:04:05.123456" {
		t.Fatalf("row 2 = n %q u %d b %x t %q: values not exact", n, u, b, tm)
	}
	if got, want := rows(t, f.db), "1=a 2=b"; got != want {
		t.Fatalf("rows = %q, want %q", got, want)
	}
}

func TestApplyKeepsOriginGTID(t *testing.T) {
	site := testenv.Sites(t)[1]
	f := newFixture(t, site)
	o := applytest.NewOrigin("x", 9)
	tx := o.Txn(1000, f.kv.Insert(applytest.Row(1, "a")))
	f.apply(t, tx)
	var pos string
	if err := f.db.QueryRow("SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(pos, tx.ID) {
		t.Fatalf("gtid_binlog_pos %q does not hold the origin gtid %s", pos, tx.ID)
	}
	// The local domain did not move: capture at this site will not see the change.
	var domain int
	if err := f.db.QueryRow("SELECT @@gtid_domain_id").Scan(&domain); err != nil || domain != site.Index {
		t.Fatalf("gtid_domain_id = %d (%v), want the site's %d", domain, err, site.Index)
	}
}

func TestConflictLastWriterWinsInAnyOrder(t *testing.T) {
	sites := testenv.Sites(t)
	a, b := newFixture(t, sites[0]), newFixture(t, sites[1])
	x, y := applytest.NewOrigin("x", 11), applytest.NewOrigin("y", 12)
	// Same key written at x (t=2000) and y (t=1000 then t=3000 delete then t=2500 stale).
	base := x.Seq // both sites get the same GTIDs, above any earlier run's
	mk := func(kv applytest.Table) []*apply.Txn {
		x.Seq, y.Seq = base, base
		return []*apply.Txn{
			x.Txn(2000, kv.Insert(applytest.Row(1, "x@2000"))),
			y.Txn(1000, kv.Insert(applytest.Row(1, "y@1000")), kv.Insert(applytest.Row(2, "y@1000"))),
			y.Txn(3000, kv.Delete(applytest.Row(2, "y@1000"))),
			x.Txn(2500, kv.Update(applytest.Row(2, "?"), applytest.Row(2, "x@2500"))),
			x.Txn(2000, kv.Insert(applytest.Row(3, "x@2000"))),
			y.Txn(2000, kv.Insert(applytest.Row(3, "y@2000"))), // same time: higher domain wins
		}
	}
	var conflictsA, conflictsB int
	for _, tx := range mk(a.kv) {
		conflictsA += a.apply(t, tx).Conflicts
	}
	txs := mk(b.kv)
	for i := len(txs) - 1; i >= 0; i-- { // reverse arrival order
		conflictsB += b.apply(t, txs[i]).Conflicts
	}
	want := "1=x@2000 3=y@2000"
	for _, f := range []*fixture{a, b} {
		if got := rows(t, f.db); got != want {
			t.Fatalf("rows = %q, want %q", got, want)
		}
	}
	// In order: y@1000 loses row 1, x@2500 loses row 2. Reversed: x@2000 loses row 3,
	// y@1000 loses row 2 (to the tombstone).
	if conflictsA != 2 || conflictsB != 2 {
		t.Fatalf("conflicts = %d and %d, want 2 and 2", conflictsA, conflictsB)
	}
}

func TestUpdateChangingKeyAndTombstone(t *testing.T) {
	f := newFixture(t, testenv.Sites(t)[2])
	o := applytest.NewOrigin("x", 3)
	f.apply(t, o.Txn(1000, f.kv.Insert(applytest.Row(1, "a"))))
	f.apply(t, o.Txn(1001, f.kv.Update(applytest.Row(1, "a"), applytest.Row(5, "moved"))))
	if got, want := rows(t, f.db), "5=moved"; got != want {
		t.Fatalf("rows = %q, want %q", got, want)
	}
	late := applytest.NewOrigin("y", 4)
	if res := f.apply(t, late.Txn(999, f.kv.Update(applytest.Row(1, "x"), applytest.Row(1, "resurrected")))); res.Conflicts != 1 {
		t.Fatalf("late update = %+v, want a conflict", res)
	}
	if got, want := rows(t, f.db), "5=moved"; got != want {
		t.Fatalf("rows = %q, want %q: a tombstone must stop an older update", got, want)
	}
}

func TestDDLReplayedOnce(t *testing.T) {
	f := newFixture(t, testenv.Sites(t)[2])
	o := applytest.NewOrigin("x", 3)
	alter := o.Txn(1000, applytest.DDL(f.name, "kv", "ALTER", "ALTER TABLE kv ADD COLUMN extra INT NULL"))
	for range 2 {
		f.apply(t, alter)
	}
	create := o.Txn(1001, applytest.DDL(f.name, "t2", "CREATE", "CREATE TABLE t2 (id INT PRIMARY KEY)"))
	f.apply(t, create)
	if _, err := f.db.Exec("INSERT INTO t2 VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	f.apply(t, o.Txn(1002, applytest.DDL(f.name, "t2", "TRUNCATE", "TRUNCATE TABLE t2")))
	var n int
	if err := f.db.QueryRow("SELECT COUNT(*) FROM t2").Scan(&n); err != nil || n != 0 {
		t.Fatalf("t2 has %d rows (%v) after TRUNCATE", n, err)
	}
	// The site's own TRUNCATE read back from its own stream is not run again.
	if _, err := f.db.Exec("INSERT INTO t2 VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	own := o.Txn(1003, applytest.DDL(f.name, "t2", "TRUNCATE", "TRUNCATE TABLE t2"))
	own.Own = true
	f.apply(t, own)
	if err := f.db.QueryRow("SELECT COUNT(*) FROM t2").Scan(&n); err != nil || n != 1 {
		t.Fatalf("t2 has %d rows (%v) after an own TRUNCATE, want 1", n, err)
	}
	f.apply(t, o.Txn(1003, applytest.DDL(f.name, "t2", "DROP", "DROP TABLE t2")))
	if _, err := f.db.Exec("SELECT extra FROM kv"); err != nil {
		t.Fatalf("ALTER not applied: %v", err)
	}
	_, err := f.sink.Apply(context.Background(), o.Txn(1004, applytest.DDL(f.name, "", "GRANT", "GRANT ALL ON *.* TO x")))
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("GRANT = %v, want refused", err)
	}
	// A failing DDL is an error to retry (it blocks the origin), not a refusal to skip.
	_, err = f.sink.Apply(context.Background(), o.Txn(1005, applytest.DDL(f.name, "", "ALTER", "ALTER TABLE nope ADD x INT")))
	if err == nil || errors.Is(err, apply.ErrRefused) || !strings.Contains(err.Error(), "1146") {
		t.Fatalf("failing ALTER = %v, want a retryable error naming 1146", err)
	}
	// A database the origin created without publishing it is created here.
	other := f.name + "_new"
	t.Cleanup(func() { f.db.Exec("DROP DATABASE IF EXISTS `" + other + "`") })
	f.apply(t, o.Txn(1006, applytest.DDL(other, "t", "CREATE", "CREATE TABLE t (id INT PRIMARY KEY)")))
	if _, err := f.db.Exec("SELECT * FROM `" + other + "`.t"); err != nil {
		t.Fatalf("CREATE TABLE in a missing database: %v", err)
	}
}

func TestRejectsUnsafeIdentifiers(t *testing.T) {
	f := newFixture(t, testenv.Sites(t)[0])
	bad := f.kv
	bad.Name = "kv` ; DROP TABLE kv; --"
	o := applytest.NewOrigin("x", 3)
	_, err := f.sink.Apply(context.Background(), o.Txn(1, bad.Insert(applytest.Row(1, "a"))))
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("apply = %v, want refused", err)
	}
}

// localWrite runs stmt at the site as the application would and returns its GTID.
func localWrite(t *testing.T, f *fixture, stmt string, args ...any) string {
	t.Helper()
	conn, err := f.db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), stmt, args...); err != nil {
		t.Fatal(err)
	}
	var gtid string
	if err := conn.QueryRowContext(context.Background(), "SELECT @@last_gtid").Scan(&gtid); err != nil {
		t.Fatal(err)
	}
	return gtid
}

// ownTxn is the event capture would publish for a local write with GTID gtid.
func ownTxn(t *testing.T, gtid string, ts int64, e *changeevent.Event) *apply.Txn {
	t.Helper()
	o := applytest.NewOrigin("b", 0)
	evs := o.Tx(ts, e)
	evs[0].Source.GTID, evs[0].Transaction.ID = gtid, gtid
	tx, err := apply.NewTxn(evs)
	if err != nil {
		t.Fatal(err)
	}
	tx.Own = true
	return tx
}

func TestOwnStreamRepairsLocalWritesOverwrittenByOlderChanges(t *testing.T) {
	f := newFixture(t, testenv.Sites(t)[1])
	x := applytest.NewOrigin("x", 7)
	ins := "INSERT INTO kv (id, v) VALUES (?, ?) ON DUPLICATE KEY UPDATE v=VALUES(v)"
	row := func(id int64, v string) changeevent.Row {
		return changeevent.Row{"id": id, "v": v, "n": nil, "u": nil, "b": nil, "t": nil}
	}
	// Row 1: local write (t=2000), then an older remote change (t=1000) arrives first.
	g1 := localWrite(t, f, ins, 1, "local")
	// Row 2: local write, older remote change, then a later local write.
	g2 := localWrite(t, f, ins, 2, "L1")
	// Row 3: local write, then a newer remote change.
	g3 := localWrite(t, f, ins, 3, "local")
	// Row 1's older change carries a value of every kind, so the check that the row still
	// holds exactly what apply wrote (through a temporary copy of the table) sees them all.
	typed := row(1, "x")
	typed["n"], typed["u"], typed["b"], typed["t"] = "12.5000", uint64(1<<64-1), []byte{0, 0xff, 'a'}, "2026-11-28 12:34:56.000789"
	f.apply(t, x.Txn(1000, f.kv.Insert(typed), f.kv.Insert(row(2, "x"))))
	f.apply(t, x.Txn(5000, f.kv.Insert(row(3, "x"))))
	g4 := localWrite(t, f, ins, 2, "L2")
	// Row 4: a winner (same second, higher domain) applied first, then a local write that
	// loses to it: the winner must come back.
	f.apply(t, x.Txn(2000, f.kv.Insert(row(4, "x-wins"))))
	g5 := localWrite(t, f, ins, 4, "local-loses")
	if got, want := rows(t, f.db), "1=x 2=L2 3=x 4=local-loses"; got != want {
		t.Fatalf("before the own stream: rows %q, want %q", got, want)
	}
	var conflicts int
	for _, tx := range []*apply.Txn{
		ownTxn(t, g1, 2000, f.kv.Insert(row(1, "local"))),
		ownTxn(t, g2, 2000, f.kv.Insert(row(2, "L1"))),
		ownTxn(t, g3, 2000, f.kv.Insert(row(3, "local"))),
		ownTxn(t, g4, 3000, f.kv.Update(row(2, "L1"), row(2, "L2"))),
		ownTxn(t, g5, 2000, f.kv.Update(row(4, "x-wins"), row(4, "local-loses"))),
	} {
		conflicts += f.apply(t, tx).Conflicts
	}
	if got, want := rows(t, f.db), "1=local 2=L2 3=x 4=x-wins"; got != want {
		t.Fatalf("after the own stream: rows %q, want %q (newer local writes restored, older lost)", got, want)
	}
	if conflicts != 2 {
		t.Fatalf("conflicts = %d, want 2 (row 3's and row 4's local writes lost)", conflicts)
	}
	// Re-delivery of the own stream changes nothing; a later older remote change loses.
	if res := f.apply(t, ownTxn(t, g1, 2000, f.kv.Insert(row(1, "local")))); res.Duplicates != 1 {
		t.Fatalf("own re-delivery = %+v, want a duplicate", res)
	}
	if res := f.apply(t, x.Txn(1500, f.kv.Insert(row(1, "x-late")))); res.Conflicts != 1 {
		t.Fatalf("late remote change = %+v, want a conflict", res)
	}
	if got, want := rows(t, f.db), "1=local 2=L2 3=x 4=x-wins"; got != want {
		t.Fatalf("rows %q, want %q", got, want)
	}
}

// A replay that writes nothing leaves its gtid_seq_no pending in the pooled session; the
// next transaction on that session must not be stamped with it.
func TestNoStaleGTIDSeqOnPooledSession(t *testing.T) {
	site := testenv.Sites(t)[1]
	f := newFixture(t, site)
	sink, err := mariadb.Open(context.Background(), mariadb.Config{DSN: site.DSN(""), MetaSchema: "music_test", MaxConns: 1}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	x := applytest.NewOrigin("x", 7)
	tx := x.Txn(1000, f.kv.Insert(applytest.Row(1, "x")))
	for range 2 { // the second apply writes nothing
		if _, err := sink.Apply(context.Background(), tx); err != nil {
			t.Fatal(err)
		}
	}
	g := localWrite(t, f, "INSERT INTO kv (id, v) VALUES (2, 'local')")
	if _, err := sink.Apply(context.Background(), ownTxn(t, g, 2000, f.kv.Insert(applytest.Row(2, "local")))); err != nil {
		t.Fatal(err)
	}
	var pos string
	if err := f.db.QueryRow("SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
		t.Fatal(err)
	}
	stale := fmt.Sprintf("%d-%d-%d", site.Index, site.Index, tx.GTID.Seq)
	if strings.Contains(pos, stale) {
		t.Fatalf("gtid_binlog_pos %q: the own transaction took the stale sequence number %s", pos, stale)
	}
}
