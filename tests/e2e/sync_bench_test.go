package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/music-coord/music/internal/testenv"
)

// BenchmarkSync measures what a sync table costs (make bench-sync): the added COMMIT
// latency of a one-row transaction on a sync table the site owns, against the same
// transaction on an async table through the same gateway; the latency of a transaction
// that must move the ownership first; sustained throughput while one site keeps the
// ownership, as a ratio to async; and the bank's transfers/s with workers at one site and
// at all three. E2E_SYNC_LATENCY=20ms adds that much one-way latency to site b's links
// to ZooKeeper and NATS (toxiproxy); the MUSIC store is one local Cassandra node, so
// claims (lightweight transactions) see no added latency.
func BenchmarkSync(b *testing.B) {
	sites := testenv.Sites(b)
	ks, _ := testenv.NewKeyspace(b)
	db := testenv.NewDatabase(b, sites...)
	m := newMirror(b, testenv.NATS(b), db, ks, sites)
	m.syncTables = []string{db + ".s", db + ".accounts", db + ".transfers"}
	var lat time.Duration
	if v := os.Getenv("E2E_SYNC_LATENCY"); v != "" {
		var err error
		if lat, err = time.ParseDuration(v); err != nil {
			b.Fatal(err)
		}
		sb := m.sites[1]
		np := testenv.NewProxy(b, strings.TrimPrefix(m.natsURL, "nats://"))
		zp := testenv.NewProxy(b, testenv.ZooKeeper(b)[0])
		np.Latency(lat)
		zp.Latency(lat)
		sb.natsURL, sb.zooKeeper = "nats://"+np.Addr(), zp.Addr()
	}
	m.startAll()
	d := &drill{t: b, m: m, db: db, ks: ks}
	for _, s := range sites {
		d.pools = append(d.pools, s.Open(b, db))
	}
	d.waitStreams()
	for _, q := range []string{"CREATE TABLE s (id INT PRIMARY KEY, v BIGINT NOT NULL)", "CREATE TABLE a (id INT PRIMARY KEY, v BIGINT NOT NULL)",
		"CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL)",
		"CREATE TABLE transfers (id VARCHAR(40) PRIMARY KEY, src INT NOT NULL, dst INT NOT NULL, amount INT NOT NULL)",
		"CREATE TABLE accounts_async (id INT PRIMARY KEY, balance BIGINT NOT NULL)",
		"CREATE TABLE transfers_async (id VARCHAR(40) PRIMARY KEY, src INT NOT NULL, dst INT NOT NULL, amount INT NOT NULL)"} {
		d.exec(d.pools[0], q)
	}
	d.waitTable("transfers")
	gws := m.startGateways(b)
	var pools []*sql.DB
	for _, g := range gws {
		pools = append(pools, g.open(b, db))
	}
	for i := 1; i <= 64; i++ {
		for _, tb := range []string{"s", "a"} {
			if _, err := pools[0].Exec("INSERT INTO "+tb+" VALUES (?, 0)", i); err != nil {
				b.Fatal(err)
			}
		}
	}
	for i := 1; i <= 10; i++ {
		if _, err := pools[0].Exec("INSERT INTO accounts VALUES (?, 1000)", i); err != nil {
			b.Fatal(err)
		}
		if _, err := d.pools[0].Exec("INSERT INTO accounts_async VALUES (?, 1000)", i); err != nil {
			b.Fatal(err)
		}
	}
	one := func(pool *sql.DB, table string, id int) (commit, total time.Duration) {
		t0 := time.Now()
		tx, err := pool.Begin()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tx.Exec("UPDATE "+table+" SET v = v + 1 WHERE id = ?", id); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
		return time.Since(t1), time.Since(t0)
	}
	const n = 300
	site := 1 // site b: the one with added latency, if any
	series := func(table string, moves bool) (commit, total []time.Duration) {
		for i := range n {
			p := pools[site]
			if moves && i%2 == 1 {
				p = pools[(site+1)%3]
			}
			c, tt := one(p, table, 1+i%64)
			commit, total = append(commit, c), append(total, tt)
		}
		return commit, total
	}
	one(pools[site], "s", 1) // take the ownership
	asyncCommit, asyncTotal := series("a", false)
	syncCommit, syncTotal := series("s", false)
	_, moveTotal := series("s", true)
	out := &strings.Builder{}
	fmt.Fprintf(out, "sync tables, one-row transaction through site b's gateway (added one-way latency %s on its ZooKeeper and NATS links)\n", lat)
	fmt.Fprintf(out, "%-34s %10s %10s\n", "", "p50", "p99")
	row := func(name string, ds []time.Duration) {
		fmt.Fprintf(out, "%-34s %10s %10s\n", name, pct(ds, 50), pct(ds, 99))
	}
	row("async COMMIT", asyncCommit)
	row("sync COMMIT (site owns)", syncCommit)
	row("async transaction", asyncTotal)
	row("sync transaction (site owns)", syncTotal)
	row("sync transaction (ownership moves)", moveTotal)
	fmt.Fprintf(out, "added COMMIT latency, site owns: p50 %s, p99 %s\n", pct(syncCommit, 50)-pct(asyncCommit, 50), pct(syncCommit, 99)-pct(asyncCommit, 99))
	b.ReportMetric(float64((pct(syncCommit, 50)-pct(asyncCommit, 50)).Microseconds())/1000, "added-commit-p50-ms")
	b.ReportMetric(float64(pct(moveTotal, 50).Microseconds())/1000, "move-txn-p50-ms")

	rate := func(table string) float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var mu sync.Mutex
		count := 0
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := 0; ctx.Err() == nil; i++ {
					one(pools[site], table, 1+w*8+i%8)
					mu.Lock()
					count++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return float64(count) / 10
	}
	ar, sr := rate("a"), rate("s")
	fmt.Fprintf(out, "throughput, 8 clients at one site: async %.0f tx/s, sync %.0f tx/s, ratio %.2f\n", ar, sr, sr/ar)
	b.ReportMetric(sr/ar, "sync/async")
	acked1, _ := bank(b, pools[site:site+1], 6, 10*time.Second, 10)
	acked3, _ := bank(b, pools, 2, 10*time.Second, 10)
	fmt.Fprintf(out, "bank transfers/s: 6 workers at one site %.1f, 2 workers at each of three sites %.1f\n",
		float64(len(acked1))/10, float64(len(acked3))/10)
	// The contrast: the same transfers on async tables, straight to each site's MariaDB.
	ackedAsync, _ := bankOn("_async", d.pools, 2, 10*time.Second, 10)
	d.waitIdentical(b, "accounts_async")
	d.waitIdentical(b, "transfers_async")
	var total, applied int
	_ = d.pools[0].QueryRow("SELECT SUM(balance) FROM accounts_async").Scan(&total)
	_ = d.pools[0].QueryRow(`SELECT COUNT(*) FROM accounts_async a WHERE a.balance <> 1000
		- COALESCE((SELECT SUM(amount) FROM transfers_async WHERE src = a.id), 0) + COALESCE((SELECT SUM(amount) FROM transfers_async WHERE dst = a.id), 0)`).Scan(&applied)
	fmt.Fprintf(out, "async contrast, 2 workers at each site straight to MariaDB for 10 s: %d transfers committed, sites identical, total %d (want 10000), %d of 10 accounts disagree with their transfers\n",
		len(ackedAsync), total, applied)
	fmt.Print(out.String())
	d.waitIdentical(b, "s")
	d.waitIdentical(b, "accounts")
}

// pct is the p-th percentile of ds.
func pct(ds []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, len(s)*p/100)]
}
