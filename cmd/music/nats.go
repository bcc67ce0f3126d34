package main

import (
	"flag"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"github.com/music-coord/music/internal/logging"
	"github.com/music-coord/music/internal/natsserver"
)

type natsConfig struct {
	natsserver.Config `yaml:",inline"`
	Log               logging.Options `yaml:"log"`
}

func (c *natsConfig) Validate() error {
	if err := c.Config.Validate(); err != nil {
		return err
	}
	return c.Log.Validate()
}

func runNATS(args []string) int {
	cfg := &natsConfig{
		Config: natsserver.Config{Addr: "127.0.0.1:4222", Store: "nats-store", ServerName: "music-nats"},
		Log:    logging.DefaultOptions(),
	}
	fs := flag.NewFlagSet("music nats", flag.ContinueOnError)
	fs.String("config", "", "YAML config file (keys: addr, store, sync_always, log_file, log)")
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen address host:port")
	fs.StringVar(&cfg.Store, "store", cfg.Store, "JetStream store directory")
	fs.BoolVar(&cfg.SyncAlways, "sync-always", cfg.SyncAlways, "fsync every JetStream write before acknowledging it")
	fs.StringVar(&cfg.LogFile, "log-file", cfg.LogFile, "NATS server log file (default stderr)")
	if code, ok := parseFlags("nats", fs, args, cfg); !ok {
		return code
	}
	log, ok := newLogger("nats", cfg.Log)
	if !ok {
		return 2
	}
	defer log.Sync()
	s, err := natsserver.Start(cfg.Config)
	if err != nil {
		log.Error("nats server did not start", zap.Error(err))
		return 1
	}
	log.Info("nats server ready", zap.String("url", s.ClientURL()), zap.String("store", cfg.Store),
		zap.Bool("sync_always", cfg.SyncAlways))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	log.Info("nats server stopping")
	s.Shutdown()
	s.WaitForShutdown()
	return 0
}
