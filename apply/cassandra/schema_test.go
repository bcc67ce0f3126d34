package cassandra_test

import (
	"context"
	"strings"
	"testing"

	"github.com/music-coord/music/apply/cassandra"
	"github.com/music-coord/music/internal/testenv"
)

func TestReplicationCQL(t *testing.T) {
	cases := []struct {
		name string
		r    cassandra.Replication
		want string // substring of the CQL, or of the error
	}{
		{"simple", cassandra.Replication{Class: "SimpleStrategy", Factor: 3}, "'replication_factor': 3"},
		{"nts", cassandra.Replication{Class: "NetworkTopologyStrategy", DataCenters: map[string]int{"site_a": 3}}, "'site_a': 3"},
		{"simple zero", cassandra.Replication{Class: "SimpleStrategy"}, "replication.factor"},
		{"nts empty", cassandra.Replication{Class: "NetworkTopologyStrategy"}, "replication.data_centers"},
		{"nts injection", cassandra.Replication{Class: "NetworkTopologyStrategy", DataCenters: map[string]int{"x': 1}; DROP": 1}}, "replication.data_centers"},
		{"class", cassandra.Replication{Class: "Local"}, "replication.class"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.r.CQL()
			if err != nil {
				got = err.Error()
			}
			if !strings.Contains(got, tc.want) {
				t.Fatalf("CQL() = %q, want it to contain %q", got, tc.want)
			}
		})
	}
}

func TestEnsureKeyspaceCreatesOnce(t *testing.T) {
	_, session := testenv.NewKeyspace(t)
	name := testenv.UniqueName(t)
	cfg := cassandra.Config{Keyspace: name, Replication: cassandra.Replication{Class: "SimpleStrategy", Factor: 1}}
	t.Cleanup(func() { _ = session.Query("DROP KEYSPACE IF EXISTS " + name).Exec() })
	for range 2 {
		if err := cassandra.EnsureKeyspace(context.Background(), session, cfg); err != nil {
			t.Fatal(err)
		}
	}
	var repl map[string]string
	if err := session.Query("SELECT replication FROM system_schema.keyspaces WHERE keyspace_name=?", name).Scan(&repl); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(repl["class"], "SimpleStrategy") || repl["replication_factor"] != "1" {
		t.Fatalf("replication %v", repl)
	}
	cfg.Keyspace = `x"; DROP KEYSPACE y; --`
	if err := cassandra.EnsureKeyspace(context.Background(), session, cfg); err == nil {
		t.Fatal("a keyspace name with quotes was accepted")
	}
}
