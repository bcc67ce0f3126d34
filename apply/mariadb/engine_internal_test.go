package mariadb

import "testing"

// Tables linked by foreign keys, directly or through others, share one order key; a
// self-referencing table has its own; every key names the group's least table.
func TestFKGroupKeys(t *testing.T) {
	tb := func(db, name string) [2]string { return [2]string{db, name} }
	g := fkGroupKeys([][2][2]string{
		{tb("d", "child"), tb("d", "parent")},
		{tb("d", "grandchild"), tb("d", "child")},
		{tb("e", "x"), tb("d", "parent")}, // across databases
		{tb("d", "tree"), tb("d", "tree")},
		{tb("d", "b"), tb("d", "c")},
		{tb("d", "z"), tb("d", "a")},
		{tb("d", "a"), tb("d", "c")}, // joins {b,c} and {z,a}
	})
	want := map[[2]string]string{
		tb("d", "child"): "fk:d\x00child", tb("d", "parent"): "fk:d\x00child", tb("d", "grandchild"): "fk:d\x00child",
		tb("e", "x"): "fk:d\x00child", tb("d", "tree"): "fk:d\x00tree",
		tb("d", "a"): "fk:d\x00a", tb("d", "b"): "fk:d\x00a", tb("d", "c"): "fk:d\x00a", tb("d", "z"): "fk:d\x00a",
	}
	if len(g) != len(want) {
		t.Fatalf("groups %q, want %q", g, want)
	}
	for k, v := range want {
		if g[k] != v {
			t.Errorf("%v: %q, want %q", k, g[k], v)
		}
	}
}
