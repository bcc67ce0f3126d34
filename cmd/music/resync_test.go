package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/apply/applytest"
	"github.com/music-coord/music/apply/mariadb"
	"github.com/music-coord/music/internal/logging"
	"github.com/music-coord/music/internal/testenv"
)

func TestResyncConfigValidate(t *testing.T) {
	valid := func() *resyncConfig {
		return &resyncConfig{Site: "c", Tables: []string{"d.t"}, From: "store", Batch: 10,
			MariaDB: mariadb.Config{DSN: "root@tcp(127.0.0.1:3306)/"}, Cassandra: applyCassandra{Hosts: []string{"h"}, Consistency: "QUORUM"}, Log: logging.DefaultOptions()}
	}
	cases := map[string]struct {
		edit func(*resyncConfig)
		want string
	}{
		"ok":          {func(*resyncConfig) {}, ""},
		"no site":     {func(c *resyncConfig) { c.Site = "" }, "site:"},
		"no table":    {func(c *resyncConfig) { c.Tables = nil }, "table:"},
		"bad table":   {func(c *resyncConfig) { c.Tables = []string{"t"} }, `table: "t"`},
		"no store":    {func(c *resyncConfig) { c.Cassandra.Hosts = nil }, "cassandra.hosts"},
		"bad from":    {func(c *resyncConfig) { c.From = "x" }, "from:"},
		"self":        {func(c *resyncConfig) { c.FromSite, c.Peers = "c", []string{"c=dsn"} }, "from_site:"},
		"no peer dsn": {func(c *resyncConfig) { c.FromSite = "a" }, "peer: no DSN"},
		"peer":        {func(c *resyncConfig) { c.FromSite, c.Peers = "a", []string{"a=root@tcp(x)/"} }, ""},
	}
	for name, tc := range cases {
		c := valid()
		tc.edit(c)
		err := c.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

// `music resync --site c --table db.kv --from-site a` repairs drift at c from a and prints
// progress and a summary.
func TestResyncCommandFromSite(t *testing.T) {
	sites := testenv.Sites(t)
	a, c := sites[0], sites[2]
	name := testenv.NewDatabase(t, a, c)
	ctx := context.Background()
	ref, dst := a.Open(t, name), c.Open(t, name)
	kv := applytest.KV(name)
	x := applytest.NewOrigin("x", 7)
	for _, site := range []testenv.Site{a, c} {
		db := site.Open(t, name)
		if _, err := db.Exec(applytest.KVDDL); err != nil {
			t.Fatal(err)
		}
		sink, err := mariadb.Open(ctx, mariadb.Config{DSN: site.DSN(""), MetaSchema: "music_test"}, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		x.Seq -= 3
		for i := int64(0); i < 3; i++ {
			if _, err := sink.Apply(ctx, x.Txn(1000+i, kv.Insert(applytest.Row(i, "v")), kv.Insert(applytest.Row(10+i, "w")))); err != nil {
				t.Fatal(err)
			}
		}
		sink.Close()
	}
	if _, err := dst.Exec("SET SESSION sql_log_bin=0; DELETE FROM kv WHERE id=1; UPDATE kv SET v='drift' WHERE id=2; INSERT INTO kv (id) VALUES (99); SET SESSION sql_log_bin=1"); err != nil {
		t.Fatal(err)
	}
	verify := []string{"--db", name, "--table", "kv", "--site", "a=" + a.DSN(""), "--site", "c=" + c.DSN("")}
	if code := runVerify(verify); code != 1 {
		t.Fatalf("music verify before the resync: exit %d, want 1 (DIFFERENT)", code)
	}
	cfg := &resyncConfig{Site: "c", Tables: []string{name + ".kv"}, FromSite: "a", Peers: []string{"a=" + a.DSN("")},
		MariaDB: mariadb.Config{DSN: c.DSN(""), MetaSchema: "music_test"}, Batch: 2, KeepRecent: -1, Log: logging.DefaultOptions()}
	// The table is quarantined at the site's agent: the resync releases it.
	_, js := testenv.Connect(t, testenv.NATS(t))
	cfg.NATSURL, cfg.QuarantineBucket = testenv.NATS(t), testenv.Prefix(t)+"_Q"
	bucket, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: cfg.QuarantineBucket})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js.DeleteKeyValue(context.Background(), cfg.QuarantineBucket) })
	if _, err := bucket.Put(ctx, apply.QuarantineKey(name+".kv"), []byte(`{"table":"x"}`)); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := resync(ctx, cfg, &out, zap.NewNop()); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log(out.String())
	if !strings.Contains(out.String(), "6 reference rows; 2 written") || !strings.Contains(out.String(), "1 local rows deleted") {
		t.Fatalf("summary:\n%s", out.String())
	}
	var sa, sc string
	var n string
	if err := ref.QueryRow("CHECKSUM TABLE kv").Scan(&n, &sa); err != nil {
		t.Fatal(err)
	}
	if err := dst.QueryRow("CHECKSUM TABLE kv").Scan(&n, &sc); err != nil {
		t.Fatal(err)
	}
	if sa != sc {
		t.Fatalf("CHECKSUM TABLE a %s, c %s", sa, sc)
	}
	if _, err := bucket.Get(ctx, apply.QuarantineKey(name+".kv")); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("quarantine after the resync: %v, want released", err)
	}
	if code := runVerify(verify); code != 0 {
		t.Fatalf("music verify after the resync: exit %d, want 0 (IDENTICAL)", code)
	}
}
