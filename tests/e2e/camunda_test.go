package e2e

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/music-coord/music/internal/testenv"
)

var (
	javaOnce  sync.Once
	javaCP    string
	javaBuilt time.Duration // 0: the jar was up to date
	javaErr   error
)

// javaClasspath builds tests/camunda with Maven once per test process (not at all when its
// jar is newer than pom.xml and every source) and returns the classpath of its programs.
// It fails the test when java or mvn is missing (deploy/local/install.sh installs both).
func javaClasspath(t testing.TB) string {
	t.Helper()
	for _, tool := range []string{"java", "mvn"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: the Java e2e tests need Java 17 and Maven (deploy/local/install.sh installs them)", tool)
		}
	}
	javaOnce.Do(func() {
		javaCP, javaBuilt, javaErr = buildJava(filepath.Join(testenv.Local(t).Repo, "tests", "camunda"))
	})
	if javaErr != nil {
		t.Fatal(javaErr)
	}
	if javaBuilt > 0 {
		t.Logf("tests/camunda built by Maven in %s", javaBuilt.Round(100*time.Millisecond))
	}
	return javaCP
}

func buildJava(dir string) (cp string, took time.Duration, err error) {
	jar := filepath.Join(dir, "target", "music-e2e-java.jar")
	cp = jar + string(os.PathListSeparator) + filepath.Join(dir, "target", "lib", "*")
	if fresh, err := newerThanSources(jar, dir); err != nil || fresh {
		return cp, 0, err
	}
	start := time.Now()
	out, err := exec.Command("mvn", "-q", "-B", "-f", filepath.Join(dir, "pom.xml"), "package").CombinedOutput()
	if err != nil {
		return "", 0, fmt.Errorf("mvn package in %s: %v\n%s", dir, err, out)
	}
	return cp, time.Since(start), nil
}

// newerThanSources reports whether jar exists and is newer than dir's pom.xml and every
// file under src/.
func newerThanSources(jar, dir string) (bool, error) {
	fi, err := os.Stat(jar)
	if err != nil {
		return false, nil
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(jar), "lib")); err != nil {
		return false, nil
	}
	newer := true
	check := func(path string, info fs.FileInfo) {
		if info.ModTime().After(fi.ModTime()) {
			newer = false
		}
	}
	if info, err := os.Stat(filepath.Join(dir, "pom.xml")); err != nil {
		return false, err
	} else {
		check("pom.xml", info)
	}
	err = filepath.Walk(filepath.Join(dir, "src"), func(path string, info fs.FileInfo, err error) error {
		if err != nil {
			return err
		}
		check(path, info)
		return nil
	})
	return newer, err
}

// javaRun runs class (of package music.e2e) with args, and returns its stdout: JSON lines.
// Its stderr (the logs) goes to a file in the test's temporary directory, whose tail is
// logged if the program fails.
func javaRun(ctx context.Context, t testing.TB, cp, class string, args ...string) ([]byte, error) {
	logf, err := os.CreateTemp(t.TempDir(), class+"-*.log")
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	jvm := []string{"-cp", cp, "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "music.e2e." + class}
	cmd := exec.CommandContext(ctx, "java", append(jvm, args...)...)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, logf
	if err = cmd.Run(); err != nil {
		raw, _ := os.ReadFile(logf.Name())
		if len(raw) > 6000 {
			raw = raw[len(raw)-6000:]
		}
		err = fmt.Errorf("java %s %s: %v\n--- stdout ---\n%s\n--- stderr (tail of %s) ---\n%s", class,
			strings.Join(args, " "), err, stdout.Bytes(), logf.Name(), raw)
	}
	return stdout.Bytes(), err
}

// jsonLines decodes one JSON object per line into T.
func jsonLines[T any](t testing.TB, out []byte) []T {
	t.Helper()
	var rows []T
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var r T
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		rows = append(rows, r)
	}
	return rows
}

// attempt is one task completion attempt of CamundaRun's work mode, or its last line.
type attempt struct {
	Worker  string `json:"worker"`
	Task    string `json:"task"`
	Outcome string `json:"outcome"`
	Ms      int64  `json:"ms"`
	Error   string `json:"error"`
	At      int64  `json:"at"`    // epoch ms when the attempt started
	Ready   int64  `json:"ready"` // epoch ms when the worker's engine was up (a line of its own)
	Done    string `json:"done"`
	OK      int    `json:"ok"`
	BootMs  int64  `json:"boot_ms"`
}

// camundaInstances is how many process instances TestSyncCamunda starts, one user task each.
const camundaInstances = 60

// TestSyncCamunda runs Camunda 7 unchanged through the gateways of three mirrored sites,
// with the engine's database as one sync pattern (one ownership unit): the schema is
// created through site a's gateway (the DDL is mirrored), instances are started at a, then
// workers at sites a and b complete the same tasks concurrently, each through its own
// gateway. Every task is completed exactly once; the losers see OptimisticLockingException
// or a task that is gone, nothing else; every site ends with every instance ended once and
// the engine's tables identical at every site and in the MUSIC store.
func TestSyncCamunda(t *testing.T) {
	cp := javaClasspath(t)
	sites := testenv.Sites(t)
	ks, _ := testenv.NewKeyspace(t)
	db := testenv.NewDatabase(t, sites...)
	m := newMirror(t, testenv.NATS(t), db, ks, sites)
	m.syncTables = []string{db + ".*"}
	m.withStatusAddrs(t)
	m.startAll()
	d := &drill{t: t, m: m, db: db, ks: ks}
	for _, s := range sites {
		d.pools = append(d.pools, s.Open(t, db))
	}
	d.waitStreams()
	gws := m.startGateways(t)
	url := func(g *syncGateway) string {
		return "jdbc:mariadb://" + g.addr + "/" + db + "?transactionIsolation=READ_COMMITTED"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	start := time.Now()
	if _, err := javaRun(ctx, t, cp, "CamundaRun", url(gws[0]), "schema"); err != nil {
		t.Fatal(err)
	}
	t.Logf("schema created through gateway a in %s", time.Since(start).Round(time.Millisecond))
	waitSameTables(t, d)
	start = time.Now()
	if _, err := javaRun(ctx, t, cp, "CamundaRun", url(gws[0]), "start", fmt.Sprint(camundaInstances)); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d instances started through gateway a in %s", camundaInstances, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	var attempts []attempt
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, g := range gws[:2] {
		wg.Go(func() {
			out, err := javaRun(ctx, t, cp, "CamundaRun", url(g), "work", g.site.site.Name)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			attempts = append(attempts, jsonLines[attempt](t, out)...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if t.Failed() {
		t.FailNow()
	}
	checkCompletions(t, attempts, elapsed)

	for _, g := range gws {
		st := g.statusOf(t)
		t.Logf("gateway %s: %+v", g.site.site.Name, st.Stats)
		logGatewayMetrics(t, g)
		if st.Stats.Fenced > 0 || st.Stats.Unconfirmed > 0 {
			t.Errorf("gateway %s: %d fenced, %d unconfirmed commits", g.site.site.Name, st.Stats.Fenced, st.Stats.Unconfirmed)
		}
	}
	for _, table := range []string{"ACT_GE_PROPERTY", "ACT_RE_PROCDEF", "ACT_RU_EXECUTION", "ACT_RU_TASK",
		"ACT_HI_PROCINST", "ACT_HI_TASKINST", "ACT_HI_ACTINST"} {
		waitIdenticalTextTime(t, d, table)
	}
	for i, p := range d.pools {
		checkCamundaSite(t, sites[i].Name, p, camundaInstances, attempts)
	}
}

// checkCompletions asserts that every task was completed exactly once across the workers
// and that the other attempts lost as they should, and logs the figures.
func checkCompletions(t *testing.T, attempts []attempt, elapsed time.Duration) {
	t.Helper()
	oks := map[string]int{}
	kinds := map[string]int{}
	var others []string
	var okMs int64
	for _, a := range attempts {
		switch {
		case a.Done != "":
			t.Logf("worker %s: %d completed, engine boot %d ms", a.Worker, a.OK, a.BootMs)
			continue
		case a.Ready != 0:
			continue
		case a.Outcome == "ok":
			oks[a.Task]++
			okMs += a.Ms
		case a.Outcome == "OptimisticLockingException", a.Outcome == "not found":
		default:
			others = append(others, fmt.Sprintf("worker %s, task %q, %s after %d ms: %s\n%s", a.Worker, a.Task, a.Outcome, a.Ms, a.Error,
				timeline(attempts, a.At-30_000, a.At+a.Ms+2_000)))
		}
		kinds[a.Worker+" "+a.Outcome]++
	}
	logLatencies(t, attempts)
	t.Logf("%d tasks completed in %s through gateways a and b: %.0f ms per completed task (wall), %.0f ms per successful complete() call; attempts: %v",
		len(oks), elapsed.Round(time.Millisecond), float64(elapsed.Milliseconds())/float64(max(len(oks), 1)),
		float64(okMs)/float64(max(len(oks), 1)), kinds)
	if len(oks) != camundaInstances {
		t.Errorf("%d distinct tasks completed, want %d", len(oks), camundaInstances)
	}
	var twice []string
	for id, n := range oks {
		if n != 1 {
			twice = append(twice, fmt.Sprintf("%s (%d times)", id, n))
		}
	}
	sort.Strings(twice)
	if len(twice) > 0 {
		t.Errorf("tasks completed more than once: %v", twice)
	}
	if len(others) > 0 {
		t.Errorf("%d attempts failed otherwise than OptimisticLockingException or not found:\n%s", len(others), strings.Join(others, "\n"))
	}
}

// timeline renders the workers' attempts and engine starts between two instants (epoch ms).
func timeline(attempts []attempt, from, to int64) string {
	var lines []string
	for _, a := range attempts {
		switch {
		case a.Ready >= from && a.Ready <= to:
			lines = append(lines, fmt.Sprintf("  %s  worker %s: engine up", time.UnixMilli(a.Ready).UTC().Format("15:04:05.000"), a.Worker))
		case a.Outcome != "" && a.At+a.Ms >= from && a.At <= to:
			lines = append(lines, fmt.Sprintf("  %s  worker %s: %-26s %6d ms  task %s", time.UnixMilli(a.At).UTC().Format("15:04:05.000"),
				a.Worker, a.Outcome, a.Ms, a.Task))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// logLatencies logs, per worker and outcome, the median, 95th percentile and maximum time
// of an attempt.
func logLatencies(t *testing.T, attempts []attempt) {
	by := map[string][]int64{}
	for _, a := range attempts {
		if a.Outcome != "" {
			by[a.Worker+" "+a.Outcome] = append(by[a.Worker+" "+a.Outcome], a.Ms)
		}
	}
	var keys []string
	for k := range by {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ms := by[k]
		sort.Slice(ms, func(i, j int) bool { return ms[i] < ms[j] })
		t.Logf("worker %-30s n=%3d  p50 %5d ms  p95 %5d ms  max %5d ms", k, len(ms), ms[len(ms)/2], ms[len(ms)*95/100], ms[len(ms)-1])
	}
}

// logGatewayMetrics logs the gateway's hook durations, ownership waits and errors.
func logGatewayMetrics(t *testing.T, g *syncGateway) {
	resp, err := http.Get("http://" + g.status + "/metrics")
	if err != nil {
		t.Logf("gateway %s metrics: %v", g.site.site.Name, err)
		return
	}
	defer resp.Body.Close()
	var keep []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		for _, p := range []string{"music_gateway_hook_duration_seconds_", "music_prom_wait_seconds_", "music_gateway_errors_total", "music_prom_moves_total", "music_prom_yields_total"} {
			if strings.HasPrefix(l, p) && !strings.HasSuffix(l, " 0") {
				keep = append(keep, l)
			}
		}
	}
	t.Logf("gateway %s metrics:\n%s", g.site.site.Name, strings.Join(keep, "\n"))
}

// checkCamundaSite asserts, at one site, that no task or execution is left, that every
// instance and task is in the history once and ended, and that the completed tasks are
// those the workers completed.
func checkCamundaSite(t *testing.T, site string, pool *sql.DB, instances int, attempts []attempt) {
	t.Helper()
	for _, c := range []struct {
		what, query string
		want        int
	}{
		{"open tasks", "SELECT COUNT(*) FROM ACT_RU_TASK", 0},
		{"executions", "SELECT COUNT(*) FROM ACT_RU_EXECUTION", 0},
		{"ended instances", "SELECT COUNT(*) FROM ACT_HI_PROCINST WHERE END_TIME_ IS NOT NULL AND STATE_ = 'COMPLETED'", instances},
		{"instances", "SELECT COUNT(*) FROM ACT_HI_PROCINST", instances},
		{"completed tasks", "SELECT COUNT(*) FROM ACT_HI_TASKINST WHERE END_TIME_ IS NOT NULL AND DELETE_REASON_ = 'completed'", instances},
		{"tasks", "SELECT COUNT(*) FROM ACT_HI_TASKINST", instances},
		{"end events", "SELECT COUNT(*) FROM ACT_HI_ACTINST WHERE ACT_ID_ = 'end'", instances},
		{"instances ended twice", "SELECT COUNT(*) FROM (SELECT PROC_INST_ID_ FROM ACT_HI_ACTINST WHERE ACT_ID_ = 'end' GROUP BY PROC_INST_ID_ HAVING COUNT(*) > 1) x", 0},
	} {
		var n int
		if err := pool.QueryRow(c.query).Scan(&n); err != nil {
			t.Fatalf("site %s: %s: %v", site, c.query, err)
		}
		if n != c.want {
			t.Errorf("site %s: %d %s, want %d", site, n, c.what, c.want)
		}
	}
	done := map[string]bool{}
	for _, a := range attempts {
		if a.Outcome == "ok" {
			done[a.Task] = true
		}
	}
	rows, err := pool.Query("SELECT ID_ FROM ACT_HI_TASKINST")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		if !done[id] {
			t.Errorf("site %s: task %s is in the history but no worker completed it", site, id)
		}
	}
}

// waitSameTables waits until every site has the tables site a has (the mirrored DDL).
func waitSameTables(t *testing.T, d *drill) {
	t.Helper()
	count := func(p *sql.DB) (int, error) {
		var n int
		err := p.QueryRow("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()").Scan(&n)
		return n, err
	}
	want, err := count(d.pools[0])
	if err != nil || want == 0 {
		t.Fatalf("site a: %d tables (%v)", want, err)
	}
	testenv.Eventually(t, 2*time.Minute, func() error {
		for i, p := range d.pools[1:] {
			if n, err := count(p); err != nil || n != want {
				return fmt.Errorf("site %s: %d tables of %d (%v)", d.m.sites[i+1].site.Name, n, want, err)
			}
		}
		return nil
	})
	t.Logf("%d tables at every site", want)
}

// waitIdenticalTextTime is drill.waitIdentical with site DSNs that read DATETIME columns as
// text. `music verify` reads a site's rows through the DSN it is given, and the tests'
// DSNs (testenv.Site.DSN) have parseTime=true: go-sql-driver then turns DATETIME values
// into time.Time, which database/sql renders into sql.RawBytes as RFC 3339
// ("2026-12-02T18:48:51Z"), while the store holds the changeevent text form
// ("2026-12-02 18:48:51"), so every table with a DATETIME column compares DIFFERENT
// (cmd/music/verify.go siteDigest; reported, not fixed here). Camunda's tables have them.
func waitIdenticalTextTime(t *testing.T, d *drill, table string) {
	t.Helper()
	args := []string{"verify", "--db", d.db, "--table", table, "--cassandra-hosts", d.m.store, "--cassandra-keyspace", d.ks}
	for _, sa := range d.m.sites {
		c := mysql.NewConfig()
		c.User, c.Passwd, c.Net, c.Addr = sa.site.User, sa.site.Password, "tcp", sa.site.Addr()
		args = append(args, "--site", sa.site.Name+"="+c.FormatDSN())
	}
	var out []byte
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var err error
		out, err = exec.Command(musicBin(t), args...).CombinedOutput()
		if err == nil && bytes.Contains(out, []byte("IDENTICAL")) {
			t.Logf("music verify %s:\n%s", table, out)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not identical within 3m:\n%s\n%s", table, out, d.status())
		}
		time.Sleep(time.Second)
	}
}
