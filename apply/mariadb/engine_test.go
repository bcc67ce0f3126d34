package mariadb_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/music-coord/music/apply/applytest"
	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/testenv"
)

func execAll(t *testing.T, db *sql.DB, stmts ...string) {
	t.Helper()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func query(t *testing.T, db *sql.DB, q string) string {
	t.Helper()
	rs, err := db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	cols, _ := rs.Columns()
	var out []string
	for rs.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var parts []string
		for _, v := range vals {
			parts = append(parts, v.String)
		}
		out = append(out, strings.Join(parts, ","))
	}
	return strings.Join(out, " ")
}

// A table without a primary key is a multiset: duplicates arrive, an UPDATE or DELETE of
// one of two identical rows changes exactly one, and a redelivery changes nothing.
func TestMultisetTableWithoutPK(t *testing.T) {
	f := newFixture(t, testenv.Sites(t)[1])
	execAll(t, f.db, "CREATE TABLE np (a INT, b VARCHAR(10), x FLOAT)")
	np := applytest.Table{DB: f.name, Name: "np", Columns: []changeevent.Column{
		{Name: "a", Kind: changeevent.KindInt, SQLType: "int(11)", Nullable: true},
		{Name: "b", Kind: changeevent.KindString, SQLType: "varchar(10)", Nullable: true},
		{Name: "x", Kind: changeevent.KindFloat, SQLType: "float", Nullable: true},
	}}
	row := func(a int64, b string) changeevent.Row {
		return changeevent.Row{"a": a, "b": b, "x": float32(0.1)}
	}
	o := applytest.NewOrigin("a", 1)
	tx1 := o.Txn(1000, np.Insert(row(1, "x")), np.Insert(row(1, "x")), np.Insert(changeevent.Row{"a": int64(2), "b": nil, "x": nil}))
	f.apply(t, tx1)
	if res := f.apply(t, tx1); res.Applied != 0 || res.Duplicates == 0 {
		t.Fatalf("redelivery: %+v", res)
	}
	f.apply(t, o.Txn(2000, np.Update(row(1, "x"), row(1, "y"))))
	if got := query(t, f.db, "SELECT a,b FROM np ORDER BY a,b"); got != "1,x 1,y 2," {
		t.Fatalf("after update of one of two copies: %q", got)
	}
	tx3 := o.Txn(3000, np.Delete(row(1, "x")), np.Delete(changeevent.Row{"a": int64(2), "b": nil, "x": nil}))
	f.apply(t, tx3)
	f.apply(t, tx3)
	if got := query(t, f.db, "SELECT a,b FROM np ORDER BY a,b"); got != "1,y" {
		t.Fatalf("after deletes: %q", got)
	}
	// A second origin's insert of an identical row is another copy, not a conflict.
	b := applytest.NewOrigin("b", 2)
	f.apply(t, b.Txn(1500, np.Insert(row(1, "y"))))
	if got := query(t, f.db, "SELECT COUNT(*) FROM np WHERE b='y'"); got != "2" {
		t.Fatalf("copies of (1,y): %s", got)
	}
}

// A sequence's row (every NEXTVAL is binlogged as a write of the whole row) applies as
// the sequence's new state.
func TestSequenceRows(t *testing.T) {
	f := newFixture(t, testenv.Sites(t)[1])
	execAll(t, f.db, "CREATE SEQUENCE s1 CACHE 10")
	var cols []changeevent.Column
	for _, n := range []string{"next_not_cached_value", "minimum_value", "maximum_value", "start_value", "increment", "cache_size", "cycle_option", "cycle_count"} {
		k := changeevent.KindInt
		if n == "cache_size" || n == "cycle_option" {
			k = changeevent.KindUint
		}
		cols = append(cols, changeevent.Column{Name: n, Kind: k, SQLType: "bigint(21)"})
	}
	seq := applytest.Table{DB: f.name, Name: "s1", Columns: cols}
	state := func(next int64) changeevent.Row {
		return changeevent.Row{"next_not_cached_value": next, "minimum_value": int64(1), "maximum_value": int64(9223372036854775806),
			"start_value": int64(1), "increment": int64(1), "cache_size": uint64(10), "cycle_option": uint64(0), "cycle_count": int64(0)}
	}
	o := applytest.NewOrigin("a", 1)
	f.apply(t, o.Txn(1000, seq.Insert(state(11))))
	f.apply(t, o.Txn(2000, seq.Insert(state(21))))
	older := applytest.NewOrigin("b", 2)
	if res := f.apply(t, older.Txn(1500, seq.Insert(state(11)))); res.Conflicts != 1 {
		t.Fatalf("older state: %+v", res)
	}
	if got := query(t, f.db, "SELECT NEXTVAL(s1)"); got != "21" {
		t.Fatalf("nextval after replay: %s", got)
	}
}

// A parent's delete and primary key update cascade at the replica as at the origin.
func TestForeignKeyCascades(t *testing.T) {
	f := newFixture(t, testenv.Sites(t)[1])
	execAll(t, f.db,
		"CREATE TABLE parent (id INT PRIMARY KEY, v VARCHAR(10)) ENGINE=InnoDB",
		"CREATE TABLE child (id INT PRIMARY KEY, pid INT, FOREIGN KEY (pid) REFERENCES parent(id) ON DELETE CASCADE ON UPDATE CASCADE) ENGINE=InnoDB",
		"SET SESSION sql_log_bin=0",
	)
	parent := applytest.Table{DB: f.name, Name: "parent", Columns: []changeevent.Column{
		{Name: "id", Kind: changeevent.KindInt, SQLType: "int(11)", PK: true},
		{Name: "v", Kind: changeevent.KindString, SQLType: "varchar(10)", Nullable: true}}}
	child := applytest.Table{DB: f.name, Name: "child", Columns: []changeevent.Column{
		{Name: "id", Kind: changeevent.KindInt, SQLType: "int(11)", PK: true},
		{Name: "pid", Kind: changeevent.KindInt, SQLType: "int(11)", Nullable: true}}}
	p := func(id int64) changeevent.Row { return changeevent.Row{"id": id, "v": "p"} }
	c := func(id, pid int64) changeevent.Row { return changeevent.Row{"id": id, "pid": pid} }
	o := applytest.NewOrigin("a", 1)
	f.apply(t, o.Txn(1000, parent.Insert(p(1)), parent.Insert(p(2)), child.Insert(c(10, 1)), child.Insert(c(11, 1)), child.Insert(c(20, 2))))
	// The origin's binlog has the parent's changes only: InnoDB did the rest.
	f.apply(t, o.Txn(2000, parent.Delete(p(1))))
	f.apply(t, o.Txn(3000, parent.Update(p(2), p(3))))
	if got := query(t, f.db, "SELECT id,pid FROM child ORDER BY id"); got != "20,3" {
		t.Fatalf("children after cascades: %q", got)
	}
}

// A trigger guarded with @@skip_replication fires for local writes only; an unguarded one
// is reported.
func TestTriggersDoNotFireForReplays(t *testing.T) {
	f := newFixture(t, testenv.Sites(t)[1])
	execAll(t, f.db,
		"CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, kv_id BIGINT) ENGINE=InnoDB",
		"CREATE TRIGGER kv_audit AFTER INSERT ON kv FOR EACH ROW BEGIN IF @@skip_replication = 0 THEN INSERT INTO audit (kv_id) VALUES (NEW.id); END IF; END",
		"CREATE TABLE t2 (id INT PRIMARY KEY)",
		"CREATE TRIGGER t2_audit AFTER INSERT ON t2 FOR EACH ROW INSERT INTO audit (kv_id) VALUES (NEW.id)",
	)
	o := applytest.NewOrigin("a", 1)
	f.apply(t, o.Txn(1000, f.kv.Insert(applytest.Row(1, "x"))))
	if got := query(t, f.db, "SELECT COUNT(*) FROM audit"); got != "0" {
		t.Fatalf("audit rows after a replay: %s", got)
	}
	execAll(t, f.db, "INSERT INTO kv (id) VALUES (2)")
	if got := query(t, f.db, "SELECT COUNT(*) FROM audit"); got != "1" {
		t.Fatalf("audit rows after a local write: %s", got)
	}
	t2 := applytest.Table{DB: f.name, Name: "t2", Columns: []changeevent.Column{{Name: "id", Kind: changeevent.KindInt, SQLType: "int(11)", PK: true}}}
	f.apply(t, o.Txn(2000, t2.Insert(changeevent.Row{"id": int64(1)})))
	reg := prometheus.NewRegistry()
	reg.MustRegister(f.sink.Collectors()...)
	if v := metricValue(t, reg, "music_apply_unguarded_triggers_total"); v != 1 {
		t.Fatalf("unguarded triggers counted: %v", v)
	}
}

// Two different inserts of one key at two sites: one is lost, and that is counted as such.
func TestLostInsertCounted(t *testing.T) {
	f := newFixture(t, testenv.Sites(t)[1])
	a, b := applytest.NewOrigin("a", 1), applytest.NewOrigin("b", 2)
	f.apply(t, a.Txn(2000, f.kv.Insert(applytest.Row(7, "from a"))))
	if res := f.apply(t, b.Txn(1000, f.kv.Insert(applytest.Row(7, "from b")))); res.Conflicts != 1 {
		t.Fatalf("colliding insert: %+v", res)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(f.sink.Collectors()...)
	if v := metricValue(t, reg, "music_apply_lost_inserts_total"); v != 1 {
		t.Fatalf("lost inserts: %v", v)
	}
	_ = context.Background()
}

// OrderKeys gives the tables linked by foreign keys one key per group, none to other
// tables, and follows a replayed DDL at once.
func TestOrderKeysFollowForeignKeys(t *testing.T) {
	f := newFixture(t, testenv.Sites(t)[1])
	execAll(t, f.db,
		"CREATE TABLE parent (id INT PRIMARY KEY) ENGINE=InnoDB",
		"CREATE TABLE child (id INT PRIMARY KEY, pid INT, FOREIGN KEY (pid) REFERENCES parent(id)) ENGINE=InnoDB",
		"CREATE TABLE loner (id INT PRIMARY KEY) ENGINE=InnoDB",
	)
	ctx := context.Background()
	keys := func(table string) string {
		t.Helper()
		k, err := f.sink.OrderKeys(ctx, f.name, table)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(k, ",")
	}
	group := "fk:" + f.name + "\x00child"
	if p, c, l := keys("parent"), keys("child"), keys("loner"); p != group || c != group || l != "" {
		t.Fatalf("order keys: parent %q, child %q, loner %q", p, c, l)
	}
	o := applytest.NewOrigin("a", 1)
	f.apply(t, o.Txn(1000, applytest.DDL(f.name, "loner", "ALTER",
		"ALTER TABLE loner ADD COLUMN pid INT, ADD FOREIGN KEY (pid) REFERENCES parent(id)")))
	if l := keys("loner"); l != group {
		t.Fatalf("order key of a table linked by a replayed DDL: %q, want %q", l, group)
	}
}

// A foreign key error that persists (the parent never comes) ends in a replay without
// checks, counted as a possible divergence.
func TestForeignKeyFallbackCounted(t *testing.T) {
	f := newFixture(t, testenv.Sites(t)[1])
	execAll(t, f.db,
		"CREATE TABLE parent (id INT PRIMARY KEY) ENGINE=InnoDB",
		"CREATE TABLE child (id INT PRIMARY KEY, pid INT, FOREIGN KEY (pid) REFERENCES parent(id)) ENGINE=InnoDB",
	)
	child := applytest.Table{DB: f.name, Name: "child", Columns: []changeevent.Column{
		{Name: "id", Kind: changeevent.KindInt, SQLType: "int(11)", PK: true},
		{Name: "pid", Kind: changeevent.KindInt, SQLType: "int(11)", Nullable: true}}}
	o := applytest.NewOrigin("b", 2)
	f.apply(t, o.Txn(1000, child.Insert(changeevent.Row{"id": int64(1), "pid": int64(7)})))
	if got := query(t, f.db, "SELECT id,pid FROM child"); got != "1,7" {
		t.Fatalf("child: %q", got)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(f.sink.Collectors()...)
	if v := metricValue(t, reg, "music_apply_fk_unchecked_total"); v != 1 {
		t.Fatalf("music_apply_fk_unchecked_total = %v, want 1", v)
	}
}
