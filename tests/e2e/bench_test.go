package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/replbench"
	"github.com/music-coord/music/internal/testenv"
)

// probe notes when each of the rows first, first+1, ... arrives at dst (or, with cond, when
// it first satisfies cond) and how long after its source write (created_us). Unlike
// replbench.Probe it does not assume rows arrive in id order (MUSIC's apply runs
// transactions on disjoint rows in parallel): it re-reads from the lowest id not seen yet.
// It ends when the total sent on total (the rows written) have all arrived, or after
// timeout.
func probe(ctx context.Context, dst *sql.DB, table, cond string, first int, total <-chan int, poll, timeout time.Duration) (replbench.Result, error) {
	start := time.Now()
	var res replbench.Result
	seen := map[int64]bool{}
	low, want := int64(first), -1
	if cond != "" {
		cond = " AND " + cond
	}
	q := "SELECT id, created_us FROM `" + table + "` WHERE id >= ?" + cond + " ORDER BY id LIMIT 200000"
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
		rows, err := dst.QueryContext(ctx, q, low)
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

// load is one workload's figures on one replication path.
type load struct {
	rows   int
	res    replbench.Result // arrivals at the destination, timed from the workload's start
	source time.Duration    // the source's time to write every row
	cpu    replbench.CPU    // CPU used by each process from the start until every row arrived
}

// cpuPer10k is the CPU process name used per 10,000 rows, in seconds.
func (l load) cpuPer10k(name string) float64 {
	return l.cpu[name].Seconds() * 10000 / float64(l.rows)
}

func (l load) cpuTotalPer10k() float64 { return l.cpu.Total().Seconds() * 10000 / float64(l.rows) }

// path is one replication path (native or MUSIC) between a source and a destination, the
// processes whose CPU it uses, and how to tell it has finished with what arrived.
type path struct {
	name     string
	src, dst *sql.DB
	procs    replbench.Procs
	settle   func() // waits until the path has finished work on what arrived (nil: none)
	// idle is each process's CPU per second with no workload, measured before the
	// workloads (idleRate) and printed beside their figures: on a shared machine a server's
	// idle rate is mostly other work.
	idle replbench.CPU
	// profile starts CPU profiles of the agents for workload name and returns a function
	// waiting for them (nil: none).
	profile func(name string) (wait func())
}

// measure runs write at the source while probing table at the destination for rows rows
// (satisfying cond), and samples the processes' CPU around it.
func (p path) measure(b *testing.B, table, cond string, rows int, timeout time.Duration, write func(context.Context) error) load {
	b.Helper()
	ctx := context.Background()
	if p.profile != nil {
		defer p.profile(table + "-" + strings.Fields(cond + " ins")[0])()
	}
	before := p.procs.Sample()
	t0 := time.Now()
	total := make(chan int, 1)
	total <- rows
	type wrote struct {
		d   time.Duration
		err error
	}
	done := make(chan wrote, 1)
	go func() { err := write(ctx); done <- wrote{time.Since(t0), err} }()
	res, err := probe(ctx, p.dst, table, cond, 1, total, 10*time.Millisecond, timeout)
	if err != nil {
		b.Fatal(err)
	}
	w := <-done
	if w.err != nil {
		b.Fatal(w.err)
	}
	if res.Timedout {
		b.Fatalf("%s: %d of %d rows arrived", table, res.Rows, rows)
	}
	if p.settle != nil {
		p.settle()
	}
	return load{rows: rows, res: res, source: w.d, cpu: p.procs.Sample().Since(before)}
}

// idleRate measures each process's CPU per second over d with no workload.
func (p *path) idleRate(d time.Duration) {
	before := p.procs.Sample()
	time.Sleep(d)
	used := p.procs.Sample().Since(before)
	p.idle = replbench.CPU{}
	for name, t := range used {
		p.idle[name] = time.Duration(float64(t) / d.Seconds())
	}
}

// figures is one replication path's results on every workload.
type figures struct {
	w1, w2, w3, lag load
}

const (
	bulkRows = 100_000
	clients  = 8
	offerFor = 10 * time.Second
)

// perClient is the single-row transactions each client of W2 and W3 writes: 2,500, or
// E2E_BENCH_PER_CLIENT (a busy machine commits single rows slowly).
func perClient(b *testing.B) int {
	if s := os.Getenv("E2E_BENCH_PER_CLIENT"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("E2E_BENCH_PER_CLIENT=%q: want a positive integer", s)
		}
		return n
	}
	return 2_500
}

// progress notes a phase on stderr as it happens (b.Logf prints only at the end).
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// workloads runs every workload from src to dst on tables bulk, single and lag (which must
// exist at both ends): W1, bulkRows rows in 1000-row transactions as fast as the source
// takes them; W2, clients × perClient single-row INSERTs; W3, the same rows updated one
// per transaction; then 10k rows/s in 100-row transactions for offerFor.
func workloads(b *testing.B, p path) figures {
	b.Helper()
	var f figures
	progress("%s W1", p.name)
	f.w1 = p.measure(b, "bulk", "", bulkRows, 5*time.Minute, func(ctx context.Context) error {
		return replbench.Insert(ctx, p.src, "bulk", 1, bulkRows, 1000)
	})
	per := perClient(b)
	n := clients * per
	progress("%s W2", p.name)
	f.w2 = p.measure(b, "single", "", n, 10*time.Minute, func(ctx context.Context) error {
		return replbench.Clients(ctx, p.src, "single", 1, clients, per, false)
	})
	progress("%s W3", p.name)
	f.w3 = p.measure(b, "single", "payload = '"+replbench.UpdatedPayload+"'", n, 10*time.Minute, func(ctx context.Context) error {
		return replbench.Clients(ctx, p.src, "single", 1, clients, per, true)
	})
	progress("%s offered load", p.name)
	f.lag = p.measureOffered(b)
	return f
}

// measureOffered is the offered-load run: 10k rows/s in 100-row transactions for
// offerFor; its rows are those the source managed to write.
func (p path) measureOffered(b *testing.B) load {
	b.Helper()
	ctx := context.Background()
	if p.profile != nil {
		defer p.profile("offered")()
	}
	before := p.procs.Sample()
	total := make(chan int, 1)
	errc := make(chan error, 1)
	var source time.Duration
	var rows int
	go func() {
		t0 := time.Now()
		n, err := replbench.Offered(ctx, p.src, "lag", 1, 10000, 100, offerFor)
		source, rows = time.Since(t0), n
		total <- n
		errc <- err
	}()
	res, err := probe(ctx, p.dst, "lag", "", 1, total, 5*time.Millisecond, offerFor+5*time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	if res.Timedout {
		b.Fatalf("offered load: %d of %d rows arrived", res.Rows, rows)
	}
	if p.settle != nil {
		p.settle()
	}
	return load{rows: rows, res: res, source: source, cpu: p.procs.Sample().Since(before)}
}

// openSource opens the workloads' pool at site s: parameters interpolated by the client,
// so a statement is one round trip (as an application with a statement cache).
func openSource(b *testing.B, s testenv.Site, db string) *sql.DB {
	b.Helper()
	pool, err := sql.Open("mysql", s.DSN(db)+"&interpolateParams=true")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { pool.Close() })
	return pool
}

func waitTable(b testing.TB, pool *sql.DB, table string) {
	b.Helper()
	testenv.Eventually(b, 60*time.Second, func() error {
		_, err := pool.Exec("SELECT 1 FROM `" + table + "` LIMIT 1")
		return err
	})
}

// createTables creates the workloads' tables at db; single has an index on its payload,
// by which the W3 probe finds updated rows.
func createTables(ctx context.Context, b *testing.B, db *sql.DB) {
	b.Helper()
	for _, tbl := range []string{"bulk", "single", "lag"} {
		if err := replbench.CreateTable(ctx, db, tbl); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := db.ExecContext(ctx, "ALTER TABLE single ADD KEY by_payload (payload, id)"); err != nil {
		b.Fatal(err)
	}
}

// serverProcs are the shared servers' processes: MariaDB of sites a and b, NATS and
// Cassandra (from the local topology's pid files).
func serverProcs(b *testing.B, a, bs testenv.Site) replbench.Procs {
	b.Helper()
	data := testenv.Local(b).Data
	procs := replbench.Procs{}
	for name, file := range map[string]string{
		"mariadb-" + a.Name:  filepath.Join("mariadb-"+a.Name, "mysqld.pid"),
		"mariadb-" + bs.Name: filepath.Join("mariadb-"+bs.Name, "mysqld.pid"),
		"nats":               filepath.Join("nats", "server.pid"),
		"cassandra":          filepath.Join("cassandra", "server.pid"),
	} {
		pid, err := replbench.PidFile(filepath.Join(data, file))
		if err != nil {
			b.Fatalf("pid of %s: %v", name, err)
		}
		procs[name] = pid
	}
	return procs
}

// drained waits until apply's consumers (b of a's stream, a of its own) have nothing
// pending or unacknowledged: every sink committed what arrived.
func (m *mirror) drained(b *testing.B) {
	b.Helper()
	_, js := testenv.Connect(b, m.natsURL)
	a, bs := m.sites[0], m.sites[1]
	check := func(local, origin *siteAgents) error {
		durable := "music_apply_" + changeevent.Token(local.name) + "_" + changeevent.Token(origin.name)
		c, err := js.Consumer(context.Background(), origin.stream, durable)
		if err != nil {
			return err
		}
		info := c.CachedInfo()
		if info.NumPending+uint64(info.NumAckPending) > 0 {
			return fmt.Errorf("%s: %d pending, %d unacknowledged", durable, info.NumPending, info.NumAckPending)
		}
		return nil
	}
	testenv.Eventually(b, 5*time.Minute, func() error {
		if err := check(bs, a); err != nil {
			return err
		}
		if m.noFollowOwn {
			return nil
		}
		return check(a, a)
	})
}

// BenchmarkMirroringVsNative compares MUSIC mirroring from site a to site b (capture at a,
// NATS, apply at b into MariaDB and the MUSIC store) with MariaDB's own single-threaded
// asynchronous replication between the same two servers, on the same workloads, in the
// same run: native first on one database, then MUSIC on another (never both at once).
//
//	go test -run '^$' -bench MirroringVsNative -benchtime 1x -timeout 20m ./tests/e2e/
//
// Workloads: W1 100k rows in 1000-row transactions; W2 8 clients × 2,500 single-row
// INSERTs; W3 the same rows updated one per transaction; then 10k rows/s offered in
// 100-row transactions for 10 s. CPU per process is read from /proc: the servers are
// shared with whatever else runs on the machine (their figures include it), the agents
// are the benchmark's own.
//
// For diagnosis, E2E_NO_STORE=1 runs apply without the MUSIC store (Cassandra) and
// E2E_NO_FOLLOW_OWN=1 without the own stream (the conflict rule then misses local writes);
// E2E_PPROF=1 serves pprof on the agents' metrics addresses (capture 26100+i, apply 26200+i).
func BenchmarkMirroringVsNative(b *testing.B) {
	sites := testenv.Sites(b)
	a, bs := sites[0], sites[1]
	ctx := context.Background()
	servers := serverProcs(b, a, bs)
	tables := []string{"bulk", "single", "lag"}

	// MariaDB native replication a -> b.
	ndb := testenv.NewDatabase(b, a, bs)
	nsrc, ndst := openSource(b, a, ndb), bs.Open(b, ndb)
	for _, p := range []*sql.DB{nsrc, ndst} {
		createTables(ctx, b, p)
	}
	if err := replbench.StartNative(ctx, nsrc, ndst, replbench.Endpoint{Host: a.Host, Port: a.Port, User: a.User}, ndb); err != nil {
		b.Fatal(err)
	}
	// Native replication's CPU is the source's and the replica's.
	nprocs := replbench.Procs{"mariadb-" + a.Name: servers["mariadb-"+a.Name], "mariadb-" + bs.Name: servers["mariadb-"+bs.Name]}
	np := path{name: "native", src: nsrc, dst: ndst, procs: nprocs}
	native := workloads(b, np)
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
	msrc, mdst := openSource(b, a, mdb), bs.Open(b, mdb)
	time.Sleep(2 * time.Second) // capture streaming from its start position
	createTables(ctx, b, msrc)
	for _, tbl := range tables {
		waitTable(b, mdst, tbl)
	}
	testenv.Eventually(b, 60*time.Second, func() error { // the index too
		_, err := mdst.Exec("SELECT 1 FROM single FORCE INDEX (by_payload) LIMIT 1")
		return err
	})
	procs := replbench.Procs{}
	for k, v := range servers {
		procs[k] = v
	}
	for _, sa := range m.sites {
		procs["capture-"+sa.site.Name] = sa.capture.pid()
		procs["apply-"+sa.site.Name] = sa.apply.pid()
	}
	mp := path{name: "MUSIC", src: msrc, dst: mdst, procs: procs, settle: func() { m.drained(b) }, profile: profiler(b)}
	mp.idleRate(5 * time.Second)
	music := workloads(b, mp)

	// Printed, not logged: a benchmark's log is cut to ten lines without -v.
	fmt.Printf("\nMUSIC a -> b against native replication, same run (%s)\n%s", time.Now().UTC().Format(time.RFC3339),
		table(native, music, perClient(b), mp.idle))
	b.ReportMetric(music.w1.res.RowsPerSec(), "music_W1_rows/s")
	b.ReportMetric(music.w1.res.RowsPerSec()/native.w1.res.RowsPerSec(), "W1_ratio_music/native")
	b.ReportMetric(music.w2.res.Elapsed.Seconds()/native.w2.res.Elapsed.Seconds(), "W2_last_row_ratio_music/native")
	b.ReportMetric(music.w3.res.Elapsed.Seconds()/native.w3.res.Elapsed.Seconds(), "W3_last_row_ratio_music/native")
	b.ReportMetric(float64(music.lag.res.Percentile(99).Microseconds())/1000, "music_offered_p99_lag_ms")
	b.ReportMetric(music.w2.cpuTotalPer10k()/native.w2.cpuTotalPer10k(), "W2_cpu_ratio_music/native")
}

// table prints the figures of both paths side by side, with MUSIC/native ratios.
func table(native, music figures, per int, idle replbench.CPU) string {
	var sb strings.Builder
	row := func(what, n, m, ratio string) { fmt.Fprintf(&sb, "| %-48s | %10s | %10s | %7s |\n", what, n, m, ratio) }
	ratio := func(m, n float64) string { return fmt.Sprintf("%.3f", m/n) }
	row("workload", "native", "MUSIC", "ratio")
	row(strings.Repeat("-", 48), strings.Repeat("-", 10), strings.Repeat("-", 10), "-------")
	n1, m1 := native.w1.res.RowsPerSec(), music.w1.res.RowsPerSec()
	row("W1 bulk 100k rows, 1000/txn: rows/s at b", fmt.Sprintf("%.0f", n1), fmt.Sprintf("%.0f", m1), ratio(m1, n1))
	for _, w := range []struct {
		name string
		n, m load
	}{{fmt.Sprintf("W2 %dx%d INSERT", clients, per), native.w2, music.w2}, {fmt.Sprintf("W3 %dx%d UPDATE", clients, per), native.w3, music.w3}} {
		ns, ms := float64(w.n.rows)/w.n.source.Seconds(), float64(w.m.rows)/w.m.source.Seconds()
		row(w.name+": source txn/s", fmt.Sprintf("%.0f", ns), fmt.Sprintf("%.0f", ms), ratio(ms, ns))
		ne, me := w.n.res.Elapsed.Seconds(), w.m.res.Elapsed.Seconds()
		row(w.name+": last row at b (s)", fmt.Sprintf("%.2f", ne), fmt.Sprintf("%.2f", me), ratio(me, ne))
	}
	ns, ms := float64(native.lag.rows)/native.lag.source.Seconds(), float64(music.lag.rows)/music.lag.source.Seconds()
	row("offered 10k rows/s, 100/txn: source rows/s", fmt.Sprintf("%.0f", ns), fmt.Sprintf("%.0f", ms), ratio(ms, ns))
	for _, p := range []float64{50, 99} {
		nl, ml := native.lag.res.Percentile(p), music.lag.res.Percentile(p)
		row(fmt.Sprintf("offered: lag p%.0f", p), nl.Round(time.Millisecond).String(), ml.Round(time.Millisecond).String(),
			ratio(float64(ml), float64(nl)))
	}
	sb.WriteString("\nCPU seconds per 10k rows, and each process's idle CPU in ms/s before the MUSIC workloads\n" +
		"(the servers are shared: their figures include whatever else runs on the machine)\n")
	names := []string{}
	for k := range music.w1.cpu {
		names = append(names, k)
	}
	slices.Sort(names)
	fmt.Fprintf(&sb, "| %-14s |", "process")
	for _, w := range []string{"W1", "W2", "W3", "offered"} {
		fmt.Fprintf(&sb, " %7s %7s |", w+" nat", "MUSIC")
	}
	sb.WriteString(" idle ms/s |\n")
	pairs := []struct{ n, m load }{{native.w1, music.w1}, {native.w2, music.w2}, {native.w3, music.w3}, {native.lag, music.lag}}
	for _, name := range names {
		fmt.Fprintf(&sb, "| %-14s |", name)
		for _, p := range pairs {
			nat := "-"
			if _, ok := p.n.cpu[name]; ok {
				nat = fmt.Sprintf("%.2f", p.n.cpuPer10k(name))
			}
			fmt.Fprintf(&sb, " %7s %7.2f |", nat, p.m.cpuPer10k(name))
		}
		fmt.Fprintf(&sb, " %9.0f |\n", float64(idle[name].Microseconds())/1000)
	}
	fmt.Fprintf(&sb, "| %-14s |", "total")
	for _, p := range pairs {
		fmt.Fprintf(&sb, " %7.2f %7.2f |", p.n.cpuTotalPer10k(), p.m.cpuTotalPer10k())
	}
	fmt.Fprintf(&sb, "\n| %-14s |", "MUSIC/native")
	for _, p := range pairs {
		fmt.Fprintf(&sb, " %15.2f |", p.m.cpuTotalPer10k()/p.n.cpuTotalPer10k())
	}
	sb.WriteString("\n")
	return sb.String()
}

// pid is the agent's process id (0 when it is not running).
func (a *agent) pid() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil || a.cmd.Process == nil {
		return 0
	}
	return a.cmd.Process.Pid
}

// profiler returns, when E2E_PROFILE_DIR names a directory (and E2E_PPROF=1 gives the
// agents fixed metrics addresses), a function that starts 15-second CPU profiles of
// capture a and apply a and b, written to <dir>/<workload>-<agent>.pprof. Otherwise nil.
func profiler(b *testing.B) func(string) func() {
	dir := os.Getenv("E2E_PROFILE_DIR")
	if dir == "" || os.Getenv("E2E_PPROF") == "" {
		return nil
	}
	return func(name string) func() {
		var wg sync.WaitGroup
		for agent, port := range map[string]int{"capture-a": 26101, "apply-a": 26201, "apply-b": 26202} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				url := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=15", port)
				resp, err := http.Get(url)
				if err != nil {
					b.Logf("profile %s: %v", agent, err)
					return
				}
				defer resp.Body.Close()
				f, err := os.Create(filepath.Join(dir, name+"-"+agent+".pprof"))
				if err != nil {
					b.Logf("profile %s: %v", agent, err)
					return
				}
				defer f.Close()
				_, _ = io.Copy(f, resp.Body)
			}()
		}
		return wg.Wait
	}
}
