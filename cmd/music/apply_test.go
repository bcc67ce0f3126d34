package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/apply/cassandra"
	"github.com/music-coord/music/apply/mariadb"
)

func TestApplyConfigValidateNamesTheField(t *testing.T) {
	valid := func() *applyConfig {
		c := defaultApplyConfig()
		c.Site, c.Origins, c.MariaDB.DSN = "b", []string{"a", "c"}, "root@tcp(127.0.0.1:3306)/"
		return c
	}
	cases := map[string]struct {
		edit func(*applyConfig)
		want string
	}{
		"ok":         {func(*applyConfig) {}, ""},
		"no site":    {func(c *applyConfig) { c.Site = "" }, "site:"},
		"no origins": {func(c *applyConfig) { c.Origins = nil }, "origins:"},
		"self":       {func(c *applyConfig) { c.Origins = []string{"b"} }, `origins: "b" is the local site`},
		"no sink":    {func(c *applyConfig) { c.MariaDB.DSN = "" }, "mariadb.dsn, cassandra.hosts"},
		"bad dsn":    {func(c *applyConfig) { c.MariaDB.DSN = "root@127.0.0.1" }, "mariadb.dsn: invalid DSN"},
		"bad meta":   {func(c *applyConfig) { c.MariaDB.MetaSchema = "a`b" }, "mariadb.meta_schema:"},
		"bad stream": {func(c *applyConfig) { c.Streams = map[string]string{"z": "S"} }, `streams: "z"`},
		"own stream": {func(c *applyConfig) { c.Streams = map[string]string{"b": "S"} }, ""},
		"own stream, no follow": {func(c *applyConfig) {
			c.Streams, c.FollowOwn = map[string]string{"b": "S"}, false
		}, `streams: "b"`},
		"replication": {func(c *applyConfig) {
			c.Cassandra.Hosts = []string{"h"}
			c.Cassandra.Replication = cassandra.Replication{Class: "X"}
		}, "cassandra.replication.class"},
		"nts empty": {func(c *applyConfig) {
			c.Cassandra.Hosts = []string{"h"}
			c.Cassandra.Replication.Class = "NetworkTopologyStrategy"
		}, "cassandra.replication.data_centers"},
		"consistency":   {func(c *applyConfig) { c.Cassandra.Hosts = []string{"h"}; c.Cassandra.Consistency = "MOST" }, "cassandra.consistency"},
		"resync store":  {func(c *applyConfig) { c.Resync = []string{"d.t"} }, "resync, join"},
		"resync format": {func(c *applyConfig) { c.Cassandra.Hosts = []string{"h"}; c.Resync = []string{"dt"} }, `resync: "dt"`},
		"workers":       {func(c *applyConfig) { c.Workers = 0 }, "workers"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := valid()
			tc.edit(c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

func TestApplyConfigDedupesListFlags(t *testing.T) {
	c := defaultApplyConfig()
	c.Site, c.Origins, c.MariaDB.DSN = "b", []string{"a", "c", "a"}, "root@tcp(127.0.0.1:3306)/"
	if err := c.Validate(); err != nil || strings.Join(c.Origins, ",") != "a,c" {
		t.Fatalf("origins %v (%v), want a,c", c.Origins, err)
	}
}

func TestStatusPrintsAgents(t *testing.T) {
	w, err := apply.NewWorker(nil, apply.Config{Local: "b", Origin: "a"}, []apply.Sink{nopSink{}}, nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	rs := &resyncStatus{}
	rs.set(apply.ResyncProgress{DB: "shop", Table: "orders", Rows: 42, Done: true})
	srv := httptest.NewServer(applyMux(prometheus.NewRegistry(), []*apply.Worker{w}, rs))
	defer srv.Close()
	var out bytes.Buffer
	if err := printAgents(&out, []string{strings.TrimPrefix(srv.URL, "http://")}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"SITE", "LAG_MS", "LAST_ERROR", "async", "shop.orders", "rows read 42"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("status output lacks %q:\n%s", want, out.String())
		}
	}
	if err := printAgents(&out, []string{"127.0.0.1:1"}); err == nil {
		t.Fatal("an unreachable agent is not an error")
	}
}

type nopSink struct{}

func (nopSink) Name() string { return "nop" }
func (nopSink) Apply(context.Context, *apply.Txn) (apply.Result, error) {
	return apply.Result{}, nil
}

func TestStoreGetsEachChangeOnce(t *testing.T) {
	db, store := apply.Sink((*mariadb.Sink)(nil)), apply.Sink((*cassandra.Sink)(nil))
	both := []apply.Sink{db, store}
	for _, c := range []struct {
		name      string
		cfg       applyConfig
		sinks     []apply.Sink
		own, peer int // sinks of the own-stream worker and of a peer's
	}{
		{"default: the store from the own stream only", applyConfig{Site: "a", FollowOwn: true}, both, 2, 1},
		{"store_all_origins", applyConfig{Site: "a", FollowOwn: true, StoreAllOrigins: true}, both, 2, 2},
		{"no own stream: every origin", applyConfig{Site: "a"}, both, 2, 2},
		{"store-only agent: every origin", applyConfig{Site: "a", FollowOwn: true}, []apply.Sink{store}, 1, 1},
	} {
		if own, peer := len(sinksFor(&c.cfg, "a", c.sinks)), len(sinksFor(&c.cfg, "b", c.sinks)); own != c.own || peer != c.peer {
			t.Errorf("%s: own stream %d sinks, peer %d; want %d, %d", c.name, own, peer, c.own, c.peer)
		}
	}
}
