package synctable

import (
	"testing"

	"go.uber.org/zap"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/changeevent"
)

func ownTxn(seq uint64, table string) *apply.Txn {
	e := &changeevent.Event{}
	e.Source.DB, e.Source.Table = "bank", table
	return &apply.Txn{Own: true, GTID: apply.GTID{Domain: 1, Server: 1, Seq: seq}, Events: []*changeevent.Event{e}}
}

// TestGateWatermark: the own-stream watermark passes a commit only once every commit
// received before it is finished, and names sync commits that were not applied.
func TestGateWatermark(t *testing.T) {
	tables, err := NewTables([]string{"bank.accounts"})
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGate("a", tables, nil, nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	done := func() int64 {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.progressLocked().Done
	}
	t5, t6, t7 := ownTxn(5, "accounts"), ownTxn(6, "other"), ownTxn(7, "accounts")
	g.Received(t5)
	g.Received(t6)
	g.Received(t7)
	g.Done(t7, true)
	g.Done(t6, true)
	if d := done(); d != 4 {
		t.Fatalf("watermark %d with 5 in flight, want 4", d)
	}
	g.Done(t5, false)
	g.mu.Lock()
	p := g.progressLocked()
	g.mu.Unlock()
	if p.Done != 7 || len(p.Failed) != 1 || p.Failed[0] != 5 {
		t.Fatalf("progress %+v, want done 7 and failed [5]", p)
	}
	if got := g.SyncTables(t6); len(got) != 0 {
		t.Fatalf("sync tables of an async txn: %v", got)
	}
	if got := g.SyncTables(t5); len(got) != 1 || got[0] != "bank.accounts" {
		t.Fatalf("sync tables: %v", got)
	}
}

func TestTables(t *testing.T) {
	tb, err := NewTables([]string{"bank.*", "*.Act_ru_*"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		db, table string
		want      bool
	}{{"bank", "accounts", true}, {"BANK", "x", true}, {"camunda", "act_ru_task", true}, {"camunda", "act_hi_task", false}, {"other", "accounts", false}} {
		if got := tb.Sync(c.db, c.table); got != c.want {
			t.Errorf("Sync(%s, %s) = %v", c.db, c.table, got)
		}
	}
	for _, bad := range []string{"noDot", ".x", "db.", "db.[x"} {
		if _, err := NewTables([]string{bad}); err == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
}
