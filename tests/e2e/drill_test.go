package e2e

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/music-coord/music/internal/testenv"
)

// TestOperatorDrill does, through the real agents on three sites, what an operator meets in
// ordinary life, each step ending with every site and the MUSIC store compared by
// `music verify` and with `music status` asserted: a transaction past every internal
// threshold, rows larger than a message, a table joining by snapshot under writes, a
// binlog purged while capture was down, a poisoned table, and drift repaired by resync.
// Site c is a private MariaDB, so purging its binlog disturbs no other test.
func TestOperatorDrill(t *testing.T) {
	shared := testenv.Sites(t)
	sites := []testenv.Site{shared[0], shared[1], testenv.NewPrivateMariaDB(t, "c", 7)}
	ks, _ := testenv.NewKeyspace(t)
	db := testenv.NewDatabase(t, sites...)
	m := newMirror(t, testenv.NATS(t), db, ks, sites)
	m.withStatusAddrs(t)
	m.startAll()
	d := &drill{t: t, m: m, db: db, ks: ks}
	for _, s := range sites {
		d.pools = append(d.pools, s.Open(t, db))
	}
	d.waitStreams()
	a := d.pools[0]
	d.exec(a, "CREATE TABLE big (id BIGINT PRIMARY KEY, v VARCHAR(40) NOT NULL)")
	d.exec(a, "CREATE TABLE blobs (id INT PRIMARY KEY, n INT NOT NULL, b LONGBLOB)")
	d.exec(a, "CREATE TABLE side (id INT PRIMARY KEY, v INT NOT NULL)")
	d.waitTable("side")

	t.Run("big transactions", func(t *testing.T) {
		// Past capture's transaction buffer (10,000 events), and far past one message.
		d.exec(a, "INSERT INTO big SELECT seq, CONCAT('r', seq) FROM seq_1_to_10001")
		d.exec(a, "INSERT INTO big SELECT seq + 100000, CONCAT('s', seq) FROM seq_1_to_25000")
		// Agents killed while the big transactions travel: capture a re-publishes from its
		// checkpoint, apply b gets them again; nothing twice, nothing lost.
		m.sites[0].capture.kill()
		m.sites[1].apply.kill()
		d.exec(a, "UPDATE big SET v = CONCAT(v, '+')")
		time.Sleep(time.Second)
		m.sites[0].capture.start()
		m.sites[1].apply.start()
		d.identical(t, "big", 35001)
		d.statusClean(t)
	})

	t.Run("big rows", func(t *testing.T) {
		d.exec(a, "INSERT INTO blobs VALUES (1, 0, REPEAT('x', 20 << 20))")
		d.exec(a, "INSERT INTO blobs VALUES (2, 0, REPEAT('y', 3 << 20))")
		d.exec(a, "UPDATE blobs SET n = n + 1 WHERE id = 2") // before and after images: 6 MiB
		d.exec(a, "INSERT INTO side VALUES (1, 1)")          // later changes still flow
		d.identical(t, "blobs", 2)
		d.identical(t, "side", 1)
		d.statusClean(t)
	})

	t.Run("snapshot under writes", func(t *testing.T) {
		// A table that exists everywhere and holds 50,000 rows at a that no site has seen
		// (written with the binlog off), joined by a snapshot while a writer changes it.
		for _, p := range d.pools {
			d.unlogged(p, "CREATE TABLE snap (id INT PRIMARY KEY, v INT NOT NULL)")
		}
		d.unlogged(a, "INSERT INTO snap SELECT seq, 0 FROM seq_1_to_50000")
		ctx, stop := context.WithCancel(context.Background())
		writes := make(chan int, 1)
		go func() {
			n := 0
			defer func() { writes <- n }()
			for i := 0; ctx.Err() == nil; i++ {
				id := (i*7919)%60000 + 1 // updates of existing rows and inserts of new ones
				if _, err := a.Exec("INSERT INTO snap VALUES (?, 1) ON DUPLICATE KEY UPDATE v = v + 1", id); err == nil {
					n++
				}
			}
		}()
		ca := m.sites[0].capture
		ca.stop()
		ca.args = append(ca.args, "--snapshot", db+".snap")
		ca.start()
		testenv.Eventually(t, 3*time.Minute, func() error {
			if !ca.logContains("snapshot " + db + ".snap: done") {
				return fmt.Errorf("snapshot of %s.snap not done yet", db)
			}
			return nil
		})
		stop()
		t.Logf("%d writes during the snapshot", <-writes)
		var rows int
		if err := a.QueryRow("SELECT COUNT(*) FROM snap").Scan(&rows); err != nil {
			t.Fatal(err)
		}
		d.identical(t, "snap", rows)
		d.statusClean(t)
	})

	t.Run("purged binlog", func(t *testing.T) {
		c := d.pools[2]
		cc := m.sites[2].capture
		var before int
		if err := c.QueryRow("SELECT COUNT(*) FROM side").Scan(&before); err != nil {
			t.Fatal(err)
		}
		cc.stop()
		d.exec(c, "INSERT INTO side VALUES (700, 7)") // committed while capture is down
		purgeBinlogs(t, c)
		cc.start()
		// Loud: the status names the purge and the way out, and capture c is unhealthy.
		var out string
		testenv.Eventually(t, time.Minute, func() error {
			if out = d.status(); !strings.Contains(out, "binlog purged") {
				return fmt.Errorf("status does not tell of the purge:\n%s", out)
			}
			return nil
		})
		if !strings.Contains(out, "snapshot") {
			t.Fatalf("status does not say how to recover:\n%s", out)
		}
		if code := healthz(m.sites[2].captureAddr); code != http.StatusServiceUnavailable {
			t.Fatalf("capture c /healthz answers %d after the purge", code)
		}
		t.Logf("music status with the purge:\n%s", out)
		// The way out the error names: let capture snapshot what it may have lost.
		cc.stop()
		writeFile(t, m.sites[2].captureCfg, m.captureYAML(m.sites[2])+"auto_snapshot_on_purge: true\n")
		cc.start()
		d.identical(t, "side", before+1)
		d.statusClean(t)
	})

	t.Run("poisoned table", func(t *testing.T) {
		d.exec(a, "CREATE TABLE poison (k VARBINARY(16) PRIMARY KEY, v INT NOT NULL)")
		d.waitTable("poison")
		d.exec(a, "INSERT INTO poison VALUES ('', 1)")   // the store refuses an empty key
		d.exec(a, "INSERT INTO poison VALUES ('ok', 2)") // skipped by the store while quarantined
		var out string
		testenv.Eventually(t, time.Minute, func() error {
			out = d.status()
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, db+".poison") && strings.Contains(line, "QUARANTINED") {
					return nil
				}
			}
			return fmt.Errorf("poison not quarantined:\n%s", out)
		})
		t.Logf("music status with the poisoned table:\n%s", out)
		// Every other table keeps flowing, the own stream's version record included.
		var before int
		if err := a.QueryRow("SELECT COUNT(*) FROM side").Scan(&before); err != nil {
			t.Fatal(err)
		}
		d.exec(a, "INSERT INTO side VALUES (2, 2)")
		d.exec(d.pools[1], "INSERT INTO side VALUES (3, 3)")
		d.identical(t, "side", before+2)
		// The operator removes the bad row and repairs the store's copy from site a.
		d.exec(a, "DELETE FROM poison WHERE k = ''")
		sa := m.sites[0]
		d.music(t, "resync", "--site", sa.name, "--table", db+".poison", "--to", "store", "--from-site", "a",
			"--peer", "a="+sa.site.DSN(""), "--cassandra-hosts", m.store, "--cassandra-keyspace", d.ks, "--nats-url", m.natsURL)
		d.identical(t, "poison", 1)
		d.statusClean(t)
	})

	t.Run("drift and resync", func(t *testing.T) {
		c := d.pools[2]
		d.unlogged(c, "DELETE FROM big WHERE id % 50 = 0", "UPDATE big SET v = 'drift' WHERE id % 77 = 1",
			"INSERT INTO big VALUES (999999999, 'extra')")
		if out, err := d.verify("big"); err == nil || !strings.Contains(out, "DIFFERENT") {
			t.Fatalf("music verify does not see the drift (err %v):\n%s", err, out)
		}
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan int, 1)
		go func() { // mirroring goes on during the resync
			n := 0
			defer func() { done <- n }()
			for i := 0; ctx.Err() == nil; i++ {
				if _, err := a.Exec("UPDATE big SET v = CONCAT('w', v) WHERE id = ?", (i*4099)%35001+1); err == nil {
					n++
				}
			}
		}()
		sc := m.sites[2]
		d.music(t, "resync", "--site", sc.name, "--table", db+".big", "--mariadb-dsn", sc.site.DSN(""),
			"--cassandra-hosts", m.store, "--cassandra-keyspace", d.ks, "--nats-url", m.natsURL)
		stop()
		t.Logf("%d updates at a during the resync", <-done)
		d.identical(t, "big", 35001)
		d.statusClean(t)
	})
}

type drill struct {
	t     testing.TB
	m     *mirror
	db    string
	ks    string
	pools []*sql.DB
}

func (d *drill) exec(pool *sql.DB, q string, args ...any) {
	d.t.Helper()
	if _, err := pool.Exec(q, args...); err != nil {
		d.t.Fatalf("%s: %v", q, err)
	}
}

func (d *drill) waitStreams() {
	testenv.Eventually(d.t, 30*time.Second, func() error {
		_, js := testenv.Connect(d.t, d.m.natsURL)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, sa := range d.m.sites {
			if _, err := js.Stream(ctx, sa.stream); err != nil {
				return fmt.Errorf("stream %s: %v", sa.stream, err)
			}
		}
		return nil
	})
}

func (d *drill) waitTable(table string) {
	testenv.Eventually(d.t, 60*time.Second, func() error {
		for i, p := range d.pools {
			if _, err := p.Exec("SELECT 1 FROM `" + table + "` LIMIT 1"); err != nil {
				return fmt.Errorf("site %s: %v", d.m.sites[i].site.Name, err)
			}
		}
		return nil
	})
}

// unlogged runs statements at one site with its binlog off (changes no site will see).
func (d *drill) unlogged(pool *sql.DB, stmts ...string) {
	d.t.Helper()
	ctx := context.Background()
	conn, err := pool.Conn(ctx)
	if err != nil {
		d.t.Fatal(err)
	}
	defer func() {
		_ = conn.Raw(func(any) error { return driver.ErrBadConn }) // not back to the pool
		conn.Close()
	}()
	for _, q := range append([]string{"SET SESSION sql_log_bin = 0"}, stmts...) {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			d.t.Fatalf("%s: %v", q, err)
		}
	}
}

// music runs the music binary and fails the test if it fails.
func (d *drill) music(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(musicBin(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("music %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("music %s:\n%s", args[0], out)
}

// verify runs `music verify` on table over every site and the store.
func (d *drill) verify(table string) (string, error) {
	args := []string{"verify", "--db", d.db, "--table", table, "--cassandra-hosts", d.m.store, "--cassandra-keyspace", d.ks}
	for _, sa := range d.m.sites {
		args = append(args, "--site", sa.site.Name+"="+sa.site.DSN(""))
	}
	out, err := exec.Command(musicBin(d.t), args...).CombinedOutput()
	return string(out), err
}

// identical waits until `music verify` finds table identical at every site and in the
// store, with rows rows.
func (d *drill) identical(t *testing.T, table string, rows int) {
	t.Helper()
	var last string
	deadline := time.Now().Add(3 * time.Minute)
	for {
		out, err := d.verify(table)
		last = out
		if err == nil && strings.Contains(out, "IDENTICAL") {
			var n int
			if err := d.pools[0].QueryRow("SELECT COUNT(*) FROM `" + table + "`").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != rows {
				t.Fatalf("%s: %d rows, want %d\n%s", table, n, rows, out)
			}
			t.Logf("music verify %s:\n%s", table, out)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not identical within 3m:\n%s\n%s", table, last, d.status())
		}
		time.Sleep(time.Second)
	}
}

// status is the output of `music status` over every agent.
func (d *drill) status() string {
	var agents, captures []string
	for _, sa := range d.m.sites {
		agents, captures = append(agents, sa.applyAddr), append(captures, sa.captureAddr)
	}
	out, _ := exec.Command(musicBin(d.t), "status", "--agents", strings.Join(agents, ","),
		"--captures", strings.Join(captures, ","), "--nats-url", d.m.natsURL).CombinedOutput()
	return string(out)
}

// statusClean asserts that, once caught up, the status shows no error, refusal,
// quarantine or pending change anywhere.
func (d *drill) statusClean(t *testing.T) {
	t.Helper()
	var out string
	deadline := time.Now().Add(2 * time.Minute) // the agents catch up (a resnapshot, say)
	for {
		out = d.status()
		if err := statusProblems(out); err == nil {
			t.Logf("music status:\n%s", out)
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("status not clean: %v\n%s", err, out)
		}
		time.Sleep(time.Second)
	}
}

// withStatusAddrs gives every agent a metrics and status address.
func (m *mirror) withStatusAddrs(t testing.TB) {
	for _, sa := range m.sites {
		sa.captureAddr, sa.applyAddr = testenv.FreeAddr(t), testenv.FreeAddr(t)
	}
}

// healthz is the HTTP status of an agent's /healthz.
func healthz(addr string) int {
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// statusProblems reads `music status` output and names the first thing that is not clean:
// a capture not running, with an error, a stopped table or a failed snapshot; an apply row
// not ok, with pending changes or an error (refused and skipped counts may stay).
func statusProblems(out string) error {
	section := ""
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
			continue
		case f[0] == "CAPTURE" || f[0] == "SITE" || f[0] == "STREAM":
			section = f[0]
			continue
		}
		switch section {
		case "CAPTURE":
			if f[0] == "site" && f[len(f)-1] != "running" {
				return fmt.Errorf("capture not running: %s", line)
			}
			if strings.Contains(line, "last error") || strings.Contains(line, "stopped:") || strings.Contains(line, "failed:") ||
				strings.Contains(line, "not answering") {
				return fmt.Errorf("capture: %s", line)
			}
		case "SITE":
			if len(f) > 1 && f[1] == "resync" {
				continue
			}
			// Counts (refused, skipped) stay; the state and the error must clear.
			if len(f) != 11 || f[4] != "ok" || f[6] != "0" {
				return fmt.Errorf("apply: %s", line)
			}
		}
	}
	if section == "" {
		return fmt.Errorf("no status printed")
	}
	return nil
}

// purgeBinlogs starts a new binlog file at the site and purges every older one. The server
// silently keeps a file while a binlog dump (a capture's session it has not yet noticed
// is gone) still reads it, so it tries again until the older files are really gone.
func purgeBinlogs(t *testing.T, pool *sql.DB) {
	t.Helper()
	var file string
	var pos int64
	var doDB, ignoreDB sql.NullString
	if _, err := pool.Exec("FLUSH BINARY LOGS"); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow("SHOW MASTER STATUS").Scan(&file, &pos, &doDB, &ignoreDB); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, func() error {
		if _, err := pool.Exec("PURGE BINARY LOGS TO '" + file + "'"); err != nil {
			return err
		}
		var first string
		var size any
		rows, err := pool.Query("SHOW BINARY LOGS")
		if err != nil {
			return err
		}
		defer rows.Close()
		if rows.Next() {
			if err := rows.Scan(&first, &size); err != nil {
				return err
			}
		}
		if first != file {
			return fmt.Errorf("binlog %s still there (purging to %s)", first, file)
		}
		return nil
	})
}
