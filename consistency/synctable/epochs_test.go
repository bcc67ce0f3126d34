package synctable

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/music-coord/music/internal/testenv"
)

// TestEpochs walks a table through three ownerships on the real Cassandra: claims are
// ranges, a takeover closes the previous epoch for good (a late claim is refused, its
// commit judged fenced), versions grow with ownership even when the new owner's clock is
// behind, and a commit of a site outside its epochs is fenced.
func TestEpochs(t *testing.T) {
	ks, s := testenv.NewKeyspace(t)
	ctx := context.Background()
	e, err := NewEpochs(ctx, s, ks)
	if err != nil {
		t.Fatal(err)
	}
	const tb = "bank.accounts"
	now := time.Now()

	a, prev, err := e.TakeOver(ctx, tb, "a", 1, 100, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(prev.Claimed) != 0 || a.Start != 100 || a.Base != now.UnixMicro() {
		t.Fatalf("first epoch %+v, prev %+v", a, prev)
	}
	if a, err = e.Claim(ctx, a, 103); err != nil {
		t.Fatal(err)
	}
	// A claim below the last is covered already.
	if a2, err := e.Claim(ctx, a, 102); err != nil || a2.Last != 103 {
		t.Fatalf("claim of 102 after 103: %+v %v", a2, err)
	}
	judge := func(site string, seq int64, want Verdict) Epoch {
		t.Helper()
		v, ep, err := e.Judge(ctx, tb, site, seq)
		if err != nil || v != want {
			t.Fatalf("judge %s seq %d: %v (err %v), want %v (epoch %+v)", site, seq, v, err, want, ep)
		}
		return ep
	}
	judge("a", 101, Claimed)
	judge("a", 103, Claimed)
	judge("a", 104, Pending) // a owns the table and may still claim it
	judge("a", 100, Fenced)  // committed before a took the table
	judge("b", 50, Fenced)   // b never owned it

	// b takes over with a clock 10 s behind: its versions still come after a's.
	b, prev, err := e.TakeOver(ctx, tb, "b", 5, 40, now.Add(-10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if prev.Claimed["a"] != 103 {
		t.Fatalf("claimed at takeover: %v, want a:103", prev.Claimed)
	}
	if b.Version(41) <= a.Version(103) {
		t.Fatalf("b's first version %d not after a's last %d", b.Version(41), a.Version(103))
	}
	if _, err := e.Claim(ctx, a, 104); !errors.Is(err, ErrLostOwnership) {
		t.Fatalf("late claim of a: %v, want ErrLostOwnership", err)
	}
	judge("a", 104, Fenced)
	judge("a", 103, Claimed)
	if _, _, err := e.TakeOver(ctx, tb, "c", 5, 1, now); !errors.Is(err, ErrLostOwnership) {
		t.Fatalf("takeover with a fence not above the owner's: %v", err)
	}
	if b, err = e.Claim(ctx, b, 45); err != nil {
		t.Fatal(err)
	}
	judge("b", 45, Claimed)

	// a comes back: its new epoch starts after its fenced commit, which stays fenced.
	a3, prev, err := e.TakeOver(ctx, tb, "a", 9, 110, now)
	if err != nil {
		t.Fatal(err)
	}
	if prev.Claimed["b"] != 45 || a3.Version(111) <= b.Version(45) {
		t.Fatalf("third epoch %+v after b %+v (claimed %v)", a3, b, prev.Claimed)
	}
	judge("a", 104, Fenced)
	judge("a", 111, Pending)
	judge("b", 46, Fenced)
}
