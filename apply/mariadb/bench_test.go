package mariadb_test

import (
	"fmt"
	"testing"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/apply/applytest"
	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/testenv"
)

// BenchmarkApply measures replay into MariaDB, one transaction of new rows per iteration,
// sequentially (the worker applies several transactions in parallel; see BenchmarkWorker
// in package apply).
func BenchmarkApply(b *testing.B) {
	for _, rows := range []int{1, 1000} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			f := newFixture(b, testenv.Sites(b)[1])
			o := applytest.NewOrigin("bench", 13)
			txs := make([]*apply.Txn, b.N)
			for i := range txs {
				evs := make([]*changeevent.Event, rows)
				for r := range evs {
					evs[r] = f.kv.Insert(applytest.Row(int64(i*rows+r), "bench"))
				}
				txs[i] = o.Txn(1000+int64(i), evs...)
			}
			b.ResetTimer()
			for _, tx := range txs {
				f.apply(b, tx)
			}
			b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// BenchmarkApplyParallel applies single-row transactions from 8 goroutines, as the worker
// does for disjoint rows.
func BenchmarkApplyParallel(b *testing.B) {
	f := newFixture(b, testenv.Sites(b)[1])
	o := applytest.NewOrigin("bench", 13)
	txs := make(chan *apply.Txn, b.N)
	for i := range b.N {
		txs <- o.Txn(1000+int64(i), f.kv.Insert(applytest.Row(int64(i), "bench")))
	}
	close(txs)
	b.SetParallelism(4) // 4 x GOMAXPROCS goroutines
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			f.apply(b, <-txs)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
