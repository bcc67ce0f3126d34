package apply_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/apply/applytest"
	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/testenv"
)

// fakeSink records what it is given; fail, when set, decides per transaction whether
// an attempt fails.
type fakeSink struct {
	mu    sync.Mutex
	txns  []*apply.Txn
	tries map[string]int // attempts per transaction id
	fail  func(tx *apply.Txn, attempt int) error
}

func newFakeSink() *fakeSink { return &fakeSink{tries: map[string]int{}} }

func (*fakeSink) Name() string { return "fake" }

func (s *fakeSink) Apply(_ context.Context, tx *apply.Txn) (apply.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tries[tx.ID]++
	if s.fail != nil {
		if err := s.fail(tx, s.tries[tx.ID]); err != nil {
			return apply.Result{}, err
		}
	}
	s.txns = append(s.txns, tx)
	return apply.Result{Applied: len(tx.Events)}, nil
}

func (s *fakeSink) setFail(f func(tx *apply.Txn, attempt int) error) {
	s.mu.Lock()
	s.fail = f
	s.mu.Unlock()
}

// applied returns the transactions applied so far.
func (s *fakeSink) applied() []*apply.Txn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*apply.Txn(nil), s.txns...)
}

// rows is every applied row of table as "id=v", sorted by id.
func (s *fakeSink) rows(table string) string {
	var out []string
	for _, tx := range s.applied() {
		for _, e := range tx.Events {
			if e.Source.Table == table && e.After != nil {
				out = append(out, fmt.Sprintf("%d=%v", e.After["id"], e.After["v"]))
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return idOf(out[i]) < idOf(out[j]) })
	return strings.Join(out, " ")
}

func startCfg(t testing.TB, js jetstream.JetStream, cfg apply.Config, m *apply.Metrics, sinks ...apply.Sink) *apply.Worker {
	t.Helper()
	if cfg.Durable == "" {
		cfg.Durable = "apply_" + cfg.Local
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 100 * time.Millisecond
	}
	w, err := apply.NewWorker(js, cfg, sinks, m, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

func publishAs(t testing.TB, js jetstream.JetStream, f applytest.Format, events ...*changeevent.Event) []*nats.Msg {
	t.Helper()
	msgs, err := applytest.Messages(events, f)
	if err != nil {
		t.Fatal(err)
	}
	if err := applytest.Publish(context.Background(), js, msgs); err != nil {
		t.Fatal(err)
	}
	return msgs
}

// settled waits until the consumer has nothing pending or unacknowledged.
func settled(t testing.TB, js jetstream.JetStream, stream, durable string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		c, err := js.Consumer(context.Background(), stream, durable)
		if err != nil {
			return err
		}
		info := c.CachedInfo()
		if info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Errorf("consumer: %d pending, %d unacknowledged", info.NumPending, info.NumAckPending)
		}
		return nil
	})
}

func TestWorkerMultiEventMessagesAndParts(t *testing.T) {
	_, js := testenv.Connect(t, testenv.NATS(t))
	o := newOrigin(t, js, testenv.Prefix(t), "x", 5)
	kv := applytest.KV("d")
	f := applytest.Format{EventsPerMessage: 3, PartSize: 4096}
	// 7 events in 3 messages; then a transaction whose middle event is 10 KiB: parts.
	var evs []*changeevent.Event
	for i := range 7 {
		evs = append(evs, kv.Insert(applytest.Row(int64(i), "m")))
	}
	if n := len(publishAs(t, js, f, o.Tx(1000, evs...)...)); n != 3 {
		t.Fatalf("%d messages, want 3", n)
	}
	big := strings.Repeat("b", 10000)
	tx2 := o.Tx(1001, kv.Insert(applytest.Row(10, "p")), kv.Insert(applytest.Row(11, big)), kv.Insert(applytest.Row(12, "p")))
	msgs, err := applytest.Messages(tx2, f)
	if err != nil {
		t.Fatal(err)
	}
	var parts []*nats.Msg
	for _, m := range msgs {
		if m.Header.Get(changeevent.PartOfHeader) != "" {
			parts = append(parts, m)
		}
	}
	if len(parts) < 3 || len(msgs) != len(parts)+2 {
		t.Fatalf("%d messages with %d parts", len(msgs), len(parts))
	}
	// Part 1 is published twice (as after a capture restart past the duplicate window:
	// another message id, so another stream message), the last message held back.
	again := nats.NewMsg(parts[1].Subject)
	again.Data, again.Header = parts[1].Data, nats.Header{}
	for k, v := range parts[1].Header {
		again.Header[k] = v
	}
	again.Header.Set(jetstream.MsgIDHeader, "again")
	first := append(append([]*nats.Msg{}, msgs[:len(msgs)-1]...), again)
	if err := applytest.Publish(context.Background(), js, first); err != nil {
		t.Fatal(err)
	}
	sink := newFakeSink()
	w := startCfg(t, js, apply.Config{Local: "l", Origin: o.Name, Stream: o.stream, AckWait: time.Second}, nil, sink)
	testenv.Eventually(t, 10*time.Second, equal(func() string { return sink.rows("kv") }, "0=m 1=m 2=m 3=m 4=m 5=m 6=m"))
	// Held past AckWait: the parts are redelivered while held, and dropped.
	time.Sleep(2500 * time.Millisecond)
	if n := len(sink.applied()); n != 1 {
		t.Fatalf("%d transactions applied with the second incomplete", n)
	}
	if err := applytest.Publish(context.Background(), js, msgs[len(msgs)-1:]); err != nil {
		t.Fatal(err)
	}
	want := "0=m 1=m 2=m 3=m 4=m 5=m 6=m 10=p 11=" + big + " 12=p"
	testenv.Eventually(t, 10*time.Second, equal(func() string { return sink.rows("kv") }, want))
	settled(t, js, o.stream, "apply_l")
	if txs := sink.applied(); len(txs) != 2 || len(txs[1].Events) != 3 {
		t.Fatalf("applied %d transactions, want 2 (7 and 3 events)", len(txs))
	}
	if st := w.Status(); st.Applied != 2 || st.Refused != 0 || st.LastError != "" {
		t.Fatalf("status %+v", st)
	}
}

// Big transactions, published the way capture does in messages of 500 events: a buffered
// one of 10,001 events (Total on every event) and a streamed one of 25,000 (Total 0, the
// last event with Last and the total) apply whole, once, and only once complete.
func TestWorkerLargeTransactions(t *testing.T) {
	_, js := testenv.Connect(t, testenv.NATS(t))
	o := newOrigin(t, js, testenv.Prefix(t), "x", 5)
	kv := applytest.KV("d")
	f := applytest.Format{EventsPerMessage: 500}
	rows := func(from, n int) []*changeevent.Event {
		out := make([]*changeevent.Event, n)
		for i := range out {
			out[i] = kv.Insert(applytest.Row(int64(from+i), "v"))
		}
		return out
	}
	publishAs(t, js, f, o.Tx(1000, rows(0, 10_001)...)...)
	streamed, err := applytest.Messages(o.Streamed(1001, rows(100_000, 25_000)...), f)
	if err != nil {
		t.Fatal(err)
	}
	if len(streamed) != 50 {
		t.Fatalf("%d messages, want 50", len(streamed))
	}
	if err := applytest.Publish(context.Background(), js, streamed[:49]); err != nil {
		t.Fatal(err)
	}
	sink := newFakeSink()
	// MaxAckPending 100 messages: a 25,000-event transaction fits in 50.
	w := startCfg(t, js, apply.Config{Local: "l", Origin: o.Name, Stream: o.stream, MaxAckPending: 100}, nil, sink)
	testenv.Eventually(t, 60*time.Second, func() error {
		if n := len(sink.applied()); n != 1 {
			return fmt.Errorf("%d transactions applied", n)
		}
		return nil
	})
	testenv.Eventually(t, 10*time.Second, func() error {
		st := w.Status()
		if st.Assembling != 1 || st.Pending < 49 || st.Tables["d.kv"].LagMs == 0 {
			return fmt.Errorf("status while the streamed transaction is incomplete: %+v", st)
		}
		return nil
	})
	if txs := sink.applied(); len(txs[0].Events) != 10_001 {
		t.Fatalf("first transaction applied with %d events", len(txs[0].Events))
	}
	if err := applytest.Publish(context.Background(), js, streamed[49:]); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, func() error {
		if n := len(sink.applied()); n != 2 {
			return fmt.Errorf("%d transactions applied", n)
		}
		return nil
	})
	tx := sink.applied()[1]
	if len(tx.Events) != 25_000 {
		t.Fatalf("streamed transaction applied with %d events", len(tx.Events))
	}
	for i, e := range tx.Events {
		if e.Transaction.Index != i || e.After["id"] != int64(100_000+i) {
			t.Fatalf("event %d: index %d id %v", i, e.Transaction.Index, e.After["id"])
		}
	}
	settled(t, js, o.stream, "apply_l")
	if st := w.Status(); st.Applied != 2 || st.Refused != 0 || st.Skipped != 0 || st.Tables["d.kv"].Rows != 35_001 {
		t.Fatalf("status %+v", st)
	}
}

// A transaction with more messages than MaxAckPending cannot be assembled: its table is
// quarantined loudly, and other tables keep flowing.
func TestWorkerTransactionBeyondMaxAckPending(t *testing.T) {
	_, js := testenv.Connect(t, testenv.NATS(t))
	o := newOrigin(t, js, testenv.Prefix(t), "x", 5)
	big, kv := applytest.KV("d"), applytest.KV("d")
	big.Name = "big"
	var evs []*changeevent.Event
	for i := range 40 {
		evs = append(evs, big.Insert(applytest.Row(int64(i), "v")))
	}
	publishAs(t, js, applytest.Format{EventsPerMessage: 2}, o.Streamed(1000, evs...)...)
	publishAs(t, js, applytest.Format{}, o.Tx(1001, kv.Insert(applytest.Row(1, "after")))...)
	sink := newFakeSink()
	m := apply.NewMetrics(prometheus.NewRegistry())
	w := startCfg(t, js, apply.Config{Local: "l", Origin: o.Name, Stream: o.stream, MaxAckPending: 10}, m, sink)
	testenv.Eventually(t, 20*time.Second, equal(func() string { return sink.rows("kv") }, "1=after"))
	settled(t, js, o.stream, "apply_l")
	st := w.Status()
	ts := st.Tables["d.big"]
	if !ts.Quarantined || !strings.Contains(ts.QuarantineReason, "max_ack_pending") || ts.Skipped != 1 || sink.rows("big") != "" {
		t.Fatalf("status %+v: want d.big quarantined for max_ack_pending, nothing of it applied", st)
	}
	if got := testutil.ToFloat64(m.Unassembled.WithLabelValues(o.Name, "d.big")); got != 1 {
		t.Fatalf("unassembled metric %v", got)
	}
	if got := testutil.ToFloat64(m.Quarantined.WithLabelValues(o.Name)); got != 1 {
		t.Fatalf("quarantined gauge %v", got)
	}
}

// Snapshot rows (op r, Total 0) apply as independent rows, through the resync path, into
// the real MariaDB sink.
func TestWorkerSnapshotRows(t *testing.T) {
	site := testenv.Sites(t)[1]
	db := testenv.NewDatabase(t, site)
	pool := site.Open(t, db)
	if _, err := pool.Exec(applytest.KVDDL); err != nil {
		t.Fatal(err)
	}
	_, js := testenv.Connect(t, testenv.NATS(t))
	o := newOrigin(t, js, testenv.Prefix(t), "x", 5)
	kv := applytest.KV(db)
	publishAs(t, js, applytest.Format{}, o.Tx(time.Now().UnixMilli()-1000, kv.Insert(applytest.Row(1, "old")))...)
	now := time.Now().UnixMilli()
	var rows []changeevent.Row
	var want []string
	for i := range 250 {
		rows = append(rows, applytest.Row(int64(i), "snap"))
		want = append(want, fmt.Sprintf("%d=snap", i))
	}
	snap := o.Snapshot(kv, now, now, 0, rows...)
	snap[len(snap)-1].Source.Snapshot = "last"
	publishAs(t, js, applytest.Format{EventsPerMessage: 100}, snap...)
	sink := openSink(t, site)
	fake := newFakeSink()
	w := startCfg(t, js, apply.Config{Local: site.Name, Origin: o.Name, Stream: o.stream}, nil, sink, fake)
	testenv.Eventually(t, 20*time.Second, equal(func() string { return tableRows(pool) }, strings.Join(want, " ")))
	settled(t, js, o.stream, "apply_"+site.Name)
	st := w.Status()
	if st.Refused != 0 || st.Skipped != 0 || st.LastError != "" || st.Tables[db+".kv"].Rows != 251 {
		t.Fatalf("status %+v", st)
	}
	for _, tx := range fake.applied()[1:] {
		if !tx.Resync || tx.ID != snap[0].Source.GTID {
			t.Fatalf("snapshot transaction %s resync %v", tx.ID, tx.Resync)
		}
	}
}

// A table whose change keeps failing is quarantined after MaxRetries; the other tables
// keep flowing; its later changes and a transaction touching it and another table are
// skipped whole and recorded; a failing DDL (a barrier) does not block the others; after
// Release the table applies again.
func TestWorkerQuarantinesPoisonedTable(t *testing.T) {
	_, js := testenv.Connect(t, testenv.NATS(t))
	o := newOrigin(t, js, testenv.Prefix(t), "x", 5)
	kv, poison, other, ddlT := applytest.KV("d"), applytest.KV("d"), applytest.KV("d"), applytest.KV("d")
	poison.Name, other.Name, ddlT.Name = "poison", "other", "ddl"
	sink := newFakeSink()
	sink.setFail(func(tx *apply.Txn, _ int) error {
		for _, e := range tx.Events {
			if e.Source.Table == "poison" && e.After != nil && e.After["v"] == "bad" {
				return errors.New("cassandra: Key may not be empty")
			}
			if e.Source.Table == "ddl" && e.Op == changeevent.OpDDL {
				return errors.New("Error 1146 (42S02): Table 'd.ddl' doesn't exist")
			}
		}
		return nil
	})
	ts := time.Now().UnixMilli() - 2000
	bad := o.Tx(ts, poison.Insert(applytest.Row(1, "bad")))
	publishAs(t, js, applytest.Format{}, bad...)
	publishAs(t, js, applytest.Format{}, o.Tx(ts+1, applytest.DDL("d", "ddl", "ALTER", "ALTER TABLE ddl ADD c INT"))...)
	for i := range 20 {
		publishAs(t, js, applytest.Format{}, o.Tx(ts+2, kv.Insert(applytest.Row(int64(i), "ok")))...)
	}
	later := o.Tx(ts+3, poison.Insert(applytest.Row(2, "good")))
	publishAs(t, js, applytest.Format{}, later...)
	mixed := o.Tx(ts+4, other.Insert(applytest.Row(1, "x")), poison.Insert(applytest.Row(3, "good")))
	publishAs(t, js, applytest.Format{}, mixed...)
	reg := prometheus.NewRegistry()
	m := apply.NewMetrics(reg)
	w := startCfg(t, js, apply.Config{Local: "l", Origin: o.Name, Stream: o.stream, MaxRetries: 3,
		RetryBackoff: 20 * time.Millisecond}, m, sink)
	var want []string
	for i := range 20 {
		want = append(want, fmt.Sprintf("%d=ok", i))
	}
	testenv.Eventually(t, 20*time.Second, equal(func() string { return sink.rows("kv") }, strings.Join(want, " ")))
	settled(t, js, o.stream, "apply_l")
	testenv.Eventually(t, 5*time.Second, func() error {
		st := w.Status()
		p := st.Tables["d.poison"]
		if !p.Quarantined || !strings.Contains(p.QuarantineReason, bad[0].Source.GTID) ||
			!strings.Contains(p.QuarantineReason, "[1]") || !strings.Contains(p.QuarantineReason, "Key may not be empty") {
			return fmt.Errorf("poison %+v: want quarantined naming gtid, key [1] and the error", p)
		}
		if p.Skipped != 3 || p.SkippedFirstGTID != bad[0].Source.GTID || p.SkippedLastGTID != mixed[0].Source.GTID {
			return fmt.Errorf("poison %+v: want 3 skipped from %s to %s", p, bad[0].Source.GTID, mixed[0].Source.GTID)
		}
		if !st.Tables["d.other"].Quarantined || st.Tables["d.other"].Skipped != 1 {
			return fmt.Errorf("other %+v: want quarantined with the mixed transaction", st.Tables["d.other"])
		}
		if d := st.Tables["d.ddl"]; !d.Quarantined || !strings.Contains(d.QuarantineReason, "1146") {
			return fmt.Errorf("ddl %+v: want quarantined naming error 1146", d)
		}
		if k := st.Tables["d.kv"]; k.Quarantined || k.LastError != "" || k.Rows != 20 {
			return fmt.Errorf("kv %+v", k)
		}
		if p.LagMs < 2000 {
			return fmt.Errorf("poison lag %d ms: a quarantined table lags since its first skipped change", p.LagMs)
		}
		if got := testutil.ToFloat64(m.Quarantined.WithLabelValues(o.Name)); got != 3 {
			return fmt.Errorf("quarantined gauge %v", got)
		}
		return nil
	})
	if sink.rows("poison") != "" || sink.rows("other") != "" {
		t.Fatalf("rows of quarantined tables applied: poison %q other %q", sink.rows("poison"), sink.rows("other"))
	}
	if got := testutil.ToFloat64(m.Skipped.WithLabelValues(o.Name, "d.poison")); got != 3 {
		t.Fatalf("skipped metric %v", got)
	}
	// Released (resync started): later changes apply again.
	if !w.Release("d.poison") || w.Release("d.poison") {
		t.Fatal("Release")
	}
	publishAs(t, js, applytest.Format{}, o.Tx(ts+5, poison.Insert(applytest.Row(4, "good")))...)
	testenv.Eventually(t, 10*time.Second, equal(func() string { return sink.rows("poison") }, "4=good"))
	testenv.Eventually(t, 5*time.Second, func() error {
		if p := w.Status().Tables["d.poison"]; p.Quarantined || p.LastError != "" {
			return fmt.Errorf("poison after release %+v", p)
		}
		return nil
	})
}

// While a transaction fails and is retried (an outage: never quarantined), its table's
// lag grows and the pending count is not 0; once it applies the error clears.
func TestWorkerStatusWhileRetrying(t *testing.T) {
	_, js := testenv.Connect(t, testenv.NATS(t))
	o := newOrigin(t, js, testenv.Prefix(t), "x", 5)
	kv := applytest.KV("d")
	sink := newFakeSink()
	down := errors.New("dial tcp 127.0.0.1:9042: connect: connection refused")
	sink.setFail(func(*apply.Txn, int) error { return down })
	publishAs(t, js, applytest.Format{}, o.Tx(time.Now().UnixMilli(), kv.Insert(applytest.Row(1, "v")))...)
	w := startCfg(t, js, apply.Config{Local: "l", Origin: o.Name, Stream: o.stream, MaxRetries: 2,
		RetryBackoff: 10 * time.Millisecond, MaxRetryBackoff: 50 * time.Millisecond}, nil, sink)
	var lag int64
	testenv.Eventually(t, 10*time.Second, func() error {
		st := w.Status()
		ts := st.Tables["d.kv"]
		if st.Pending == 0 || !ts.Retrying || ts.LastError == "" || ts.LagMs < 500 {
			return fmt.Errorf("status while retrying %+v", st)
		}
		lag = ts.LagMs
		return nil
	})
	time.Sleep(500 * time.Millisecond)
	st := w.Status()
	if ts := st.Tables["d.kv"]; ts.LagMs <= lag || ts.Quarantined {
		t.Fatalf("lag %d after %d: want growing, not quarantined (an outage)", ts.LagMs, lag)
	}
	sink.setFail(nil)
	testenv.Eventually(t, 10*time.Second, func() error {
		st := w.Status()
		ts := st.Tables["d.kv"]
		if st.Applied != 1 || st.Pending != 0 || ts.LastError != "" || ts.Retrying || st.LastError != "" || ts.LagMs != 0 {
			return fmt.Errorf("status after recovery %+v", st)
		}
		return nil
	})
}

// Every refusal is counted against its table, even when the transaction cannot be built
// or the message not decoded.
func TestWorkerRefusalCountedAgainstTable(t *testing.T) {
	_, js := testenv.Connect(t, testenv.NATS(t))
	o := newOrigin(t, js, testenv.Prefix(t), "x", 5)
	kv, bad := applytest.KV("d"), applytest.KV("d")
	bad.Name = "bad"
	broken := o.Tx(1000, bad.Insert(applytest.Row(1, "a")), bad.Insert(applytest.Row(2, "b")))
	broken[1].Transaction.Index = 5 // beyond its total
	publishAs(t, js, applytest.Format{}, broken...)
	if _, err := js.Publish(context.Background(), changeevent.Subject(o.Name, "d", "garbled"), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	publishAs(t, js, applytest.Format{}, o.Tx(1001, kv.Insert(applytest.Row(1, "ok")))...)
	sink := newFakeSink()
	m := apply.NewMetrics(prometheus.NewRegistry())
	w := startCfg(t, js, apply.Config{Local: "l", Origin: o.Name, Stream: o.stream}, m, sink)
	testenv.Eventually(t, 10*time.Second, equal(func() string { return sink.rows("kv") }, "1=ok"))
	settled(t, js, o.stream, "apply_l")
	st := w.Status()
	for _, table := range []string{"d.bad", "d.garbled"} {
		ts := st.Tables[table]
		if ts.Refused != 1 || !ts.Quarantined || ts.LastError == "" {
			t.Errorf("%s: %+v, want 1 refusal, quarantined, with the error", table, ts)
		}
		if got := testutil.ToFloat64(m.Refused.WithLabelValues(o.Name, table, "")); got != 1 {
			t.Errorf("%s: refused metric %v", table, got)
		}
	}
	if st.Refused != 2 {
		t.Fatalf("status %+v", st)
	}
	for table := range st.Tables {
		if table == "" || strings.HasPrefix(table, ".") || strings.HasSuffix(table, ".") {
			t.Fatalf("table %q in the status", table)
		}
	}
}
