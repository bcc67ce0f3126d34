package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/music-coord/music/capture"
	"github.com/music-coord/music/internal/logging"
)

type captureConfig struct {
	capture.Config `yaml:",inline"`
	// MetricsAddr serves /metrics, /healthz and /status ("" disables).
	MetricsAddr string          `yaml:"metrics_addr"`
	Log         logging.Options `yaml:"log"`
}

func (c *captureConfig) Validate() error {
	if err := c.Config.Validate(); err != nil {
		return err
	}
	return c.Log.Validate()
}

// listFlag is a repeatable or comma-separated flag.
type listFlag struct{ list *[]string }

func (l listFlag) String() string {
	if l.list == nil {
		return ""
	}
	return strings.Join(*l.list, ",")
}

// Set appends the values not there yet (config.Parse parses the arguments twice).
func (l listFlag) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" && !slices.Contains(*l.list, p) {
			*l.list = append(*l.list, p)
		}
	}
	return nil
}

func runCapture(args []string) int {
	cfg := &captureConfig{Config: capture.DefaultConfig(), MetricsAddr: "127.0.0.1:9464", Log: logging.DefaultOptions()}
	var snapshots []string
	fs := flag.NewFlagSet("music capture", flag.ContinueOnError)
	fs.String("config", "", "YAML config file (keys: site, dsn, nats_url, server_id, domain_id, include, exclude, stream, state_bucket, start, metrics_addr, log, ...)")
	fs.StringVar(&cfg.Site, "site", cfg.Site, "origin site name")
	fs.StringVar(&cfg.DSN, "dsn", cfg.DSN, "MariaDB DSN, e.g. root@tcp(127.0.0.1:3306)/")
	fs.StringVar(&cfg.NATSURL, "nats-url", cfg.NATSURL, "NATS URL")
	fs.Func("server-id", "tailer replication server id (default 1000000+domain id)", func(s string) error {
		_, err := fmt.Sscan(s, &cfg.ServerID)
		return err
	})
	fs.Func("domain-id", "the site's gtid_domain_id: only its transactions are published", func(s string) error {
		_, err := fmt.Sscan(s, &cfg.DomainID)
		return err
	})
	fs.BoolVar(&cfg.DropSkipReplication, "drop-skip-replication", cfg.DropSkipReplication, "drop transactions flagged @@skip_replication")
	fs.StringVar(&cfg.Stream, "stream", cfg.Stream, "JetStream stream (default MUSIC_CDC_<SITE>)")
	fs.StringVar(&cfg.StateBucket, "state-bucket", cfg.StateBucket, "JetStream KV bucket for checkpoint and schema history (default MUSIC_CAPTURE_<SITE>)")
	fs.StringVar(&cfg.Start, "start", cfg.Start, "without checkpoint start at: current, earliest or a GTID position")
	fs.Var(listFlag{&cfg.Include}, "include", "db.table glob to capture (repeatable, comma-separated)")
	fs.Var(listFlag{&cfg.Exclude}, "exclude", "db.table glob not to capture (repeatable, comma-separated)")
	fs.IntVar(&cfg.MaxInFlight, "max-in-flight", cfg.MaxInFlight, "unacknowledged publishes at most")
	fs.DurationVar(&cfg.CheckpointInterval, "checkpoint-interval", cfg.CheckpointInterval, "how often the checkpoint is stored")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", cfg.MetricsAddr, "address for /metrics, /healthz and /status (empty: off)")
	fs.BoolVar(&cfg.AutoSnapshotOnPurge, "auto-snapshot-on-purge", cfg.AutoSnapshotOnPurge,
		"when the binlog after the checkpoint was purged, continue from the binlog's end and resnapshot every captured table (default: stop)")
	fs.BoolVar(&cfg.InitialSnapshot, "initial-snapshot", cfg.InitialSnapshot, "on the first start (no checkpoint) snapshot every captured table")
	fs.Var(listFlag{&snapshots}, "snapshot", "db.table to snapshot once capture streams (repeatable); progress on stderr")
	if code, ok := parseFlags("capture", fs, args, cfg); !ok {
		return code
	}
	for _, s := range snapshots {
		if db, table, ok := strings.Cut(s, "."); !ok || db == "" || table == "" {
			fmt.Fprintf(os.Stderr, "music capture: --snapshot %q: want db.table\n", s)
			return 2
		}
	}
	log, ok := newLogger("capture", cfg.Log)
	if !ok {
		return 2
	}
	defer log.Sync() //nolint:errcheck
	// go-mysql logs some warnings through the default slog logger (e.g. every transaction
	// of another domain whose sequence goes backwards): keep only its errors.
	slog.SetDefault(logging.Slog(log.Named("go-mysql").WithOptions(zap.IncreaseLevel(zapcore.ErrorLevel))))
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	c, err := capture.New(cfg.Config, log, reg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "music capture:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if cfg.MetricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.Handle("/healthz", capture.HealthHandler(c))
		mux.Handle("/status", capture.StatusHandler(c))
		profiling(mux)
		srv := &http.Server{Addr: cfg.MetricsAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", zap.Error(err))
			}
		}()
		defer srv.Close()
	}
	if len(snapshots) > 0 {
		go runSnapshots(ctx, c, snapshots)
	}
	if err := c.Run(ctx); err != nil {
		log.Error("capture stopped", zap.Error(err))
		fmt.Fprintln(os.Stderr, "music capture:", err)
		var purged *capture.PurgedError
		if errors.As(err, &purged) && cfg.MetricsAddr != "" {
			// Stay up so that monitoring sees it: /healthz answers 503 with the error,
			// /status says stopped with the error, music_capture_purged is 1. A restart
			// would stop the same way; exit (1) on SIGTERM/SIGINT.
			log.Error("capture stays stopped until the tables are resnapshotted; still serving /healthz, /status and /metrics until SIGTERM",
				zap.String("metrics_addr", cfg.MetricsAddr))
			<-ctx.Done()
		}
		return 1
	}
	return 0
}

// runSnapshots snapshots the tables one after the other, printing progress to stderr.
func runSnapshots(ctx context.Context, c *capture.Capturer, tables []string) {
	select {
	case <-c.Ready():
	case <-ctx.Done():
		return
	}
	for _, t := range tables {
		db, table, _ := strings.Cut(t, ".")
		done := make(chan error, 1)
		go func() { done <- c.Snapshot(ctx, db, table) }()
		tick := time.NewTicker(time.Second)
		for running := true; running; {
			select {
			case err := <-done:
				running = false
				if err != nil {
					fmt.Fprintf(os.Stderr, "snapshot %s: %v\n", t, err)
				} else {
					printProgress(c, db, table)
					fmt.Fprintf(os.Stderr, "snapshot %s: done\n", t)
				}
			case <-tick.C:
				printProgress(c, db, table)
			}
		}
		tick.Stop()
	}
}

func printProgress(c *capture.Capturer, db, table string) {
	for _, p := range c.Snapshots() {
		if p.DB == db && p.Table == table {
			pct := 100.0
			if p.Total > 0 {
				pct = 100 * float64(p.Done) / float64(p.Total)
			}
			fmt.Fprintf(os.Stderr, "snapshot %s.%s: %d/%d rows (%.1f%%), %.0f rows/s, eta %s\n",
				db, table, p.Done, p.Total, pct, p.RowsPerSec, p.ETA.Round(time.Second))
		}
	}
}
