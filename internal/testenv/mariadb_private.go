package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// NewPrivateMariaDB starts a MariaDB site of the test's own (deploy/local/mariadb-instance.sh
// in a temporary directory, on a free port, server_id = gtid_domain_id = index), for tests
// that do what would disturb other tests on the shared sites: purging binlogs, killing
// the server. It is stopped and removed at cleanup.
func NewPrivateMariaDB(t testing.TB, name string, index int) Site {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a private mariadb: -short runs only the tests of pure logic (make test-short)")
	}
	tp := Local(t)
	dir, err := os.MkdirTemp("", "music-private-mariadb-")
	if err != nil {
		t.Fatalf("testenv: private mariadb: %v", err)
	}
	ports, err := FreePorts(1)
	if err != nil {
		t.Fatalf("testenv: private mariadb: free port: %v", err)
	}
	s := Site{Name: name, Index: index, Host: "127.0.0.1", Port: ports[0], User: "root"}
	stop := func() {
		raw, _ := os.ReadFile(filepath.Join(dir, "server.pid"))
		if pid, err := strconv.Atoi(strings.TrimSpace(string(raw))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
				time.Sleep(50 * time.Millisecond)
			}
		}
		_ = os.RemoveAll(dir)
	}
	t.Cleanup(stop)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(tp.Repo, "deploy", "local", "mariadb-instance.sh"),
		dir, strconv.Itoa(s.Port), strconv.Itoa(index))
	cmd.Env = append(os.Environ(), "MUSIC_MARIADB_BUFFER_POOL=32M")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: private mariadb: %v\n%s", err, out)
	}
	return s
}
