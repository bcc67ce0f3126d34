package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/gocql/gocql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/music-coord/music/consistency/lock"
	"github.com/music-coord/music/internal/logging"
	"github.com/music-coord/music/recipes/rest"
	"github.com/music-coord/music/recipes/store"
)

type serverConfig struct {
	Addr      string          `yaml:"addr"`
	TLSCert   string          `yaml:"tls_cert"`
	TLSKey    string          `yaml:"tls_key"`
	Cassandra string          `yaml:"cassandra"` // comma-separated host:port list
	ZooKeeper string          `yaml:"zookeeper"` // comma-separated host:port list
	LockRoot  string          `yaml:"lock_root"`
	ReapEvery time.Duration   `yaml:"reap_every"`
	API       rest.Config     `yaml:"api"`
	Log       logging.Options `yaml:"log"`
}

func (c *serverConfig) Validate() error {
	switch {
	case c.Addr == "":
		return errors.New("addr: must be set")
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return errors.New("tls_cert, tls_key: set both or neither")
	case c.Cassandra == "":
		return errors.New("cassandra: must be set")
	case c.ZooKeeper == "":
		return errors.New("zookeeper: must be set")
	case c.ReapEvery <= 0:
		return errors.New("reap_every: must be positive")
	}
	if err := c.API.Validate(); err != nil {
		return fmt.Errorf("api.%w", err)
	}
	return c.Log.Validate()
}

func runServer(args []string) int {
	cfg := &serverConfig{Addr: "127.0.0.1:8080", Cassandra: "127.0.0.1:9042", ZooKeeper: "127.0.0.1:2181",
		LockRoot: "/music/locks", ReapEvery: 5 * time.Second, Log: logging.DefaultOptions()}
	fs := flag.NewFlagSet("music server", flag.ContinueOnError)
	fs.String("config", "", "YAML config file (keys: addr, tls_cert, tls_key, cassandra, zookeeper, lock_root, reap_every, api{users, namespaces, body_limit, anonymous, lock_lease, version, build}, log)")
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen address host:port")
	fs.StringVar(&cfg.TLSCert, "tls-cert", cfg.TLSCert, "TLS certificate file (enables HTTPS with --tls-key)")
	fs.StringVar(&cfg.TLSKey, "tls-key", cfg.TLSKey, "TLS key file")
	fs.StringVar(&cfg.Cassandra, "cassandra", cfg.Cassandra, "Cassandra contact points, comma-separated")
	fs.StringVar(&cfg.ZooKeeper, "zookeeper", cfg.ZooKeeper, "ZooKeeper servers, comma-separated")
	fs.StringVar(&cfg.LockRoot, "lock-root", cfg.LockRoot, "ZooKeeper node for lock queues")
	fs.DurationVar(&cfg.ReapEvery, "reap-every", cfg.ReapEvery, "how often expired lock leases are released")
	fs.BoolVar(&cfg.API.Anonymous, "anonymous", cfg.API.Anonymous, "turn authentication off (local use only)")
	if code, ok := parseFlags("server", fs, args, cfg); !ok {
		return code
	}
	log, ok := newLogger("server", cfg.Log)
	if !ok {
		return 2
	}
	defer log.Sync()
	if err := serve(cfg, log); err != nil {
		log.Error("server stopped", zap.Error(err))
		return 1
	}
	return 0
}

// serve wires Cassandra, ZooKeeper and the API and runs until SIGINT/SIGTERM. Shutdown
// order: stop accepting HTTP, stop the reaper, close ZooKeeper, close Cassandra.
func serve(cfg *serverConfig, log *zap.Logger) error {
	cluster := gocql.NewCluster(strings.Split(cfg.Cassandra, ",")...)
	cluster.Timeout, cluster.ConnectTimeout = 10*time.Second, 10*time.Second
	store.Tune(cluster)
	sess, err := cluster.CreateSession()
	if err != nil {
		return fmt.Errorf("cassandra %s: %w", cfg.Cassandra, err)
	}
	defer sess.Close()
	conn, _, err := zk.Connect(strings.Split(cfg.ZooKeeper, ","), 10*time.Second, zk.WithLogInfo(false))
	if err != nil {
		return fmt.Errorf("zookeeper %s: %w", cfg.ZooKeeper, err)
	}
	defer conn.Close()
	opts := []lock.Option{lock.WithLogger(log.Named("lock"))}
	if cfg.API.LockLease > 0 {
		opts = append(opts, lock.WithDefaultLease(cfg.API.LockLease))
	}
	locks, err := lock.New(conn, cfg.LockRoot, opts...)
	if err != nil {
		return err
	}
	if cfg.API.Build == "" {
		cfg.API.Build = version
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(lock.Collectors()...)
	api, err := rest.New(cfg.API, store.New(sess, locks, log.Named("store")), locks, log.Named("rest"), reg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	reapCtx, stopReaper := context.WithCancel(ctx)
	defer stopReaper()
	go locks.RunReaper(reapCtx, cfg.ReapEvery)
	return listen(ctx, cfg, api, reg, log)
}

func listen(ctx context.Context, cfg *serverConfig, api *rest.API, reg *prometheus.Registry, log *zap.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := api.Health(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/", api)
	srv := &http.Server{Addr: cfg.Addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() {
		log.Info("music server listening", zap.String("addr", cfg.Addr), zap.Bool("tls", cfg.TLSCert != ""))
		if cfg.TLSCert != "" {
			errc <- srv.ListenAndServeTLS(cfg.TLSCert, cfg.TLSKey)
		} else {
			errc <- srv.ListenAndServe()
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("music server stopping")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
