package capture

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/testenv"
)

// xaSetup makes the tables r1n and r2 with a row in r1n, and a cleanup that rolls back
// any XA transaction of the test left prepared (it would block dropping the database).
func xaSetup(h *harness, xids ...string) {
	h.exec("CREATE TABLE r1n (id INT PRIMARY KEY, v VARCHAR(20))",
		"CREATE TABLE r2 (id INT PRIMARY KEY, v VARCHAR(20))",
		"INSERT INTO r1n VALUES (1,'one'),(2,'two')")
	h.t.Cleanup(func() {
		for _, x := range xids {
			_, _ = h.pool.Exec("XA ROLLBACK '" + x + "'")
		}
	})
}

// prepareXA runs XA START .. XA PREPARE of stmts on a connection of its own, which it
// then closes (so any connection can complete the transaction), and returns the GTID of
// the prepare group.
func prepareXA(h *harness, x string, stmts ...string) GTID {
	h.t.Helper()
	ctx := context.Background()
	conn, err := h.pool.Conn(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close()
	all := append([]string{"XA START '" + x + "'"}, stmts...)
	all = append(all, "XA END '"+x+"'", "XA PREPARE '"+x+"'")
	for _, q := range all {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			h.t.Fatalf("%s: %v", q, err)
		}
	}
	g := lastGTID(h.t, conn)
	// Close the session (not back to the pool): any connection can then complete it.
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	return g
}

func lastGTID(t testing.TB, conn *sql.Conn) GTID {
	t.Helper()
	var s string
	if err := conn.QueryRowContext(context.Background(), "SELECT @@last_gtid").Scan(&s); err != nil {
		t.Fatal(err)
	}
	g, err := ParseGTID(s)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// xaFinish runs "XA COMMIT|ROLLBACK 'x'" on a fresh connection and returns its GTID.
func xaFinish(h *harness, verb, x string) GTID {
	h.t.Helper()
	ctx := context.Background()
	conn, err := h.pool.Conn(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close()
	testenv.Eventually(h.t, 10*time.Second, func() error {
		// The preparing connection's disconnect is asynchronous on the server.
		_, err := conn.ExecContext(ctx, "XA "+verb+" '"+x+"'")
		return err
	})
	return lastGTID(h.t, conn)
}

// txnOf is the events of transaction id, checked to be one complete transaction.
func txnOf(t *testing.T, events []*changeevent.Event, id string) []*changeevent.Event {
	t.Helper()
	var out []*changeevent.Event
	for _, e := range events {
		if e.Transaction.ID == id {
			out = append(out, e)
		}
	}
	for i, e := range out {
		if e.Transaction.Index != i || e.Transaction.Total != len(out) || e.Transaction.Last != (i == len(out)-1) ||
			e.Source.GTID != id || e.Source.Row != i {
			t.Errorf("event %d of %s: transaction %+v gtid %s row %d", i, id, e.Transaction, e.Source.GTID, e.Source.Row)
		}
	}
	return out
}

func describe(events []*changeevent.Event) string {
	var s []string
	for _, e := range events {
		if e.Op == changeevent.OpDDL {
			continue
		}
		row := e.After
		if row == nil {
			row = e.Before
		}
		s = append(s, fmt.Sprintf("%s:%s:%v:%v", e.Source.Table, e.Op, row["id"], row["v"]))
	}
	return strings.Join(s, ",")
}

// TestXACommitRollback: a two-phase XA transaction (several statements, two tables) is
// published once at its XA COMMIT, as one transaction under the commit's GTID; one rolled
// back after XA PREPARE publishes nothing; XA COMMIT ONE PHASE is a normal transaction.
func TestXACommitRollback(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	x1, x2, x3 := h.db+"-1", h.db+"-2", h.db+"-3"
	xaSetup(h, x1, x2)
	h.start(h.cfg)
	prep := prepareXA(h, x1, "INSERT INTO r2 VALUES (10,'xa')", "UPDATE r1n SET v='xa' WHERE id=1",
		"INSERT INTO r2 VALUES (11,'xa2')", "DELETE FROM r1n WHERE id=2")
	commit := xaFinish(h, "COMMIT", x1)
	prepareXA(h, x2, "INSERT INTO r2 VALUES (20,'rolled back')")
	rb := xaFinish(h, "ROLLBACK", x2)
	h.exec("XA START '"+x3+"'", "INSERT INTO r2 VALUES (30,'one phase')", "XA END '"+x3+"'", "XA COMMIT '"+x3+"' ONE PHASE",
		"INSERT INTO r2 VALUES (40,'after')")
	events := h.readRows(h.cfg.Stream, 8, 30*time.Second)
	want := "r1n:c:1:one,r1n:c:2:two,r2:c:10:xa,r1n:u:1:xa,r2:c:11:xa2,r1n:d:2:two,r2:c:30:one phase,r2:c:40:after"
	if got := describe(events); got != want {
		t.Fatalf("events %s\nwant   %s", got, want)
	}
	xa := txnOf(t, events, commit.String())
	if len(xa) != 4 {
		t.Fatalf("XA transaction %s (prepared as %s) has %d events, want 4", commit, prep, len(xa))
	}
	for _, e := range events {
		if e.Source.GTID == prep.String() || e.Source.GTID == rb.String() {
			t.Errorf("event under the prepare's or the rollback's GTID: %+v", e.Source)
		}
	}
	if xa[0].Source.TsUs/1_000_000 < events[1].Source.TsUs/1_000_000 {
		t.Errorf("XA commit time %d before the insert's %d", xa[0].Source.TsUs, events[1].Source.TsUs)
	}
	time.Sleep(time.Second) // nothing more comes
	if got := describe(rowEvents(h.read(h.cfg.Stream, 0, 5*time.Second))); got != want {
		t.Fatalf("events later %s\nwant         %s", got, want)
	}
}

// TestXAInterleaved: transactions committed between an XA PREPARE and its XA COMMIT (from
// another connection) are published at once; the checkpoint stays before the prepare
// until the XA COMMIT, then moves on.
func TestXAInterleaved(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	x := h.db + "-i"
	xaSetup(h, x)
	h.start(h.cfg)
	prep := prepareXA(h, x, "INSERT INTO r2 VALUES (10,'xa')", "UPDATE r1n SET v='xa' WHERE id=1")
	h.exec("INSERT INTO r2 VALUES (1,'between')", "UPDATE r1n SET v='between' WHERE id=2")
	events := h.readRows(h.cfg.Stream, 4, 30*time.Second)
	if got, want := describe(events), "r1n:c:1:one,r1n:c:2:two,r2:c:1:between,r1n:u:2:between"; got != want {
		t.Fatalf("events %s\nwant   %s", got, want)
	}
	time.Sleep(3 * h.cfg.CheckpointInterval)
	cp := h.checkpoint()
	pos, err := ParsePosition(cp.Position)
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := pos[h.cfg.DomainID]; !ok || g.Seq >= prep.Seq {
		t.Fatalf("checkpoint %s with XA %s prepared, want before it", cp.Position, prep)
	}
	commit := xaFinish(h, "COMMIT", x)
	events = h.readRows(h.cfg.Stream, 6, 30*time.Second)
	if got, want := describe(events), "r1n:c:1:one,r1n:c:2:two,r2:c:1:between,r1n:u:2:between,r2:c:10:xa,r1n:u:1:xa"; got != want {
		t.Fatalf("events %s\nwant   %s", got, want)
	}
	if n := len(txnOf(t, events, commit.String())); n != 2 {
		t.Fatalf("XA transaction %s has %d events, want 2", commit, n)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		pos, err := ParsePosition(h.checkpoint().Position)
		if err != nil {
			return err
		}
		if g := pos[h.cfg.DomainID]; g.Seq < commit.Seq {
			return fmt.Errorf("checkpoint %s, want at or after the XA COMMIT %s", pos, commit)
		}
		return nil
	})
}

// TestXARestart: capture restarts while an XA transaction is prepared: after a restart
// with it still open, its XA COMMIT is published; after a restart between XA PREPARE and
// an XA COMMIT done while capture was down (as after XA RECOVER), too. Each transaction
// is in the stream exactly once.
func TestXARestart(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	x1, x2 := h.db+"-r1", h.db+"-r2"
	xaSetup(h, x1, x2)
	r := h.start(h.cfg)
	prepareXA(h, x1, "INSERT INTO r2 VALUES (10,'xa1')", "UPDATE r1n SET v='xa1' WHERE id=1")
	h.exec("INSERT INTO r2 VALUES (1,'between')")
	h.readRows(h.cfg.Stream, 3, 30*time.Second)
	r.stop(t)
	r = h.start(h.cfg) // restart with x1 prepared
	h.exec("INSERT INTO r2 VALUES (2,'after restart')")
	c1 := xaFinish(h, "COMMIT", x1)
	events := h.readRows(h.cfg.Stream, 6, 30*time.Second)
	want := "r1n:c:1:one,r1n:c:2:two,r2:c:1:between,r2:c:2:after restart,r2:c:10:xa1,r1n:u:1:xa1"
	if got := describe(events); got != want {
		t.Fatalf("events %s\nwant   %s", got, want)
	}
	prepareXA(h, x2, "INSERT INTO r2 VALUES (20,'xa2')", "INSERT INTO r1n VALUES (3,'xa2')")
	h.exec("INSERT INTO r2 VALUES (3,'between 2')")
	h.readRows(h.cfg.Stream, 7, 30*time.Second)
	time.Sleep(3 * h.cfg.CheckpointInterval)
	r.stop(t)
	c2 := xaFinish(h, "COMMIT", x2) // while capture is down
	h.exec("INSERT INTO r2 VALUES (4,'last')")
	h.start(h.cfg)
	want += ",r2:c:3:between 2,r2:c:20:xa2,r1n:c:3:xa2,r2:c:4:last"
	events = h.readRows(h.cfg.Stream, 10, 30*time.Second)
	time.Sleep(time.Second)
	events = rowEvents(h.read(h.cfg.Stream, 10, 5*time.Second))
	if got := describe(events); got != want {
		t.Fatalf("events %s\nwant   %s", got, want)
	}
	if len(txnOf(t, events, c1.String())) != 2 || len(txnOf(t, events, c2.String())) != 2 {
		t.Fatalf("XA transactions %s and %s: want 2 events each", c1, c2)
	}
}

// TestXAParse: the XID of a GTID event (as MariaDB 10.11 writes it, also with a group
// commit id), of an XA_PREPARE_LOG_EVENT body and of the logged XA COMMIT statement.
func TestXAParse(t *testing.T) {
	unhex := func(s string) []byte {
		b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	want := xid{format: 1, gtrid: "torture1"}
	// GTID 1-1-214622, flags 0x4c (FL_PREPARED_XA), then the XID, flags_extra, checksum.
	raw := unhex("30 50 10 6b a2 01 00 00 00 34 00 00 00 49 02 00 00 08 00 5e 46 03 00 00 00 00 00 01 00 00 00 4c" +
		"01 00 00 00 08 00 74 6f 72 74 75 72 65 31 01 ff 7b 1f dd 91")
	if x, ok := gtidEventXID(raw); !ok || x != want {
		t.Errorf("GTID event XID %v %v, want %v", x, ok, want)
	}
	// The same with FL_GROUP_COMMIT_ID and a commit id; and FL_COMPLETED_XA.
	gc := append(append(append([]byte(nil), raw[:31]...), 0xce, 1, 2, 3, 4, 5, 6, 7, 8), raw[32:]...)
	if x, ok := gtidEventXID(gc); !ok || x != want {
		t.Errorf("GTID event with commit id: XID %v %v, want %v", x, ok, want)
	}
	plain := append([]byte(nil), raw...)
	plain[31] = 0x0c
	if _, ok := gtidEventXID(plain); ok {
		t.Error("XID read from a GTID event without XA flags")
	}
	body := unhex("00 01 00 00 00 08 00 00 00 00 00 00 00 74 6f 72 74 75 72 65 31 1e d8 1a 16")
	if x, ok := xaPrepareXID(body); !ok || x != want {
		t.Errorf("XA_PREPARE XID %v %v, want %v", x, ok, want)
	}
	verb, x, ok := parseXAStatement("XA COMMIT X'746f727475726531',X'',1")
	if verb != "COMMIT" || !ok || x != want || x.String() != "X'746f727475726531',X'',1" {
		t.Errorf("XA COMMIT statement: %s %v %v (%s)", verb, x, ok, x)
	}
	if verb, x, ok := parseXAStatement("XA ROLLBACK X'01ff',X'ab',7"); verb != "ROLLBACK" || !ok || x != (xid{7, "\x01\xff", "\xab"}) {
		t.Errorf("XA ROLLBACK statement: %s %v %v", verb, x, ok)
	}
}
