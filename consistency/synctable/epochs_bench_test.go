package synctable

import (
	"context"
	"testing"
	"time"

	"github.com/music-coord/music/internal/testenv"
)

// BenchmarkClaim is one claim (a lightweight transaction) and one judge (a read) on the
// local Cassandra: the store's part of a sync commit.
func BenchmarkClaim(b *testing.B) {
	ks, s := testenv.NewKeyspace(b)
	ctx := context.Background()
	e, err := NewEpochs(ctx, s, ks)
	if err != nil {
		b.Fatal(err)
	}
	ep, _, err := e.TakeOver(ctx, "bench.t", "a", 1, 0, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	var claim, judge time.Duration
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		if ep, err = e.Claim(ctx, ep, int64(i+1)); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if v, _, err := e.Judge(ctx, "bench.t", "a", int64(i+1)); err != nil || v != Claimed {
			b.Fatal(v, err)
		}
		claim, judge = claim+t1.Sub(t0), judge+time.Since(t1)
	}
	b.ReportMetric(float64(claim.Microseconds())/float64(b.N)/1000, "claim-ms")
	b.ReportMetric(float64(judge.Microseconds())/float64(b.N)/1000, "judge-ms")
}
