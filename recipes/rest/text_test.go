package rest

import "testing"

// HAS writes {} and objects into text columns; ONAP stores their Java string form.
func TestTextColumnsTakeJSON(t *testing.T) {
	e := newEnv(t)
	e.must(200, "POST", e.table("plans"), map[string]any{
		"fields": map[string]string{"id": "text", "owner": "text", "n": "text", "PRIMARY KEY": "(id)"}})
	rows := e.table("plans") + "/rows"
	e.must(200, "POST", rows, `{"values": {"id": "p1", "owner": {}, "n": {"b": [1, 2.0], "a": null}},
		"consistencyInfo": {"type": "eventual"}}`)
	out := e.must(200, "GET", rows+"?id=p1", nil)
	row := out["result"].(map[string]any)["row 0"].(map[string]any)
	if got, want := row["owner"], "{}"; got != want {
		t.Fatalf("owner = %v, want %v", got, want)
	}
	if got, want := row["n"], "{b=[1, 2.0], a=null}"; got != want {
		t.Fatalf("n = %v, want %v", got, want)
	}
}
