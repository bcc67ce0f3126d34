package capture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/music-coord/music/internal/testenv"
)

// TestNATSRestart restarts the NATS server under a running capture: it reconnects with
// backoff and every row arrives exactly once.
func TestNATSRestart(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	pn := testenv.NewPrivateNATS(t)
	_, js := testenv.Connect(t, pn.URL())
	h.js = js
	cfg := h.cfg
	cfg.NATSURL = pn.URL()
	cfg.MaxBackoff = time.Second
	h.exec("CREATE TABLE t (id INT PRIMARY KEY)")
	r := h.start(cfg)
	insert := func(from, to int) {
		for i := from; i < to; i += 100 {
			var b strings.Builder
			b.WriteString("INSERT INTO t VALUES ")
			for j := i; j < i+100; j++ {
				if j > i {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, "(%d)", j)
			}
			h.exec(b.String())
		}
	}
	insert(0, 5000)
	pn.Restart()
	insert(5000, 10000)
	pn.Stop()
	time.Sleep(time.Second)
	insert(10000, 15000)
	pn.Restart()
	events := h.read(cfg.Stream, 15001, 60*time.Second)
	if len(events) != 15001 {
		t.Fatalf("%d events, want 15001", len(events))
	}
	if rows := fold(events, "t"); len(rows) != 15000 {
		t.Fatalf("%d rows, want 15000", len(rows))
	}
	// The client buffers publishes while disconnected; a session restart happens only
	// when an acknowledgement is lost (after the publish timeout).
	t.Logf("session restarts: %v", testutil.ToFloat64(r.c.m.Reconnects))
}

// TestHealthAndMetrics: /healthz reports ok with the checkpoint, lag falls to 0 when idle.
func TestHealthAndMetrics(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.exec("CREATE TABLE t (id INT PRIMARY KEY)")
	reg := prometheus.NewRegistry()
	c, err := New(h.cfg, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-c.Ready()
	h.exec("INSERT INTO t VALUES (1)")
	h.read(h.cfg.Stream, 2, 30*time.Second)
	testenv.Eventually(t, 10*time.Second, func() error {
		rec := httptest.NewRecorder()
		HealthHandler(c).ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		var body map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != 200 || body["status"] != "ok" || !strings.HasPrefix(fmt.Sprint(body["checkpoint"]), fmt.Sprint(h.cfg.DomainID, "-")) {
			return fmt.Errorf("healthz %d %v", rec.Code, body)
		}
		if got := testutil.ToFloat64(c.m.Events.WithLabelValues("c")); got != 1 {
			return fmt.Errorf("events{op=c} = %v", got)
		}
		if got := testutil.ToFloat64(c.m.LagMs); got != 0 {
			return fmt.Errorf("lag %v ms while idle", got)
		}
		return nil
	})
	n, err := testutil.GatherAndCount(reg, "music_capture_checkpoint_info", "music_capture_events_total", "music_capture_lag_ms")
	if err != nil || n < 3 {
		t.Errorf("gathered %d metrics (%v)", n, err)
	}
	cancel()
	<-done
	done <- nil
	rec := httptest.NewRecorder()
	HealthHandler(c).ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 503 {
		t.Errorf("healthz after stop: %d, want 503", rec.Code)
	}
}

// TestMariaDBConnectionKilled kills the binlog dump connection mid-load: capture
// reconnects with backoff and every row arrives exactly once.
func TestMariaDBConnectionKilled(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.exec("CREATE TABLE t (id INT PRIMARY KEY)")
	r := h.start(h.cfg)
	for i := 0; i < 20000; i += 500 {
		var b strings.Builder
		b.WriteString("INSERT INTO t VALUES ")
		for j := i; j < i+500; j++ {
			if j > i {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "(%d)", j)
		}
		h.exec(b.String())
		if i == 5000 || i == 12000 {
			id := r.c.dumpConn.Load()
			h.exec(fmt.Sprintf("KILL CONNECTION %d", id))
			testenv.Eventually(t, 30*time.Second, func() error {
				if r.c.dumpConn.Load() == id {
					return fmt.Errorf("no new dump connection yet")
				}
				return nil
			})
		}
	}
	events := h.read(h.cfg.Stream, 20001, 60*time.Second)
	time.Sleep(300 * time.Millisecond)
	events = h.read(h.cfg.Stream, 20001, 10*time.Second)
	if len(events) != 20001 || len(fold(events, "t")) != 20000 {
		t.Fatalf("%d events, want 20001", len(events))
	}
	if n := testutil.ToFloat64(r.c.m.Reconnects); n < 1 {
		t.Errorf("reconnects %v, want at least 1", n)
	}
}

// TestUnavailablePosition: a position the server does not have stops capture with a
// *PurgedError that tells how to resnapshot.
func TestUnavailablePosition(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	cfg := h.cfg
	cfg.Start = fmt.Sprintf("%d-%d-999999999999", h.cfg.DomainID, h.cfg.DomainID)
	c, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = c.Run(ctx)
	var pe *PurgedError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "resnapshot") || !strings.Contains(err.Error(), "999999999999") {
		t.Fatalf("Run() = %v, want a PurgedError naming the position and how to resnapshot", err)
	}
	if c.Health() == nil {
		t.Error("healthy after a fatal error")
	}
}

// TestGTIDPositionNotFound: when the server refuses the checkpoint's GTID position (as it
// does after out-of-order sequence numbers in the site's domain), capture resumes from the
// checkpoint's binlog file offset, which is the same point.
func TestGTIDPositionNotFound(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.exec("CREATE TABLE t (id INT PRIMARY KEY)")
	r := h.start(h.cfg)
	h.exec("INSERT INTO t VALUES (1)")
	h.read(h.cfg.Stream, 2, 30*time.Second)
	r.stop(t)
	ctx := context.Background()
	kv, err := h.js.KeyValue(ctx, h.cfg.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, checkpointKey)
	if err != nil {
		t.Fatal(err)
	}
	var cp Checkpoint
	if err := json.Unmarshal(e.Value(), &cp); err != nil || cp.File == "" || cp.Offset == 0 {
		t.Fatalf("checkpoint %s: %v, want a file offset", e.Value(), err)
	}
	cp.Position = fmt.Sprintf("%d-%d-999999999999", h.cfg.DomainID, h.cfg.DomainID)
	data, _ := json.Marshal(cp)
	if _, err := kv.Put(ctx, checkpointKey, data); err != nil {
		t.Fatal(err)
	}
	h.exec("INSERT INTO t VALUES (2)")
	r = h.start(h.cfg)
	events := h.read(h.cfg.Stream, 3, 30*time.Second)
	if rows := fold(events, "t"); len(events) != 3 || len(rows) != 2 {
		t.Fatalf("%d events, %d rows; want 3 events, 2 rows", len(events), len(rows))
	}
	if got := testutil.ToFloat64(r.c.m.Errors.WithLabelValues("gtid_position")); got != 1 {
		t.Errorf("errors{gtid_position} = %v, want 1", got)
	}
}

// TestStatusRetrying: a capture whose publishes keep failing (here an event over the
// server's max_payload, as with a part size above it) shows State retrying with the
// error in /status and 503 on /healthz, never healthy in between.
func TestStatusRetrying(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.exec("CREATE TABLE t (id INT PRIMARY KEY, b LONGBLOB)")
	nc, _ := testenv.Connect(t, h.cfg.NATSURL)
	maxPayload := int(nc.MaxPayload())
	cfg := h.cfg
	cfg.PartSize = 2 * maxPayload // parts over the server's max_payload
	cfg.MaxBackoff = 200 * time.Millisecond
	r := h.start(cfg)
	testenv.Eventually(t, 10*time.Second, func() error {
		if st := r.c.Status(); st.State != StateRunning {
			return fmt.Errorf("state %s", st.State)
		}
		return nil
	})
	h.exec(fmt.Sprintf("INSERT INTO t VALUES (1, REPEAT('x', %d))", maxPayload+1024))
	testenv.Eventually(t, 30*time.Second, func() error {
		rec := httptest.NewRecorder()
		StatusHandler(r.c).ServeHTTP(rec, httptest.NewRequest("GET", "/status", nil))
		var st Status
		if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
			return err
		}
		if st.State != StateRetrying || !strings.Contains(st.LastError, "payload") || st.Reconnects < 2 {
			return fmt.Errorf("status %+v", st)
		}
		t.Logf("status:\n%s", st)
		return nil
	})
	// Sampled while sessions come and go: never healthy.
	for range 20 {
		rec := httptest.NewRecorder()
		HealthHandler(r.c).ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		if rec.Code != 503 {
			t.Fatalf("healthz %d %s while every publish fails", rec.Code, rec.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStatusRunning: /status of a streaming capture: running, the checkpoint, counts.
func TestStatusRunning(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.exec("CREATE TABLE t (id INT PRIMARY KEY)")
	r := h.start(h.cfg)
	h.exec("INSERT INTO t VALUES (1),(2)", "INSERT INTO t VALUES (3)")
	h.read(h.cfg.Stream, 3, 30*time.Second)
	testenv.Eventually(t, 10*time.Second, func() error {
		rec := httptest.NewRecorder()
		StatusHandler(r.c).ServeHTTP(rec, httptest.NewRequest("GET", "/status", nil))
		var st Status
		if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
			return err
		}
		if st.State != StateRunning || !st.Healthy() || st.PublishedEvents != 4 || st.PublishedTransactions != 3 ||
			st.Position == "" || st.Position != st.Acked || st.File == "" || st.Site != h.cfg.Site {
			return fmt.Errorf("status %s", rec.Body)
		}
		t.Logf("status:\n%s", st)
		return nil
	})
}
