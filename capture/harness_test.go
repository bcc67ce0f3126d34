package capture

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/testenv"
)

// harness is one test's capture setup: a fresh database at site a, its own stream, state
// bucket and site name (so tests run in parallel on the shared servers).
type harness struct {
	t    testing.TB
	site testenv.Site
	db   string
	pool *sql.DB
	js   jetstream.JetStream
	cfg  Config
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	sites := testenv.Sites(t)
	site := sites[0]
	db := testenv.NewDatabase(t, site)
	url := testenv.NATS(t)
	prefix := testenv.Prefix(t)
	_, js := testenv.Connect(t, url)
	pool := site.Open(t, db)
	pos := binlogEnd(t, pool)
	cfg := DefaultConfig()
	cfg.Site = strings.ToLower(prefix)
	cfg.DSN = site.DSN("")
	cfg.NATSURL = url
	cfg.DomainID = uint32(site.Index)
	cfg.ServerID = 2000000 + uint32(time.Now().UnixNano()%1000000)
	cfg.Stream = prefix
	cfg.StateBucket = prefix + "_STATE"
	cfg.Start = pos
	cfg.Include = []string{db + ".*"}
	cfg.CheckpointInterval = 200 * time.Millisecond
	cfg.Heartbeat = 500 * time.Millisecond
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = js.DeleteKeyValue(ctx, cfg.StateBucket)
	})
	return &harness{t: t, site: site, db: db, pool: pool, js: js, cfg: cfg}
}

// binlogEnd is the server's binlog end as a Config.Start ("binlog:<file>:<offset>").
func binlogEnd(t testing.TB, pool *sql.DB) string {
	t.Helper()
	file, off := masterStatus(t, pool)
	return fmt.Sprintf("binlog:%s:%d", file, off)
}

func masterStatus(t testing.TB, pool *sql.DB) (string, uint32) {
	t.Helper()
	var file string
	var off uint32
	var x, y sql.NullString
	if err := pool.QueryRow("SHOW MASTER STATUS").Scan(&file, &off, &x, &y); err != nil {
		t.Fatal(err)
	}
	return file, off
}

func (h *harness) exec(stmts ...string) {
	h.t.Helper()
	for _, s := range stmts {
		if _, err := h.pool.Exec(s); err != nil {
			h.t.Fatalf("%s: %v", s, err)
		}
	}
}

// running is a capturer running in the background.
type running struct {
	c      *Capturer
	cancel context.CancelFunc
	done   chan error
}

func (h *harness) start(cfg Config) *running {
	h.t.Helper()
	c, err := New(cfg, zaptest.NewLogger(h.t).Named("capture"), nil)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{c: c, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	select {
	case <-c.Ready():
	case err := <-r.done:
		h.t.Fatalf("capture ended before streaming: %v", err)
	case <-time.After(30 * time.Second):
		h.t.Fatal("capture not streaming after 30s")
	}
	h.t.Cleanup(func() { r.stop(h.t) })
	return r
}

func (r *running) stop(t testing.TB) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("capture Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("capture did not stop within 30s")
	}
}

// read returns every event of the stream, waiting until there are at least want.
func (h *harness) read(stream string, want int, timeout time.Duration) []*changeevent.Event {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var s jetstream.Stream
	var err error
	testenv.Eventually(h.t, timeout, func() error {
		s, err = h.js.Stream(ctx, stream)
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if int(info.State.Msgs) < want {
			return fmt.Errorf("stream %s has %d messages, want %d", stream, info.State.Msgs, want)
		}
		return nil
	})
	info, err := s.Info(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	n := int(info.State.Msgs)
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []*changeevent.Event
	for len(out) < n {
		batch, err := cons.Fetch(min(n-len(out), 5000), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			h.t.Fatal(err)
		}
		for m := range batch.Messages() {
			e, err := changeevent.Unmarshal(m.Data())
			if err != nil {
				h.t.Fatalf("message %s: %v", m.Data(), err)
			}
			if want, got := changeevent.Subject(h.cfg.Site, e.Source.DB, e.Source.Table), m.Subject(); want != got {
				h.t.Fatalf("event on subject %s, want %s", got, want)
			}
			out = append(out, e)
		}
		if batch.Error() != nil {
			h.t.Fatal(batch.Error())
		}
	}
	return out
}

// fold applies events in stream order to a map keyed by the event key, as an apply would.
func fold(events []*changeevent.Event, table string) map[string]changeevent.Row {
	rows := map[string]changeevent.Row{}
	for _, e := range events {
		if e.Source.Table != table || e.Op == changeevent.OpDDL {
			continue
		}
		switch e.Op {
		case changeevent.OpDelete:
			delete(rows, keyString(e.Key))
		case changeevent.OpUpdate:
			delete(rows, keyString(pick(e.Before, e.Key)))
			rows[keyString(e.Key)] = e.After
		default:
			rows[keyString(e.Key)] = e.After
		}
	}
	return rows
}

func pick(row, key changeevent.Row) changeevent.Row {
	out := changeevent.Row{}
	for k := range key {
		out[k] = row[k]
	}
	return out
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
