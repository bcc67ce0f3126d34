package main

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/go-zookeeper/zk"
	"github.com/gocql/gocql"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/music-coord/music/consistency/gateway"
	"github.com/music-coord/music/consistency/synctable"
	"github.com/music-coord/music/internal/logging"
	"github.com/music-coord/music/recipes/prom"
)

type gatewayConfig struct {
	Site       string   `yaml:"site"`
	Listen     string   `yaml:"listen"`      // where applications connect (MySQL protocol)
	Backend    string   `yaml:"backend"`     // the site's MariaDB, host:port
	MariaDBDSN string   `yaml:"mariadb_dsn"` // the gateway's own connection to it (catch-up, binlog position)
	SyncTables []string `yaml:"sync_tables"` // db.table patterns; the same at every site
	ZooKeeper  []string `yaml:"zookeeper"`
	Prom       struct {
		Root    string        `yaml:"root"`
		Lease   time.Duration `yaml:"lease"`
		MinHold time.Duration `yaml:"min_hold"`
	} `yaml:"prom"`
	Cassandra struct {
		Hosts    []string `yaml:"hosts"`
		Keyspace string   `yaml:"keyspace"` // the apply agents' store keyspace
	} `yaml:"cassandra"`
	NATSURL        string        `yaml:"nats_url"`
	AcquireTimeout time.Duration `yaml:"acquire_timeout"`
	CatchUpTimeout time.Duration `yaml:"catchup_timeout"`
	CommitTimeout  time.Duration `yaml:"commit_timeout"`
	MetaSchema     string        `yaml:"meta_schema"`
	TLS            struct {
		Cert string `yaml:"cert"`
		Key  string `yaml:"key"`
	} `yaml:"tls"`
	MetricsAddr string          `yaml:"metrics_addr"` // /metrics, /status, /healthz
	StatusToken string          `yaml:"status_token"` // if set, /status and /metrics want "Authorization: Bearer <token>"
	Log         logging.Options `yaml:"log"`
}

func defaultGatewayConfig() *gatewayConfig {
	c := &gatewayConfig{Listen: "127.0.0.1:4306", NATSURL: "nats://127.0.0.1:4222", MetaSchema: "music",
		ZooKeeper: []string{"127.0.0.1:2181"}, MetricsAddr: "127.0.0.1:9467", Log: logging.DefaultOptions()}
	c.Cassandra.Keyspace = "music"
	return c
}

func (c *gatewayConfig) Validate() error {
	c.SyncTables, c.ZooKeeper, c.Cassandra.Hosts = dedupe(c.SyncTables), dedupe(c.ZooKeeper), dedupe(c.Cassandra.Hosts)
	switch {
	case c.Site == "":
		return errors.New("site: must be set")
	case c.Listen == "" || c.Backend == "":
		return errors.New("listen, backend: must be set (host:port)")
	case c.MariaDBDSN == "":
		return errors.New("mariadb_dsn: must be set (the gateway's own connection to the site's MariaDB)")
	case len(c.ZooKeeper) == 0 || len(c.Cassandra.Hosts) == 0 || c.NATSURL == "":
		return errors.New("zookeeper, cassandra.hosts, nats_url: must be set")
	case (c.TLS.Cert == "") != (c.TLS.Key == ""):
		return errors.New("tls.cert, tls.key: set both or neither")
	}
	if _, err := mysql.ParseDSN(c.MariaDBDSN); err != nil {
		return fmt.Errorf("mariadb_dsn: %v", err)
	}
	if _, err := synctable.NewTables(c.SyncTables); err != nil {
		return fmt.Errorf("sync_tables: %v", err)
	}
	return c.Log.Validate()
}

func runGateway(args []string) int {
	cfg := defaultGatewayConfig()
	fs := flag.NewFlagSet("music gateway", flag.ContinueOnError)
	fs.String("config", "", "YAML config file (keys: site, listen, backend, mariadb_dsn, sync_tables, zookeeper, prom{root,lease,min_hold}, cassandra{hosts,keyspace}, nats_url, acquire_timeout, catchup_timeout, commit_timeout, meta_schema, tls{cert,key}, metrics_addr, status_token, log)")
	fs.StringVar(&cfg.Site, "site", cfg.Site, "local site name (as capture and apply know it)")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address applications connect to (MySQL protocol)")
	fs.StringVar(&cfg.Backend, "backend", cfg.Backend, "the site's MariaDB, host:port")
	fs.StringVar(&cfg.MariaDBDSN, "mariadb-dsn", cfg.MariaDBDSN, "the gateway's own DSN to the site's MariaDB, e.g. root@tcp(127.0.0.1:3306)/")
	fs.Var(listFlag{&cfg.SyncTables}, "sync-tables", "sync tables, db.table patterns (comma-separated; the same at every site)")
	fs.Var(listFlag{&cfg.ZooKeeper}, "zookeeper", "ZooKeeper servers (comma-separated)")
	fs.Var(listFlag{&cfg.Cassandra.Hosts}, "cassandra-hosts", "Cassandra contact points of the MUSIC store")
	fs.StringVar(&cfg.NATSURL, "nats-url", cfg.NATSURL, "NATS URL")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", cfg.MetricsAddr, "address for /metrics, /status and /healthz (empty: off)")
	if code, ok := parseFlags("gateway", fs, args, cfg); !ok {
		return code
	}
	log, ok := newLogger("gateway", cfg.Log)
	if !ok {
		return 2
	}
	defer log.Sync() //nolint:errcheck
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serveGateway(ctx, cfg, log); err != nil {
		log.Error("gateway stopped", zap.Error(err))
		return 1
	}
	return 0
}

// serveGateway connects to MariaDB, ZooKeeper, Cassandra and NATS and serves clients
// until ctx ends.
func serveGateway(ctx context.Context, cfg *gatewayConfig, log *zap.Logger) error {
	tables, _ := synctable.NewTables(cfg.SyncTables) // validated
	db, err := sql.Open("mysql", cfg.MariaDBDSN)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("mariadb %s: %w (is the site's MariaDB up?)", cfg.Backend, err)
	}
	zconn, _, err := zk.Connect(cfg.ZooKeeper, 10*time.Second, zk.WithLogInfo(false))
	if err != nil {
		return fmt.Errorf("zookeeper %v: %w", cfg.ZooKeeper, err)
	}
	defer zconn.Close()
	owners, err := prom.New(zconn, cfg.Site, prom.Options{Root: cfg.Prom.Root, Lease: cfg.Prom.Lease, MinHold: cfg.Prom.MinHold, Log: log.Named("prom")})
	if err != nil {
		return err
	}
	defer owners.Close()
	cl := gocql.NewCluster(cfg.Cassandra.Hosts...)
	cl.Consistency = gocql.LocalQuorum
	cl.Timeout, cl.ConnectTimeout = 10*time.Second, 10*time.Second
	session, err := cl.CreateSession()
	if err != nil {
		return fmt.Errorf("cassandra %v: %w", cfg.Cassandra.Hosts, err)
	}
	defer session.Close()
	epochs, err := synctable.NewEpochs(ctx, session, cfg.Cassandra.Keyspace)
	if err != nil {
		return fmt.Errorf("%w (does keyspace %s exist? the apply agents create it)", err, cfg.Cassandra.Keyspace)
	}
	nc, err := nats.Connect(cfg.NATSURL, nats.Name("music gateway "+cfg.Site), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connect to nats %s: %w", cfg.NATSURL, err)
	}
	defer nc.Close()
	coord, err := synctable.NewCoordinator(cfg.Site, tables, owners, epochs, db, nc, synctable.Options{
		AcquireTimeout: cfg.AcquireTimeout, CatchUpTimeout: cfg.CatchUpTimeout, CommitTimeout: cfg.CommitTimeout,
		MetaSchema: cfg.MetaSchema}, log.Named("sync"))
	if err != nil {
		return err
	}
	defer coord.Close()
	var tlsCfg *tls.Config
	if cfg.TLS.Cert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	gw, err := gateway.New(gateway.Config{Listen: cfg.Listen, Backend: cfg.Backend, TLS: tlsCfg, Hooks: coord.Hooks(), Log: log})
	if err != nil {
		return err
	}
	if cfg.MetricsAddr != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		reg.MustRegister(gw.Collectors()...)
		reg.MustRegister(prom.Collectors()...)
		srv := &http.Server{Addr: cfg.MetricsAddr, Handler: gatewayMux(cfg, reg, coord, owners), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", zap.Error(err))
			}
		}()
		defer srv.Close()
	}
	log.Info("gateway running", zap.String("site", cfg.Site), zap.String("listen", gw.Addr()), zap.String("backend", cfg.Backend),
		zap.Strings("sync_tables", tables.Patterns()))
	return gw.Serve(ctx)
}

// GatewayStatus is what a gateway's /status shows.
type GatewayStatus struct {
	Site       string          `json:"site"`
	SyncTables []string        `json:"sync_tables"` // patterns
	Owned      []OwnedTable    `json:"owned"`
	Stats      synctable.Stats `json:"stats"`
}

// OwnedTable is a sync table this site owns, with its open epoch.
type OwnedTable struct {
	Table string    `json:"table"`
	Fence int64     `json:"fence"`
	Since time.Time `json:"since"`
	Start int64     `json:"epoch_start"`
	Last  int64     `json:"last_claimed"`
}

func gatewayMux(cfg *gatewayConfig, reg *prometheus.Registry, coord *synctable.Coordinator, owners *prom.Manager) *http.ServeMux {
	mux := http.NewServeMux()
	guard := func(h http.Handler) http.Handler {
		if cfg.StatusToken == "" {
			return h
		}
		want := []byte("Bearer " + cfg.StatusToken)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="music gateway"`)
				http.Error(w, "status_token required: Authorization: Bearer <token>", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	mux.Handle("/metrics", guard(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
	mux.Handle("/status", guard(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		st := GatewayStatus{Site: cfg.Site, SyncTables: coord.Tables().Patterns(), Stats: coord.Stats(), Owned: []OwnedTable{}}
		for _, o := range owners.Owned() {
			ep, _ := coord.Epoch(o.Resource)
			st.Owned = append(st.Owned, OwnedTable{Table: o.Resource, Fence: o.Fence, Since: o.Since, Start: ep.Start, Last: ep.Last})
		}
		sort.Slice(st.Owned, func(i, j int) bool { return st.Owned[i].Table < st.Owned[j].Table })
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})))
	mux.Handle("/MUSIC/rest/v2/prom/", guard(prom.Handler(owners)))
	mux.Handle("/MUSIC/rest/v2/prom", guard(prom.Handler(owners)))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	return mux
}
