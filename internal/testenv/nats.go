package testenv

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/music-coord/music/internal/natsserver"
)

// NATS returns the URL of the local topology's NATS server (JetStream enabled), starting
// it if needed. Tests share it: name streams with Prefix to stay apart.
func NATS(t testing.TB) string {
	t.Helper()
	tp := Local(t)
	ensure(t, "nats", tp.NATSPort, filepath.Join(tp.Data, "nats", "nats.log"))
	return fmt.Sprintf("nats://127.0.0.1:%d", tp.NATSPort)
}

// Prefix returns a unique upper-case name for this test's JetStream streams and
// consumers. Streams whose names start with it are deleted at cleanup.
func Prefix(t testing.TB) string {
	t.Helper()
	p := strings.ToUpper(UniqueName(t))
	url := NATS(t)
	t.Cleanup(func() { deleteStreams(t, url, p) })
	return p
}

func deleteStreams(t testing.TB, url, prefix string) {
	nc, err := nats.Connect(url)
	if err != nil {
		t.Logf("testenv: cleanup streams %s*: %v", prefix, err)
		return
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	names := js.StreamNames(ctx)
	var doomed []string
	for n := range names.Name() {
		if strings.HasPrefix(n, prefix) {
			doomed = append(doomed, n)
		}
	}
	for _, n := range doomed {
		_ = js.DeleteStream(ctx, n)
	}
}

// Connect opens a NATS connection to url, closed at cleanup.
func Connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name(t.Name()))
	if err != nil {
		t.Fatalf("testenv: connect to nats %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("testenv: jetstream: %v", err)
	}
	return nc, js
}

// PrivateNATS starts a NATS server of the test's own, on a free port with its JetStream
// store in dir (t.TempDir() if empty), for tests that stop and restart the bus. It is
// shut down at cleanup; Restart brings it back on the same port and store.
type PrivateNATS struct {
	t   testing.TB
	cfg natsserver.Config
	srv *server.Server
}

// NewPrivateNATS starts a private server.
func NewPrivateNATS(t testing.TB) *PrivateNATS {
	t.Helper()
	p := &PrivateNATS{t: t, cfg: natsserver.Config{Addr: FreeAddr(t), Store: t.TempDir()}}
	p.start()
	t.Cleanup(p.Stop)
	return p
}

func (p *PrivateNATS) start() {
	s, err := natsserver.Start(p.cfg)
	if err != nil {
		p.t.Fatalf("testenv: private nats: %v", err)
	}
	p.srv = s
}

// URL is the client URL; it stays the same across restarts.
func (p *PrivateNATS) URL() string { return "nats://" + p.cfg.Addr }

// Stop shuts the server down; it is idempotent.
func (p *PrivateNATS) Stop() {
	if p.srv != nil {
		p.srv.Shutdown()
		p.srv.WaitForShutdown()
		p.srv = nil
	}
}

// Restart stops the server and starts it again on the same port and store.
func (p *PrivateNATS) Restart() {
	p.Stop()
	p.start()
}
