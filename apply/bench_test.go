package apply_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/apply/applytest"
	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/testenv"
)

// BenchmarkWorker measures the apply worker end to end: b.N transactions of `rows` new
// rows each are published first (untimed), then the clock runs from the worker's start
// until MariaDB (and, for sink=both, the MUSIC store) has all of them.
func BenchmarkWorker(b *testing.B) {
	for _, sinks := range []string{"mariadb", "both"} {
		for _, rows := range []int{1, 1000} {
			b.Run(fmt.Sprintf("sink=%s/rows=%d", sinks, rows), func(b *testing.B) {
				benchWorker(b, sinks, rows)
			})
		}
	}
}

func benchWorker(b *testing.B, sinks string, rows int) {
	site := testenv.Sites(b)[1]
	all := []apply.Sink{openSink(b, site)}
	if sinks == "both" {
		s, _, _ := storeSink(b)
		all = append(all, s)
	}
	benchWorkerSink(b, rows, all...)
}

func benchWorkerSink(b *testing.B, rows int, all ...apply.Sink) {
	site := testenv.Sites(b)[1]
	db := testenv.NewDatabase(b, site)
	if _, err := site.Open(b, db).Exec(applytest.KVDDL); err != nil {
		b.Fatal(err)
	}
	_, js := testenv.Connect(b, testenv.NATS(b))
	prefix := testenv.Prefix(b)
	name := fmt.Sprintf("%sbench%d", prefix, rows)
	stream := prefix + "_" + fmt.Sprint(rows)
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: stream,
		Subjects: []string{changeevent.SiteSubjects(name)}, Storage: jetstream.FileStorage}); err != nil {
		b.Fatal(err)
	}
	o := &origin{Origin: applytest.NewOrigin(name, 14), stream: stream}
	kv := applytest.KV(db)
	var acks []jetstream.PubAckFuture
	for i := range b.N {
		evs := make([]*changeevent.Event, rows)
		for r := range evs {
			evs[r] = kv.Insert(applytest.Row(int64(i*rows+r), "bench"))
		}
		for _, e := range o.Tx(time.Now().UnixMilli(), evs...) {
			data, _ := changeevent.Marshal(e)
			f, err := js.PublishAsync(changeevent.Subject(e.Source.Name, db, "kv"), data)
			if err != nil {
				b.Fatal(err)
			}
			acks = append(acks, f)
		}
	}
	for _, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	w, stop := start(b, js, site.Name, o, all...)
	for w.Status().Applied < uint64(b.N) {
		time.Sleep(2 * time.Millisecond)
	}
	b.StopTimer()
	stop()
	b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "rows/s")
}
