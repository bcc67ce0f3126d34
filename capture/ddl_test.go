package capture

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/music-coord/music/changeevent"
)

// TestDDLEvents: every schema change is ONE DDL event (renames of several tables, a swap,
// a multi-table DROP included); CREATE TABLE ... SELECT gives its DDL as a transaction of
// its own ("<gtid>/ddl") before its rows; database DDL is published on the database; the
// schema history follows renames (after the swap, r1's history is r2's).
func TestDDLEvents(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start(h.cfg)
	h.exec("CREATE TABLE t (id INT PRIMARY KEY, a INT)", "INSERT INTO t VALUES (1,1)",
		"ALTER TABLE t RENAME COLUMN a TO a2", "INSERT INTO t VALUES (2,2)",
		"CREATE TABLE r1 (id INT PRIMARY KEY)", "CREATE TABLE r2 (id INT PRIMARY KEY, w INT)",
		"RENAME TABLE r1 TO tmp, r2 TO r1, tmp TO r2", "INSERT INTO r1 VALUES (1, 5)",
		"CREATE TABLE cs (PRIMARY KEY (id)) AS SELECT * FROM t",
		"ALTER TABLE t DROP PRIMARY KEY, ADD PRIMARY KEY (id, a2)",
		"DROP TABLE r1, r2",
		"ALTER DATABASE `"+h.db+"` CHARACTER SET utf8mb4",
		"CREATE OR REPLACE TABLE o (id INT PRIMARY KEY, u UUID)")
	want := "t:ddl:CREATE,t:c,t:ddl:ALTER,t:c,r1:ddl:CREATE,r2:ddl:CREATE,r1:ddl:RENAME,r1:c," +
		"cs:ddl:CREATE,cs:c,cs:c,t:ddl:ALTER,r1:ddl:DROP,*:ddl:ALTER DATABASE,o:ddl:CREATE"
	n := strings.Count(want, ",") + 1
	events := h.read(h.cfg.Stream, n, 30*time.Second)
	var got []string
	for _, e := range events {
		s := e.Source.Table + ":" + string(e.Op)
		if e.DDL != nil {
			s += ":" + e.DDL.Kind
		}
		got = append(got, s)
	}
	if strings.Join(got, ",") != want {
		t.Fatalf("events %s\nwant   %s", strings.Join(got, ","), want)
	}
	// The row after RENAME COLUMN carries the new name.
	if _, ok := events[3].After["a2"]; !ok {
		t.Errorf("insert after RENAME COLUMN: %v", events[3].After)
	}
	// The swap: r1 now has r2's columns and the swap as schema version.
	ins := events[7]
	if len(ins.Columns) != 2 || ins.Columns[1].Name != "w" || ins.SchemaVersion != events[6].Source.GTID {
		t.Errorf("insert into r1 after the swap: columns %+v version %s, want (id, w) of %s", ins.Columns, ins.SchemaVersion, events[6].Source.GTID)
	}
	// CTAS: the DDL is its own transaction, the rows keep the GTID.
	cddl, crow := events[8], events[9]
	if cddl.Transaction.ID != cddl.Source.GTID+"/ddl" || cddl.Transaction.Total != 1 || crow.Transaction.ID != cddl.Source.GTID ||
		crow.Transaction.Total != 2 || !strings.HasPrefix(cddl.DDL.Statement, "CREATE TABLE `cs`") {
		t.Errorf("CTAS: ddl %+v %q, row %+v", cddl.Transaction, cddl.DDL.Statement, crow.Transaction)
	}
	// Primary-key change: the event's columns carry the new key.
	var pk []string
	for _, c := range events[11].Columns {
		if c.PK {
			pk = append(pk, c.Name)
		}
	}
	if strings.Join(pk, ",") != "id,a2" {
		t.Errorf("primary key after the change: %v", pk)
	}
	if db := events[13]; db.Source.DB != h.db || db.Source.Table != "*" {
		t.Errorf("database ddl on %s.%s", db.Source.DB, db.Source.Table)
	}
	// The stored history of r1 holds r2's CREATE, then the swap.
	kv, err := h.js.KeyValue(context.Background(), h.cfg.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	hist := map[string]SchemaHistory{}
	keys, _ := kv.Keys(context.Background())
	for _, k := range keys {
		if !strings.HasPrefix(k, "schema.") {
			continue
		}
		e, err := kv.Get(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		var sh SchemaHistory
		if json.Unmarshal(e.Value(), &sh) == nil {
			hist[sh.Table] = sh
		}
	}
	r1 := hist["r1"]
	if len(r1.Versions) < 2 || !strings.Contains(r1.Versions[0].DDL, "r2") || r1.Versions[1].GTID != events[6].Source.GTID {
		t.Errorf("history of r1: %+v", r1.Versions)
	}
	_ = changeevent.OpDDL
}
