package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gocql/gocql"
)

// privateCassandraHeap is the heap of a private node: half the shared node's, enough for
// a test's few keyspaces, so a private node beside the shared one fits a small machine.
const privateCassandraHeap = "512M"

// PrivateCassandra is a one-node Cassandra cluster of the test's own, for tests that stop
// and restart Cassandra without disturbing the shared node (Cassandra(t)) that other tests
// use in parallel. It is started with the project's scripts (deploy/local/up.sh and
// down.sh) on two free ports of 127.0.0.1 (native and storage; its seed is itself, so it
// never gossips with the shared node), with its data, commit log and log in a temporary
// directory. At cleanup it is stopped and the directory removed; should the test process
// die first (a go test -timeout, say), a watchdog process does both. When the test failed
// or its process died, the node's log is kept beside the directory, as <dir>.log.
//
// Stop, Start and Restart fail the test given to NewPrivateCassandra with t.Fatal, so call
// them from that test's goroutine.
type PrivateCassandra struct {
	t                 testing.TB
	repo, dir         string
	port, storagePort int
	env               []string

	mu      sync.Mutex
	running bool
	watch   *exec.Cmd
	watchIn io.WriteCloser
}

var (
	installOnce sync.Once
	installOut  []byte
	installErr  error
)

// NewPrivateCassandra starts a private node and waits until it answers CQL.
func NewPrivateCassandra(t testing.TB) *PrivateCassandra {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a private cassandra node: -short runs only the tests of pure logic (make test-short)")
	}
	tp := Local(t)

	// install.sh runs with the caller's environment, so it takes the same lock (under the
	// shared MUSIC_DATA) as every other test process; it only checks, and builds the
	// music binary, so once per process is enough.
	installOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		defer cancel()
		installOut, installErr = exec.CommandContext(ctx, "bash", filepath.Join(tp.Repo, "deploy", "local", "install.sh")).CombinedOutput()
	})
	if installErr != nil {
		t.Fatalf("testenv: private cassandra: deploy/local/install.sh: %v\n%s", installErr, installOut)
	}

	dir, err := os.MkdirTemp("", "music-private-cassandra-")
	if err != nil {
		t.Fatalf("testenv: private cassandra: %v", err)
	}
	ports, err := FreePorts(2)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("testenv: private cassandra: free ports: %v", err)
	}
	p := &PrivateCassandra{t: t, repo: tp.Repo, dir: dir, port: ports[0], storagePort: ports[1]}
	// Later entries win in exec.Cmd.Env. MUSIC_CACHE stays the caller's, so the jars are reused.
	p.env = append(os.Environ(),
		"MUSIC_DATA="+dir,
		"MUSIC_CASSANDRA_PORT="+strconv.Itoa(p.port),
		"MUSIC_CASSANDRA_STORAGE_PORT="+strconv.Itoa(p.storagePort),
		"MUSIC_CASSANDRA_HEAP="+privateCassandraHeap,
	)
	if err := p.startWatchdog(); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("testenv: private cassandra: watchdog: %v", err)
	}
	t.Cleanup(p.cleanup)
	p.Start()
	return p
}

// startWatchdog starts a process that, once its stdin closes (at cleanup, or because the
// test process died), stops the node and removes its directory. It first takes up.sh's
// lock, so that an up.sh the dead test process left running finishes (and writes the pid
// file) before the node is stopped. It has its own process group, so a ^C aimed at go
// test leaves it to do its job.
func (p *PrivateCassandra) startWatchdog() error {
	const script = `read -r _ || true
[ -d "$2" ] || exit 0
exec 9>>"$2/.up.lock"; flock -w 900 9
pid=$(cat "$2/cassandra/server.pid" 2>/dev/null || true)
"$1/deploy/local/down.sh" cassandra >/dev/null 2>&1
# down.sh does not wait for a process it had to kill -9 to be gone.
for _ in $(seq 50); do [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
mv -f -- "$2/cassandra/cassandra.log" "$2.log" 2>/dev/null
rm -rf -- "$2"`
	cmd := exec.Command("bash", "-c", script, "watchdog", p.repo, p.dir)
	cmd.Env = p.env
	cmd.Dir = p.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	p.watch, p.watchIn = cmd, in
	return nil
}

// cleanup stops the node, removes its directory (keeping the log if the test failed) and
// lets the watchdog go; should stopping fail, the watchdog tries again and removes the
// directory.
func (p *PrivateCassandra) cleanup() {
	if err := p.stop(); err != nil {
		p.t.Errorf("testenv: private cassandra: %v", err)
	} else {
		if p.t.Failed() {
			if err := os.Rename(p.LogPath(), p.dir+".log"); err == nil {
				p.t.Logf("testenv: private cassandra: the node's log is kept as %s", p.dir+".log")
			}
		}
		if err := os.RemoveAll(p.dir); err != nil {
			p.t.Errorf("testenv: private cassandra: remove %s: %v", p.dir, err)
		}
	}
	p.watchIn.Close()
	_ = p.watch.Wait()
}

// Host is the node's contact point, 127.0.0.1:<port>, as Cassandra(t) returns it. It
// stays the same across restarts.
func (p *PrivateCassandra) Host() string { return fmt.Sprintf("127.0.0.1:%d", p.port) }

// Port is the node's native (CQL) port.
func (p *PrivateCassandra) Port() int { return p.port }

// LogPath is the node's log file.
func (p *PrivateCassandra) LogPath() string {
	return filepath.Join(p.dir, "cassandra", "cassandra.log")
}

func (p *PrivateCassandra) pidFile() string { return filepath.Join(p.dir, "cassandra", "server.pid") }

// Cluster returns a gocql cluster config for the node, as CassandraCluster does for the
// shared one, except that sessions retry a down node every second (gocql's default is a
// minute), so a session opened before a restart is usable again soon after it.
func (p *PrivateCassandra) Cluster() *gocql.ClusterConfig {
	c := gocql.NewCluster(p.Host())
	c.Timeout = 20 * time.Second
	c.ConnectTimeout = 10 * time.Second
	c.Consistency = gocql.Quorum
	c.ReconnectInterval = time.Second
	return c
}

// NewKeyspace creates a fresh keyspace (SimpleStrategy, replication factor 1) on the node
// and returns its name and a session bound to it, closed at cleanup. The keyspace goes
// with the node.
func (p *PrivateCassandra) NewKeyspace(t testing.TB) (string, *gocql.Session) {
	t.Helper()
	name := UniqueName(t)
	c := p.Cluster()
	admin, err := c.CreateSession()
	if err != nil {
		t.Fatalf("testenv: private cassandra session: %v (log: %s)", err, p.LogPath())
	}
	defer admin.Close()
	cql := fmt.Sprintf(`CREATE KEYSPACE %s WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`, name)
	if err := admin.Query(cql).Exec(); err != nil {
		t.Fatalf("testenv: private cassandra: create keyspace %s: %v (log: %s)", name, err, p.LogPath())
	}
	c.Keyspace = name
	s, err := c.CreateSession()
	if err != nil {
		t.Fatalf("testenv: private cassandra session on %s: %v (log: %s)", name, err, p.LogPath())
	}
	t.Cleanup(s.Close)
	return name, s
}

// Start starts the stopped node on the same ports and data and waits until it answers
// CQL. It does nothing when the node runs.
func (p *PrivateCassandra) Start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(p.repo, "deploy", "local", "up.sh"), "cassandra")
	cmd.Env = p.env
	cmd.Dir = p.dir // where the JVM would drop crash files
	out, err := cmd.CombinedOutput()
	if err != nil {
		p.t.Fatalf("testenv: private cassandra on %s could not start: %v\n%s\nsee its log: %s", p.Host(), err, out, p.LogPath())
	}
	// up.sh leaves alone whatever answers on the port; make sure it is our node.
	if !pidAlive(p.pidFile()) {
		p.t.Fatalf("testenv: private cassandra: no node of ours runs after up.sh (did something else take port %d?)\n%s\nsee its log: %s",
			p.port, out, p.LogPath())
	}
	p.running = true
	if err := p.waitCQL(ctx); err != nil {
		p.t.Fatalf("testenv: private cassandra on %s does not answer CQL: %v\nsee its log: %s", p.Host(), err, p.LogPath())
	}
}

// waitCQL waits until a session can read system.local.
func (p *PrivateCassandra) waitCQL(ctx context.Context) error {
	c := p.Cluster()
	c.Timeout, c.ConnectTimeout = 5*time.Second, 5*time.Second
	c.Consistency = gocql.One
	for {
		err := func() error {
			s, err := c.CreateSession()
			if err != nil {
				return err
			}
			defer s.Close()
			var v string
			return s.Query("SELECT release_version FROM system.local").WithContext(ctx).Scan(&v)
		}()
		if err == nil {
			return nil
		}
		if !pidAlive(p.pidFile()) {
			return fmt.Errorf("the node exited: %v", err)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Stop stops the node (SIGTERM, so it drains: memtables are flushed and the commit log
// synced) and waits until it has exited. It does nothing when the node is stopped.
func (p *PrivateCassandra) Stop() {
	p.t.Helper()
	if err := p.stop(); err != nil {
		p.t.Fatalf("testenv: private cassandra: %v", err)
	}
}

func (p *PrivateCassandra) stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Go by the pid file rather than p.running: a start that failed half-way may have
	// left a node behind.
	if !pidAlive(p.pidFile()) {
		p.running = false
		return nil
	}
	pid, _ := os.ReadFile(p.pidFile())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(p.repo, "deploy", "local", "down.sh"), "cassandra")
	cmd.Env = p.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("stop node on %s: %v\n%s\nsee its log: %s", p.Host(), err, out, p.LogPath())
	}
	// down.sh does not wait for a process it had to kill -9 to be gone.
	if n, err := strconv.Atoi(strings.TrimSpace(string(pid))); err == nil {
		for deadline := time.Now().Add(10 * time.Second); syscall.Kill(n, 0) == nil; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				return fmt.Errorf("node on %s (pid %d) still runs after down.sh\n%s\nsee its log: %s", p.Host(), n, out, p.LogPath())
			}
		}
	}
	p.running = false
	return nil
}

// Restart stops the node and starts it again on the same ports and data; it returns once
// the node answers CQL.
func (p *PrivateCassandra) Restart() {
	p.t.Helper()
	p.Stop()
	p.Start()
}

// pidAlive reports whether file names a running process.
func pidAlive(file string) bool {
	b, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n <= 0 {
		return false
	}
	err = syscall.Kill(n, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
