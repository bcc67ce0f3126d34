// Package logging builds the zap logger every MUSIC component uses, and the slog bridge
// for libraries (go-mysql) that log through *slog.Logger.
package logging

import (
	"fmt"
	"log/slog"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
	"go.uber.org/zap/zapcore"
)

// Options choose the level, the encoding and where logs go.
type Options struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json or console
	File   string `yaml:"file"`   // path; empty means stderr
}

// DefaultOptions logs JSON at info level to stderr.
func DefaultOptions() Options { return Options{Level: "info", Format: "json"} }

// Validate names the field that is wrong.
func (o Options) Validate() error {
	if _, err := zapcore.ParseLevel(o.Level); err != nil {
		return fmt.Errorf("log.level: %q is not one of debug, info, warn, error", o.Level)
	}
	switch o.Format {
	case "json", "console":
	default:
		return fmt.Errorf("log.format: %q is not json or console", o.Format)
	}
	return nil
}

// New returns a logger built from o. Callers own it and should Sync it before exit.
func New(o Options) (*zap.Logger, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	lvl, _ := zapcore.ParseLevel(o.Level)
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Encoding = o.Format
	cfg.EncoderConfig.TimeKey = "ts"
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	cfg.Sampling = nil
	if strings.TrimSpace(o.File) != "" {
		cfg.OutputPaths = []string{o.File}
		cfg.ErrorOutputPaths = []string{o.File}
	}
	return cfg.Build()
}

// Slog returns an *slog.Logger that writes through l, for libraries that take one.
func Slog(l *zap.Logger) *slog.Logger {
	return slog.New(zapslog.NewHandler(l.Core(), zapslog.WithCaller(false)))
}
