package rest

import (
	"encoding/json"
	"testing"
)

// HAS's order locks: conditional insert creates the row, then adds plans to it;
// conditional update changes fields of one plan.
func TestConditionalInsertAndUpdate(t *testing.T) {
	e := newEnv(t)
	e.must(200, "POST", e.table("order_locks"), map[string]any{
		"fields": map[string]string{"id": "text", "plans": "map<text, text>", "is_spinup_completed": "boolean", "PRIMARY KEY": "(id)"}})
	ins := Prefix + "/conditional/insert/keyspaces/" + e.ks + "/tables/order_locks"
	body := func(plan, created string) map[string]any {
		return map[string]any{"primaryKey": "id", "primaryKeyValue": "o1", "casscadeColumnName": "plans",
			"tableValues":        map[string]any{"id": "o1", "is_spinup_completed": false},
			"casscadeColumnData": map[string]any{"key": plan, "value": map[string]any{"created": created}},
			"conditions":         map[string]any{"exists": map[string]string{"status": "parked"}, "nonexists": map[string]string{"status": "under-spin-up"}}}
	}
	if out := e.must(200, "POST", ins, body("p1", "1")); out["message"] != "Insert values: " || out["status"] != "SUCCESS" {
		t.Fatalf("first insert: %v", out)
	}
	out := e.must(200, "POST", ins, body("p2", "2"))
	if got, want := out["message"], `Update values: {p2={"created":"2","status":"parked"}}`; got != want {
		t.Fatalf("second insert message = %v, want %v", got, want)
	}
	plans := func() map[string]map[string]any {
		row := e.must(200, "GET", e.table("order_locks")+"/rows?id=o1", nil)["result"].(map[string]any)["row 0"].(map[string]any)
		out := map[string]map[string]any{}
		for k, v := range row["plans"].(map[string]any) {
			m := map[string]any{}
			_ = json.Unmarshal([]byte(v.(string)), &m)
			out[k] = m
		}
		return out
	}
	if p := plans(); p["p1"]["status"] != "under-spin-up" || p["p2"]["status"] != "parked" {
		t.Fatalf("plans after inserts: %v", p)
	}
	upd := Prefix + "/conditional/update/keyspaces/" + e.ks + "/tables/order_locks"
	e.must(200, "PUT", upd, map[string]any{"primaryKey": "id", "primaryKeyValue": "o1", "casscadeColumnName": "plans",
		"tableValues":        map[string]any{"is_spinup_completed": true},
		"casscadeColumnData": map[string]any{"key": "p1", "value": map[string]any{"status": "done", "other": "ignored"}}})
	if p := plans(); p["p1"]["status"] != "done" || p["p1"]["other"] != nil || p["p2"]["status"] != "parked" {
		t.Fatalf("plans after update: %v", p)
	}
	code, out := e.call("PUT", upd, map[string]any{"primaryKey": "id", "primaryKeyValue": "nope", "casscadeColumnName": "plans",
		"casscadeColumnData": map[string]any{"key": "p1", "value": map[string]any{}}})
	if code != 400 || out["status"] != "FAILURE" {
		t.Fatalf("update of a missing row = %d %v, want 400 FAILURE", code, out)
	}
	e.must(400, "POST", ins, map[string]any{"primaryKey": "id"})
}
