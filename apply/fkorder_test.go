package apply_test

import (
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/music-coord/music/apply/applytest"
	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/testenv"
)

// fkRows is db.child as sorted "id:pid" (or an error text).
func fkRows(db *sql.DB) string {
	rs, err := db.Query("SELECT id, COALESCE(pid, -1) FROM child ORDER BY id")
	if err != nil {
		return err.Error()
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		var id, pid int64
		_ = rs.Scan(&id, &pid)
		out = append(out, fmt.Sprintf("%d:%d", id, pid))
	}
	return strings.Join(out, " ")
}

// Transactions of one origin on tables linked by a foreign key apply in origin order,
// although they touch different rows: a parent's delete or re-key must not overtake the
// insert of its children (the children would be orphaned, not cascaded). The tables are
// created by the origin's DDL, so the foreign key groups are learnt right after it.
func TestForeignKeyTablesApplyInOriginOrder(t *testing.T) {
	site := testenv.Sites(t)[2]
	db := testenv.NewDatabase(t, site)
	_, js := testenv.Connect(t, testenv.NATS(t))
	o := newOrigin(t, js, testenv.Prefix(t), "a", 1)
	parent := applytest.Table{DB: db, Name: "parent", Columns: []changeevent.Column{
		{Name: "id", Kind: changeevent.KindInt, SQLType: "int(11)", PK: true},
		{Name: "v", Kind: changeevent.KindString, SQLType: "varchar(10)", Nullable: true}}}
	child := applytest.Table{DB: db, Name: "child", Columns: []changeevent.Column{
		{Name: "id", Kind: changeevent.KindInt, SQLType: "int(11)", PK: true},
		{Name: "pid", Kind: changeevent.KindInt, SQLType: "int(11)", Nullable: true}}}
	p := func(id int64) changeevent.Row { return changeevent.Row{"id": id, "v": "p"} }
	c := func(id, pid int64) changeevent.Row { return changeevent.Row{"id": id, "pid": pid} }
	ts := int64(1_700_000_000_000)
	tx := func(events ...*changeevent.Event) {
		ts++
		publish(t, js, o.Tx(ts, events...)...)
	}
	tx(applytest.DDL(db, "parent", "CREATE", "CREATE TABLE parent (id INT PRIMARY KEY, v VARCHAR(10)) ENGINE=InnoDB"))
	tx(applytest.DDL(db, "child", "CREATE", "CREATE TABLE child (id INT PRIMARY KEY, pid INT, "+
		"FOREIGN KEY (pid) REFERENCES parent(id) ON DELETE CASCADE ON UPDATE CASCADE) ENGINE=InnoDB"))
	sink := openSink(t, site)
	w, _ := start(t, js, "c", o, sink)
	testenv.Eventually(t, 30*time.Second, func() error {
		if st := w.Status(); st.Applied != 2 {
			return fmt.Errorf("%d of the 2 DDL applied", st.Applied)
		}
		return nil
	})
	// A local transaction holds a gap lock below child key 50 for a moment (a row it
	// inserts and rolls back bounds the gap): the first family's child inserts are slow, as
	// under load, and without ordering its parent's delete and re-key overtake them.
	pool := site.Open(t, db)
	lock, err := pool.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"INSERT INTO child VALUES (50, NULL)", "SELECT id FROM child WHERE id < 50 FOR UPDATE"} {
		if _, err := lock.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	// Families of the torture test's sequence, every statement its own transaction: insert
	// parents 1, 2; children 10 (of 1), 20 and 21 (of 2); delete parent 1 (cascade: child
	// 10); re-key parent 2 to 3 (cascade: children 20, 21).
	const families = 12
	var want []string
	for f := range int64(families) {
		b := f * 100
		tx(parent.Insert(p(b + 1)))
		tx(parent.Insert(p(b + 2)))
		tx(child.Insert(c(b+10, b+1)))
		tx(child.Insert(c(b+20, b+2)))
		tx(child.Insert(c(b+21, b+2)))
		tx(parent.Delete(p(b + 1)))
		tx(parent.Update(p(b+2), p(b+3)))
		want = append(want, fmt.Sprintf("%d:%d %d:%d", b+20, b+3, b+21, b+3))
	}
	time.Sleep(1500 * time.Millisecond)
	if err := lock.Rollback(); err != nil {
		t.Fatal(err)
	}
	total := uint64(2 + 7*families)
	testenv.Eventually(t, 120*time.Second, func() error {
		if st := w.Status(); st.Applied != total || st.Pending != 0 {
			return fmt.Errorf("%d of %d applied, %d pending", st.Applied, total, st.Pending)
		}
		return nil
	})
	if got, w := fkRows(pool), strings.Join(want, " "); got != w {
		t.Fatalf("children differ from the origin's:\n got  %s\n want %s", got, w)
	}
	for _, c := range sink.Collectors() {
		if n := testutil.CollectAndCount(c, "music_apply_fk_unchecked_total"); n != 0 {
			t.Fatalf("%d tables replayed without foreign key checks", n)
		}
	}
}
