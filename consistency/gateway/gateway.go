package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Table is a table, qualified with its database. Name "*" stands for every table of DB,
// DB "*" for every database (see the package doc).
type Table struct{ DB, Name string }

func (t Table) String() string { return t.DB + "." + t.Name }

// Hooks is what the gateway asks before and after transactions that touch sync tables.
// conn is the MariaDB connection id of the client's backend connection (what
// CONNECTION_ID() returns to the client). Calls for one conn never overlap.
type Hooks interface {
	// IsSync reports whether db.table is a sync table. IsSync(db, "*") reports whether db
	// has any sync table, IsSync("*", "*") whether there is any.
	IsSync(db, table string) bool
	// Acquire is called before forwarding a statement that touches sync tables (tables lists
	// those not yet acquired by the connection's current transaction). It blocks until they
	// may be used. A non-nil error is sent to the client as a MySQL ERR packet instead of
	// running the statement (use *SQLError for code/SQLSTATE/message; other errors become
	// 1105/HY000), and the statement is not forwarded. An Acquire that fails must hold none
	// of its tables. ctx ends when the client disconnects or the gateway stops.
	Acquire(ctx context.Context, conn uint32, tables []Table) error
	// Committed is called when a transaction that acquired tables has committed at
	// MariaDB, with the commit's GTID ("domain-server-seq") and every table it acquired,
	// BEFORE the client sees the response that ended the transaction. It blocks until the
	// commit is durable. A non-nil error replaces the held response with an ERR packet.
	// ctx ends only when the gateway is stopped for good.
	Committed(ctx context.Context, conn uint32, tables []Table, gtid string) error
	// Ended is called exactly once per transaction that called Acquire, when it ended
	// (after Committed, or on rollback, or when the client connection closes), so holds
	// can be released. tables are those of the successful Acquire calls (maybe none).
	Ended(conn uint32, tables []Table)
}

// SQLError is an error as MySQL reports it; a hook returns one to choose what the client
// gets.
type SQLError struct {
	Code    uint16
	State   string // SQLSTATE, 5 characters
	Message string
}

func (e *SQLError) Error() string {
	return fmt.Sprintf("ERROR %d (%s): %s", e.Code, e.State, e.Message)
}

// sqlError is err as the client will see it.
func sqlError(err error) *SQLError {
	var se *SQLError
	if errors.As(err, &se) {
		return se
	}
	return &SQLError{Code: 1105, State: "HY000", Message: err.Error()}
}

var (
	// ErrProtocol marks a packet that breaks the MySQL protocol; the connection is closed.
	ErrProtocol = errors.New("gateway: protocol violation")
	// ErrTooLarge marks a packet over Config.MaxPacket.
	ErrTooLarge = errors.New("gateway: packet too large")
	// errQuit ends a connection on COM_QUIT.
	errQuit = errors.New("gateway: client quit")
)

// Config configures a Gateway.
type Config struct {
	Listen  string      // host:port
	Backend string      // MariaDB host:port
	TLS     *tls.Config // nil: clients may not use TLS (CLIENT_SSL cleared in the greeting)
	Hooks   Hooks       // nil: plain pass-through
	Log     *zap.Logger
	// MaxPacket bounds one logical packet (default 1 GiB, MariaDB's max_allowed_packet
	// limit); a longer one closes the connection.
	MaxPacket int
	// DialTimeout bounds connecting to the backend and the handshake (default 10 s).
	DialTimeout time.Duration
	// ShutdownGrace is how long Serve lets commands in flight finish after its context
	// ends before it closes every connection (default 10 s).
	ShutdownGrace time.Duration
}

// Gateway accepts MySQL-protocol clients and relays each to its own backend connection.
type Gateway struct {
	cfg     Config
	ln      net.Listener
	log     *zap.Logger
	metrics *metrics

	// hard ends when connections are closed by force; Committed runs under it.
	hard     context.Context
	hardStop context.CancelFunc

	mu    sync.Mutex
	conns map[*conn]struct{}
	wg    sync.WaitGroup
}

// New validates cfg and listens on cfg.Listen; Serve accepts.
func New(cfg Config) (*Gateway, error) {
	if cfg.Backend == "" {
		return nil, errors.New("gateway: config: backend is empty")
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.MaxPacket <= 0 {
		cfg.MaxPacket = 1 << 30
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 10 * time.Second
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("gateway: listen: %w", err)
	}
	g := &Gateway{cfg: cfg, ln: ln, log: cfg.Log, metrics: newMetrics(), conns: map[*conn]struct{}{}}
	g.hard, g.hardStop = context.WithCancel(context.Background())
	return g, nil
}

// Addr is the address the gateway listens on.
func (g *Gateway) Addr() string { return g.ln.Addr().String() }

// Collectors are the gateway's Prometheus metrics.
func (g *Gateway) Collectors() []prometheus.Collector { return g.metrics.collectors() }

// Serve accepts clients until ctx ends, then shuts down in order: it stops listening,
// closes each connection when it waits for its next command, closes the rest after
// Config.ShutdownGrace, and returns once every connection's hooks have ended. A gateway
// serves once.
func (g *Gateway) Serve(ctx context.Context) error {
	defer g.hardStop()
	stop := context.AfterFunc(ctx, func() { g.ln.Close() })
	defer stop()
	var err error
	for {
		nc, aerr := g.ln.Accept()
		if aerr != nil {
			if ctx.Err() == nil {
				err = fmt.Errorf("gateway: accept: %w", aerr)
			}
			break
		}
		c := newConn(ctx, g, nc)
		g.mu.Lock()
		g.conns[c] = struct{}{}
		g.mu.Unlock()
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			c.serve()
			g.mu.Lock()
			delete(g.conns, c)
			g.mu.Unlock()
		}()
	}
	g.ln.Close()
	g.drain()
	return err
}

// drain waits for connections to end, closing them all after the grace period.
func (g *Gateway) drain() {
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(g.cfg.ShutdownGrace):
	}
	g.hardStop()
	g.mu.Lock()
	for c := range g.conns {
		c.closeSockets()
	}
	g.mu.Unlock()
	<-done
}

// metrics are the gateway's Prometheus collectors.
type metrics struct {
	conns    prometheus.Gauge
	accepted prometheus.Counter
	commands *prometheus.CounterVec
	errors   *prometheus.CounterVec
	hooks    *prometheus.HistogramVec
}

func newMetrics() *metrics {
	return &metrics{
		conns: prometheus.NewGauge(prometheus.GaugeOpts{Name: "music_gateway_connections",
			Help: "Client connections open."}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{Name: "music_gateway_connections_total",
			Help: "Client connections accepted."}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "music_gateway_commands_total",
			Help: "Client commands relayed, by command."}, []string{"command"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "music_gateway_errors_total",
			Help: "Errors: connections closed (protocol, backend, handshake) and hook refusals (acquire, committed)."},
			[]string{"kind"}),
		hooks: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "music_gateway_hook_duration_seconds",
			Help: "Time spent in Acquire and Committed.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)},
			[]string{"hook"}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.conns, m.accepted, m.commands, m.errors, m.hooks}
}
