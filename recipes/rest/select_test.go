package rest

import (
	"fmt"
	"sync"
	"testing"
)

func TestSelects(t *testing.T) {
	e := newEnv(t)
	e.must(200, "POST", e.table("kv"), map[string]any{
		"fields": map[string]string{"k": "text", "v": "int", "vector_ts": "text", "PRIMARY KEY": "(k)"}})
	rows := e.table("kv") + "/rows"
	e.must(200, "POST", rows, map[string]any{"values": map[string]any{"k": "a", "v": 1, "vector_ts": "123"},
		"consistencyInfo": map[string]string{"type": "eventual"}})
	row := e.must(200, "GET", rows+"?k=a", nil)["result"].(map[string]any)["row 0"].(map[string]any)
	if _, ok := row["vector_ts"]; ok || len(row) != 2 {
		t.Fatalf("row = %v, want k and v without vector_ts", row)
	}
	// A critical select whose consistencyInfo is not critical or atomic reads eventually.
	ev := map[string]any{"consistencyInfo": map[string]string{"type": "eventual"}}
	e.must(200, "GET", rows+"?k=a", ev, "X-minorVersion", "1", "X-patchVersion", "0")
	if out := e.must(200, "PUT", rows+"/criticalget?k=a", ev); out["result"] == nil {
		t.Fatalf("criticalget fallback: %v", out)
	}
	if out := e.must(400, "PUT", rows+"/criticalget", map[string]any{"consistencyInfo": map[string]string{"type": "atomic"}}); out["error"] != errNoKey {
		t.Fatalf("criticalget without key: %v", out)
	}
	e.must(400, "PUT", rows+"/criticalget?k=a", map[string]any{"consistencyInfo": map[string]string{"type": "critical"}})
	if out := e.must(200, "PUT", rows+"/criticalget?k=zz", map[string]any{"consistencyInfo": map[string]string{"type": "atomic"}}); out["error"] != "No data found" || out["result"] != nil {
		t.Fatalf("criticalget of no row: %v", out)
	}
	if out := e.must(200, "GET", rows+"?k=zz", nil); out["error"] != "No data found" || out["result"] == nil {
		t.Fatalf("select of no row: %v", out)
	}
}

// A select returns every row, several pages of them, with no cap.
func TestSelectStreamsAllRows(t *testing.T) {
	e := newEnv(t)
	e.createKV("big")
	const n = 2*pageSizeForTest + 17
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := e.sess.Query("INSERT INTO big (k, v) VALUES (?, ?)", fmt.Sprint(i), i).Exec(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	out := e.must(200, "GET", e.table("big")+"/rows", nil)
	if got := len(out["result"].(map[string]any)); got != n || out["status"] != "SUCCESS" {
		t.Fatalf("select returned %d rows, status %v; want %d SUCCESS", got, out["status"], n)
	}
}

const pageSizeForTest = 1000 // store's page size
