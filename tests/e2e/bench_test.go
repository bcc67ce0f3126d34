package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/music-coord/music/internal/replbench"
	"github.com/music-coord/music/internal/testenv"
)

// probe notes when each of the rows first, first+1, ... arrives at dst and how long after
// its source insert (created_us). Unlike replbench.Probe it does not assume rows arrive in
// id order (MUSIC's apply runs transactions on disjoint rows in parallel): it re-reads from
// the lowest id not seen yet. It ends when the total sent on total (the rows written) have
// all arrived, or after timeout.
func probe(ctx context.Context, dst *sql.DB, table string, first int, total <-chan int, poll, timeout time.Duration) (replbench.Result, error) {
	start := time.Now()
	var res replbench.Result
	seen := map[int64]bool{}
	low, want := int64(first), -1
	for want < 0 || res.Rows < want {
		if want < 0 {
			select {
			case want = <-total:
			default:
			}
		}
		if time.Since(start) > timeout {
			res.Timedout = true
			return res, nil
		}
		rows, err := dst.QueryContext(ctx, "SELECT id, created_us FROM `"+table+"` WHERE id >= ? ORDER BY id LIMIT 200000", low)
		if err != nil {
			return res, fmt.Errorf("probe: %w", err)
		}
		now := time.Now()
		for rows.Next() {
			var id, created int64
			if err := rows.Scan(&id, &created); err != nil {
				rows.Close()
				return res, err
			}
			if !seen[id] {
				seen[id] = true
				res.Lags = append(res.Lags, now.Sub(time.UnixMicro(created)))
				res.Rows++
				res.Elapsed = now.Sub(start)
			}
		}
		rows.Close()
		for seen[low] {
			delete(seen, low)
			low++
		}
		time.Sleep(poll)
	}
	return res, nil
}

// figures is one replication path's results on both workloads.
type figures struct {
	bulk, lag     replbench.Result
	offered       int // rows written at the offered load
	offeredPeriod time.Duration
}

// workloads runs the two workloads from src to dst on tables bulk and lag (which must exist
// at both ends, or reach dst by replication before rows do): n rows in 1000-row
// transactions as fast as the source takes them, then 10k rows/s in 100-row transactions
// for d.
func workloads(b *testing.B, src, dst *sql.DB, n int, d time.Duration) figures {
	b.Helper()
	ctx := context.Background()
	var f figures
	total := make(chan int, 1)
	total <- n
	errc := make(chan error, 1)
	go func() { errc <- replbench.Insert(ctx, src, "bulk", 1, n, 1000) }()
	var err error
	if f.bulk, err = probe(ctx, dst, "bulk", 1, total, 5*time.Millisecond, 5*time.Minute); err != nil {
		b.Fatal(err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	if f.bulk.Timedout {
		b.Fatalf("bulk: %d of %d rows arrived", f.bulk.Rows, n)
	}
	total = make(chan int, 1)
	go func() {
		t0 := time.Now()
		rows, err := replbench.Offered(ctx, src, "lag", 1, 10000, 100, d)
		f.offeredPeriod = time.Since(t0)
		f.offered = rows
		total <- rows
		errc <- err
	}()
	if f.lag, err = probe(ctx, dst, "lag", 1, total, 5*time.Millisecond, d+5*time.Minute); err != nil {
		b.Fatal(err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	if f.lag.Timedout {
		b.Fatalf("offered load: %d of %d rows arrived", f.lag.Rows, f.offered)
	}
	return f
}

func waitTable(b testing.TB, pool *sql.DB, table string) {
	b.Helper()
	testenv.Eventually(b, 60*time.Second, func() error {
		_, err := pool.Exec("SELECT 1 FROM `" + table + "` LIMIT 1")
		return err
	})
}

// BenchmarkMirroringVsNative compares MUSIC mirroring from site a to site b (capture at a,
// NATS, apply at b into MariaDB and the MUSIC store) with MariaDB's own single-threaded
// asynchronous replication between the same two servers, on the same workloads, in the
// same run: native first on one database, then MUSIC on another (never both at once).
//
//	go test -run '^$' -bench MirroringVsNative -benchtime 1x -timeout 20m ./tests/e2e/
//
// For diagnosis, E2E_NO_STORE=1 runs apply without the MUSIC store (Cassandra) and
// E2E_NO_FOLLOW_OWN=1 without the own stream (the conflict rule then misses local writes).
func BenchmarkMirroringVsNative(b *testing.B) {
	const n = 100_000
	const d = 10 * time.Second
	sites := testenv.Sites(b)
	a, bs := sites[0], sites[1]
	ctx := context.Background()

	// MariaDB native replication a -> b.
	ndb := testenv.NewDatabase(b, a, bs)
	nsrc, ndst := a.Open(b, ndb), bs.Open(b, ndb)
	for _, p := range []*sql.DB{nsrc, ndst} {
		for _, tbl := range []string{"bulk", "lag"} {
			if err := replbench.CreateTable(ctx, p, tbl); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := replbench.StartNative(ctx, nsrc, ndst, replbench.Endpoint{Host: a.Host, Port: a.Port, User: a.User}, ndb); err != nil {
		b.Fatal(err)
	}
	native := workloads(b, nsrc, ndst, n, d)
	if err := replbench.StopNative(ctx, ndst); err != nil {
		b.Fatal(err)
	}
	// Capture positions on its own site's GTID domain, and the server then sends other
	// domains' unflagged transactions from the start of that binlog file. b's binlog now
	// holds the native replica's copy of a's transactions (domain a, unflagged; in
	// production a site's binlog holds no such foreign transactions): a new binlog file and
	// an own-domain transaction in it keep MUSIC's capture at b from reading them.
	for _, q := range []string{"FLUSH BINARY LOGS", "CREATE TABLE marker (id INT PRIMARY KEY)"} {
		if _, err := ndst.ExecContext(ctx, q); err != nil {
			b.Fatal(err)
		}
	}

	// MUSIC a -> b: the agents of both sites, started only now.
	mdb := testenv.NewDatabase(b, a, bs)
	ks := ""
	if os.Getenv("E2E_NO_STORE") == "" {
		ks, _ = testenv.NewKeyspace(b)
	}
	m := newMirror(b, testenv.NATS(b), mdb, ks, []testenv.Site{a, bs})
	m.startAll()
	msrc, mdst := a.Open(b, mdb), bs.Open(b, mdb)
	time.Sleep(2 * time.Second) // capture streaming from its start position
	for _, tbl := range []string{"bulk", "lag"} {
		if err := replbench.CreateTable(ctx, msrc, tbl); err != nil {
			b.Fatal(err)
		}
		waitTable(b, mdst, tbl)
	}
	music := workloads(b, msrc, mdst, n, d)

	report := func(name string, f figures) {
		b.ReportMetric(f.bulk.RowsPerSec(), name+"_bulk_rows/s")
		b.ReportMetric(float64(f.lag.Percentile(50).Microseconds())/1000, name+"_p50_lag_ms")
		b.ReportMetric(float64(f.lag.Percentile(99).Microseconds())/1000, name+"_p99_lag_ms")
		b.Logf("%s: bulk %d rows in %s = %.0f rows/s; offered %d rows in %s (%.0f rows/s): lag p50 %s p99 %s max %s",
			name, f.bulk.Rows, f.bulk.Elapsed.Round(time.Millisecond), f.bulk.RowsPerSec(), f.offered,
			f.offeredPeriod.Round(time.Millisecond), float64(f.offered)/f.offeredPeriod.Seconds(),
			f.lag.Percentile(50).Round(time.Millisecond), f.lag.Percentile(99).Round(time.Millisecond),
			f.lag.Percentile(100).Round(time.Millisecond))
	}
	report("native", native)
	report("music", music)
	b.ReportMetric(music.bulk.RowsPerSec()/native.bulk.RowsPerSec(), "throughput_ratio_music/native")
	b.ReportMetric(float64(music.lag.Percentile(99))/float64(native.lag.Percentile(99)), "p99_ratio_music/native")
}
