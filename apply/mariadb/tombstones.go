package mariadb

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Horizon returns a time before which every origin's changes have been applied here: no
// change with an older commit time is still waiting in a stream (see the package
// documentation, "Tombstones"). An error skips the sweep.
type Horizon func(ctx context.Context) (time.Time, error)

// Sweeper collects old tombstones from row_versions (see the package documentation).
type Sweeper struct {
	s         *Sink
	retention time.Duration
	interval  time.Duration
	batch     int
	horizon   Horizon
	collected prometheus.Counter
	gauge     prometheus.Gauge
	now       func() time.Time
}

// NewSweeper returns the sink's tombstone sweeper (Config.TombstoneRetention,
// TombstoneSweepInterval). horizon nil means retention only. Its metrics are registered
// with reg (may be nil): music_apply_tombstones_collected_total, music_apply_tombstones.
func (s *Sink) NewSweeper(reg prometheus.Registerer, horizon Horizon) *Sweeper {
	w := &Sweeper{s: s, retention: s.cfg.TombstoneRetention, interval: s.cfg.TombstoneSweepInterval, batch: s.batch,
		horizon: horizon, now: time.Now,
		collected: prometheus.NewCounter(prometheus.CounterOpts{Name: "music_apply_tombstones_collected_total",
			Help: "Tombstones (versions of deleted rows) removed from row_versions by the sweeper."}),
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "music_apply_tombstones",
			Help: "Tombstones (versions of deleted rows) in row_versions, as of the last sweep."}),
	}
	if reg != nil {
		reg.MustRegister(w.collected, w.gauge)
	}
	return w
}

// Run sweeps every interval until ctx ends.
func (w *Sweeper) Run(ctx context.Context) error {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		if _, err := w.Sweep(ctx); err != nil && ctx.Err() == nil {
			w.s.log.Warn("tombstone sweep", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Cutoff is the commit time before which tombstones may be collected now: the retention
// ago, or the horizon if that is earlier.
func (w *Sweeper) Cutoff(ctx context.Context) (time.Time, error) {
	cut := w.now().Add(-w.retention)
	if w.horizon != nil {
		h, err := w.horizon(ctx)
		if err != nil {
			return time.Time{}, fmt.Errorf("horizon: %w", err)
		}
		if h.Before(cut) {
			cut = h
		}
	}
	return cut, nil
}

// Sweep removes the tombstones older than Cutoff, in batches (one short transaction
// each, outside the binlog), and returns how many.
func (w *Sweeper) Sweep(ctx context.Context) (int, error) {
	cut, err := w.Cutoff(ctx)
	if err != nil {
		return 0, err
	}
	total := 0
	err = w.s.withSession(ctx, outsideBinlog, false, func(conn *sql.Conn) error {
		q := "DELETE FROM " + w.s.meta + ".row_versions WHERE deleted=1 AND ts_us < ? LIMIT " + strconv.Itoa(w.batch)
		for {
			res, err := conn.ExecContext(ctx, q, cut.UnixMicro())
			if err != nil {
				return fmt.Errorf("collect tombstones: %w", err)
			}
			n, _ := res.RowsAffected()
			total += int(n)
			w.collected.Add(float64(n))
			if n < int64(w.batch) {
				break
			}
		}
		var left int
		if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+w.s.meta+".row_versions WHERE deleted=1").Scan(&left); err != nil {
			return fmt.Errorf("count tombstones: %w", err)
		}
		w.gauge.Set(float64(left))
		return nil
	})
	if total > 0 {
		w.s.log.Info("tombstones collected", zap.Int("collected", total), zap.Time("older_than", cut))
	}
	return total, err
}
