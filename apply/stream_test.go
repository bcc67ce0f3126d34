package apply_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/apply/applytest"
	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/testenv"
)

// streamSink is a fake apply.StreamSink: a stream's chunks become visible (committed)
// only at Commit; fail decides per chunk whether Apply fails, block makes it wait.
type streamSink struct {
	*fakeSink
	mu        sync.Mutex
	committed map[string][]*changeevent.Event // by transaction id
	order     []string                        // commits (streams and whole transactions), in order
	maxChunk  int
	begun     int
	aborted   int
	failChunk func(id string, attempt, chunk int) error
	block     chan struct{} // when set, Apply of chunk blockAt waits for it (or ctx)
	blockAt   int
	reached   chan struct{}
}

func newStreamSink() *streamSink {
	return &streamSink{fakeSink: newFakeSink(), committed: map[string][]*changeevent.Event{}}
}

func (s *streamSink) Apply(ctx context.Context, tx *apply.Txn) (apply.Result, error) {
	res, err := s.fakeSink.Apply(ctx, tx)
	if err == nil {
		s.mu.Lock()
		s.order = append(s.order, tx.ID)
		s.mu.Unlock()
	}
	return res, err
}

type fakeStream struct {
	s       *streamSink
	id      string
	attempt int
	events  []*changeevent.Event
	chunks  int
}

func (s *streamSink) BeginStream(_ context.Context, tx *apply.Txn) (apply.Stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.begun++
	return &fakeStream{s: s, id: tx.ID, attempt: s.begun}, nil
}

func (f *fakeStream) Apply(ctx context.Context, events []*changeevent.Event) (apply.Result, error) {
	s := f.s
	s.mu.Lock()
	s.maxChunk = max(s.maxChunk, len(events))
	fail, block, at, reached := s.failChunk, s.block, s.blockAt, s.reached
	s.mu.Unlock()
	if block != nil && f.chunks == at {
		close(reached)
		select {
		case <-block:
		case <-ctx.Done():
			return apply.Result{}, ctx.Err()
		}
	}
	if fail != nil {
		if err := fail(f.id, f.attempt, f.chunks); err != nil {
			return apply.Result{}, err
		}
	}
	f.chunks++
	f.events = append(f.events, events...)
	return apply.Result{Applied: len(events)}, nil
}

func (f *fakeStream) Commit(context.Context) (apply.Result, error) {
	s := f.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, again := s.committed[f.id]; again {
		return apply.Result{}, fmt.Errorf("transaction %s committed twice", f.id)
	}
	s.committed[f.id] = f.events
	s.order = append(s.order, f.id)
	f.events = nil
	return apply.Result{}, nil
}

func (f *fakeStream) Abort() {
	f.s.mu.Lock()
	f.s.aborted++
	f.s.mu.Unlock()
	f.events = nil
}

func (s *streamSink) state() (committed map[string]int, order []string, begun, aborted, maxChunk int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	committed = map[string]int{}
	for id, evs := range s.committed {
		committed[id] = len(evs)
	}
	return committed, append([]string(nil), s.order...), s.begun, s.aborted, s.maxChunk
}

// checkWhole fails unless id was committed with events 0 .. n-1 in order.
func (s *streamSink) checkWhole(t *testing.T, id string, n, firstKey int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	evs := s.committed[id]
	if len(evs) != n {
		t.Fatalf("transaction %s committed with %d events, want %d", id, len(evs), n)
	}
	for i, e := range evs {
		if e.Transaction.Index != i || e.After["id"] != int64(firstKey+i) {
			t.Fatalf("event %d: index %d id %v", i, e.Transaction.Index, e.After["id"])
		}
	}
}

// streamFixture publishes a buffered transaction, a streamed one of 25,000 events in
// messages of 500 (50 messages) and another buffered one.
type streamFixture struct {
	js       jetstream.JetStream
	o        *origin
	kv       applytest.Table
	streamed string
	after    string
	msgs     []*nats.Msg
}

func newStreamFixture(t *testing.T) *streamFixture {
	_, js := testenv.Connect(t, testenv.NATS(t))
	o := newOrigin(t, js, testenv.Prefix(t), "x", 5)
	kv := applytest.KV("d")
	f := &streamFixture{js: js, o: o, kv: kv}
	publishAs(t, js, applytest.Format{}, o.Tx(1000, kv.Insert(applytest.Row(1, "before")))...)
	evs := make([]*changeevent.Event, 25_000)
	for i := range evs {
		evs[i] = kv.Insert(applytest.Row(int64(100_000+i), "v"))
	}
	streamed := o.Streamed(1001, evs...)
	f.streamed = streamed[0].Transaction.ID
	msgs, err := applytest.Messages(streamed, applytest.Format{EventsPerMessage: 500})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 50 {
		t.Fatalf("%d messages", len(msgs))
	}
	f.msgs = msgs
	if err := applytest.Publish(context.Background(), js, msgs); err != nil {
		t.Fatal(err)
	}
	after := o.Tx(1002, kv.Insert(applytest.Row(2, "after")))
	f.after = after[0].Transaction.ID
	publishAs(t, js, applytest.Format{}, after...)
	return f
}

func (f *streamFixture) start(t *testing.T, sink apply.Sink, cfg apply.Config) *apply.Worker {
	cfg.Local, cfg.Origin, cfg.Stream = "l", f.o.Name, f.o.stream
	return startCfg(t, f.js, cfg, nil, sink)
}

// A streamed transaction reaches the sink message by message, in order, and is committed
// once; it is a barrier between the transactions before and after it.
func TestWorkerStreamsLargeTransaction(t *testing.T) {
	f := newStreamFixture(t)
	sink := newStreamSink()
	w := f.start(t, sink, apply.Config{})
	testenv.Eventually(t, 60*time.Second, func() error {
		if c, order, _, _, _ := sink.state(); len(order) != 3 || c[f.streamed] == 0 {
			return fmt.Errorf("committed %v", order)
		}
		return nil
	})
	settled(t, f.js, f.o.stream, "apply_l")
	_, order, begun, aborted, maxChunk := sink.state()
	if order[1] != f.streamed || order[2] != f.after || begun != 1 || aborted != 0 || maxChunk != 500 {
		t.Fatalf("order %v, %d begun, %d aborted, largest chunk %d", order, begun, aborted, maxChunk)
	}
	sink.checkWhole(t, f.streamed, 25_000, 100_000)
	st := w.Status()
	if st.Applied != 3 || st.Refused != 0 || st.Skipped != 0 || st.Tables["d.kv"].Rows != 25_002 || st.Assembling != 0 || st.Pending != 0 {
		t.Fatalf("status %+v", st)
	}
}

// A failure mid-stream aborts the attempt (nothing committed) and applies the transaction
// again from its first message (read again from the stream); a refusal mid-stream
// quarantines the table, commits nothing and acknowledges every message.
func TestWorkerStreamFailureMidStream(t *testing.T) {
	t.Run("retried", func(t *testing.T) {
		f := newStreamFixture(t)
		sink := newStreamSink()
		sink.failChunk = func(id string, attempt, chunk int) error {
			if id == f.streamed && attempt <= 2 && chunk == 20+attempt {
				return fmt.Errorf("attempt %d fails at chunk %d", attempt, chunk)
			}
			return nil
		}
		w := f.start(t, sink, apply.Config{RetryBackoff: time.Millisecond})
		testenv.Eventually(t, 60*time.Second, func() error {
			if _, order, _, _, _ := sink.state(); len(order) != 3 {
				return fmt.Errorf("committed %v", order)
			}
			return nil
		})
		settled(t, f.js, f.o.stream, "apply_l")
		if _, _, begun, aborted, _ := sink.state(); begun != 3 || aborted != 2 {
			t.Fatalf("%d attempts, %d aborted; want 3 and 2", begun, aborted)
		}
		sink.checkWhole(t, f.streamed, 25_000, 100_000)
		if st := w.Status(); st.Applied != 3 || st.Tables["d.kv"].Failures != 2 || st.Tables["d.kv"].Retrying || st.Quarantined != nil {
			t.Fatalf("status %+v", st)
		}
	})
	t.Run("refused", func(t *testing.T) {
		f := newStreamFixture(t)
		sink := newStreamSink()
		sink.failChunk = func(id string, _, chunk int) error {
			if chunk == 10 {
				return fmt.Errorf("%w: no", apply.ErrRefused)
			}
			return nil
		}
		w := f.start(t, sink, apply.Config{})
		settled(t, f.js, f.o.stream, "apply_l")
		c, order, _, aborted, _ := sink.state()
		if c[f.streamed] != 0 || len(order) != 1 || aborted != 1 {
			t.Fatalf("committed %v (%v), %d aborted: want only the first transaction", order, c, aborted)
		}
		st := w.Status()
		if ts := st.Tables["d.kv"]; !ts.Quarantined || ts.Skipped != 2 || ts.Refused != 1 {
			t.Fatalf("status %+v: want d.kv quarantined, the stream and the next transaction skipped", st)
		}
	})
}

// A copy of an applied message (another stream sequence) and redeliveries of held
// messages (AckWait passing while the transaction applies) are skipped.
func TestWorkerStreamSkipsRedeliveredChunks(t *testing.T) {
	f := newStreamFixture(t)
	again := nats.NewMsg(f.msgs[7].Subject)
	again.Data, again.Header = f.msgs[7].Data, nats.Header{}
	for k, v := range f.msgs[7].Header {
		again.Header[k] = v
	}
	again.Header.Set(jetstream.MsgIDHeader, "again")
	if err := applytest.Publish(context.Background(), f.js, []*nats.Msg{again}); err != nil {
		t.Fatal(err)
	}
	sink := newStreamSink()
	sink.failChunk = func(_ string, _, chunk int) error {
		if chunk == 30 {
			time.Sleep(2500 * time.Millisecond) // past AckWait: held messages come again
		}
		return nil
	}
	f.start(t, sink, apply.Config{AckWait: time.Second})
	testenv.Eventually(t, 60*time.Second, func() error {
		if _, order, _, _, _ := sink.state(); len(order) != 3 {
			return fmt.Errorf("committed %v", order)
		}
		return nil
	})
	settled(t, f.js, f.o.stream, "apply_l")
	sink.checkWhole(t, f.streamed, 25_000, 100_000)
	if _, _, begun, _, _ := sink.state(); begun != 1 {
		t.Fatalf("%d attempts", begun)
	}
}

// A worker stopped mid-stream (a crash) leaves nothing committed and nothing
// acknowledged; the next worker applies the transaction whole.
func TestWorkerStreamCrashMidStream(t *testing.T) {
	f := newStreamFixture(t)
	sink := newStreamSink()
	sink.block, sink.blockAt, sink.reached = make(chan struct{}), 25, make(chan struct{})
	cfg := apply.Config{Local: "l", Origin: f.o.Name, Stream: f.o.stream, Durable: "apply_l"}
	w, err := apply.NewWorker(f.js, cfg, []apply.Sink{sink}, nil, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	select {
	case <-sink.reached:
	case <-time.After(60 * time.Second):
		t.Fatal("the stream never reached chunk 25")
	}
	cancel()
	<-done
	c, _, _, aborted, _ := sink.state()
	if c[f.streamed] != 0 || aborted != 1 {
		t.Fatalf("after the crash: committed %v, %d aborted", c, aborted)
	}
	cons, err := f.js.Consumer(context.Background(), f.o.stream, "apply_l")
	if err != nil {
		t.Fatal(err)
	}
	if floor := cons.CachedInfo().AckFloor.Stream; floor != 1 {
		t.Fatalf("ack floor %d, want 1: nothing of the streamed transaction acknowledged", floor)
	}
	sink.mu.Lock()
	sink.block = nil
	sink.mu.Unlock()
	f.start(t, sink, apply.Config{})
	testenv.Eventually(t, 60*time.Second, func() error {
		if _, order, _, _, _ := sink.state(); len(order) != 3 {
			return fmt.Errorf("committed %v", order)
		}
		return nil
	})
	settled(t, f.js, f.o.stream, "apply_l")
	sink.checkWhole(t, f.streamed, 25_000, 100_000)
}
