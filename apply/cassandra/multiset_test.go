package cassandra_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/music-coord/music/apply/applytest"
	"github.com/music-coord/music/changeevent"
)

// A table without a primary key is stored one row per copy: duplicates are kept, a delete
// removes one copy, and a redelivered delete removes no other. Scan reads the copies.
func TestMultisetInStore(t *testing.T) {
	s, _, _ := newSink(t)
	np := applytest.Table{DB: "msdb", Name: "np", Columns: []changeevent.Column{
		{Name: "a", Kind: changeevent.KindInt, SQLType: "int(11)", Nullable: true},
		{Name: "b", Kind: changeevent.KindString, SQLType: "varchar(10)", Nullable: true},
	}}
	row := func(a int64, b string) changeevent.Row { return changeevent.Row{"a": a, "b": b} }
	o := applytest.NewOrigin("a", 1)
	tx1 := o.Txn(1000, np.Insert(row(1, "x")), np.Insert(row(1, "x")), np.Insert(row(2, "y")))
	mustApply(t, s, tx1)
	mustApply(t, s, tx1) // redelivery: the same copies
	tx2 := o.Txn(2000, np.Delete(row(1, "x")), np.Update(row(2, "y"), row(2, "z")))
	mustApply(t, s, tx2)
	mustApply(t, s, tx2) // redelivery: the same copy
	other := applytest.NewOrigin("b", 2)
	mustApply(t, s, other.Txn(1500, np.Insert(row(2, "z"))))
	scan := func() string {
		var out []string
		if err := s.Scan(context.Background(), "msdb", "np", 100, func(events []*changeevent.Event) error {
			for _, e := range events {
				out = append(out, fmt.Sprintf("%v,%v", e.After["a"], e.After["b"]))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		sort.Strings(out)
		return strings.Join(out, " ")
	}
	if got := scan(); got != "1,x 2,z 2,z" {
		t.Fatalf("store rows: %q", got)
	}
	// A sequence is one row, last writer wins.
	var cols []changeevent.Column
	for _, n := range []string{"next_not_cached_value", "minimum_value", "maximum_value", "start_value", "increment", "cache_size", "cycle_option", "cycle_count"} {
		cols = append(cols, changeevent.Column{Name: n, Kind: changeevent.KindInt, SQLType: "bigint(21)"})
	}
	seq := applytest.Table{DB: "msdb", Name: "s1", Columns: cols}
	state := func(next int64) changeevent.Row {
		r := changeevent.Row{}
		for _, c := range cols {
			r[c.Name] = int64(1)
		}
		r["next_not_cached_value"] = next
		return r
	}
	mustApply(t, s, o.Txn(3000, seq.Insert(state(11))))
	mustApply(t, s, o.Txn(4000, seq.Insert(state(21))))
	var n int
	var next []int64
	if err := s.Scan(context.Background(), "msdb", "s1", 100, func(events []*changeevent.Event) error {
		for _, e := range events {
			n++
			next = append(next, e.After["next_not_cached_value"].(int64))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 1 || next[0] != 21 {
		t.Fatalf("sequence in the store: %d rows, %v", n, next)
	}
}
