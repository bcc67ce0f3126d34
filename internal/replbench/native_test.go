package replbench

import (
	"context"
	"testing"
	"time"

	"github.com/music-coord/music/internal/testenv"
)

// TestNativeReplicationBaseline checks the baseline harness itself: rows written at site
// a reach site b through MariaDB's own replication, and the probe measures their lag.
func TestNativeReplicationBaseline(t *testing.T) {
	sites := testenv.Sites(t)
	a, b := sites[0], sites[1]
	db := testenv.NewDatabase(t, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	src, dst := a.Open(t, db), b.Open(t, db)
	if err := CreateTable(ctx, src, "bench"); err != nil {
		t.Fatal(err)
	}
	if err := CreateTable(ctx, dst, "bench"); err != nil {
		t.Fatal(err)
	}
	if err := StartNative(ctx, src, dst, Endpoint{Host: a.Host, Port: a.Port, User: a.User}, db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := StopNative(context.Background(), dst); err != nil {
			t.Errorf("stop native replication: %v", err)
		}
	})
	const n = 2000
	if err := Insert(ctx, src, "bench", 1, n, 100); err != nil {
		t.Fatal(err)
	}
	res, err := Probe(ctx, dst, "bench", 1, n, 5*time.Millisecond, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if res.Timedout || res.Rows != n {
		t.Fatalf("native replication delivered %d of %d rows (timed out: %v)", res.Rows, n, res.Timedout)
	}
	if p50 := res.Percentile(50); p50 <= 0 || p50 > time.Minute {
		t.Fatalf("p50 lag %v out of range", p50)
	}
}
