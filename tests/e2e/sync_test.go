package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/gocql/gocql"

	"github.com/music-coord/music/apply/cassandra"

	"github.com/music-coord/music/internal/testenv"
)

// syncGateway is a site's `music gateway`.
type syncGateway struct {
	*agent
	site   *siteAgents
	addr   string // MySQL protocol
	status string // /status, /healthz
}

// startGateways starts a gateway per site in front of its MariaDB, for the mirror's sync
// tables, with prom nodes under a root of the test's own.
func (m *mirror) startGateways(t testing.TB) []*syncGateway {
	t.Helper()
	root := "/music-test/" + testenv.UniqueName(t)
	var out []*syncGateway
	dir := t.TempDir()
	for _, sa := range m.sites {
		g := &syncGateway{site: sa, addr: testenv.FreeAddr(t), status: testenv.FreeAddr(t)}
		acquire := or(m.acquireTimeout, "20s")
		cfg := filepath.Join(dir, sa.site.Name+"-gateway.yaml")
		writeFile(t, cfg, fmt.Sprintf(`site: %s
listen: %s
backend: "%s:%d"
mariadb_dsn: "%s"
sync_tables: [%s]
zookeeper: [%s]
prom: {root: %s, lease: 3s}
cassandra: {hosts: [%q], keyspace: %s}
nats_url: %s
acquire_timeout: %s
metrics_addr: %s
log: {level: warn, format: console}
`, sa.name, g.addr, sa.site.Host, sa.site.Port, sa.site.DSN(""), strings.Join(m.syncTables, ", "),
			or(sa.zooKeeper, strings.Join(testenv.ZooKeeper(t), ", ")), root, m.store, m.keyspace, sa.nats(m), acquire, g.status))
		g.agent = newAgent(t, "gateway-"+sa.site.Name, "gateway", "--config", cfg)
		g.start()
		out = append(out, g)
	}
	for _, g := range out {
		testenv.Eventually(t, time.Minute, func() error {
			if healthz(g.status) != http.StatusOK {
				return fmt.Errorf("gateway %s not healthy yet", g.site.site.Name)
			}
			return nil
		})
	}
	return out
}

// open is a connection pool to the gateway for db.
func (g *syncGateway) open(t testing.TB, db string) *sql.DB {
	t.Helper()
	pool, err := sql.Open("mysql", "root@tcp("+g.addr+")/"+db+"?timeout=10s")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() })
	return pool
}

// gatewayStatus is the part of a gateway's /status the tests read.
type gatewayStatus struct {
	Owned []struct {
		Table string `json:"table"`
		Fence int64  `json:"fence"`
	} `json:"owned"`
	Stats struct {
		Takeovers, Commits, Fenced, Busy, Unconfirmed int64
	} `json:"stats"`
}

func (g *syncGateway) statusOf(t testing.TB) gatewayStatus {
	t.Helper()
	var st gatewayStatus
	resp, err := http.Get("http://" + g.status + "/status")
	if err != nil {
		t.Fatalf("gateway %s status: %v", g.site.site.Name, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("gateway %s status: %v", g.site.site.Name, err)
	}
	return st
}

// transfer is one bank transfer whose COMMIT returned.
type transfer struct {
	id       string
	src, dst int
	amount   int
}

// bank runs transfers between accounts through pools (one per site, workers each) for
// d, and returns the transfers whose COMMIT returned OK, and the count of those that
// failed (lock wait timeouts, fenced or unconfirmed commits).
func bank(t testing.TB, pools []*sql.DB, workers int, dur time.Duration, accounts int) (acked []transfer, failed map[string]int) {
	return bankOn("", pools, workers, dur, accounts)
}

// bankOn is bank on the tables accounts<suffix> and transfers<suffix>.
func bankOn(suffix string, pools []*sql.DB, workers int, dur time.Duration, accounts int) (acked []transfer, failed map[string]int) {
	var mu sync.Mutex
	failed = map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var wg sync.WaitGroup
	for si, pool := range pools {
		for w := range workers {
			wg.Go(func() {
				for i := 0; ctx.Err() == nil; i++ {
					src, dst := 1+rand.IntN(accounts), 1+rand.IntN(accounts-1)
					if dst >= src {
						dst++
					}
					tr := transfer{id: fmt.Sprintf("s%d-w%d-%d", si, w, i), src: src, dst: dst, amount: 1 + rand.IntN(50)}
					err := transferOn(suffix, pool, tr)
					mu.Lock()
					if err == nil {
						acked = append(acked, tr)
					} else {
						failed[errCode(err)]++
					}
					mu.Unlock()
					var me *mysql.MySQLError
					if err != nil && !errors.As(err, &me) && err.Error() != "insufficient" {
						time.Sleep(100 * time.Millisecond) // the gateway is down: do not spin
					}
				}
			})
		}
	}
	wg.Wait()
	return acked, failed
}

func errCode(err error) string {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return fmt.Sprintf("%d", me.Number)
	}
	return err.Error()
}

// transferOnce moves tr.amount from tr.src to tr.dst if src has it, as an application
// would: read with FOR UPDATE, two UPDATEs and the transfer's record, COMMIT.
func transferOnce(pool *sql.DB, tr transfer) error { return transferOn("", pool, tr) }

func transferOn(suffix string, pool *sql.DB, tr transfer) error {
	tx, err := pool.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck
	var bal int
	if err := tx.QueryRow("SELECT balance FROM accounts"+suffix+" WHERE id = ? FOR UPDATE", tr.src).Scan(&bal); err != nil {
		return err
	}
	if bal < tr.amount {
		return errors.New("insufficient")
	}
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{"UPDATE accounts" + suffix + " SET balance = balance - ? WHERE id = ?", []any{tr.amount, tr.src}},
		{"UPDATE accounts" + suffix + " SET balance = balance + ? WHERE id = ?", []any{tr.amount, tr.dst}},
		{"INSERT INTO transfers" + suffix + " (id, src, dst, amount) VALUES (?, ?, ?, ?)", []any{tr.id, tr.src, tr.dst, tr.amount}},
	} {
		if _, err := tx.Exec(q.sql, q.args...); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// checkBank asserts, at one site, that the total is conserved, every balance is what the
// transfers table says, and every acknowledged transfer is there.
func checkBank(t *testing.T, name string, pool *sql.DB, accounts, initial int, acked []transfer) {
	t.Helper()
	var total int
	if err := pool.QueryRow("SELECT COALESCE(SUM(balance), 0) FROM accounts").Scan(&total); err != nil {
		t.Fatal(err)
	}
	if total != accounts*initial {
		t.Errorf("site %s: total %d, want %d", name, total, accounts*initial)
	}
	rows, err := pool.Query(`SELECT a.id, a.balance, ? - COALESCE((SELECT SUM(amount) FROM transfers WHERE src = a.id), 0)
		+ COALESCE((SELECT SUM(amount) FROM transfers WHERE dst = a.id), 0) FROM accounts a`, initial)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, bal, want int
		if err := rows.Scan(&id, &bal, &want); err != nil {
			t.Fatal(err)
		}
		if bal != want {
			t.Errorf("site %s: account %d holds %d, its transfers say %d", name, id, bal, want)
		}
	}
	rows.Close()
	have := map[string]bool{}
	ids, err := pool.Query("SELECT id FROM transfers")
	if err != nil {
		t.Fatal(err)
	}
	for ids.Next() {
		var id string
		_ = ids.Scan(&id)
		have[id] = true
	}
	ids.Close()
	missing := 0
	for _, tr := range acked {
		if !have[tr.id] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("site %s: %d of %d acknowledged transfers missing", name, missing, len(acked))
	}
}

// waitIdentical waits until music verify finds table identical at every site and in the
// store (any row count).
func (d *drill) waitIdentical(t testing.TB, table string) {
	t.Helper()
	var last string
	deadline := time.Now().Add(3 * time.Minute)
	for {
		out, err := d.verify(table)
		if err == nil && strings.Contains(out, "IDENTICAL") {
			t.Logf("music verify %s:\n%s", table, out)
			return
		}
		last = out
		if time.Now().After(deadline) {
			t.Fatalf("%s not identical within 3m:\n%s\n%s", table, last, d.status())
		}
		time.Sleep(time.Second)
	}
}

// TestSyncBank is the bank test of sync tables: three sites, each with its gateway,
// workers at every site transferring between 10 accounts of a sync table (SELECT ... FOR
// UPDATE, two UPDATEs, a transfer record, COMMIT). The total is conserved, every balance
// matches the transfers, every transfer whose COMMIT returned is at every site, ownership
// moved between the sites, and all sites and the MUSIC store end identical.
func TestSyncBank(t *testing.T) {
	sites := testenv.Sites(t)
	ks, session := testenv.NewKeyspace(t)
	db := testenv.NewDatabase(t, sites...)
	m := newMirror(t, testenv.NATS(t), db, ks, sites)
	m.syncTables = []string{db + ".accounts", db + ".transfers"}
	m.withStatusAddrs(t)
	m.startAll()
	d := &drill{t: t, m: m, db: db, ks: ks}
	for _, s := range sites {
		d.pools = append(d.pools, s.Open(t, db))
	}
	d.waitStreams()
	d.exec(d.pools[0], "CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL)")
	d.exec(d.pools[0], "CREATE TABLE transfers (id VARCHAR(40) PRIMARY KEY, src INT NOT NULL, dst INT NOT NULL, amount INT NOT NULL)")
	d.waitTable("transfers")
	gws := m.startGateways(t)
	var pools []*sql.DB
	for _, g := range gws {
		pools = append(pools, g.open(t, db))
	}
	const accounts, initial = 10, 1000
	for i := 1; i <= accounts; i++ {
		if _, err := pools[0].Exec("INSERT INTO accounts VALUES (?, ?)", i, initial); err != nil {
			t.Fatal(err)
		}
	}

	start := time.Now()
	acked, failed := bank(t, pools, 2, 15*time.Second, accounts)
	elapsed := time.Since(start)
	t.Logf("%d transfers acknowledged in %s (%.1f/s), failed: %v", len(acked), elapsed.Round(time.Millisecond),
		float64(len(acked))/elapsed.Seconds(), failed)
	if len(acked) < 50 {
		t.Fatalf("only %d transfers acknowledged (failed: %v)", len(acked), failed)
	}
	var takeovers int64
	for _, g := range gws {
		st := g.statusOf(t)
		t.Logf("gateway %s: %+v", g.site.site.Name, st.Stats)
		takeovers += st.Stats.Takeovers
		if st.Stats.Fenced > 0 || st.Stats.Unconfirmed > 0 {
			t.Errorf("gateway %s: %d fenced, %d unconfirmed commits", g.site.site.Name, st.Stats.Fenced, st.Stats.Unconfirmed)
		}
	}
	if takeovers < 3 {
		t.Errorf("ownership moved %d times; the workers at three sites should have moved it more", takeovers)
	}
	// Durable before the OK: right after a COMMIT at a returns, a quorum read of the
	// MUSIC store and the next transaction at b and at c see it.
	var orig int
	if err := pools[0].QueryRow("SELECT balance FROM accounts WHERE id = 10").Scan(&orig); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		want := initial*10 + i
		if _, err := pools[0].Exec("UPDATE accounts SET balance = ? WHERE id = 10", want); err != nil {
			t.Fatal(err)
		}
		var stored int64
		if err := session.Query(fmt.Sprintf(`SELECT balance FROM %s."%s" WHERE id = 10`, ks, cassandra.TableName(db, "accounts"))).
			Consistency(gocql.Quorum).Scan(&stored); err != nil || stored != int64(want) {
			t.Fatalf("store right after COMMIT at a: balance %d (err %v), want %d", stored, err, want)
		}
		for _, p := range pools[1:] {
			var bal int
			if err := p.QueryRow("SELECT balance FROM accounts WHERE id = 10").Scan(&bal); err != nil || bal != want {
				t.Fatalf("next transaction at another site right after COMMIT at a: balance %d (err %v), want %d", bal, err, want)
			}
		}
	}
	if _, err := pools[2].Exec("UPDATE accounts SET balance = ? WHERE id = 10", orig); err != nil {
		t.Fatal(err)
	}
	d.waitIdentical(t, "accounts")
	d.waitIdentical(t, "transfers")
	for i, p := range d.pools {
		checkBank(t, sites[i].Name, p, accounts, initial, acked)
	}
	d.statusClean(t)
}

// TestSyncFailover kills the gateway, capture and apply of the site that owns the
// accounts table while workers at every site transfer, and brings them back: the other
// sites take the table over once the lease runs out and hold every acknowledged transfer.
// Then a write that bypasses the gateway at a site that does not own the table is fenced
// out everywhere and shown in music status, and music resync repairs that site. All sites
// and the store end identical, with the bank's invariants.
func TestSyncFailover(t *testing.T) {
	sites := testenv.Sites(t)
	ks, _ := testenv.NewKeyspace(t)
	db := testenv.NewDatabase(t, sites...)
	m := newMirror(t, testenv.NATS(t), db, ks, sites)
	m.syncTables = []string{db + ".accounts", db + ".transfers"}
	m.withStatusAddrs(t)
	m.startAll()
	d := &drill{t: t, m: m, db: db, ks: ks}
	for _, s := range sites {
		d.pools = append(d.pools, s.Open(t, db))
	}
	d.waitStreams()
	d.exec(d.pools[0], "CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL)")
	d.exec(d.pools[0], "CREATE TABLE transfers (id VARCHAR(40) PRIMARY KEY, src INT NOT NULL, dst INT NOT NULL, amount INT NOT NULL)")
	d.waitTable("transfers")
	gws := m.startGateways(t)
	var pools []*sql.DB
	for _, g := range gws {
		pools = append(pools, g.open(t, db))
	}
	const accounts, initial = 10, 1000
	for i := 1; i <= accounts; i++ {
		if _, err := pools[0].Exec("INSERT INTO accounts VALUES (?, ?)", i, initial); err != nil {
			t.Fatal(err)
		}
	}

	type result struct {
		acked  []transfer
		failed map[string]int
	}
	res := make(chan result)
	go func() {
		acked, failed := bank(t, pools, 2, 30*time.Second, accounts)
		res <- result{acked, failed}
	}()
	time.Sleep(6 * time.Second)
	owner := -1
	for i, g := range gws {
		for _, o := range g.statusOf(t).Owned {
			if o.Table == db+".accounts" {
				owner = i
			}
		}
	}
	if owner < 0 {
		owner = 0 // between two owners: kill a
	}
	victim := gws[owner]
	t.Logf("killing site %s's gateway, capture and apply", victim.site.site.Name)
	victim.kill()
	victim.site.capture.kill()
	victim.site.apply.kill()
	time.Sleep(10 * time.Second)
	victim.site.capture.start()
	victim.site.apply.start()
	victim.start()
	r := <-res
	t.Logf("%d transfers acknowledged, failed: %v", len(r.acked), r.failed)
	var takeovers int64
	for _, g := range gws {
		st := g.statusOf(t)
		t.Logf("gateway %s: %+v", g.site.site.Name, st.Stats)
		takeovers += st.Stats.Takeovers
	}
	d.waitIdentical(t, "accounts")
	d.waitIdentical(t, "transfers")
	for i, p := range d.pools {
		checkBank(t, sites[i].Name, p, accounts, initial, r.acked)
	}

	// A write that bypasses the gateway at a site that does not own the table.
	var owned map[string]bool = map[string]bool{}
	for _, g := range gws {
		for _, o := range g.statusOf(t).Owned {
			owned[g.site.site.Name+"/"+o.Table] = true
		}
	}
	by := 0
	for i, g := range gws {
		if !owned[g.site.site.Name+"/"+db+".accounts"] {
			by = i
			break
		}
	}
	bySite := m.sites[by]
	d.exec(d.pools[by], "UPDATE accounts SET balance = balance + 1000 WHERE id = 1")
	testenv.Eventually(t, time.Minute, func() error {
		out := d.status()
		if !strings.Contains(out, "FENCED(1)") {
			return fmt.Errorf("no FENCED state in music status yet:\n%s", out)
		}
		return nil
	})
	t.Logf("music status after the bypassing write at %s:\n%s", bySite.site.Name, d.status())
	for i, p := range d.pools {
		var bal int
		if err := p.QueryRow("SELECT balance FROM accounts WHERE id = 1").Scan(&bal); err != nil {
			t.Fatal(err)
		}
		if i != by && bal >= initial+1000 && bal > 0 {
			var other int
			_ = d.pools[(by+1)%3].QueryRow("SELECT balance FROM accounts WHERE id = 1").Scan(&other)
			t.Fatalf("the bypassing write reached site %s (balance %d)", sites[i].Name, bal)
		}
	}
	d.music(t, "resync", "--site", bySite.name, "--table", db+".accounts", "--mariadb-dsn", bySite.site.DSN(""),
		"--cassandra-hosts", m.store, "--cassandra-keyspace", d.ks, "--nats-url", m.natsURL)
	d.waitIdentical(t, "accounts")
	for i, p := range d.pools {
		checkBank(t, sites[i].Name, p, accounts, initial, r.acked)
	}
	if takeovers < 2 {
		t.Errorf("ownership moved %d times", takeovers)
	}
}

// TestSyncPartition cuts site c's links to ZooKeeper and NATS (through fault proxies)
// for 15 s while workers at every site transfer: c's sync transactions fail with a clear
// error, naming the table, within the acquire timeout; c's async writes go on locally;
// a and b keep transferring; after the heal c catches up, and all sites and the store
// end identical with the bank's invariants.
func TestSyncPartition(t *testing.T) {
	sites := testenv.Sites(t)
	ks, _ := testenv.NewKeyspace(t)
	db := testenv.NewDatabase(t, sites...)
	m := newMirror(t, testenv.NATS(t), db, ks, sites)
	m.syncTables = []string{db + ".accounts", db + ".transfers"}
	m.acquireTimeout = "5s"
	m.withStatusAddrs(t)
	c := m.sites[2]
	natsProxy := testenv.NewProxy(t, strings.TrimPrefix(m.natsURL, "nats://"))
	zkProxy := testenv.NewProxy(t, testenv.ZooKeeper(t)[0])
	c.natsURL, c.zooKeeper = "nats://"+natsProxy.Addr(), zkProxy.Addr()
	m.startAll()
	d := &drill{t: t, m: m, db: db, ks: ks}
	for _, s := range sites {
		d.pools = append(d.pools, s.Open(t, db))
	}
	d.waitStreams()
	d.exec(d.pools[0], "CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL)")
	d.exec(d.pools[0], "CREATE TABLE transfers (id VARCHAR(40) PRIMARY KEY, src INT NOT NULL, dst INT NOT NULL, amount INT NOT NULL)")
	d.exec(d.pools[0], "CREATE TABLE notes (id INT PRIMARY KEY, v VARCHAR(20))")
	d.waitTable("notes")
	gws := m.startGateways(t)
	var pools []*sql.DB
	for _, g := range gws {
		pools = append(pools, g.open(t, db))
	}
	const accounts, initial = 10, 1000
	for i := 1; i <= accounts; i++ {
		if _, err := pools[0].Exec("INSERT INTO accounts VALUES (?, ?)", i, initial); err != nil {
			t.Fatal(err)
		}
	}
	type result struct {
		acked  []transfer
		failed map[string]int
	}
	res := make(chan result)
	go func() {
		acked, failed := bank(t, pools[:2], 2, 30*time.Second, accounts)
		res <- result{acked, failed}
	}()
	time.Sleep(5 * time.Second)
	t.Log("cutting site c off from ZooKeeper and NATS")
	natsProxy.Cut()
	zkProxy.Cut()
	cut := time.Now()
	time.Sleep(4 * time.Second) // c's lease (3 s) is gone
	start := time.Now()
	err := transferOnce(pools[2], transfer{id: "partitioned", src: 1, dst: 2, amount: 1})
	var me *mysql.MySQLError
	// 1205 when it waited for the owner, 1105 when ZooKeeper cannot be reached at all.
	if !errors.As(err, &me) || (me.Number != 1205 && me.Number != 1105) || !strings.Contains(me.Message, db+".accounts") {
		t.Fatalf("sync write at the cut-off site: %v, want ERROR 1205 or 1105 naming %s.accounts", err, db)
	}
	if waited := time.Since(start); waited > 8*time.Second {
		t.Fatalf("the cut-off site's sync write waited %s, beyond the acquire timeout (5s)", waited)
	}
	t.Logf("sync write at c while cut off: after %s: %v", time.Since(start).Round(time.Millisecond), err)
	for i := 1; i <= 50; i++ { // async writes at c go on
		d.exec(d.pools[2], "INSERT INTO notes VALUES (?, 'during the cut')", i)
	}
	time.Sleep(time.Until(cut.Add(15 * time.Second)))
	natsProxy.Heal()
	zkProxy.Heal()
	t.Log("healed")
	r := <-res
	t.Logf("%d transfers acknowledged at a and b, failed: %v", len(r.acked), r.failed)
	// c takes part again.
	testenv.Eventually(t, time.Minute, func() error {
		return transferOnce(pools[2], transfer{id: "after-heal", src: 3, dst: 4, amount: 1})
	})
	r.acked = append(r.acked, transfer{id: "after-heal", src: 3, dst: 4, amount: 1})
	d.identical(t, "notes", 50)
	d.waitIdentical(t, "accounts")
	d.waitIdentical(t, "transfers")
	for i, p := range d.pools {
		checkBank(t, sites[i].Name, p, accounts, initial, r.acked)
	}
}
