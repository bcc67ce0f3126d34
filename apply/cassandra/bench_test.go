package cassandra_test

import (
	"fmt"
	"testing"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/apply/applytest"
	"github.com/music-coord/music/changeevent"
)

// BenchmarkApply measures writes into the MUSIC store, one transaction per iteration,
// sequentially (its rows are written concurrently).
func BenchmarkApply(b *testing.B) {
	for _, rows := range []int{1, 1000} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			s, _, _ := newSink(b)
			kv := applytest.KV("bench")
			o := applytest.NewOrigin("bench", 13)
			txs := make([]*apply.Txn, b.N)
			for i := range txs {
				evs := make([]*changeevent.Event, rows)
				for r := range evs {
					evs[r] = kv.Insert(applytest.Row(int64(i*rows+r), "bench"))
				}
				txs[i] = o.Txn(1000+int64(i), evs...)
			}
			b.ResetTimer()
			for _, tx := range txs {
				mustApply(b, s, tx)
			}
			b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
