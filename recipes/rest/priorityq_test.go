package rest

import "testing"

func TestPriorityQueue(t *testing.T) {
	e := newEnv(t)
	q := Prefix + "/priorityq/keyspaces/" + e.ks + "/jobs"
	e.must(400, "POST", q, map[string]any{"fields": map[string]string{"k": "text", "p": "int"}, "primaryKey": "(k), p"})
	e.must(400, "POST", q, map[string]any{"fields": map[string]string{"k": "text", "p": "int"}, "primaryKey": "k", "clusteringOrder": "p ASC"})
	e.must(200, "POST", q, map[string]any{"fields": map[string]string{"k": "text", "p": "int", "job": "text"},
		"primaryKey": "(k), p", "clusteringOrder": "p ASC"})
	for _, row := range []map[string]any{{"k": "q1", "p": 5, "job": "later"}, {"k": "q1", "p": 1, "job": "first"}} {
		e.must(200, "POST", q+"/rows", map[string]any{"values": row, "consistencyInfo": map[string]string{"type": "eventual"}})
	}
	e.must(400, "POST", q+"/rows", map[string]any{"values": map[string]any{}, "consistencyInfo": map[string]string{"type": "eventual"}})
	peek := func() map[string]any {
		res := e.must(200, "GET", q+"/peek?k=q1", nil)["result"].(map[string]any)
		row, _ := res["row 0"].(map[string]any)
		return row
	}
	if row := peek(); row["job"] != "first" {
		t.Fatalf("peek = %v, want the priority 1 job", row)
	}
	e.must(200, "PUT", q+"/rows?k=q1&p=1", map[string]any{"values": map[string]any{"job": "first!"}, "consistencyInfo": map[string]string{"type": "eventual"}})
	e.must(200, "DELETE", q+"/rows?k=q1&p=1", map[string]any{"consistencyInfo": map[string]string{"type": "eventual"}})
	if row := peek(); row["job"] != "later" {
		t.Fatalf("peek after delete = %v", row)
	}
	if out := e.must(200, "GET", q+"/filter?k=q1", nil); len(out["result"].(map[string]any)) != 1 {
		t.Fatalf("filter = %v", out)
	}
	e.must(200, "DELETE", q, nil)
}
