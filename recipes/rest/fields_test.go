package rest

import (
	"fmt"
	"testing"
)

func TestTableCreateFields(t *testing.T) {
	e := newEnv(t)
	e.must(200, "POST", e.table("pk"), map[string]any{
		"fields":       map[string]string{"a": "text", "b": "int", "c": "int", "d": "map<text, frozen<list<int>>>", "e": "tuple<int, text>"},
		"partitionKey": "a", "clusteringKey": "b", "filteringKey": "c", "clusteringOrder": "b DESC",
		"properties": map[string]any{"comment": "it's ONAP's", "gc_grace_seconds": 600,
			"compaction": map[string]any{"class": "SizeTieredCompactionStrategy"}}})
	kinds := map[string]string{}
	iter := e.sess.Query(`SELECT column_name, kind FROM system_schema.columns WHERE keyspace_name = ? AND table_name = 'pk'`, e.ks).Iter()
	var col, kind string
	for iter.Scan(&col, &kind) {
		kinds[col] = kind
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	if kinds["a"] != "partition_key" || kinds["b"] != "clustering" || kinds["c"] != "clustering" {
		t.Fatalf("key columns: %v", kinds)
	}
	var comment string
	var grace int
	if err := e.sess.Query(`SELECT comment, gc_grace_seconds FROM system_schema.tables WHERE keyspace_name = ? AND table_name = 'pk'`, e.ks).Scan(&comment, &grace); err != nil || comment != "it's ONAP's" || grace != 600 {
		t.Fatalf("properties: %q %d %v", comment, grace, err)
	}
	e.must(400, "POST", e.table("pk2"), map[string]any{"fields": map[string]string{"a": "text"}, "primaryKey": "a",
		"properties": map[string]any{"comment = 'x' AND gc_grace_seconds": 1}})
	e.must(400, "POST", e.table("pk2"), map[string]any{"fields": map[string]string{"a": "text"}, "primaryKey": "a",
		"properties": map[string]any{"comment": []any{"x"}}})
}

func TestRowWriteFields(t *testing.T) {
	e := newEnv(t)
	e.must(200, "POST", e.table("kv"), map[string]any{
		"fields": map[string]string{"k": "text", "v": "int", "w": "text", "PRIMARY KEY": "(k)"}})
	rows := e.table("kv") + "/rows"
	get := func(k string) map[string]any {
		res, _ := e.must(200, "GET", rows+"?k="+k, nil)["result"].(map[string]any)
		row, _ := res["row 0"].(map[string]any)
		return row
	}
	ev := func(extra ...string) map[string]string {
		m := map[string]string{"type": "eventual"}
		for i := 0; i+1 < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}
	// timestamp: the later write wins, whatever the order
	e.must(200, "POST", rows, map[string]any{"values": map[string]any{"k": "t", "v": 2}, "timestamp": "2000", "consistencyInfo": ev()})
	e.must(200, "POST", rows, map[string]any{"values": map[string]any{"k": "t", "v": 1}, "timestamp": 1000, "consistencyInfo": ev()})
	if got := fmt.Sprint(get("t")["v"]); got != "2" {
		t.Fatalf("v = %s after writes at 2000 then 1000, want 2", got)
	}
	// consistencyInfo.consistency
	e.must(200, "POST", rows, map[string]any{"values": map[string]any{"k": "q", "v": 1, "w": "x"}, "consistencyInfo": ev("consistency", "quorum")})
	e.must(400, "POST", rows, map[string]any{"values": map[string]any{"k": "q", "v": 1}, "consistencyInfo": ev("consistency", "STRONG")})
	// delete columns
	e.must(200, "DELETE", rows+"?k=q", map[string]any{"columns": []string{"w"}, "consistencyInfo": ev()})
	if row := get("q"); row == nil || row["w"] != nil || fmt.Sprint(row["v"]) != "1" {
		t.Fatalf("row after deleting column w: %v", row)
	}
	e.must(400, "DELETE", rows+"?k=q", map[string]any{"columns": []string{"k"}, "consistencyInfo": ev()})
	// eventual_nb orders with the lock holder's critical writes; plain eventual does not
	ref := e.lockRef(e.ks + ".kv.n")
	e.must(200, "POST", rows, map[string]any{"values": map[string]any{"k": "n", "v": 1}, "consistencyInfo": map[string]string{"type": "critical", "lockId": ref}})
	e.must(200, "PUT", rows+"?k=n", map[string]any{"values": map[string]any{"v": 2}, "consistencyInfo": map[string]string{"type": "eventual_nb"}})
	e.must(200, "PUT", rows+"?k=n", map[string]any{"values": map[string]any{"v": 3}, "consistencyInfo": ev()})
	if got := fmt.Sprint(get("n")["v"]); got != "2" {
		t.Fatalf("v = %s, want 2 (eventual_nb wins over the critical write, eventual does not)", got)
	}
	e.must(200, "DELETE", Prefix+"/locks/release/"+ref, nil)
	// atomic_delete_lock leaves no lock reference behind
	e.must(200, "PUT", rows+"?k=n", map[string]any{"values": map[string]any{"v": 4}, "consistencyInfo": map[string]string{"type": "atomic_delete_lock"}})
	e.must(400, "GET", Prefix+"/locks/holders/"+e.ks+".kv.n", nil)
	if got := fmt.Sprint(get("n")["v"]); got != "4" {
		t.Fatalf("v = %s after atomic_delete_lock, want 4", got)
	}
}

// Lock names use the first primary key column only, as ONAP's.
func TestCompositeKeyLockName(t *testing.T) {
	e := newEnv(t)
	e.must(200, "POST", e.table("ck"), map[string]any{
		"fields": map[string]string{"a": "text", "b": "text", "c": "int", "PRIMARY KEY": "((a, b), c)"}})
	ref := e.lockRef(e.ks + ".ck.x")
	e.must(200, "POST", e.table("ck")+"/rows", map[string]any{"values": map[string]any{"a": "x", "b": "y", "c": 1},
		"consistencyInfo": map[string]string{"type": "critical", "lockId": ref}})
}

func TestLockDeleteAndPromote(t *testing.T) {
	e := newEnv(t)
	name := e.ks + ".kv.p"
	first := e.lockRef(name)
	second := e.must(200, "POST", Prefix+"/locks/create/"+name, nil)["lock"].(map[string]any)["lock"].(string)
	if out := e.must(400, "POST", Prefix+"/locks/promote/"+first, nil); out["message"] != "Lockref is already write." {
		t.Fatalf("promote of a write reference: %v", out)
	}
	e.must(200, "DELETE", Prefix+"/locks/delete/"+first, nil) // one reference: the second stays
	e.must(200, "GET", Prefix+"/locks/acquire/"+second, nil)
}
