package testenv

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Topology is the local topology's settings, as deploy/local/env.sh computes them from
// the environment.
type Topology struct {
	Repo, Data                 string
	Sites                      []string
	MariaDBPortBase            int
	NATSPort, ZKPort, CassPort int
}

var (
	topoOnce sync.Once
	topo     Topology
	topoErr  error
)

// Local returns the local topology's settings.
func Local(t testing.TB) Topology {
	t.Helper()
	topoOnce.Do(func() { topo, topoErr = readTopology() })
	if topoErr != nil {
		t.Fatalf("testenv: %v", topoErr)
	}
	return topo
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "deploy", "local", "env.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no deploy/local/env.sh above the working directory")
		}
		dir = parent
	}
}

// readTopology sources env.sh so that scripts and tests agree on every default.
func readTopology() (Topology, error) {
	root, err := repoRoot()
	if err != nil {
		return Topology{}, err
	}
	out, err := exec.Command("bash", "-c", `source "$1/deploy/local/env.sh" && env | grep '^MUSIC_'`, "env", root).Output()
	if err != nil {
		return Topology{}, fmt.Errorf("read deploy/local/env.sh: %w", err)
	}
	vars := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			vars[k] = v
		}
	}
	num := func(k string) int { n, _ := strconv.Atoi(vars[k]); return n }
	return Topology{
		Repo: root, Data: vars["MUSIC_DATA"], Sites: strings.Fields(vars["MUSIC_SITES"]),
		MariaDBPortBase: num("MUSIC_MARIADB_PORT_BASE"), NATSPort: num("MUSIC_NATS_PORT"),
		ZKPort: num("MUSIC_ZK_PORT"), CassPort: num("MUSIC_CASSANDRA_PORT"),
	}, nil
}

func portOpen(port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// ensure starts service with the project's scripts unless port already answers. Test
// processes take turns through a file lock, so only one of them starts a service.
func ensure(t testing.TB, service string, port int, logPath string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs %s: -short runs only the tests of pure logic (make test-short)", service)
	}
	if portOpen(port) {
		return
	}
	tp := Local(t)
	if err := os.MkdirAll(tp.Data, 0o755); err != nil {
		t.Fatalf("testenv: %s: %v", service, err)
	}
	lock, err := os.OpenFile(filepath.Join(tp.Data, ".testenv.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("testenv: %s: %v", service, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("testenv: %s: lock: %v", service, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if portOpen(port) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", `"$1/deploy/local/install.sh" && "$1/deploy/local/up.sh" "$2"`, "up", tp.Repo, service)
	out, err := cmd.CombinedOutput()
	if err != nil || !portOpen(port) {
		t.Fatalf("testenv: %s could not start (port %d): %v\n%s\nsee its log: %s", service, port, err, out, logPath)
	}
}
