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
	"go.uber.org/zap/zaptest"

	"github.com/music-coord/music/internal/testenv"
)

// purgeTo rotates the binlog and purges every file before the new one (retrying while
// the server still needs the old file for crash recovery, when it silently keeps it).
func (h *harness) purgeTo() string {
	h.t.Helper()
	h.exec("FLUSH BINARY LOGS")
	file, _ := masterStatus(h.t, h.pool)
	testenv.Eventually(h.t, 30*time.Second, func() error {
		h.exec("PURGE BINARY LOGS TO '" + file + "'")
		var first string
		var size int64
		if err := h.pool.QueryRow("SHOW BINARY LOGS").Scan(&first, &size); err != nil {
			return err
		}
		if first != file {
			return fmt.Errorf("oldest binlog %s, want %s", first, file)
		}
		return nil
	})
	return file
}

func (h *harness) checkpoint() Checkpoint {
	h.t.Helper()
	ctx := context.Background()
	kv, err := h.js.KeyValue(ctx, h.cfg.StateBucket)
	if err != nil {
		h.t.Fatal(err)
	}
	e, err := kv.Get(ctx, checkpointKey)
	if err != nil {
		h.t.Fatal(err)
	}
	var cp Checkpoint
	if err := json.Unmarshal(e.Value(), &cp); err != nil {
		h.t.Fatal(err)
	}
	return cp
}

// runPurged runs capture with cfg and expects it to stop with a *PurgedError at once,
// unhealthy, with status and metric saying so.
func (h *harness) runPurged(cfg Config, lostFrom string) {
	t := h.t
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := New(cfg, zaptest.NewLogger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = c.Run(ctx)
	var pe *PurgedError
	if !errors.As(err, &pe) {
		t.Fatalf("Run() = %v, want a *PurgedError", err)
	}
	msg := err.Error()
	for _, want := range []string{lostFrom, "music capture --start current --snapshot db.table", "auto_snapshot_on_purge: true", h.db + ".t"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	t.Logf("error: %v", err)
	rec := httptest.NewRecorder()
	HealthHandler(c).ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "binlog purged") {
		t.Errorf("healthz %d %s, want 503 with the error", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	StatusHandler(c).ServeHTTP(rec, httptest.NewRequest("GET", "/status", nil))
	var st Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if st.State != StateStopped || !st.Purged || !strings.Contains(st.LastError, lostFrom) || st.LastErrorAt.IsZero() {
		t.Errorf("status %+v, want stopped, purged, with the error", st)
	}
	if got := testutil.ToFloat64(c.m.Purged); got != 1 {
		t.Errorf("music_capture_purged = %v, want 1", got)
	}
}

// TestPurgedBinlogStopsLoudly is the operator's reproduction: capture stopped, a row
// inserted, its binlog file purged, capture restarted. Capture must not move its
// checkpoint past the lost transaction: it stops with a *PurgedError naming the GTIDs and
// the recovery, /healthz 503, music_capture_purged 1. With auto_snapshot_on_purge it
// resnapshots the table and goes on.
func TestPurgedBinlogStopsLoudly(t *testing.T) {
	t.Parallel()
	priv := testenv.NewPrivateMariaDB(t, "p", 7)
	h := newHarnessAt(t, priv)
	h.exec("CREATE TABLE t (id INT PRIMARY KEY)")
	r := h.start(h.cfg)
	h.exec("INSERT INTO t VALUES (1)")
	h.read(h.cfg.Stream, 2, 30*time.Second)
	r.stop(t)
	before := h.checkpoint()
	own, _ := ParsePosition(before.Position)
	h.exec("INSERT INTO t VALUES (2)")
	h.purgeTo()
	lost := next(own[7])
	h.runPurged(h.cfg, lost)
	if after := h.checkpoint(); after.Position != before.Position {
		t.Fatalf("checkpoint moved from %s to %s past the purged transaction", before.Position, after.Position)
	}
	if events := rowEvents(h.read(h.cfg.Stream, 1, 5*time.Second)); len(events) != 1 {
		t.Fatalf("%d row events, want only the first insert", len(events))
	}
	// A restart stops the same way (the checkpoint stayed).
	h.runPurged(h.cfg, lost)

	// Recovery: auto_snapshot_on_purge resnapshots the table and continues.
	cfg := h.cfg
	cfg.AutoSnapshotOnPurge = true
	r = h.start(cfg)
	h.exec("INSERT INTO t VALUES (3)")
	testenv.Eventually(t, 60*time.Second, func() error {
		rows := fold(h.read(h.cfg.Stream, 1, 5*time.Second), "t")
		if len(rows) != 3 {
			return fmt.Errorf("%d rows in the stream, want 3", len(rows))
		}
		if st := r.c.Status(); st.State != StateRunning || st.LastError != "" || st.Purged {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	if got := testutil.ToFloat64(r.c.m.PurgeResnapshots); got != 1 {
		t.Errorf("music_capture_purge_resnapshots_total = %v, want 1", got)
	}
}

// TestPurgedBinlogNoOwnGTID: a checkpoint without any GTID of the site's domain (capture
// started before the site wrote anything of its own) used to make MariaDB stream from the
// oldest binlog, silently skipping the purged transactions of the domain.
func TestPurgedBinlogNoOwnGTID(t *testing.T) {
	t.Parallel()
	priv := testenv.NewPrivateMariaDB(t, "p", 7)
	h := newHarnessAt(t, priv)
	h.exec("CREATE TABLE t (id INT PRIMARY KEY)")
	cfg := h.cfg
	cfg.DomainID = 8 // nothing of domain 8 in the binlog yet
	cfg.Start = "current"
	r := h.start(cfg)
	r.stop(t)
	if cp := h.checkpoint(); strings.Contains(cp.Position, "8-") {
		t.Fatalf("checkpoint %s already has domain 8", cp.Position)
	}
	h.exec("SET SESSION gtid_domain_id=8; INSERT INTO t VALUES (1)")
	h.purgeTo()
	h.runPurged(cfg, "8-*-1")
	if cp := h.checkpoint(); strings.Contains(cp.Position, "8-") {
		t.Fatalf("checkpoint moved to %s past the purged transaction", cp.Position)
	}
}
