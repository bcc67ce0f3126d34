package capture

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/testenv"
)

// TestDDLAndReplay alters a table mid-stream, then replays the old binlog after a restart:
// the events before the ALTER keep their old columns and schema version.
func TestDDLAndReplay(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.start(h.cfg)
	h.exec("CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(10))", "INSERT INTO t VALUES (1,'x')",
		"ALTER TABLE t ADD COLUMN b DECIMAL(8,3) NOT NULL DEFAULT 1.5, MODIFY a TEXT", "INSERT INTO t VALUES (2,'y',2.25)",
		"RENAME TABLE t TO t2", "INSERT INTO t2 VALUES (3,'z',0)", "TRUNCATE TABLE t2", "DROP TABLE t2")
	check := func(events []*changeevent.Event) {
		t.Helper()
		var got []string
		for _, e := range events {
			s := e.Source.Table + ":" + string(e.Op)
			if e.DDL != nil {
				s += ":" + e.DDL.Kind
			}
			got = append(got, s)
		}
		want := "t:ddl:CREATE,t:c,t:ddl:ALTER,t:c,t:ddl:RENAME,t2:c,t2:ddl:TRUNCATE,t2:ddl:DROP"
		if strings.Join(got, ",") != want {
			t.Fatalf("events %s\nwant   %s", strings.Join(got, ","), want)
		}
		create, ins1, alter, ins2 := events[0], events[1], events[2], events[3]
		// The SQL type is information_schema's when capture read it in time, else the
		// binlog's (varchar(<bytes> bytes)); the kind is exact either way.
		if len(ins1.Columns) != 2 || !strings.HasPrefix(ins1.Columns[1].SQLType, "varchar(") || ins1.SchemaVersion != create.Source.GTID {
			t.Errorf("insert before ALTER: columns %+v version %q, want 2 columns (a varchar) of version %s", ins1.Columns, ins1.SchemaVersion, create.Source.GTID)
		}
		if len(ins2.Columns) != 3 || ins2.After["b"] != "2.250" || ins2.Columns[1].Kind != changeevent.KindString || ins2.SchemaVersion != alter.Source.GTID {
			t.Errorf("insert after ALTER: after %v columns %+v version %q, want b=2.250 and version %s", ins2.After, ins2.Columns, ins2.SchemaVersion, alter.Source.GTID)
		}
		if ins1.After["a"] != "x" || ins2.After["a"] != "y" {
			t.Errorf("values %v %v", ins1.After, ins2.After)
		}
	}
	events := h.read(h.cfg.Stream, 8, 30*time.Second)
	check(events)
	r.stop(t)

	// Replay from the original start into a fresh stream, with the schema history kept.
	cfg := h.cfg
	cfg.Stream = h.cfg.Stream + "_REPLAY"
	ctx := context.Background()
	kv, err := h.js.KeyValue(ctx, cfg.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, checkpointKey); err != nil {
		t.Fatal(err)
	}
	// The replay stream must not share subjects with the first one.
	if err := h.js.DeleteStream(ctx, h.cfg.Stream); err != nil {
		t.Fatal(err)
	}
	h.start(cfg)
	replayed := h.read(cfg.Stream, 8, 30*time.Second)
	check(replayed)
	for i := range events {
		if events[i].Source.GTID != replayed[i].Source.GTID || events[i].SchemaVersion != replayed[i].SchemaVersion {
			t.Errorf("replayed event %d: gtid %s version %s, first time %s %s", i, replayed[i].Source.GTID,
				replayed[i].SchemaVersion, events[i].Source.GTID, events[i].SchemaVersion)
		}
	}
}

// TestLoopPrevention: changes written in a session that keeps another site's GTID domain
// (as MUSIC's apply replays them) or with skip_replication are not captured.
func TestLoopPrevention(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.exec("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))")
	r := h.start(h.cfg)
	ctx := context.Background()
	conn, err := h.pool.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	other := h.site.Index + 50
	for _, q := range []string{
		fmt.Sprintf("SET SESSION gtid_domain_id=%d, server_id=%d", other, other),
		"INSERT INTO t VALUES (1,'replayed')",
		"SET SESSION gtid_domain_id=@@global.gtid_domain_id, server_id=@@global.server_id, skip_replication=1",
		"INSERT INTO t VALUES (2,'skipped')",
		"SET SESSION skip_replication=0",
		"INSERT INTO t VALUES (3,'own')",
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	events := h.read(h.cfg.Stream, 1, 30*time.Second)
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := testutil.ToFloat64(r.c.m.Skipped.WithLabelValues("other_domain")); n < 1 {
			return fmt.Errorf("skipped other_domain %v", n)
		}
		return nil
	})
	events = rowEvents(h.read(h.cfg.Stream, 1, 5*time.Second))
	if len(events) != 1 || events[0].After["v"] != "own" {
		t.Fatalf("published %d events (first %v), want only the own-domain insert", len(events), events[0].After)
	}
	// The flagged insert never reached capture: the server filters skip_replication
	// transactions on capture's dump connection (the reader would drop and count them).
	if got := testutil.ToFloat64(r.c.m.Skipped.WithLabelValues("skip_replication")); got != 0 {
		t.Errorf("capture received %v skip_replication transactions; the server should have filtered them", got)
	}
	if g, _ := ParseGTID(events[0].Source.GTID); g.Domain != uint32(h.site.Index) {
		t.Errorf("gtid %s not of domain %d", events[0].Source.GTID, h.site.Index)
	}
}

// TestTableWithoutPK: published with all columns as key, counted in a metric.
func TestTableWithoutPK(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.exec("CREATE TABLE nopk (a INT, b VARCHAR(10))")
	r := h.start(h.cfg)
	h.exec("INSERT INTO nopk VALUES (1,'x'),(1,'x')", "DELETE FROM nopk LIMIT 1")
	events := rowEvents(h.read(h.cfg.Stream, 4, 30*time.Second))
	want := changeevent.Row{"a": int64(1), "b": "x"}
	for _, e := range events {
		if fmt.Sprint(e.Key) != fmt.Sprint(want) {
			t.Errorf("%s key %v, want all columns %v", e.Op, e.Key, want)
		}
	}
	if got := testutil.ToFloat64(r.c.m.NoPK); got != 1 {
		t.Errorf("music_capture_tables_without_pk = %v, want 1", got)
	}
}

// TestLatin1TextCaptured: latin1 text with bytes above 0x7F (which once stopped its table)
// is published as the UTF-8 text MariaDB converts it to, and no table is stopped.
func TestLatin1TextCaptured(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.exec("CREATE TABLE l1 (id INT PRIMARY KEY, l VARCHAR(10) CHARACTER SET latin1)", "CREATE TABLE good (id INT PRIMARY KEY)")
	r := h.start(h.cfg)
	h.exec("INSERT INTO l1 VALUES (1, _latin1 0x636166E9)", "INSERT INTO good VALUES (1)", "INSERT INTO l1 VALUES (2, 'x')")
	events := h.readRows(h.cfg.Stream, 3, 30*time.Second)
	if len(events) != 3 || events[0].After["l"] != "café" {
		t.Fatalf("published %d events (first %v), want 3 with l = café", len(events), events[0].After)
	}
	if errs := r.c.TableErrors(); len(errs) != 0 {
		t.Fatalf("table errors %v, want none", errs)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.Site, ok.DSN, ok.DomainID = "a", "root@tcp(127.0.0.1:3306)/", 1
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	cases := map[string]struct {
		mut  func(*Config)
		want string
	}{
		"no site":       {func(c *Config) { c.Site = "" }, "site: required"},
		"bad site":      {func(c *Config) { c.Site = "a.b" }, "site:"},
		"no dsn":        {func(c *Config) { c.DSN = "" }, "dsn: required"},
		"unix dsn":      {func(c *Config) { c.DSN = "root@unix(/tmp/x.sock)/" }, "dsn:"},
		"no domain":     {func(c *Config) { c.DomainID = 0 }, "domain_id"},
		"site serverid": {func(c *Config) { c.ServerID = 2 }, "server_id"},
		"short dedup":   {func(c *Config) { c.DuplicateWindow = time.Second }, "duplicate_window"},
		"bad start":     {func(c *Config) { c.Start = "yesterday" }, "start"},
		"bad pattern":   {func(c *Config) { c.Include = []string{"[x"} }, "include/exclude"},
		"window":        {func(c *Config) { c.MaxInFlight = 0 }, "max_in_flight"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := ok
			tc.mut(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error naming %q", err, tc.want)
			}
			if _, err := New(c, nil, nil); err == nil {
				t.Fatal("New accepted a bad config")
			}
		})
	}
}

func TestParseDDL(t *testing.T) {
	cases := []struct{ stmt, verb, tables string }{
		{"CREATE TABLE t (id INT)", "CREATE", "d.t"},
		{"CREATE TABLE x.t (id INT PRIMARY KEY,\n  v INT)", "CREATE", "x.t"},
		{"ALTER TABLE t\n  ADD COLUMN c INT", "ALTER", "d.t"},
		{"create table if not exists `x`.`y y` (id int)", "CREATE", "x.y y"},
		{"ALTER TABLE t ADD COLUMN c INT", "ALTER", "d.t"},
		{"ALTER TABLE t RENAME TO u", "ALTER", "d.t,d.u"},
		{"DROP TABLE IF EXISTS `a`,b.c /* generated by server */", "DROP", "d.a,b.c"},
		{"RENAME TABLE a TO b, c TO d", "RENAME", "d.a,d.b,d.c,d.d"},
		{"TRUNCATE TABLE t", "TRUNCATE", "d.t"},
		{"TRUNCATE t", "TRUNCATE", "d.t"},
		{"CREATE INDEX i ON t (c)", "ALTER", "d.t"},
		{"CREATE DATABASE x", "", ""},
		{"CREATE VIEW v AS SELECT 1", "", ""},
		{"GRANT ALL ON *.* TO x", "", ""},
	}
	for _, c := range cases {
		verb, targets := parseDDL("d", c.stmt)
		var names []string
		for _, t := range targets {
			names = append(names, t.db+"."+t.table)
		}
		if verb != c.verb || strings.Join(names, ",") != c.tables {
			t.Errorf("parseDDL(%q) = %s %v, want %s %s", c.stmt, verb, names, c.verb, c.tables)
		}
	}
}

func rowEvents(events []*changeevent.Event) []*changeevent.Event {
	var out []*changeevent.Event
	for _, e := range events {
		if e.Op != changeevent.OpDDL {
			out = append(out, e)
		}
	}
	return out
}

// The binlog keeps commit times in whole seconds; capture's commit clock makes them
// strictly increase in GTID order, so last-writer-wins at the remote sites never orders
// two changes of one site against their commit order.
func TestCommitClockIncreases(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.exec("CREATE TABLE t (id INT PRIMARY KEY, v INT)")
	h.start(h.cfg)
	stmts := []string{"INSERT INTO t VALUES (1, 0)"}
	for i := 1; i <= 40; i++ {
		stmts = append(stmts, fmt.Sprintf("UPDATE t SET v = %d WHERE id = 1", i))
	}
	before := time.Now().Add(-time.Second).UnixMicro()
	h.exec(stmts...)
	events := h.readRows(h.cfg.Stream, len(stmts), 30*time.Second)
	if len(events) != len(stmts) {
		t.Fatalf("got %d row events, want %d", len(events), len(stmts))
	}
	for i, e := range events {
		if e.Source.TsUs < before || e.Source.TsUs > time.Now().Add(time.Minute).UnixMicro() || e.Source.TsMs != e.Source.TsUs/1000 {
			t.Fatalf("event %d: commit time %d µs (%d ms) far from the wall clock %d µs", i, e.Source.TsUs, e.Source.TsMs, before)
		}
		if i > 0 && e.Source.TsUs <= events[i-1].Source.TsUs {
			t.Fatalf("event %d (%s): commit time %d not after %d (%s)", i, e.Source.GTID,
				e.Source.TsUs, events[i-1].Source.TsUs, events[i-1].Source.GTID)
		}
	}
}

func TestCommitClock(t *testing.T) {
	const sec = 1_800_000_000
	lo := int64(sec) * 1_000_000
	for _, c := range []struct {
		name            string
		now, prev, want int64
	}{
		{"live: the wall clock", lo + 1234, lo - 5, lo + 1234},
		{"capture clock behind the server's: the binlog second", lo - 3_000_000, 0, lo},
		{"catching up: the end of the binlog second", lo + 90_000_000, lo + 10, lo + 999_999},
		{"busy second: after the previous transaction", lo + 500, lo + 700, lo + 701},
		{"past the second under load", lo + 999_999, lo + 999_999, lo + 1_000_000},
	} {
		if got := commitClock(sec, c.now, c.prev); got != c.want {
			t.Errorf("%s: commitClock(%d, %d, %d) = %d, want %d", c.name, sec, c.now, c.prev, got, c.want)
		}
	}
}
