package e2e

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/music-coord/music/internal/testenv"
)

// BenchmarkHugeTransaction mirrors one transaction of a million rows (E2E_HUGE_ROWS to
// change) from site a to site b and the MUSIC store through the real agents, and reports
// the time until every row is at b and each agent's peak resident memory.
//
//	go test -run '^$' -bench HugeTransaction -benchtime 1x -timeout 30m ./tests/e2e/
func BenchmarkHugeTransaction(b *testing.B) {
	rows := 1_000_000
	if s := os.Getenv("E2E_HUGE_ROWS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("E2E_HUGE_ROWS: %v", err)
		}
		rows = n
	}
	sites := testenv.Sites(b)[:2]
	db := testenv.NewDatabase(b, sites...)
	ks, _ := testenv.NewKeyspace(b)
	m := newMirror(b, testenv.NATS(b), db, ks, sites)
	m.startAll()
	src, dst := sites[0].Open(b, db), sites[1].Open(b, db)
	time.Sleep(2 * time.Second) // capture streaming from its start position
	if _, err := src.Exec("CREATE TABLE huge (id BIGINT PRIMARY KEY, v VARCHAR(40) NOT NULL)"); err != nil {
		b.Fatal(err)
	}
	waitTable(b, dst, "huge")
	start := time.Now()
	if _, err := src.Exec(fmt.Sprintf("INSERT INTO huge SELECT seq, CONCAT('row ', seq) FROM seq_1_to_%d", rows)); err != nil {
		b.Fatal(err)
	}
	committed := time.Since(start)
	testenv.Eventually(b, 25*time.Minute, func() error {
		var n int
		if err := dst.QueryRow("SELECT COUNT(*) FROM huge").Scan(&n); err != nil {
			return err
		}
		if n != rows { // all or nothing: 0 until the transaction is applied
			return fmt.Errorf("%d of %d rows at b", n, rows)
		}
		return nil
	})
	elapsed := time.Since(start)
	b.ReportMetric(float64(rows), "rows")
	b.ReportMetric(elapsed.Seconds(), "s_to_site_b")
	b.ReportMetric(float64(rows)/elapsed.Seconds(), "rows/s")
	for _, a := range []*agent{m.sites[0].capture, m.sites[0].apply, m.sites[1].apply} {
		mb := float64(a.peakRSS()) / (1 << 20)
		b.ReportMetric(mb, a.name+"_peak_MiB")
	}
	b.Logf("%d rows: committed at a in %s, at b after %s", rows, committed.Round(time.Millisecond), elapsed.Round(time.Millisecond))
}

// peakRSS is the agent process's peak resident set size in bytes (VmHWM), 0 if unknown.
func (a *agent) peakRSS() int64 {
	a.mu.Lock()
	cmd := a.cmd
	a.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return 0
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
