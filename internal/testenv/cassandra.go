package testenv

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/gocql/gocql"
)

// Cassandra returns the contact point (host:port) of the local topology's Cassandra,
// starting it if needed.
func Cassandra(t testing.TB) string {
	t.Helper()
	tp := Local(t)
	ensure(t, "cassandra", tp.CassPort, filepath.Join(tp.Data, "cassandra", "cassandra.log"))
	return fmt.Sprintf("127.0.0.1:%d", tp.CassPort)
}

// CassandraCluster returns a gocql cluster config for the local Cassandra.
func CassandraCluster(t testing.TB) *gocql.ClusterConfig {
	t.Helper()
	c := gocql.NewCluster(Cassandra(t))
	c.Timeout = 20 * time.Second
	c.ConnectTimeout = 10 * time.Second
	c.Consistency = gocql.Quorum
	return c
}

// NewKeyspace creates a fresh keyspace (SimpleStrategy, replication factor 1) and returns
// its name and a session bound to it. Both are dropped at cleanup.
func NewKeyspace(t testing.TB) (string, *gocql.Session) {
	t.Helper()
	name := UniqueName(t)
	c := CassandraCluster(t)
	admin, err := c.CreateSession()
	if err != nil {
		t.Fatalf("testenv: cassandra session: %v", err)
	}
	defer admin.Close()
	cql := fmt.Sprintf(`CREATE KEYSPACE %s WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`, name)
	if err := admin.Query(cql).Exec(); err != nil {
		t.Fatalf("testenv: create keyspace %s: %v", name, err)
	}
	c.Keyspace = name
	s, err := c.CreateSession()
	if err != nil {
		t.Fatalf("testenv: cassandra session on %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := s.Query("DROP KEYSPACE IF EXISTS " + name).Exec(); err != nil {
			t.Logf("testenv: drop keyspace %s: %v", name, err)
		}
		s.Close()
	})
	return name, s
}
