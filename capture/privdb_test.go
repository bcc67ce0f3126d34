package capture

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/music-coord/music/internal/testenv"
)

var installMu sync.Mutex

// privateMariaDB is a MariaDB server of one test's own (same flags as deploy/local/up.sh),
// for tests that purge binary logs: purging the shared sites' binlog would break the
// other tests' checkpoints.
type privateMariaDB struct {
	site testenv.Site
	dir  string
	cmd  *exec.Cmd
}

func newPrivateMariaDB(t *testing.T, domain int) *privateMariaDB {
	t.Helper()
	if _, err := exec.LookPath("mariadbd"); err != nil {
		t.Skip("mariadbd not installed")
	}
	dir, err := os.MkdirTemp("", "music-capture-mariadb-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	installMu.Lock() // parallel installs collide on temporary files
	out, err := exec.Command("mariadb-install-db", "--no-defaults", "--datadir="+dir+"/data", "--user=root",
		"--auth-root-authentication-method=normal", "--skip-test-db").CombinedOutput()
	installMu.Unlock()
	if err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command("mariadbd", "--no-defaults", "--user=root", "--datadir="+dir+"/data",
		"--socket="+dir+"/mysqld.sock", "--pid-file="+dir+"/mysqld.pid", fmt.Sprintf("--port=%d", port),
		"--bind-address=127.0.0.1", fmt.Sprintf("--server-id=%d", domain), fmt.Sprintf("--gtid-domain-id=%d", domain),
		"--log-bin="+dir+"/data/mariadb-bin", "--binlog-format=ROW", "--binlog-row-image=FULL",
		"--binlog-row-metadata=FULL", "--log-slave-updates=ON", "--gtid-strict-mode=OFF",
		"--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci", "--max-allowed-packet=64M",
		"--innodb-buffer-pool-size=32M", "--log-error="+dir+"/error.log")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &privateMariaDB{site: testenv.Site{Name: "p", Index: domain, Host: "127.0.0.1", Port: port, User: "root"}, dir: dir, cmd: cmd}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	pool, err := sql.Open("mysql", p.site.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	testenv.Eventually(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := pool.PingContext(ctx); err != nil {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			return fmt.Errorf("private mariadb not up: %v (%s)", err, strings.TrimSpace(string(log)))
		}
		return nil
	})
	return p
}
