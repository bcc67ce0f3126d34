package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/gocql/gocql"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/apply/cassandra"
	"github.com/music-coord/music/apply/mariadb"
	"github.com/music-coord/music/consistency/synctable"
	"github.com/music-coord/music/internal/logging"
	"github.com/music-coord/music/recipes/store"
)

type applyCassandra struct {
	Hosts       []string              `yaml:"hosts"` // empty: no MUSIC store sink
	Keyspace    string                `yaml:"keyspace"`
	Replication cassandra.Replication `yaml:"replication"`
	Consistency string                `yaml:"consistency"`
}

type applyConfig struct {
	Site          string            `yaml:"site"`    // the local site
	Origins       []string          `yaml:"origins"` // sites whose streams are followed
	Streams       map[string]string `yaml:"streams"` // origin -> stream name (default MUSIC_CDC_<ORIGIN>)
	NATSURL       string            `yaml:"nats_url"`
	MariaDB       mariadb.Config    `yaml:"mariadb"` // dsn empty: no replay (store-only agent)
	Cassandra     applyCassandra    `yaml:"cassandra"`
	Workers       int               `yaml:"workers"`
	MaxInFlight   int               `yaml:"max_in_flight"`
	MaxAckPending int               `yaml:"max_ack_pending"`
	AckWait       time.Duration     `yaml:"ack_wait"`
	FollowOwn     bool              `yaml:"follow_own"` // also follow the site's own stream, so local writes enter the conflict rule
	// StoreAllOrigins writes every origin's changes into the MUSIC store, not only the
	// site's own (redundant: each site's agent writes its own changes, and Cassandra
	// replicates them). Without follow_own every origin's changes go to the store anyway.
	StoreAllOrigins bool     `yaml:"store_all_origins"`
	Resync          []string `yaml:"resync"` // db.table to bring up to the MUSIC store's state at start
	Join            bool     `yaml:"join"`   // resync every table the MUSIC store holds (a new or wiped site)
	// QuarantineBucket is the JetStream KV bucket where the agent keeps its quarantined
	// tables (default MUSIC_QUARANTINE_<SITE>); music resync releases a table there.
	QuarantineBucket string `yaml:"quarantine_bucket"`
	// SyncTables are the sync tables (db.table patterns, wildcards allowed); the same
	// list at every site's agents and gateway. See docs/SYNC_TABLES.md.
	SyncTables  []string        `yaml:"sync_tables"`
	MetricsAddr string          `yaml:"metrics_addr"` // /metrics, /status, /healthz; "" disables
	Log         logging.Options `yaml:"log"`
}

func defaultApplyConfig() *applyConfig {
	return &applyConfig{
		NATSURL:   "nats://127.0.0.1:4222",
		MariaDB:   mariadb.Config{MetaSchema: "music"},
		Cassandra: applyCassandra{Keyspace: "music", Consistency: "LOCAL_QUORUM", Replication: cassandra.Replication{Class: "SimpleStrategy", Factor: 1}},
		Workers:   8, FollowOwn: true,
		MaxInFlight: 256, MaxAckPending: 20000, AckWait: 2 * time.Minute,
		MetricsAddr: "127.0.0.1:9465",
		Log:         logging.DefaultOptions(),
	}
}

func (c *applyConfig) Validate() error {
	c.Origins, c.Cassandra.Hosts, c.Resync, c.SyncTables = dedupe(c.Origins), dedupe(c.Cassandra.Hosts), dedupe(c.Resync), dedupe(c.SyncTables)
	switch {
	case c.Site == "":
		return errors.New("site: must be set")
	case len(c.Origins) == 0:
		return errors.New("origins: name at least one site to follow")
	case c.NATSURL == "":
		return errors.New("nats_url: must be set")
	case c.MariaDB.DSN == "" && len(c.Cassandra.Hosts) == 0:
		return errors.New("mariadb.dsn, cassandra.hosts: set at least one sink")
	case c.Workers < 1 || c.MaxInFlight < 1 || c.MaxAckPending < 1:
		return errors.New("workers, max_in_flight, max_ack_pending: must be positive")
	}
	for _, o := range c.Origins {
		if o == c.Site {
			return fmt.Errorf("origins: %q is the local site", o)
		}
	}
	if c.MariaDB.DSN != "" {
		if _, err := mysql.ParseDSN(c.MariaDB.DSN); err != nil {
			return fmt.Errorf("mariadb.dsn: %v", err)
		}
		if err := mariadb.ValidIdentifier(c.MariaDB.MetaSchema); c.MariaDB.MetaSchema != "" && err != nil {
			return fmt.Errorf("mariadb.meta_schema: %v", err)
		}
	}
	if (len(c.Resync) > 0 || c.Join) && (c.MariaDB.DSN == "" || len(c.Cassandra.Hosts) == 0) {
		return errors.New("resync, join: need both mariadb.dsn and cassandra.hosts")
	}
	for _, t := range c.Resync {
		if db, table, ok := strings.Cut(t, "."); !ok || db == "" || table == "" {
			return fmt.Errorf("resync: %q is not db.table", t)
		}
	}
	if _, err := synctable.NewTables(c.SyncTables); err != nil {
		return fmt.Errorf("sync_tables: %v", err)
	}
	if len(c.SyncTables) > 0 && (len(c.Cassandra.Hosts) == 0 || !c.FollowOwn) {
		return errors.New("sync_tables: need cassandra.hosts and follow_own (the sync gate reads the tables' epochs from the MUSIC store and follows the site's own commits)")
	}
	if c.QuarantineBucket == "" {
		c.QuarantineBucket = apply.QuarantineBucket(c.Site)
	}
	for o := range c.Streams {
		if !contains(c.Origins, o) && (o != c.Site || !c.FollowOwn) {
			return fmt.Errorf("streams: %q is not in origins (nor the local site with follow_own)", o)
		}
	}
	if len(c.Cassandra.Hosts) > 0 {
		if _, err := c.Cassandra.Replication.CQL(); err != nil {
			return fmt.Errorf("cassandra.%w", err)
		}
		if c.Cassandra.Keyspace == "" {
			return errors.New("cassandra.keyspace: must be set")
		}
		var cl gocql.Consistency
		if err := cl.UnmarshalText([]byte(c.Cassandra.Consistency)); err != nil {
			return fmt.Errorf("cassandra.consistency: %q is not a consistency level", c.Cassandra.Consistency)
		}
	}
	return c.Log.Validate()
}

// dedupe drops repeated entries (a list flag seen by both config parsing passes).
func dedupe(list []string) []string {
	var out []string
	for _, s := range list {
		if !contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func runApply(args []string) int {
	cfg := defaultApplyConfig()
	fs := flag.NewFlagSet("music apply", flag.ContinueOnError)
	fs.String("config", "", "YAML config file (keys: site, origins, streams, nats_url, mariadb{dsn,meta_schema,batch_rows,max_conns}, cassandra{hosts,keyspace,replication{class,factor,data_centers},consistency}, workers, max_in_flight, max_ack_pending, ack_wait, metrics_addr, log)")
	fs.StringVar(&cfg.Site, "site", cfg.Site, "local site name")
	fs.Var(listFlag{&cfg.Origins}, "origins", "sites to follow (comma-separated)")
	fs.StringVar(&cfg.NATSURL, "nats-url", cfg.NATSURL, "NATS URL")
	fs.StringVar(&cfg.MariaDB.DSN, "mariadb-dsn", cfg.MariaDB.DSN, "local MariaDB DSN to replay into, e.g. root@tcp(127.0.0.1:3306)/ (empty: no replay)")
	fs.Var(listFlag{&cfg.Cassandra.Hosts}, "cassandra-hosts", "Cassandra contact points for the MUSIC store (empty: no store sink)")
	fs.StringVar(&cfg.Cassandra.Keyspace, "cassandra-keyspace", cfg.Cassandra.Keyspace, "MUSIC store keyspace")
	fs.StringVar(&cfg.Cassandra.Replication.Class, "cassandra-replication", cfg.Cassandra.Replication.Class, "SimpleStrategy or NetworkTopologyStrategy (data centres from the config file)")
	fs.IntVar(&cfg.Cassandra.Replication.Factor, "cassandra-replication-factor", cfg.Cassandra.Replication.Factor, "SimpleStrategy replication factor")
	fs.StringVar(&cfg.Cassandra.Consistency, "cassandra-consistency", cfg.Cassandra.Consistency, "write consistency level")
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "transactions applied concurrently per origin")
	fs.BoolVar(&cfg.FollowOwn, "follow-own", cfg.FollowOwn, "follow the local site's own stream too (records local versions, repairs local writes an older remote change overwrote)")
	fs.BoolVar(&cfg.StoreAllOrigins, "store-all-origins", cfg.StoreAllOrigins, "write every origin's changes into the MUSIC store, not only this site's own (redundant)")
	fs.Var(listFlag{&cfg.Resync}, "resync", "db.table to resync from the MUSIC store while following the streams (comma-separated)")
	fs.BoolVar(&cfg.Join, "join", cfg.Join, "resync every table of the MUSIC store (a new or wiped site joining)")
	fs.Var(listFlag{&cfg.SyncTables}, "sync-tables", "sync tables, db.table patterns (comma-separated; the same at every site)")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", cfg.MetricsAddr, "address for /metrics, /status and /healthz (empty: off)")
	if code, ok := parseFlags("apply", fs, args, cfg); !ok {
		return code
	}
	log, ok := newLogger("apply", cfg.Log)
	if !ok {
		return 2
	}
	defer log.Sync() //nolint:errcheck
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serveApply(ctx, cfg, log); err != nil {
		log.Error("apply stopped", zap.Error(err))
		return 1
	}
	return 0
}

// serveApply wires the sinks and one worker per origin, and runs them until ctx ends.
// Shutdown order: workers stop (no drain), then the HTTP server, the sinks, NATS.
func serveApply(ctx context.Context, cfg *applyConfig, log *zap.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := apply.NewMetrics(reg)
	sinks, closeSinks, err := openSinksRetrying(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeSinks()
	resyncs := &resyncStatus{}
	nc, err := nats.Connect(cfg.NATSURL, nats.Name("music apply "+cfg.Site), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connect to nats %s: %w", cfg.NATSURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	quarantine, err := openQuarantine(ctx, js, cfg.QuarantineBucket, log)
	if err != nil {
		return err
	}
	gate, closeGate, err := openGate(ctx, cfg, nc, log)
	if err != nil {
		return err
	}
	defer closeGate()
	var workers []*apply.Worker
	follow := cfg.Origins
	if cfg.FollowOwn {
		follow = append([]string{cfg.Site}, follow...)
	}
	for _, o := range follow {
		w, err := apply.NewWorker(js, apply.Config{Local: cfg.Site, Origin: o, Stream: cfg.Streams[o],
			Workers: cfg.Workers, MaxInFlight: cfg.MaxInFlight, MaxAckPending: cfg.MaxAckPending, AckWait: cfg.AckWait,
			Quarantine: quarantine, Gate: gate},
			sinksFor(cfg, o, sinks), metrics, log)
		if err != nil {
			return err
		}
		workers = append(workers, w)
	}
	if cfg.MetricsAddr != "" {
		srv := &http.Server{Addr: cfg.MetricsAddr, Handler: applyMux(reg, workers, resyncs), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", zap.Error(err))
			}
		}()
		defer srv.Close()
	}
	log.Info("apply running", zap.String("site", cfg.Site), zap.Strings("origins", cfg.Origins), zap.Int("sinks", len(sinks)))
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = w.Run(ctx)
		}()
	}
	for _, s := range sinks {
		if db, ok := s.(*mariadb.Sink); ok {
			reg.MustRegister(db.Collectors()...)
			wg.Go(func() { _ = db.NewSweeper(reg, streamHorizon(js, workers)).Run(ctx) })
		}
	}
	if len(cfg.Resync) > 0 || cfg.Join {
		wg.Go(func() { runResyncs(ctx, cfg, sinks, quarantine, resyncs, log) })
	}
	wg.Wait()
	return nil
}

// openGate returns the sync gate when the config names sync tables (nil otherwise).
func openGate(ctx context.Context, cfg *applyConfig, nc *nats.Conn, log *zap.Logger) (apply.SyncGate, func(), error) {
	if len(cfg.SyncTables) == 0 {
		return nil, func() {}, nil
	}
	tables, _ := synctable.NewTables(cfg.SyncTables) // validated
	cl := gocql.NewCluster(cfg.Cassandra.Hosts...)
	cl.Consistency = gocql.LocalQuorum
	cl.Timeout, cl.ConnectTimeout = 10*time.Second, 10*time.Second
	session, err := cl.CreateSession()
	if err != nil {
		return nil, nil, fmt.Errorf("sync gate: cassandra %v: %w", cfg.Cassandra.Hosts, err)
	}
	epochs, err := synctable.NewEpochs(ctx, session, cfg.Cassandra.Keyspace)
	if err != nil {
		session.Close()
		return nil, nil, err
	}
	gate, err := synctable.NewGate(cfg.Site, tables, epochs, nc, log.Named("sync"))
	if err != nil {
		session.Close()
		return nil, nil, err
	}
	log.Info("sync tables", zap.Strings("patterns", tables.Patterns()))
	return gate, func() { gate.Close(); session.Close() }, nil
}

// resyncStatus is the progress of the resyncs, shown under /status.
type resyncStatus struct {
	mu sync.Mutex
	p  map[string]apply.ResyncProgress
}

func (r *resyncStatus) set(p apply.ResyncProgress) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p == nil {
		r.p = map[string]apply.ResyncProgress{}
	}
	r.p[p.DB+"."+p.Table] = p
}

func (r *resyncStatus) snapshot() map[string]apply.ResyncProgress {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]apply.ResyncProgress, len(r.p))
	for k, v := range r.p {
		out[k] = v
	}
	return out
}

// runResyncs resyncs the configured tables (all of the store's with join) one after the
// other into the local MariaDB, while the workers run.
func runResyncs(ctx context.Context, cfg *applyConfig, sinks []apply.Sink, quarantine *apply.QuarantineSet, st *resyncStatus, log *zap.Logger) {
	db, store := sinks[0].(*mariadb.Sink), sinks[1].(*cassandra.Sink)
	tables := cfg.Resync
	if cfg.Join {
		all, err := store.Tables(ctx)
		if err != nil {
			log.Error("join: list the MUSIC store's tables", zap.Error(err))
			return
		}
		for _, t := range all {
			tables = append(tables, t[0]+"."+t[1])
		}
	}
	for _, t := range dedupe(tables) {
		name, table, _ := strings.Cut(t, ".")
		p, err := apply.ResyncWith(ctx, store, db, name, table, apply.RepairOptions{Quarantine: quarantine}, func(p apply.ResyncProgress) {
			st.set(p)
			log.Info("resync progress", zap.String("table", t), zap.Int("rows", p.Rows), zap.Int("applied", p.Applied),
				zap.Int("conflicts", p.Conflicts), zap.Bool("done", p.Done))
		})
		if err != nil {
			log.Error("resync failed", zap.String("table", t), zap.Int("rows", p.Rows), zap.Error(err))
		}
	}
}

// sinksFor is what the worker following origin writes to: the local MariaDB, and the MUSIC
// store for the site's own changes only (each change enters the store once, from its own
// site; Cassandra replicates it), unless store_all_origins, no own-stream follower, or no
// MariaDB (a store-only agent).
func sinksFor(cfg *applyConfig, origin string, sinks []apply.Sink) []apply.Sink {
	var out []apply.Sink
	for _, s := range sinks {
		if _, store := s.(*cassandra.Sink); store && origin != cfg.Site && cfg.FollowOwn && !cfg.StoreAllOrigins {
			continue
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return sinks
	}
	return out
}

// openSinksRetrying opens the sinks, retrying with backoff while MariaDB or Cassandra do
// not answer (an agent started before them, or during an outage, waits rather than exits).
// (Configuration errors are caught before, by Validate.) It gives up only when ctx ends.
func openSinksRetrying(ctx context.Context, cfg *applyConfig, log *zap.Logger) ([]apply.Sink, func(), error) {
	backoff := time.Second
	for {
		sinks, closeSinks, err := openSinks(ctx, cfg, log)
		if err == nil {
			return sinks, closeSinks, nil
		}
		if ctx.Err() != nil {
			return nil, nil, err
		}
		log.Warn("cannot open the sinks yet; retrying (is the database up and reachable?)", zap.Error(err), zap.Duration("backoff", backoff))
		if apply.Sleep(ctx, backoff) != nil {
			return nil, nil, err
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

func openSinks(ctx context.Context, cfg *applyConfig, log *zap.Logger) ([]apply.Sink, func(), error) {
	var sinks []apply.Sink
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	if cfg.MariaDB.DSN != "" {
		s, err := mariadb.Open(ctx, cfg.MariaDB, log)
		if err != nil {
			return nil, nil, err
		}
		sinks, closers = append(sinks, s), append(closers, func() { s.Close() })
	}
	if len(cfg.Cassandra.Hosts) > 0 {
		cl := gocql.NewCluster(cfg.Cassandra.Hosts...)
		_ = cl.Consistency.UnmarshalText([]byte(cfg.Cassandra.Consistency))
		cl.Timeout, cl.ConnectTimeout = 10*time.Second, 10*time.Second
		store.Tune(cl)
		session, err := cl.CreateSession()
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("cassandra %v: %w", cfg.Cassandra.Hosts, err)
		}
		closers = append(closers, session.Close)
		ccfg := cassandra.Config{Keyspace: cfg.Cassandra.Keyspace, Replication: cfg.Cassandra.Replication}
		if err := cassandra.EnsureKeyspace(ctx, session, ccfg); err != nil {
			closeAll()
			return nil, nil, err
		}
		s, err := cassandra.New(ctx, session, ccfg, log)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		sinks = append(sinks, s)
	}
	return sinks, closeAll, nil
}

func applyMux(reg *prometheus.Registry, workers []*apply.Worker, resyncs *resyncStatus) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		out := make([]apply.OriginStatus, 0, len(workers))
		for _, wk := range workers {
			out = append(out, wk.Status())
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("/resync", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resyncs.snapshot())
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	profiling(mux)
	return mux
}

// openQuarantine binds the agent's quarantine set to its KV bucket (created if missing),
// retrying while NATS does not answer: a quarantine forgotten at restart would let a
// table's later changes apply on top of the ones skipped.
func openQuarantine(ctx context.Context, js jetstream.JetStream, bucket string, log *zap.Logger) (*apply.QuarantineSet, error) {
	backoff := time.Second
	for {
		q := apply.NewQuarantineSet()
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket,
			Description: "MUSIC apply: quarantined tables (music resync releases them)"})
		if err == nil {
			err = q.Persist(ctx, kv, log)
		}
		if err == nil {
			if t := q.Tables(); len(t) > 0 {
				log.Warn("tables still quarantined: resync them (music resync)", zap.Strings("tables", t))
			}
			return q, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		log.Warn("quarantine bucket not available yet; retrying", zap.String("bucket", bucket), zap.Error(err),
			zap.Duration("backoff", backoff))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}
