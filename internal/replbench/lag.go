package replbench

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"
)

// Result is what a probe saw at the destination.
type Result struct {
	Rows     int
	Elapsed  time.Duration   // from the probe's start to the last row's arrival
	Lags     []time.Duration // per row: arrival at the destination minus source insert time
	Timedout bool
}

// RowsPerSec is the sustained apply rate over the probe.
func (r Result) RowsPerSec() float64 { return float64(r.Rows) / r.Elapsed.Seconds() }

// Percentile returns the p-th percentile (0-100) of the lags.
func (r Result) Percentile(p float64) time.Duration {
	if len(r.Lags) == 0 {
		return 0
	}
	s := slices.Clone(r.Lags)
	slices.Sort(s)
	i := int(p / 100 * float64(len(s)-1))
	return s[i]
}

// Probe polls the destination table every poll interval until rows ids first..first+want-1
// have all arrived (ids arrive in order, as both replication paths keep source order) or
// timeout passes, and records each row's lag.
func Probe(ctx context.Context, dst *sql.DB, table string, first, want int, poll, timeout time.Duration) (Result, error) {
	start := time.Now()
	res := Result{}
	next := first
	for next < first+want {
		if time.Since(start) > timeout {
			res.Timedout = true
			return res, nil
		}
		rows, err := dst.QueryContext(ctx, "SELECT id, created_us FROM `"+table+"` WHERE id >= ? ORDER BY id LIMIT 50000", next)
		if err != nil {
			return res, fmt.Errorf("probe: %w", err)
		}
		seen := time.Now()
		for rows.Next() {
			var id, created int64
			if err := rows.Scan(&id, &created); err != nil {
				rows.Close()
				return res, err
			}
			res.Lags = append(res.Lags, seen.Sub(time.UnixMicro(created)))
			res.Rows++
			res.Elapsed = time.Since(start)
			next = int(id) + 1
		}
		if err := rows.Err(); err != nil {
			rows.Close()
			return res, err
		}
		rows.Close()
		time.Sleep(poll)
	}
	return res, nil
}
