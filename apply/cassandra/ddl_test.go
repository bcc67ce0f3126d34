package cassandra_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/gocql/gocql"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/apply/applytest"
	"github.com/music-coord/music/apply/cassandra"
	"github.com/music-coord/music/changeevent"
)

func col(name string, kind changeevent.Kind, pk bool) changeevent.Column {
	return changeevent.Column{Name: name, Kind: kind, PK: pk, Nullable: !pk}
}

// storeRows returns columns cols of the store table of db.tbl, one "v1/v2/..." per row,
// sorted, and the table's primary key.
func storeRows(t *testing.T, session *gocql.Session, ks, db, tbl string, cols ...string) (string, string) {
	t.Helper()
	var quoted []string
	for _, c := range cols {
		quoted = append(quoted, `"`+c+`"`)
	}
	iter := session.Query(fmt.Sprintf(`SELECT %s FROM %s."%s"`, strings.Join(quoted, ","), ks, cassandra.TableName(db, tbl))).Iter()
	var out []string
	for {
		row := map[string]any{}
		if !iter.MapScan(row) {
			break
		}
		var vals []string
		for _, c := range cols {
			vals = append(vals, fmt.Sprint(row[c]))
		}
		out = append(out, strings.Join(vals, "/"))
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	var pk []string
	kiter := session.Query("SELECT column_name, position FROM system_schema.columns WHERE keyspace_name=? AND table_name=? AND kind='partition_key' ALLOW FILTERING",
		ks, cassandra.TableName(db, tbl)).Iter()
	var name string
	var pos int
	byPos := map[int]string{}
	for kiter.Scan(&name, &pos) {
		byPos[pos] = name
	}
	if err := kiter.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range len(byPos) {
		pk = append(pk, byPos[i])
	}
	return strings.Join(out, " "), strings.Join(pk, ",")
}

// TestDDLKeyChangeAheadSchemas replays the torture script's ddl1 sequence (column add,
// renames, drop, then a primary-key change) as capture publishes it: row events carry the
// binlog's own columns and key, but each DDL event carries the columns information_schema
// showed when capture processed it, which may be `ahead` statements later (a CREATE can
// already show the final key). The store must end with every row, under the final key.
func TestDDLKeyChangeAheadSchemas(t *testing.T) {
	S := [][]changeevent.Column{
		{col("id", changeevent.KindInt, true), col("a", changeevent.KindInt, false), col("b", changeevent.KindString, false)},
		{col("id", changeevent.KindInt, true), col("a", changeevent.KindInt, false), col("c", changeevent.KindDateTime, false), col("b", changeevent.KindString, false)},
		{col("id", changeevent.KindInt, true), col("a2", changeevent.KindInt, false), col("c", changeevent.KindDateTime, false), col("b", changeevent.KindString, false)},
		{col("id", changeevent.KindInt, true), col("a2", changeevent.KindInt, false), col("c", changeevent.KindDateTime, false), col("b2", changeevent.KindString, false)},
		{col("id", changeevent.KindInt, true), col("a2", changeevent.KindInt, false), col("b2", changeevent.KindString, false)},
		{col("id", changeevent.KindInt, true), col("a2", changeevent.KindInt, false), col("b2", changeevent.KindString, false)},
		{col("id", changeevent.KindInt, true), col("a2", changeevent.KindInt, true), col("b2", changeevent.KindString, false)},
	}
	stmts := []string{
		"CREATE TABLE ddl1 (id INT PRIMARY KEY, a INT, b VARCHAR(10))",
		"ALTER TABLE ddl1 ADD COLUMN c DATETIME(6) NULL AFTER a, MODIFY b VARCHAR(40) NOT NULL DEFAULT ''",
		"ALTER TABLE ddl1 RENAME COLUMN a TO a2",
		"ALTER TABLE ddl1 CHANGE b b2 VARCHAR(50)",
		"ALTER TABLE ddl1 DROP COLUMN c",
		"ALTER TABLE ddl1 ADD INDEX (a2), ADD UNIQUE KEY u_b2 (b2)",
		"ALTER TABLE ddl1 DROP PRIMARY KEY, ADD PRIMARY KEY (id, a2)",
	}
	for _, ahead := range []int{0, 1, 2, 6} {
		t.Run(fmt.Sprintf("ahead %d", ahead), func(t *testing.T) {
			s, session, ks := newSink(t)
			o := applytest.NewOrigin("x", 1)
			ts := int64(1000)
			run := func(events ...*changeevent.Event) {
				t.Helper()
				ts += 10
				mustApply(t, s, o.Txn(ts, events...))
			}
			ddlEvent := func(i int) *changeevent.Event {
				kind := "ALTER"
				if i == 0 {
					kind = "CREATE"
				}
				e := applytest.DDL("shop", "ddl1", kind, stmts[i])
				e.Columns = S[min(i+ahead, len(S)-1)]
				return e
			}
			rows := func(i int, imgs ...changeevent.Row) []*changeevent.Event {
				tb := applytest.Table{DB: "shop", Name: "ddl1", Columns: S[i]}
				var out []*changeevent.Event
				for _, r := range imgs {
					out = append(out, tb.Insert(r))
				}
				return out
			}
			run(ddlEvent(0))
			run(rows(0, changeevent.Row{"id": int64(1), "a": int64(1), "b": "one"}, changeevent.Row{"id": int64(2), "a": int64(2), "b": "two"})...)
			run(ddlEvent(1))
			run(ddlEvent(2))
			run(ddlEvent(3))
			run(rows(3, changeevent.Row{"id": int64(3), "a2": int64(3), "c": nil, "b2": "three"})...)
			run(ddlEvent(4))
			run(ddlEvent(5))
			run(ddlEvent(6))
			run(rows(6, changeevent.Row{"id": int64(1), "a2": int64(100), "b2": "one again"})...)
			got, pk := storeRows(t, session, ks, "shop", "ddl1", "id", "a2", "b2")
			if want := "1/1/one 1/100/one again 2/2/two 3/3/three"; got != want || pk != "id,a2" {
				t.Fatalf("store rows %q key %s, want %q key id,a2", got, pk, want)
			}
			// Read through Scan (what music verify and resync read) too.
			n := 0
			if err := s.Scan(context.Background(), "shop", "ddl1", 100, func(evs []*changeevent.Event) error { n += len(evs); return nil }); err != nil || n != 4 {
				t.Fatalf("Scan: %d rows, %v", n, err)
			}
		})
	}
}

// TestKeyChangeRebuildKeepsConcurrentRows: rows of other transactions written while a
// row under a new primary key rebuilds the table are all kept; a key the store's rows have
// no value for is refused without losing any of them.
func TestKeyChangeRebuildKeepsConcurrentRows(t *testing.T) {
	s, session, ks := newSink(t)
	o := applytest.NewOrigin("x", 1)
	old := applytest.Table{DB: "shop", Name: "rk", Columns: []changeevent.Column{
		col("id", changeevent.KindInt, true), col("k", changeevent.KindInt, false), col("v", changeevent.KindString, false)}}
	newer := applytest.Table{DB: "shop", Name: "rk", Columns: []changeevent.Column{
		col("id", changeevent.KindInt, true), col("k", changeevent.KindInt, true), col("v", changeevent.KindString, false)}}
	var txs []*apply.Txn
	for i := range 200 {
		txs = append(txs, o.Txn(int64(1000+i), old.Insert(changeevent.Row{"id": int64(i), "k": int64(0), "v": "old"})))
	}
	mustApply(t, s, txs[0])
	var later []*apply.Txn
	for i := range 200 {
		later = append(later, o.Txn(int64(5000+i), newer.Insert(changeevent.Row{"id": int64(i), "k": int64(1), "v": "new"})))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for i := 1; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Apply(context.Background(), txs[i]); err != nil {
				errs <- err
			}
		}()
	}
	// The first row under the new key rebuilds the table meanwhile.
	mustApply(t, s, later[0])
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := 1; i < 200; i++ {
		mustApply(t, s, later[i])
	}
	got, pk := storeRows(t, session, ks, "shop", "rk", "id", "k", "v")
	if n := len(strings.Fields(got)); n != 400 || pk != "id,k" {
		t.Fatalf("%d rows under key %s, want 400 under id,k", n, pk)
	}
	// A key of a column the stored rows have no value for is refused, rows kept.
	gap := applytest.Table{DB: "shop", Name: "rk", Columns: []changeevent.Column{
		col("id", changeevent.KindInt, true), col("k", changeevent.KindInt, false), col("v", changeevent.KindString, false), col("z", changeevent.KindInt, true)}}
	_, err := s.Apply(context.Background(), o.Txn(9000, gap.Insert(changeevent.Row{"id": int64(1), "k": int64(1), "v": "z", "z": int64(1)})))
	if !errors.Is(err, apply.ErrRefused) {
		t.Fatalf("key of a column without values: %v, want a refusal", err)
	}
	if got, pk = storeRows(t, session, ks, "shop", "rk", "id", "k", "v"); len(strings.Fields(got)) != 400 || pk != "id,k" {
		t.Fatalf("after the refused key: %d rows under key %s", len(strings.Fields(got)), pk)
	}
}
