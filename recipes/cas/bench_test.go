package cas

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/gocql/gocql"
)

// BenchmarkClaim compares the two ways to claim a job row at quorum: MUSIC's lock plus
// critical put (Swap, what the package does) and a Cassandra lightweight transaction
// (INSERT ... IF NOT EXISTS at SERIAL). Workers spread over three sites claim fresh
// jobs; each job is raced by two workers. Run:
//
//	go test -run '^$' -bench Claim -benchtime 3s ./recipes/cas/
func BenchmarkClaim(b *testing.B) {
	ks, sites := newSites(b, 3)
	ctx := context.Background()
	for _, v := range []struct {
		name  string
		claim func(s site, id, owner string) (bool, error)
	}{
		{"lock+critical", func(s site, id, owner string) (bool, error) { return claim(ctx, s, ks, id, owner) }},
		{"lwt", func(s site, id, owner string) (bool, error) {
			return s.sess.Query("INSERT INTO jobs (id, owner) VALUES (?, ?) IF NOT EXISTS", id, owner).
				WithContext(ctx).SerialConsistency(gocql.Serial).Consistency(gocql.Quorum).MapScanCAS(map[string]any{})
		}},
	} {
		b.Run(v.name, func(b *testing.B) {
			var n, worker atomic.Int64
			b.SetParallelism(2)
			b.RunParallel(func(pb *testing.PB) {
				w := worker.Add(1)
				s := sites[w%3]
				for pb.Next() {
					// two workers race for each job: i/2 names the job
					id := fmt.Sprintf("%s-%d", v.name, n.Add(1)/2)
					if _, err := v.claim(s, id, fmt.Sprint(w)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "claims/s")
		})
	}
}
