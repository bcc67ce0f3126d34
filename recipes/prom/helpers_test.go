package prom_test

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/zap/zaptest"

	"github.com/music-coord/music/internal/testenv"
	"github.com/music-coord/music/recipes/prom"
)

// site is one Manager under test with its own ZooKeeper session.
type site struct {
	*prom.Manager
	conn *zk.Conn
}

// newSite starts a Manager for name under root, connected to addrs (ZooKeeper or a
// proxy to it). Cleanup closes the Manager and its connection.
func newSite(t testing.TB, name, root string, addrs []string, opt prom.Options) *site {
	t.Helper()
	conn := connect(t, addrs)
	opt.Root = root
	opt.Log = zaptest.NewLogger(t).Named(name)
	m, err := prom.New(conn, name, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return &site{Manager: m, conn: conn}
}

// connect opens a ZooKeeper session with a 4s session timeout and waits for it.
func connect(t testing.TB, addrs []string) *zk.Conn {
	t.Helper()
	conn, events, err := zk.Connect(addrs, 4*time.Second, zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.State == zk.StateHasSession {
				go func() { // the library blocks on a full event channel
					for range events {
					}
				}()
				return conn
			}
		case <-timeout:
			t.Fatal("zookeeper session not established within 20s")
		}
	}
}

// use calls Use with a timeout and fails the test on error.
func use(t testing.TB, s *site, resource string, timeout time.Duration) (prom.Ownership, func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	o, release, err := s.Use(ctx, resource)
	if err != nil {
		t.Fatalf("%s: Use(%s): %v", s.Site(), resource, err)
	}
	return o, release
}

// waitFor polls cond every few milliseconds until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// proxy forwards TCP connections to ZooKeeper until cut, which drops every connection
// and refuses new ones until heal: a network partition of the sessions behind it.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
}

func newProxy(t testing.TB) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: testenv.ZooKeeper(t)[0]}
	t.Cleanup(func() { _ = ln.Close(); p.partition() })
	go p.serve()
	return p
}

func (p *proxy) addr() []string { return []string{p.ln.Addr().String()} }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
		go func() { _, _ = io.Copy(c, up); _ = c.Close() }()
	}
}

func (p *proxy) partition() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

func (p *proxy) heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}
