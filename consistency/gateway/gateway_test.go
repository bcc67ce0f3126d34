package gateway

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap/zaptest"

	"github.com/music-coord/music/internal/testenv"
)

// recorder is a Hooks fake: sync tables by name, every call recorded.
type recorder struct {
	mu           sync.Mutex
	sync         map[string]bool // table names (any database) that are sync
	calls        []call
	acquireErr   error
	committedErr error
}

type call struct {
	Hook   string // acquire, committed, ended
	Conn   uint32
	Tables []Table
	GTID   string
}

func (r *recorder) IsSync(db, table string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return table == "*" || r.sync[table]
}

func (r *recorder) Acquire(_ context.Context, conn uint32, tables []Table) error {
	r.add(call{Hook: "acquire", Conn: conn, Tables: tables})
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.acquireErr
}

func (r *recorder) Committed(_ context.Context, conn uint32, tables []Table, gtid string) error {
	r.add(call{Hook: "committed", Conn: conn, Tables: tables, GTID: gtid})
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.committedErr
}

func (r *recorder) Ended(conn uint32, tables []Table) {
	r.add(call{Hook: "ended", Conn: conn, Tables: tables})
}

func (r *recorder) add(c call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c.Tables = slices.Clone(c.Tables)
	r.calls = append(r.calls, c)
}

// take returns the calls so far for conn and forgets them.
func (r *recorder) take(conn uint32) []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	var mine, rest []call
	for _, c := range r.calls {
		if c.Conn == conn {
			mine = append(mine, c)
		} else {
			rest = append(rest, c)
		}
	}
	r.calls = rest
	return mine
}

func (r *recorder) set(f func(r *recorder)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

// fixture is a gateway in front of site a, a fresh database with a sync table acct and
// an async table notes, and a recorder.
type fixture struct {
	t    *testing.T
	site testenv.Site
	db   string
	gw   *Gateway
	rec  *recorder
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	site := testenv.Sites(t)[0]
	f := &fixture{t: t, site: site, db: testenv.NewDatabase(t, site), rec: &recorder{sync: map[string]bool{"acct": true, "blobs": true}}}
	direct := site.Open(t, f.db)
	for _, q := range []string{
		"CREATE TABLE acct (id INT PRIMARY KEY, bal INT NOT NULL) ENGINE=InnoDB",
		"CREATE TABLE notes (id INT AUTO_INCREMENT PRIMARY KEY, txt TEXT) ENGINE=InnoDB",
		"CREATE TABLE blobs (id INT PRIMARY KEY, b LONGBLOB) ENGINE=InnoDB",
		"INSERT INTO acct VALUES (1, 100), (2, 100)",
	} {
		if _, err := direct.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	f.gw = startGateway(t, Config{Backend: site.Addr(), Hooks: f.rec})
	return f
}

func startGateway(t testing.TB, cfg Config) *Gateway {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	cfg.Log = zaptest.NewLogger(t)
	gw, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return gw
}

// open opens a pool through the gateway; mod adjusts the driver config.
func (f *fixture) open(mod func(c *mysql.Config)) *sql.DB {
	c := mysql.NewConfig()
	c.User, c.Net, c.Addr, c.DBName = "root", "tcp", f.gw.Addr(), f.db
	if mod != nil {
		mod(c)
	}
	db, err := sql.Open("mysql", c.FormatDSN())
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { db.Close() })
	return db
}

// conn pins one connection of db and returns it with its connection id.
func (f *fixture) conn(db *sql.DB) (*sql.Conn, uint32) {
	f.t.Helper()
	c, err := db.Conn(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close() })
	var id uint32
	if err := c.QueryRowContext(context.Background(), "SELECT CONNECTION_ID()").Scan(&id); err != nil {
		f.t.Fatal(err)
	}
	return c, id
}

func (f *fixture) lastGTID(c *sql.Conn) string {
	f.t.Helper()
	var g string
	if err := c.QueryRowContext(context.Background(), "SELECT @@last_gtid").Scan(&g); err != nil {
		f.t.Fatal(err)
	}
	return g
}

func (f *fixture) exec(c *sql.Conn, q string, args ...any) {
	f.t.Helper()
	if _, err := c.ExecContext(context.Background(), q, args...); err != nil {
		f.t.Fatalf("%s: %v", q, err)
	}
}

func (f *fixture) balance(id int) int {
	f.t.Helper()
	var b int
	if err := f.site.Open(f.t, f.db).QueryRow("SELECT bal FROM acct WHERE id = ?", id).Scan(&b); err != nil {
		f.t.Fatal(err)
	}
	return b
}

// committed are the calls of a transaction on tables that commits.
func (f *fixture) committed(tables []Table) []call {
	return []call{{Hook: "acquire", Tables: tables}, {Hook: "committed", Tables: tables}, {Hook: "ended", Tables: tables}}
}

func (f *fixture) acct() []Table { return []Table{{DB: f.db, Name: "acct"}} }

// want checks the recorded calls: hook names with tables, and GTIDs where given.
func (f *fixture) want(got []call, want ...call) {
	f.t.Helper()
	if len(got) != len(want) {
		f.t.Fatalf("hook calls: got %+v, want %+v", got, want)
	}
	for i := range want {
		w, g := want[i], got[i]
		if g.Hook != w.Hook || !slices.Equal(g.Tables, w.Tables) || w.GTID != "" && g.GTID != w.GTID {
			f.t.Fatalf("hook call %d: got %+v, want %+v (all: %+v)", i, g, w, got)
		}
	}
}

func TestExplicitTransaction(t *testing.T) {
	for _, interpolate := range []bool{false, true} {
		t.Run(fmt.Sprintf("interpolateParams=%v", interpolate), func(t *testing.T) {
			f := newFixture(t)
			c, id := f.conn(f.open(func(c *mysql.Config) { c.InterpolateParams = interpolate }))
			ctx := context.Background()
			tx, err := c.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			var bal int
			if err := tx.QueryRow("SELECT bal FROM acct WHERE id = ? FOR UPDATE", 1).Scan(&bal); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec("UPDATE acct SET bal = ? WHERE id = ?", bal-10, 1); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec("INSERT INTO notes (txt) VALUES (?)", "moved 10"); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			gtid := f.lastGTID(c)
			f.want(f.rec.take(id), call{Hook: "acquire", Tables: f.acct()},
				call{Hook: "committed", Tables: f.acct(), GTID: gtid}, call{Hook: "ended", Tables: f.acct()})
			if got := f.balance(1); got != 90 {
				t.Fatalf("balance %d, want 90", got)
			}
		})
	}
}

func TestRollback(t *testing.T) {
	f := newFixture(t)
	c, id := f.conn(f.open(nil))
	f.exec(c, "BEGIN")
	f.exec(c, "UPDATE acct SET bal = 0 WHERE id = 1")
	f.exec(c, "ROLLBACK")
	f.want(f.rec.take(id), call{Hook: "acquire", Tables: f.acct()}, call{Hook: "ended", Tables: f.acct()})
	if got := f.balance(1); got != 100 {
		t.Fatalf("balance %d, want 100", got)
	}
}

func TestAutocommit(t *testing.T) {
	f := newFixture(t)
	c, id := f.conn(f.open(nil))
	f.exec(c, "UPDATE acct SET bal = bal + 1 WHERE id = ?", 2) // server-side prepared
	gtid := f.lastGTID(c)
	f.want(f.rec.take(id), call{Hook: "acquire", Tables: f.acct()},
		call{Hook: "committed", Tables: f.acct(), GTID: gtid}, call{Hook: "ended", Tables: f.acct()})
	// A read is a transaction that does not commit.
	var n int
	if err := c.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM acct").Scan(&n); err != nil {
		t.Fatal(err)
	}
	f.want(f.rec.take(id), call{Hook: "acquire", Tables: f.acct()}, call{Hook: "ended", Tables: f.acct()})
}

func TestAsyncTablesCallNoHook(t *testing.T) {
	f := newFixture(t)
	c, id := f.conn(f.open(nil))
	f.exec(c, "INSERT INTO notes (txt) VALUES ('a')")
	f.exec(c, "BEGIN")
	f.exec(c, "INSERT INTO notes (txt) VALUES (?)", "b")
	f.exec(c, "COMMIT")
	rows, err := c.QueryContext(context.Background(), "SELECT * FROM notes")
	if err != nil {
		t.Fatal(err)
	}
	rows.Close()
	f.want(f.rec.take(id))
}

func TestMultiStatementCommitInTheMiddle(t *testing.T) {
	f := newFixture(t)
	c, id := f.conn(f.open(func(c *mysql.Config) { c.MultiStatements = true }))
	f.exec(c, "BEGIN; UPDATE acct SET bal = bal - 5 WHERE id = 1; COMMIT; INSERT INTO notes (txt) VALUES ('x'); SELECT 1")
	gtid := f.lastGTID(c)
	f.want(f.rec.take(id), call{Hook: "acquire", Tables: f.acct()},
		call{Hook: "committed", Tables: f.acct(), GTID: gtid}, call{Hook: "ended", Tables: f.acct()})

	// A commit and a new transaction in one command: Committed, then Ended at the end.
	f.exec(c, "BEGIN; UPDATE acct SET bal = bal - 5 WHERE id = 1; COMMIT; BEGIN; UPDATE acct SET bal = bal + 1 WHERE id = 2")
	first := f.lastGTID(c)
	f.want(f.rec.take(id), call{Hook: "acquire", Tables: f.acct()}, call{Hook: "committed", Tables: f.acct(), GTID: first})
	f.exec(c, "COMMIT")
	second := f.lastGTID(c)
	if second == first {
		t.Fatalf("second commit has the GTID of the first: %s", first)
	}
	f.want(f.rec.take(id), call{Hook: "committed", Tables: f.acct(), GTID: second}, call{Hook: "ended", Tables: f.acct()})
	if got := f.balance(1); got != 90 {
		t.Fatalf("balance %d, want 90", got)
	}
}

func TestBigBlob(t *testing.T) {
	blob := bytes.Repeat([]byte("0123456789abcdef"), 20<<20/16)
	blob[12345] = 0xFE
	for _, interpolate := range []bool{false, true} {
		t.Run(fmt.Sprintf("interpolateParams=%v", interpolate), func(t *testing.T) {
			f := newFixture(t)
			c, id := f.conn(f.open(func(c *mysql.Config) { c.InterpolateParams = interpolate }))
			f.exec(c, "INSERT INTO blobs VALUES (?, ?)", 1, blob)
			blobs := []Table{{DB: f.db, Name: "blobs"}}
			f.want(f.rec.take(id), call{Hook: "acquire", Tables: blobs}, call{Hook: "committed", Tables: blobs},
				call{Hook: "ended", Tables: blobs})
			var got []byte
			if err := c.QueryRowContext(context.Background(), "SELECT b FROM blobs WHERE id = ?", 1).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, blob) {
				t.Fatalf("blob read back differs (%d bytes, want %d)", len(got), len(blob))
			}
		})
	}
}

func TestAcquireRefused(t *testing.T) {
	f := newFixture(t)
	want := &SQLError{Code: 1205, State: "HY000", Message: "sync table acct is owned by site b"}
	f.rec.set(func(r *recorder) { r.acquireErr = want })
	c, id := f.conn(f.open(nil))
	for _, args := range [][]any{{"UPDATE acct SET bal = 0 WHERE id = 1"}, {"UPDATE acct SET bal = 0 WHERE id = ?", 1}} {
		q := args[0].(string)
		_, err := c.ExecContext(context.Background(), q, args[1:]...)
		var me *mysql.MySQLError
		if !errors.As(err, &me) || me.Number != want.Code || string(me.SQLState[:]) != want.State || me.Message != want.Message {
			t.Fatalf("%s: got %v, want %v", q, err, want)
		}
	}
	if got := f.balance(1); got != 100 {
		t.Fatalf("balance %d: the refused statement ran", got)
	}
	f.want(f.rec.take(id), call{Hook: "acquire", Tables: f.acct()}, call{Hook: "ended"},
		call{Hook: "acquire", Tables: f.acct()}, call{Hook: "ended"})
	// Inside a transaction a refusal leaves it open.
	f.exec(c, "BEGIN")
	if _, err := c.ExecContext(context.Background(), "DELETE FROM acct"); err == nil {
		t.Fatal("DELETE ran")
	}
	f.want(f.rec.take(id), call{Hook: "acquire", Tables: f.acct()})
	f.rec.set(func(r *recorder) { r.acquireErr = nil })
	f.exec(c, "UPDATE acct SET bal = 1 WHERE id = 1")
	f.exec(c, "COMMIT")
	f.want(f.rec.take(id), call{Hook: "acquire", Tables: f.acct()}, call{Hook: "committed", Tables: f.acct()},
		call{Hook: "ended", Tables: f.acct()})
}

// TestAcquireRefusedLongData: a refused execute does not leave its long data behind to be
// joined to the next execute's.
func TestAcquireRefusedLongData(t *testing.T) {
	f := newFixture(t)
	c, id := f.conn(f.open(func(c *mysql.Config) { c.MaxAllowedPacket = 1 << 20 })) // long data from 350 KiB
	ctx := context.Background()
	stmt, err := c.PrepareContext(ctx, "INSERT INTO blobs VALUES (?, ?)")
	if err != nil {
		t.Fatal(err)
	}
	defer stmt.Close()
	blob := bytes.Repeat([]byte{7}, 1<<20)
	f.rec.set(func(r *recorder) { r.acquireErr = errors.New("not now") })
	if _, err := stmt.ExecContext(ctx, 1, blob); err == nil || !strings.Contains(err.Error(), "not now") {
		t.Fatalf("got %v, want the refusal", err)
	}
	f.rec.set(func(r *recorder) { r.acquireErr = nil })
	if _, err := stmt.ExecContext(ctx, 1, blob); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := c.QueryRowContext(ctx, "SELECT LENGTH(b) FROM blobs WHERE id = 1").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(blob) {
		t.Fatalf("blob of %d bytes stored, want %d", n, len(blob))
	}
	f.rec.take(id)
}

func TestCommittedFails(t *testing.T) {
	f := newFixture(t)
	f.rec.set(func(r *recorder) { r.committedErr = errors.New("store unreachable") })
	c, id := f.conn(f.open(nil))
	f.exec(c, "BEGIN")
	f.exec(c, "UPDATE acct SET bal = 7 WHERE id = 1")
	_, err := c.ExecContext(context.Background(), "COMMIT")
	var me *mysql.MySQLError
	if !errors.As(err, &me) || me.Number != 1105 || !strings.Contains(me.Message, "store unreachable") {
		t.Fatalf("COMMIT: got %v, want ERROR 1105 store unreachable", err)
	}
	f.want(f.rec.take(id), call{Hook: "acquire", Tables: f.acct()}, call{Hook: "committed", Tables: f.acct()},
		call{Hook: "ended", Tables: f.acct()})
	// The connection goes on.
	f.rec.set(func(r *recorder) { r.committedErr = nil })
	f.exec(c, "UPDATE acct SET bal = 8 WHERE id = 1")
}

func TestKilledMidTransaction(t *testing.T) {
	f := newFixture(t)
	c, id := f.conn(f.open(nil))
	f.exec(c, "BEGIN")
	f.exec(c, "UPDATE acct SET bal = 0 WHERE id = 1")
	if _, err := f.site.Open(t, "").Exec(fmt.Sprintf("KILL %d", id)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		calls := f.rec.take(id)
		if len(calls) == 2 && calls[1].Hook == "ended" && slices.Equal(calls[1].Tables, f.acct()) {
			return nil
		}
		f.rec.mu.Lock()
		f.rec.calls = append(calls, f.rec.calls...)
		f.rec.mu.Unlock()
		return fmt.Errorf("calls %+v", calls)
	})
	if got := f.balance(1); got != 100 {
		t.Fatalf("balance %d, want 100 (rolled back)", got)
	}
}

func TestClientQuitsMidTransaction(t *testing.T) {
	f := newFixture(t)
	c := mysql.NewConfig()
	c.User, c.Net, c.Addr, c.DBName = "root", "tcp", f.gw.Addr(), f.db
	connector, err := mysql.NewConnector(c)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	db.SetMaxIdleConns(0) // a released connection is closed
	conn, id := f.conn(db)
	f.exec(conn, "BEGIN")
	f.exec(conn, "UPDATE acct SET bal = 0 WHERE id = 2")
	// Close the underlying connection with the transaction open.
	_ = conn.Raw(func(dc any) error { return dc.(interface{ Close() error }).Close() })
	testenv.Eventually(t, 10*time.Second, func() error {
		f.rec.mu.Lock()
		defer f.rec.mu.Unlock()
		for _, c := range f.rec.calls {
			if c.Conn == id && c.Hook == "ended" {
				return nil
			}
		}
		return fmt.Errorf("no Ended: %+v", f.rec.calls)
	})
}

func TestImplicitCommitAndDeadlock(t *testing.T) {
	f := newFixture(t)
	db := f.open(nil)
	c, id := f.conn(db)
	f.exec(c, "BEGIN")
	f.exec(c, "UPDATE acct SET bal = 50 WHERE id = 1")
	f.exec(c, "CREATE TABLE more (id INT PRIMARY KEY)") // commits the UPDATE
	gtid := f.lastGTID(c)
	f.want(f.rec.take(id), call{Hook: "acquire", Tables: f.acct()},
		call{Hook: "committed", Tables: f.acct(), GTID: gtid}, call{Hook: "ended", Tables: f.acct()})

	// COMMIT AND CHAIN and BEGIN commit and open the next transaction in one statement.
	for _, next := range []string{"COMMIT AND CHAIN", "BEGIN"} {
		f.exec(c, "BEGIN")
		f.exec(c, "UPDATE acct SET bal = bal + 1 WHERE id = 1")
		f.exec(c, next)
		gtid := f.lastGTID(c)
		f.want(f.rec.take(id), call{Hook: "acquire", Tables: f.acct()}, call{Hook: "committed", Tables: f.acct(), GTID: gtid})
		f.exec(c, "ROLLBACK")
		f.want(f.rec.take(id), call{Hook: "ended", Tables: f.acct()})
	}

	// Two transactions lock rows in opposite order: one is rolled back as a deadlock.
	c2, id2 := f.conn(db)
	f.exec(c, "BEGIN")
	f.exec(c2, "BEGIN")
	f.exec(c, "UPDATE acct SET bal = bal + 1 WHERE id = 1")
	f.exec(c2, "UPDATE acct SET bal = bal + 1 WHERE id = 2")
	errs := make(chan error, 2)
	go func() {
		_, err := c.ExecContext(context.Background(), "UPDATE acct SET bal = bal + 1 WHERE id = 2")
		errs <- err
	}()
	time.Sleep(200 * time.Millisecond)
	_, err2 := c2.ExecContext(context.Background(), "UPDATE acct SET bal = bal + 1 WHERE id = 1")
	err1 := <-errs
	loser, winner, loserID, winnerID := c2, c, id2, id
	if err1 != nil {
		loser, winner, loserID, winnerID, err1, err2 = c, c2, id, id2, err2, err1
	}
	var me *mysql.MySQLError
	if err1 != nil || !errors.As(err2, &me) || me.Number != 1213 {
		t.Fatalf("want one deadlock: %v, %v", err1, err2)
	}
	f.want(f.rec.take(loserID), call{Hook: "acquire", Tables: f.acct()}, call{Hook: "ended", Tables: f.acct()})
	f.exec(winner, "COMMIT")
	f.want(f.rec.take(winnerID), call{Hook: "acquire", Tables: f.acct()},
		call{Hook: "committed", Tables: f.acct()}, call{Hook: "ended", Tables: f.acct()})
	_ = loser
}

func TestStatementsTables(t *testing.T) {
	f := newFixture(t)
	c, id := f.conn(f.open(func(c *mysql.Config) { c.DBName = "" }))
	// No current database: a qualified name counts, USE moves it.
	f.exec(c, fmt.Sprintf("UPDATE `%s`.acct SET bal = 1 WHERE id = 1", f.db))
	f.want(f.rec.take(id), f.committed(f.acct())...)
	f.exec(c, "USE `"+f.db+"`")
	f.exec(c, "UPDATE acct SET bal = 2 WHERE id = 1")
	f.want(f.rec.take(id), f.committed(f.acct())...)
	// A statement the parser refuses stands for every sync table of the database.
	star := []Table{{DB: f.db, Name: "*"}}
	f.exec(c, "DELETE FROM acct WHERE id = 2 RETURNING id")
	f.want(f.rec.take(id), f.committed(star)...)
	// SQL-level PREPARE / EXECUTE.
	f.exec(c, "PREPARE s FROM 'UPDATE acct SET bal = 3 WHERE id = 1'")
	f.exec(c, "EXECUTE s")
	f.want(f.rec.take(id), f.committed(f.acct())...)
	// XA transactions may not use sync tables.
	f.exec(c, "XA START 'x1'")
	_, err := c.ExecContext(context.Background(), "UPDATE acct SET bal = 4 WHERE id = 1")
	var me *mysql.MySQLError
	if !errors.As(err, &me) || me.Number != 1399 {
		t.Fatalf("sync table in XA: got %v, want ERROR 1399", err)
	}
	f.exec(c, "XA END 'x1'")
	f.exec(c, "XA ROLLBACK 'x1'")
	f.exec(c, "UPDATE acct SET bal = 4 WHERE id = 1")
	if got := f.balance(1); got != 4 {
		t.Fatalf("balance %d, want 4", got)
	}
}
