package testenv

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/nats-io/nats.go/jetstream"
)

// TestServices shows each server of the topology working for real.
func TestServices(t *testing.T) {
	t.Run("mariadb", func(t *testing.T) {
		t.Parallel()
		sites := Sites(t)
		if len(sites) < 2 {
			t.Fatalf("want at least 2 sites, got %d", len(sites))
		}
		for _, s := range sites {
			db := NewDatabase(t, s)
			pool := s.Open(t, db)
			if _, err := pool.Exec("CREATE TABLE kv (k INT PRIMARY KEY, v VARCHAR(64)) ENGINE=InnoDB"); err != nil {
				t.Fatal(err)
			}
			if _, err := pool.Exec("INSERT INTO kv VALUES (1, ?)", "héllo 🎵"); err != nil {
				t.Fatal(err)
			}
			var v string
			var serverID, domainID int
			var format, metadata string
			if err := pool.QueryRow("SELECT v, @@server_id, @@gtid_domain_id, @@binlog_format, @@binlog_row_metadata FROM kv WHERE k=1").
				Scan(&v, &serverID, &domainID, &format, &metadata); err != nil {
				t.Fatal(err)
			}
			if got, want := v, "héllo 🎵"; got != want {
				t.Fatalf("site %s: read %q, want %q", s.Name, got, want)
			}
			var name, semisync string
			if err := pool.QueryRow("SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync_master_wait_point'").Scan(&name, &semisync); err != nil {
				t.Fatalf("site %s: semi-synchronous replication not available: %v", s.Name, err)
			}
			if serverID != s.Index || domainID != s.Index || format != "ROW" || metadata != "FULL" {
				t.Fatalf("site %s: server_id=%d gtid_domain_id=%d binlog_format=%s binlog_row_metadata=%s, want %d/%d/ROW/FULL",
					s.Name, serverID, domainID, format, metadata, s.Index, s.Index)
			}
		}
	})

	t.Run("jetstream", func(t *testing.T) {
		t.Parallel()
		prefix := Prefix(t)
		_, js := Connect(t, NATS(t))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		subject := strings.ToLower(prefix) + ".events"
		stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: prefix, Subjects: []string{subject}, Storage: jetstream.FileStorage})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if _, err := js.Publish(ctx, subject, []byte(fmt.Sprint(i)), jetstream.WithMsgID(fmt.Sprint("id-", i))); err != nil {
				t.Fatal(err)
			}
		}
		// A re-publish with the same message id is dropped by the duplicate window.
		ack, err := js.Publish(ctx, subject, []byte("0"), jetstream.WithMsgID("id-0"))
		if err != nil || !ack.Duplicate {
			t.Fatalf("re-publish: ack=%+v err=%v, want a duplicate", ack, err)
		}
		cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{AckPolicy: jetstream.AckExplicitPolicy})
		if err != nil {
			t.Fatal(err)
		}
		batch, err := cons.Fetch(10, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for m := range batch.Messages() {
			got = append(got, string(m.Data()))
			_ = m.Ack()
		}
		if strings.Join(got, ",") != "0,1,2" {
			t.Fatalf("consumed %v, want [0 1 2]", got)
		}
	})

	t.Run("cassandra", func(t *testing.T) {
		t.Parallel()
		_, s := NewKeyspace(t)
		if err := s.Query("CREATE TABLE jobs (id text PRIMARY KEY, owner text)").Exec(); err != nil {
			t.Fatal(err)
		}
		applied, err := s.Query("INSERT INTO jobs (id, owner) VALUES (?, ?) IF NOT EXISTS", "j1", "w1").MapScanCAS(map[string]any{})
		if err != nil || !applied {
			t.Fatalf("first INSERT IF NOT EXISTS: applied=%v err=%v, want applied", applied, err)
		}
		prev := map[string]any{}
		applied, err = s.Query("INSERT INTO jobs (id, owner) VALUES (?, ?) IF NOT EXISTS", "j1", "w2").MapScanCAS(prev)
		if err != nil || applied {
			t.Fatalf("second INSERT IF NOT EXISTS: applied=%v err=%v, want not applied", applied, err)
		}
		if got, want := prev["owner"], "w1"; got != want {
			t.Fatalf("LWT returned owner %v, want %v", got, want)
		}
		var owner string
		if err := s.Query("SELECT owner FROM jobs WHERE id = ?", "j1").Scan(&owner); err != nil || owner != "w1" {
			t.Fatalf("select: owner=%q err=%v, want w1", owner, err)
		}
	})

	t.Run("zookeeper", func(t *testing.T) {
		t.Parallel()
		root := ZKRoot(t)
		c := ZKConnect(t)
		var paths []string
		for range 2 {
			p, err := c.Create(root+"/lock-", nil, zk.FlagEphemeral|zk.FlagSequence, zk.WorldACL(zk.PermAll))
			if err != nil {
				t.Fatal(err)
			}
			paths = append(paths, p)
		}
		if !(paths[0] < paths[1]) || !strings.HasPrefix(paths[0], root+"/lock-") {
			t.Fatalf("sequential nodes %v not increasing under %s", paths, root)
		}
		_, stat, err := c.Get(paths[0])
		if err != nil || stat.EphemeralOwner != c.SessionID() {
			t.Fatalf("node %s: ephemeral owner %v err %v, want session %d", paths[0], stat, err, c.SessionID())
		}
		// Ephemeral nodes vanish with their session.
		c.Close()
		other := ZKConnect(t)
		Eventually(t, 15*time.Second, func() error {
			if ok, _, err := other.Exists(paths[0]); err != nil || ok {
				return fmt.Errorf("%s still exists (err %v)", paths[0], err)
			}
			return nil
		})
	})
}
