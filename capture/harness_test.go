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
	return newHarnessAt(t, testenv.Sites(t)[0])
}

// newHarnessAt is newHarness at a given MariaDB server.
func newHarnessAt(t testing.TB, site testenv.Site) *harness {
	t.Helper()
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

// read returns every event of the stream (messages decoded, parts joined), waiting until
// there are at least want. It checks the wire format of every message: subject, event
// count header, message id of the first event, part headers.
func (h *harness) read(stream string, want int, timeout time.Duration) []*changeevent.Event {
	h.t.Helper()
	var out []*changeevent.Event
	testenv.Eventually(h.t, timeout, func() error {
		var err error
		out, _, err = h.readStream(stream)
		if err != nil {
			return err
		}
		if len(out) < want {
			return fmt.Errorf("stream %s has %d events, want %d", stream, len(out), want)
		}
		return nil
	})
	return out
}

// readRows is read counting row events only (a DDL event of a table created before
// capture started may or may not be in the stream).
func (h *harness) readRows(stream string, want int, timeout time.Duration) []*changeevent.Event {
	h.t.Helper()
	var out []*changeevent.Event
	testenv.Eventually(h.t, timeout, func() error {
		events, _, err := h.readStream(stream)
		if err != nil {
			return err
		}
		if out = rowEvents(events); len(out) < want {
			return fmt.Errorf("stream %s has %d row events, want %d", stream, len(out), want)
		}
		return nil
	})
	return out
}

// streamEvents is the number of events in the harness's stream (0 if unreadable).
func (h *harness) streamEvents() int {
	events, _, err := h.readStream(h.cfg.Stream)
	if err != nil {
		return 0
	}
	return len(events)
}

// streamStats are what readStream saw besides the events.
type streamStats struct {
	msgs, parts, joined int
}

// readStream reads the whole stream once.
func (h *harness) readStream(stream string) ([]*changeevent.Event, streamStats, error) {
	h.t.Helper()
	var st streamStats
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := h.js.Stream(ctx, stream)
	if err != nil {
		return nil, st, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, st, err
	}
	n := int(info.State.Msgs)
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, st, err
	}
	var out []*changeevent.Event
	joiner := changeevent.NewJoiner()
	for st.msgs < n {
		batch, err := cons.Fetch(min(n-st.msgs, 1000), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, st, err
		}
		for m := range batch.Messages() {
			st.msgs++
			events, err := h.decodeMsg(joiner, m, &st)
			if err != nil {
				h.t.Fatal(err)
			}
			out = append(out, events...)
		}
		if batch.Error() != nil {
			return nil, st, batch.Error()
		}
	}
	if joiner.Pending() > 0 {
		return nil, st, fmt.Errorf("%d events with parts missing", joiner.Pending())
	}
	return out, st, nil
}

// decodeMsg decodes one message (nil while parts of its event are missing) and checks it.
func (h *harness) decodeMsg(joiner *changeevent.Joiner, m jetstream.Msg, st *streamStats) ([]*changeevent.Event, error) {
	hdr := m.Headers()
	id := hdr.Get(jetstream.MsgIDHeader)
	data := m.Data()
	info, isPart, err := changeevent.ParsePart(hdr.Get)
	if err != nil {
		return nil, err
	}
	if isPart {
		st.parts++
		if id != changeevent.PartID(info.Of, info.Part) {
			return nil, fmt.Errorf("part message id %s, want %s", id, changeevent.PartID(info.Of, info.Part))
		}
		whole, done := joiner.Add(info, data)
		if !done {
			return nil, nil
		}
		st.joined++
		data, id = whole, info.Of
	}
	events, err := changeevent.DecodeMessage(data)
	if err != nil {
		return nil, fmt.Errorf("message %s: %v", id, err)
	}
	if isPart && len(events) != 1 {
		return nil, fmt.Errorf("parts of %s hold %d events, want 1", id, len(events))
	}
	if !isPart && hdr.Get(changeevent.EventsHeader) != fmt.Sprint(len(events)) {
		return nil, fmt.Errorf("message %s: %s=%q, body has %d events", id, changeevent.EventsHeader,
			hdr.Get(changeevent.EventsHeader), len(events))
	}
	if want := messageID(h.cfg.Site, events[0], len(events)); !isPart && id != want {
		return nil, fmt.Errorf("message id %s, want %s", id, want)
	}
	for _, e := range events {
		if want, got := changeevent.Subject(h.cfg.Site, e.Source.DB, e.Source.Table), m.Subject(); want != got {
			return nil, fmt.Errorf("event on subject %s, want %s", got, want)
		}
		if e.Transaction.ID != events[0].Transaction.ID {
			return nil, fmt.Errorf("message %s holds events of transactions %s and %s", id, events[0].Transaction.ID, e.Transaction.ID)
		}
	}
	return events, nil
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
