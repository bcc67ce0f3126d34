package testenv

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gocql/gocql"
)

// TestPrivateCassandra shows a private node working apart from the shared one: its own
// one-node cluster, stopped and started again with its data intact, while the shared
// node keeps answering; at cleanup the node is stopped and its directory removed.
func TestPrivateCassandra(t *testing.T) {
	t.Parallel()
	shared := Cassandra(t)

	// Registered before the node's own cleanup, so it runs after it (last-registered first).
	var p *PrivateCassandra
	var pid int
	t.Cleanup(func() {
		if p == nil || t.Failed() {
			return
		}
		if pid == 0 || syscall.Kill(pid, 0) == nil {
			t.Errorf("private node (pid %d) still runs after cleanup", pid)
		}
		if _, err := os.Stat(p.dir); !os.IsNotExist(err) {
			t.Errorf("private node's directory %s not removed at cleanup (stat: %v)", p.dir, err)
		}
	})
	t0 := time.Now()
	p = NewPrivateCassandra(t)
	t.Logf("private node on %s started in %s (log %s)", p.Host(), time.Since(t0).Round(time.Millisecond), p.LogPath())
	if p.Host() == shared {
		t.Fatalf("private node on %s, the shared node's address", p.Host())
	}

	ks, s := p.NewKeyspace(t)
	// A cluster of its own: no peers, and another host id than the shared node's.
	var peers int
	if err := s.Query("SELECT COUNT(*) FROM system.peers_v2").Scan(&peers); err != nil || peers != 0 {
		t.Fatalf("private node's peers: %d (err %v), want none", peers, err)
	}
	privateID, sharedID := hostID(t, p.Cluster()), hostID(t, CassandraCluster(t))
	if privateID == sharedID {
		t.Fatalf("private and shared node have the same host id %s", privateID)
	}

	if err := s.Query("CREATE TABLE kv (k text PRIMARY KEY, v text)").Exec(); err != nil {
		t.Fatal(err)
	}
	if err := s.Query("INSERT INTO kv (k, v) VALUES (?, ?)", "k1", "before restart").Exec(); err != nil {
		t.Fatal(err)
	}

	t0 = time.Now()
	p.Stop()
	t.Logf("stopped in %s", time.Since(t0).Round(time.Millisecond))
	if portOpen(p.Port()) {
		t.Fatalf("private node still answers on %s after Stop", p.Host())
	}
	if err := s.Query("SELECT v FROM kv WHERE k = ?", "k1").Scan(new(string)); err == nil {
		t.Fatal("read from the stopped private node succeeded")
	}
	// The shared node is untouched.
	if id := hostID(t, CassandraCluster(t)); id != sharedID {
		t.Fatalf("shared node's host id changed from %s to %s", sharedID, id)
	}

	t0 = time.Now()
	p.Start()
	t.Logf("started again in %s", time.Since(t0).Round(time.Millisecond))

	// The session opened before the stop recovers, and the row survived.
	Eventually(t, time.Minute, func() error {
		var v string
		if err := s.Query("SELECT v FROM kv WHERE k = ?", "k1").Scan(&v); err != nil {
			return err
		}
		if v != "before restart" {
			return fmt.Errorf("read %q, want %q", v, "before restart")
		}
		return nil
	})
	if id := hostID(t, p.Cluster()); id != privateID {
		t.Fatalf("private node's host id changed from %s to %s across the restart", privateID, id)
	}

	// Restart does both; a write made just before it survives too.
	if err := s.Query("INSERT INTO kv (k, v) VALUES (?, ?)", "k2", "before Restart").Exec(); err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	p.Restart()
	t.Logf("Restart took %s", time.Since(t0).Round(time.Millisecond))
	b, err := os.ReadFile(p.pidFile())
	if err != nil {
		t.Fatal(err)
	}
	pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	c := p.Cluster()
	c.Keyspace = ks
	fresh, err := c.CreateSession()
	if err != nil {
		t.Fatalf("session after Restart: %v (log %s)", err, p.LogPath())
	}
	defer fresh.Close()
	var n int
	if err := fresh.Query("SELECT COUNT(*) FROM kv").Scan(&n); err != nil || n != 2 {
		t.Fatalf("rows after Restart: %d (err %v), want 2", n, err)
	}
	if id := hostID(t, CassandraCluster(t)); id != sharedID {
		t.Fatalf("shared node's host id changed from %s to %s", sharedID, id)
	}
}

// hostID returns the host id of the node c reaches.
func hostID(t *testing.T, c *gocql.ClusterConfig) string {
	t.Helper()
	s, err := c.CreateSession()
	if err != nil {
		t.Fatalf("session on %v: %v", c.Hosts, err)
	}
	defer s.Close()
	var id gocql.UUID
	if err := s.Query("SELECT host_id FROM system.local").Scan(&id); err != nil {
		t.Fatalf("host id of %v: %v", c.Hosts, err)
	}
	return id.String()
}
