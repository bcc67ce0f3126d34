package queue

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkQueue times enqueue, and claim plus ack, from workers spread over three
// sites (go test -run '^$' -bench Queue -benchtime 2000x ./recipes/queue/).
func BenchmarkQueue(b *testing.B) {
	qs := newSites(b, 3, Config{Shards: 16, Priorities: 3, Bucket: time.Second, Grace: 3 * time.Second, Sweep: 10 * time.Second})
	ctx := context.Background()
	b.Run("enqueue", func(b *testing.B) {
		b.SetParallelism(2)
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			q := qs[n.Add(1)%3]
			for i := 0; pb.Next(); i++ {
				if _, err := q.Enqueue(ctx, fmt.Sprint(i), i%3, "payload"); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("claim+ack", func(b *testing.B) {
		b.SetParallelism(2)
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			q := qs[n.Add(1)%3]
			for pb.Next() {
				m, err := q.Claim(ctx, time.Minute)
				if err == nil {
					err = q.Ack(ctx, m)
				}
				if err != nil && !errors.Is(err, ErrEmpty) && !errors.Is(err, ErrLeaseLost) {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}
