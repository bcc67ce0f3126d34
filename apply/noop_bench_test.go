package apply_test

import (
	"context"
	"testing"
	"time"

	"github.com/music-coord/music/apply"
)

type noopSink struct{ d time.Duration }

func (noopSink) Name() string { return "noop" }
func (n noopSink) Apply(ctx context.Context, tx *apply.Txn) (apply.Result, error) {
	time.Sleep(n.d)
	return apply.Result{Applied: len(tx.Events)}, nil
}

func BenchmarkWorkerNoop(b *testing.B) {
	for _, d := range []time.Duration{0, 2 * time.Millisecond} {
		b.Run(d.String(), func(b *testing.B) { benchWorkerSink(b, 1, noopSink{d}) })
	}
}
