// Package natsserver runs an embedded NATS server with JetStream: the local topology's
// message bus (`music nats`) and the private bus of tests that restart it.
package natsserver

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config says where the server listens and keeps its JetStream files.
type Config struct {
	Addr  string `yaml:"addr"`  // host:port; port 0 picks a free one
	Store string `yaml:"store"` // JetStream store directory
	// SyncAlways makes JetStream fsync every write before acknowledging it. Off, the file
	// store syncs every two minutes and a machine crash (not a process crash) can lose
	// acknowledged messages; MUSIC's local topology and tests leave it off, production
	// should turn it on or run a replicated (R3) stream.
	SyncAlways bool   `yaml:"sync_always"`
	LogFile    string `yaml:"log_file"`
	ServerName string `yaml:"server_name"`
}

// Validate names the field that is wrong.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("addr: %q is not host:port: %w", c.Addr, err)
	}
	if c.Store == "" {
		return errors.New("store: a JetStream store directory is required")
	}
	return nil
}

// Start starts a server and waits until it accepts clients. Call Shutdown and
// WaitForShutdown on the result to stop it.
func Start(c Config) (*server.Server, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	host, portStr, _ := net.SplitHostPort(c.Addr)
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("addr: port %q: %w", portStr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: c.ServerName,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   c.Store,
		SyncAlways: c.SyncAlways,
		LogFile:    c.LogFile,
		MaxPayload: 8 << 20,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	if c.LogFile != "" {
		s.ConfigureLogger()
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("nats server on %s not ready within 10s", c.Addr)
	}
	return s, nil
}
