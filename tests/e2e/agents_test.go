package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/music-coord/music/internal/testenv"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// musicBin builds the music binary once per test process.
func musicBin(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "music-e2e-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "music")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/music")
		cmd.Dir = testenv.Local(t).Repo
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// agent is one `music capture` or `music apply` subprocess; its output goes to a log file
// whose tail is printed if the test fails.
type agent struct {
	t    testing.TB
	name string
	bin  string
	args []string
	log  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
}

func newAgent(t testing.TB, name string, args ...string) *agent {
	t.Helper()
	a := &agent{t: t, name: name, bin: musicBin(t), args: args, log: filepath.Join(t.TempDir(), name+".log")}
	t.Cleanup(func() {
		a.signal(syscall.SIGKILL)
		if t.Failed() {
			a.dumpLog()
		}
	})
	return a
}

// start runs the agent (again).
func (a *agent) start() {
	a.t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd != nil {
		a.t.Fatalf("agent %s already running", a.name)
	}
	f, err := os.OpenFile(a.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		a.t.Fatal(err)
	}
	fmt.Fprintf(f, "=== start %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(a.bin, a.args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // no orphans if the test binary dies
	if err := cmd.Start(); err != nil {
		f.Close()
		a.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(exited) }()
	a.cmd, a.exited = cmd, exited
}

// signal sends sig and waits for the process to end (SIGTERM: up to 15 s, then SIGKILL).
func (a *agent) signal(sig syscall.Signal) {
	a.mu.Lock()
	cmd, exited := a.cmd, a.exited
	a.cmd = nil
	a.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

func (a *agent) kill() { a.signal(syscall.SIGKILL) }

// logContains reports whether the agent's output so far contains s.
func (a *agent) logContains(s string) bool {
	raw, _ := os.ReadFile(a.log)
	return bytes.Contains(raw, []byte(s))
}
func (a *agent) stop() { a.signal(syscall.SIGTERM) }

func (a *agent) dumpLog() {
	raw, _ := os.ReadFile(a.log)
	if i := bytes.Index(raw, []byte("SIGQUIT: quit")); i >= 0 {
		raw = raw[:i] // the goroutine dump explain asked for
	}
	var data []byte
	for _, line := range bytes.SplitAfter(raw, []byte("\n")) {
		if !bytes.Contains(line, []byte("\tdecision\t")) { // per-key debug traces: see explain
			data = append(data, line...)
		}
	}
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	a.t.Logf("--- %s log (tail) ---\n%s", a.name, data)
}

// siteAgents is the capture and apply pair of one site.
type siteAgents struct {
	site    testenv.Site
	name    string // the site's name in MUSIC (unique to the test)
	stream  string
	capture *agent
	apply   *agent

	captureCfg, applyCfg string // configuration files, written by startAll
	// captureAddr, applyAddr: the agents' metrics and status addresses ("": none unless
	// E2E_PPROF is set; see mirror.withStatusAddrs).
	captureAddr, applyAddr string
	// natsURL, zooKeeper: the site's own links to NATS and ZooKeeper when they go through
	// a fault proxy ("": the mirror's).
	natsURL, zooKeeper string
}

// nats is the NATS URL the site's agents use.
func (sa *siteAgents) nats(m *mirror) string { return or(sa.natsURL, m.natsURL) }

// mirror is a MUSIC deployment for one test: a capture and an apply agent per site, with
// site, stream, consumer and bucket names unique to the test, on one database.
type mirror struct {
	t        testing.TB
	db       string
	natsURL  string
	store    string // Cassandra contact point of the MUSIC store (default: the shared node)
	keyspace string // "" runs apply without the MUSIC store
	// noFollowOwn runs apply without its own site's stream (benchmark diagnosis only: the
	// conflict rule then does not see local writes).
	noFollowOwn bool
	// applyLog is the apply agents' log level; "debug" traces every per-key decision.
	applyLog string
	// syncTables are the sync tables (patterns) of the agents and gateways; see sync_test.go.
	syncTables     []string
	acquireTimeout string // the gateways' acquire_timeout ("": 20s)
	sites          []*siteAgents
}

// newMirror configures (does not start) the agents of sites for database db. The capture
// of each site starts at its current binlog end.
func newMirror(t testing.TB, natsURL, db, keyspace string, sites []testenv.Site) *mirror {
	t.Helper()
	prefix := strings.ToUpper(testenv.UniqueName(t))
	if natsURL == testenv.NATS(t) {
		prefix = testenv.Prefix(t)
	}
	m := &mirror{t: t, db: db, natsURL: natsURL, store: testenv.Cassandra(t), keyspace: keyspace, noFollowOwn: os.Getenv("E2E_NO_FOLLOW_OWN") != "",
		applyLog: "warn"}
	for _, s := range sites {
		name := strings.ToLower(prefix) + "_" + s.Name
		m.sites = append(m.sites, &siteAgents{site: s, name: name, stream: prefix + "_" + strings.ToUpper(s.Name)})
	}
	dir := t.TempDir()
	for _, sa := range m.sites {
		sa.captureCfg = filepath.Join(dir, sa.site.Name+"-capture.yaml")
		sa.capture = newAgent(t, "capture-"+sa.site.Name, "capture", "--config", sa.captureCfg)
		sa.applyCfg = filepath.Join(dir, sa.site.Name+"-apply.yaml")
		sa.apply = newAgent(t, "apply-"+sa.site.Name, "apply", "--config", sa.applyCfg)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, js := testenv.Connect(t, natsURL)
		for _, sa := range m.sites {
			_ = js.DeleteKeyValue(ctx, sa.stream+"_STATE")
			_ = js.DeleteStream(ctx, sa.stream)
		}
	})
	return m
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (m *mirror) captureYAML(sa *siteAgents) string {
	pool := sa.site.Open(m.t, "")
	var file string
	var pos int64
	var doDB, ignoreDB sql.NullString
	if err := pool.QueryRow("SHOW MASTER STATUS").Scan(&file, &pos, &doDB, &ignoreDB); err != nil {
		m.t.Fatalf("site %s: SHOW MASTER STATUS: %v", sa.site.Name, err)
	}
	// A tailer server id unique to the test: a second dump with the same id evicts the first.
	serverID := 3000000 + rand.IntN(1000000)
	return fmt.Sprintf(`site: %s
dsn: "%s"
nats_url: %s
domain_id: %d
server_id: %d
stream: %s
state_bucket: %s_STATE
start: "binlog:%s:%d"
include: ["%s.*"%s]
checkpoint_interval: 200ms
heartbeat: 500ms
max_backoff: 2s
duplicate_window: 10m
metrics_addr: "%s"
log: {level: warn, format: console}
`, sa.name, sa.site.DSN(""), sa.nats(m), sa.site.Index, serverID, sa.stream, sa.stream, file, pos, m.db, m.heartbeatInclude(),
		or(sa.captureAddr, metricsAddr(26100+sa.site.Index)))
}

func (m *mirror) applyYAML(sa *siteAgents) string {
	var origins, streams []string
	if !m.noFollowOwn {
		streams = append(streams, fmt.Sprintf("  %s: %s", sa.name, sa.stream))
	}
	for _, o := range m.sites {
		if o != sa {
			origins = append(origins, o.name)
			streams = append(streams, fmt.Sprintf("  %s: %s", o.name, o.stream))
		}
	}
	store := ""
	if m.keyspace != "" {
		store = fmt.Sprintf("cassandra: {hosts: [%q], keyspace: %s, consistency: QUORUM}\n", m.store, m.keyspace)
	}
	return fmt.Sprintf(`site: %s
origins: [%s]
streams:
%s
nats_url: %s
mariadb: {dsn: "%s"}
%sfollow_own: %v
sync_tables: [%s]
ack_wait: 30s
metrics_addr: "%s"
log: {level: %s, format: console}
`, sa.name, strings.Join(origins, ", "), strings.Join(streams, "\n"), sa.nats(m), sa.site.DSN(""), store, !m.noFollowOwn,
		strings.Join(m.syncTables, ", "), or(sa.applyAddr, metricsAddr(26200+sa.site.Index)), m.applyLog)
}

// heartbeatInclude adds the gateways' heartbeat table to what capture mirrors when there
// are sync tables (see consistency/synctable).
func (m *mirror) heartbeatInclude() string {
	if len(m.syncTables) == 0 {
		return ""
	}
	return `, "music_sync.*"`
}

// metricsAddr is an agent's metrics address (with /debug/pprof/) when E2E_PPROF is set, for
// profiling a benchmark: capture of site i on 26100+i, apply on 26200+i. Otherwise none.
func metricsAddr(port int) string {
	if os.Getenv("E2E_PPROF") == "" {
		return ""
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// startAll writes the agents' configuration files (from the mirror's settings as they are
// now) and starts every agent.
func (m *mirror) startAll() {
	for _, sa := range m.sites {
		writeFile(m.t, sa.captureCfg, m.captureYAML(sa))
		writeFile(m.t, sa.applyCfg, m.applyYAML(sa))
	}
	for _, sa := range m.sites {
		sa.capture.start()
		sa.apply.start()
	}
}

// streamLen is the number of messages in a stream (0 if it is not there yet).
func streamLen(ctx context.Context, js jetstream.JetStream, name string) uint64 {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}
