package mariadb_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/music-coord/music/apply/applytest"
	"github.com/music-coord/music/apply/mariadb"
	"github.com/music-coord/music/internal/testenv"
)

func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// Tombstones are collected once older than the retention and the horizon (the oldest
// change still waiting in a stream), never before; newer changes of collected rows apply.
func TestSweeperCollectsOldTombstones(t *testing.T) {
	site := testenv.Sites(t)[0]
	name := testenv.NewDatabase(t, site)
	db := site.Open(t, name)
	if _, err := db.Exec(applytest.KVDDL); err != nil {
		t.Fatal(err)
	}
	meta := "music_sweep_" + name[len(name)-8:]
	t.Cleanup(func() { db.Exec("DROP DATABASE IF EXISTS " + meta) })
	ctx := context.Background()
	sink, err := mariadb.Open(ctx, mariadb.Config{DSN: site.DSN(""), MetaSchema: meta, BatchRows: 3}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	kv := applytest.KV(name)
	x := applytest.NewOrigin("x", 7)
	now := time.Now()
	old, recent := now.Add(-48*time.Hour).UnixMilli(), now.Add(-time.Hour).UnixMilli()
	for i := int64(0); i < 10; i++ {
		ts := old
		if i >= 7 {
			ts = recent
		}
		if _, err := sink.Apply(ctx, x.Txn(ts, kv.Insert(applytest.Row(i, "v")))); err != nil {
			t.Fatal(err)
		}
		if _, err := sink.Apply(ctx, x.Txn(ts+1, kv.Delete(applytest.Row(i, "v")))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sink.Apply(ctx, x.Txn(old, kv.Insert(applytest.Row(100, "alive")))); err != nil {
		t.Fatal(err)
	}
	count := func() (tomb, live int) {
		if err := db.QueryRow("SELECT COALESCE(SUM(deleted),0), COALESCE(SUM(1-deleted),0) FROM "+meta+".row_versions").Scan(&tomb, &live); err != nil {
			t.Fatal(err)
		}
		return
	}
	if tomb, live := count(); tomb != 10 || live != 1 {
		t.Fatalf("%d tombstones, %d live versions; want 10 and 1", tomb, live)
	}
	// The horizon holds collection back: a stream still has a change from 72 hours ago.
	horizon := now.Add(-72 * time.Hour)
	var horizonErr error
	reg := prometheus.NewRegistry()
	sw := sink.NewSweeper(reg, func(context.Context) (time.Time, error) { return horizon, horizonErr })
	if n, err := sw.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("sweep behind the horizon: %d collected (%v), want 0", n, err)
	}
	horizonErr = errors.New("stream unreachable")
	if n, err := sw.Sweep(ctx); err == nil || n != 0 {
		t.Fatalf("sweep without a horizon: %d collected (%v), want an error and 0", n, err)
	}
	horizon, horizonErr = now, nil
	if n, err := sw.Sweep(ctx); err != nil || n != 7 {
		t.Fatalf("sweep: %d collected (%v), want the 7 tombstones older than 24h", n, err)
	}
	if tomb, live := count(); tomb != 3 || live != 1 {
		t.Fatalf("after the sweep: %d tombstones, %d live versions; want 3 and 1", tomb, live)
	}
	if c, g := metricValue(t, reg, "music_apply_tombstones_collected_total"), metricValue(t, reg, "music_apply_tombstones"); c != 7 || g != 3 {
		t.Fatalf("metrics: collected %v, gauge %v; want 7 and 3", c, g)
	}
	// A newer change of a collected row applies; the recent tombstones still stop older ones.
	if res, err := sink.Apply(ctx, x.Txn(now.UnixMilli(), kv.Insert(applytest.Row(1, "again")))); err != nil || res.Applied != 1 {
		t.Fatalf("newer change of a collected row: %+v (%v)", res, err)
	}
	if res, err := sink.Apply(ctx, x.Txn(recent-1000, kv.Insert(applytest.Row(8, "late")))); err != nil || res.Conflicts != 1 {
		t.Fatalf("older change of a kept tombstone: %+v (%v), want a conflict", res, err)
	}
	var v sql.NullString
	if err := db.QueryRow("SELECT v FROM kv WHERE id=1").Scan(&v); err != nil || v.String != "again" {
		t.Fatalf("row 1: %v (%v)", v, err)
	}
}
