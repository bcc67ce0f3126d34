package mariadb_test

import (
	"context"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/apply/applytest"
	"github.com/music-coord/music/apply/mariadb"
	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/testenv"
)

// sessionState is what a pooled connection's session must look like between uses: every
// variable the sink sets is back at the server's default (time_zone: the DSN's, set at connect).
const sessionState = `SELECT CONNECTION_ID(), CONCAT_WS(' ',
	CONCAT('sql_log_bin=', @@session.sql_log_bin), CONCAT('skip_replication=', @@session.skip_replication),
	CONCAT('gtid_seq_no=', @@session.gtid_seq_no),
	CONCAT('domain_default=', @@session.gtid_domain_id = @@global.gtid_domain_id),
	CONCAT('server_default=', @@session.server_id = @@global.server_id),
	CONCAT('fk_default=', @@session.foreign_key_checks = @@global.foreign_key_checks),
	CONCAT('tz=', @@session.time_zone),
	CONCAT('mode_default=', @@session.sql_mode = @@global.sql_mode),
	CONCAT('iso_default=', @@session.tx_isolation = @@global.tx_isolation),
	CONCAT('in_tx=', @@in_transaction))`

const cleanSession = "sql_log_bin=ON skip_replication=OFF gtid_seq_no=0 domain_default=1 server_default=1 fk_default=1 tz=+00:00 mode_default=1 iso_default=1 in_tx=0"

// A statement that fails in the middle of a replay (a table missing here), a failing DDL,
// a refused change and a cancelled apply leave no session state behind on the pool's
// connection: the next user of the pool gets the server's defaults.
func TestSessionStateNeverLeaks(t *testing.T) {
	site := testenv.Sites(t)[1]
	f := newFixture(t, site)
	ctx := context.Background()
	sink, err := mariadb.Open(ctx, mariadb.Config{DSN: site.DSN(""), MetaSchema: "music_test", MaxConns: 1}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	check := func(after string) int64 {
		t.Helper()
		var id int64
		var state string
		if err := sink.Pool().QueryRowContext(ctx, sessionState).Scan(&id, &state); err != nil {
			t.Fatalf("after %s: %v", after, err)
		}
		if state != cleanSession {
			t.Fatalf("after %s: pooled session %s\nwant %s", after, state, cleanSession)
		}
		return id
	}
	first := check("open")
	x := applytest.NewOrigin("x", 9)
	missing := f.kv
	missing.Name = "no_such_table"
	// Row 1 is written, then the statement on the missing table fails: rolled back.
	_, err = sink.Apply(ctx, x.Txn(1000, f.kv.Insert(applytest.Row(1, "a")), missing.Insert(applytest.Row(2, "b"))))
	if err == nil || !strings.Contains(err.Error(), "1146") {
		t.Fatalf("apply = %v, want a 1146 error", err)
	}
	if got := check("a failed statement mid-transaction"); got != first {
		t.Logf("connection replaced (%d -> %d)", first, got)
	}
	if got := rows(t, f.db); got != "" {
		t.Fatalf("rows %q after a failed transaction, want none", got)
	}
	if _, err := sink.Apply(ctx, x.Txn(1001, applytest.DDL(f.name, "", "ALTER", "ALTER TABLE nope ADD x INT"))); err == nil {
		t.Fatal("failing DDL applied")
	}
	check("a failed DDL")
	if _, err := sink.Apply(ctx, x.Txn(1002, applytest.DDL(f.name, "t2", "CREATE", "CREATE TABLE t2 (id INT PRIMARY KEY)"))); err != nil {
		t.Fatal(err)
	}
	check("a DDL")
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := sink.Apply(cctx, x.Txn(1003, f.kv.Insert(applytest.Row(3, "c")))); err == nil {
		t.Fatal("cancelled apply succeeded")
	}
	check("a cancelled apply")
	own := x.Txn(1004, f.kv.Insert(applytest.Row(4, "d")))
	own.Own = true
	if _, err := sink.Apply(ctx, own); err != nil {
		t.Fatal(err)
	}
	check("an own transaction")
	if _, err := sink.EnsureTable(ctx, f.name, "made", []changeevent.Column{{Name: "id", Kind: changeevent.KindInt, SQLType: "int(11)", PK: true}}); err != nil {
		t.Fatal(err)
	}
	check("a created table")
	if _, err := sink.EnsureTable(ctx, f.name, "bad", []changeevent.Column{{Name: "id", Kind: changeevent.KindInt, SQLType: "int(11)) x (", PK: true}}); err == nil {
		t.Fatal("table with a bad column type created")
	}
	// A replay that succeeds leaves nothing either.
	if res, err := sink.Apply(ctx, x.Txn(1005, f.kv.Insert(applytest.Row(5, "e")))); err != nil || res.Applied != 1 {
		t.Fatalf("apply: %+v (%v)", res, err)
	}
	check("a replay")
}

// Replays reuse a connection kept in its replay session (withReplay): each keeps its own
// origin GTID, an own transaction in between runs in the local domain, and the pool's
// other connections stay at the defaults.
func TestReplaySessionReused(t *testing.T) {
	site := testenv.Sites(t)[1]
	f := newFixture(t, site)
	ctx := context.Background()
	sink, err := mariadb.Open(ctx, mariadb.Config{DSN: site.DSN(""), MetaSchema: "music_test", MaxConns: 2}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	x, y := applytest.NewOrigin("x", 9), applytest.NewOrigin("y", 8)
	holds := func(gtid string) {
		t.Helper()
		var pos string
		if err := f.db.QueryRow("SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(pos, gtid) {
			t.Fatalf("gtid_binlog_pos %q does not hold %s", pos, gtid)
		}
	}
	for i, tx := range []*apply.Txn{
		x.Txn(1000, f.kv.Insert(applytest.Row(1, "a"))),
		x.Txn(1001, f.kv.Insert(applytest.Row(2, "b"))),
		y.Txn(1002, f.kv.Insert(applytest.Row(3, "c"))),
		x.Txn(1003, f.kv.Insert(applytest.Row(4, "d"))),
	} {
		if res, err := sink.Apply(ctx, tx); err != nil || res.Applied != 1 {
			t.Fatalf("replay %d: %+v (%v)", i, res, err)
		}
		holds(tx.ID)
		var state string
		var id int64
		if err := sink.Pool().QueryRowContext(ctx, sessionState).Scan(&id, &state); err != nil {
			t.Fatal(err)
		}
		if state != cleanSession {
			t.Fatalf("after replay %d: pooled session %s\nwant %s", i, state, cleanSession)
		}
	}
	if _, err := f.db.Exec("INSERT INTO kv (id, v) VALUES (5, 'e')"); err != nil { // a local write
		t.Fatal(err)
	}
	own := applytest.NewOrigin("own", uint32(site.Index)).Txn(1004, f.kv.Insert(applytest.Row(5, "e")))
	own.Own = true
	if _, err := sink.Apply(ctx, own); err != nil {
		t.Fatal(err)
	}
	next := x.Txn(1005, f.kv.Insert(applytest.Row(6, "f")))
	if _, err := sink.Apply(ctx, next); err != nil {
		t.Fatal(err)
	}
	holds(next.ID)
	if got, want := rows(t, f.db), "1=a 2=b 3=c 4=d 5=e 6=f"; got != want {
		t.Fatalf("rows = %q, want %q", got, want)
	}
}
