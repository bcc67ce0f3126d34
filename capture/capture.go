package capture

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	gomysql "github.com/go-sql-driver/mysql"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/logging"
)

// Capturer tails one site's MariaDB binlog into the site's JetStream stream.
type Capturer struct {
	cfg    Config
	log    *zap.Logger
	m      *Metrics
	filter *Filter

	snapReqs chan snapRequest

	acked    atomic.Pointer[resumePoint]
	dumpConn atomic.Uint32 // MariaDB connection id of the binlog dump
	// byFile: the server did not find the GTID position; dump by the checkpoint's binlog
	// file and offset from now on.
	byFile       atomic.Bool
	startHasFile atomic.Bool

	// snapshotting is set while runInitialSnapshot runs (one at a time).
	snapshotting atomic.Bool

	mu        sync.Mutex
	st        statusState
	health    error
	tableErrs map[string]error
	snapshots map[string]*SnapshotProgress
	ready     chan struct{}
	readyOnce sync.Once

	// autoInc is the warning of the AUTO_INCREMENT start-up check ("" when safe), with its
	// gauge music_capture_auto_increment_unsafe (1 while the site steps by 1).
	autoInc      atomic.Pointer[string]
	autoIncGauge prometheus.Gauge
}

// New checks cfg and returns a capturer; Run starts it. reg may be nil.
func New(cfg Config, log *zap.Logger, reg prometheus.Registerer) (*Capturer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = zap.NewNop()
	}
	c := &Capturer{cfg: cfg, log: log.With(zap.String("site", cfg.Site)), m: NewMetrics(reg, cfg.Site),
		filter: NewFilter(cfg.Include, cfg.Exclude), snapReqs: make(chan snapRequest),
		tableErrs: map[string]error{}, snapshots: map[string]*SnapshotProgress{},
		health: errors.New("capture: not started"), ready: make(chan struct{}), st: statusState{state: StateStarting}}
	c.autoIncGauge = prometheus.NewGauge(prometheus.GaugeOpts{Name: "music_capture_auto_increment_unsafe",
		Help:        "1 while the site runs with auto_increment_increment=1: AUTO_INCREMENT ids of different sites collide and one insert is lost.",
		ConstLabels: prometheus.Labels{"site": cfg.Site}})
	if reg != nil {
		_ = reg.Register(c.autoIncGauge)
	}
	return c, nil
}

// checkAutoIncrement warns (log, gauge, status) when the site steps AUTO_INCREMENT ids by
// 1: concurrent inserts at two sites then take the same ids, and last writer wins keeps
// one of each pair. Every site needs auto_increment_increment >= the number of sites and
// its own auto_increment_offset (deploy/local/mariadb-instance.sh: 16 and the site index).
func (c *Capturer) checkAutoIncrement(ctx context.Context, db *sql.DB) {
	var inc, off int
	if err := db.QueryRowContext(ctx, "SELECT @@global.auto_increment_increment, @@global.auto_increment_offset").Scan(&inc, &off); err != nil {
		c.log.Warn("cannot read auto_increment settings", zap.Error(err))
		return
	}
	warn := ""
	if inc <= 1 {
		warn = fmt.Sprintf("auto_increment_increment=%d: AUTO_INCREMENT ids of concurrent inserts at different sites collide and one insert is lost; "+
			"set auto_increment_increment to an upper bound of the number of sites and auto_increment_offset to this site's index", inc)
		c.autoIncGauge.Set(1)
		c.log.Warn("unsafe AUTO_INCREMENT settings for a mirrored site", zap.Int("auto_increment_increment", inc),
			zap.Int("auto_increment_offset", off), zap.String("why", warn))
	} else {
		c.autoIncGauge.Set(0)
	}
	c.autoInc.Store(&warn)
}

// AutoIncrementWarning is the AUTO_INCREMENT start-up check's warning, "" if safe.
func (c *Capturer) AutoIncrementWarning() string {
	if w := c.autoInc.Load(); w != nil {
		return *w
	}
	return ""
}

// Config returns the effective configuration (defaults filled in).
func (c *Capturer) Config() Config { return c.cfg }

// Metrics returns the capturer's metrics.
func (c *Capturer) Metrics() *Metrics { return c.m }

// Ready is closed once the first binlog session streams.
func (c *Capturer) Ready() <-chan struct{} { return c.ready }

// Acked is the position up to which JetStream acknowledged every event.
func (c *Capturer) Acked() Position {
	if p := c.acked.Load(); p != nil {
		return p.Pos.Clone()
	}
	return nil
}

// Health is nil while capture streams; otherwise what is wrong. Stopped tables are
// reported by TableErrors and do not make the capturer unhealthy.
func (c *Capturer) Health() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.health
}

// TableErrors returns the tables stopped by values capture cannot represent.
func (c *Capturer) TableErrors() map[string]error {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]error, len(c.tableErrs))
	for k, v := range c.tableErrs {
		out[k] = v
	}
	return out
}

func (c *Capturer) setTableError(name string, err error) {
	c.mu.Lock()
	if err == nil {
		delete(c.tableErrs, name)
	} else {
		c.tableErrs[name] = err
	}
	c.mu.Unlock()
}

// Run captures until ctx is cancelled (then it flushes and stores the checkpoint and
// returns nil) or a fatal error: a purged binlog position (*PurgedError) or a bad
// configuration. Lost MariaDB or NATS connections are retried with exponential backoff.
func (c *Capturer) Run(ctx context.Context) error {
	nc, err := nats.Connect(c.cfg.NATSURL, nats.Name("music-capture-"+c.cfg.Site), nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true), nats.ReconnectWait(500*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				c.log.Warn("nats disconnected", zap.Error(err))
				c.natsDown(err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			c.log.Info("nats reconnected", zap.String("url", nc.ConnectedUrl()))
			c.natsDown(nil)
		}))
	if err != nil {
		return fmt.Errorf("capture: connect to nats %s: %w", c.cfg.NATSURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(c.cfg.MaxInFlight),
		jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		return fmt.Errorf("capture: jetstream: %w", err)
	}
	mc, _ := parseDSN(c.cfg.DSN)
	db, err := c.openDB()
	if err != nil {
		return fmt.Errorf("capture: dsn: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(4)
	c.checkAutoIncrement(ctx, db)

	if c.cfg.InitialSnapshot {
		c.startSnapshots(ctx, js)
	}
	backoff := 100 * time.Millisecond
	for {
		began := time.Now()
		err := c.session(ctx, js, db, mc)
		if ctx.Err() != nil {
			c.mu.Lock()
			c.st.state, c.health = StateStopped, errors.New("capture: stopped")
			c.mu.Unlock()
			return nil
		}
		var purged *PurgedError
		if errors.As(err, &purged) && purged.Err != nil && !c.byFile.Load() && c.startHasFile.Load() {
			// MariaDB refuses a GTID position it cannot find in its binlog state, which
			// happens when the domain's sequence numbers were written out of order (a
			// replay into this site with this site's own domain). The checkpoint's file
			// offset is the same point: resume from there.
			c.byFile.Store(true)
			c.m.Errors.WithLabelValues("gtid_position").Inc()
			c.log.Warn("server cannot stream from the GTID position; resuming by binlog file offset", zap.Error(err))
			continue
		}
		if errors.As(err, &purged) {
			c.m.Errors.WithLabelValues("purged").Inc()
			if purged.Tables == nil {
				purged.Tables = c.capturedTableNames(ctx, db)
			}
			if c.cfg.AutoSnapshotOnPurge {
				c.log.Error("binlog purged: changes were lost; auto_snapshot_on_purge recovers", zap.Error(err))
				if rerr := c.autoRecover(ctx, js, db); rerr == nil {
					c.failed(err, StateRetrying) // until the new session makes progress
					continue
				} else {
					c.log.Error("auto_snapshot_on_purge failed", zap.Error(rerr))
				}
			}
			c.mu.Lock()
			c.st.purged = true
			c.mu.Unlock()
			c.failed(err, StateStopped)
			c.m.Purged.Set(1)
			c.log.Error("capture stopped: binlog purged", zap.Error(err))
			return err
		}
		var pe *PublishError
		if errors.As(err, &pe) {
			if g, perr := ParseGTID(pe.GTID); perr == nil && g.Domain == c.cfg.DomainID {
				c.mu.Lock()
				c.st.failedAt = &g
				c.mu.Unlock()
			}
		}
		c.failed(fmt.Errorf("capture: reconnecting: %w", err), StateRetrying)
		c.m.Reconnects.Inc()
		c.st.reconnects.Add(1)
		c.m.Errors.WithLabelValues(errKind(err)).Inc()
		if time.Since(began) > time.Minute {
			backoff = 100 * time.Millisecond
		}
		c.log.Warn("capture session failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
}

func errKind(err error) string {
	var me *mysql.MyError
	var ne net.Error
	switch {
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return "nats"
	case errors.As(err, &me), errors.As(err, &ne):
		return "mariadb"
	}
	return "session"
}

// autoRecover handles a purged binlog with auto_snapshot_on_purge: the checkpoint moves
// to the binlog's current end and every captured table is resnapshotted.
func (c *Capturer) autoRecover(ctx context.Context, js jetstream.JetStream, db *sql.DB) error {
	setup, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := openState(setup, js, c.cfg.StateBucket, c.cfg.Replicas)
	if err != nil {
		return err
	}
	if _, err := c.recoverPurge(setup, st, db); err != nil {
		return err
	}
	c.startSnapshots(ctx, js)
	return nil
}

// startSnapshots runs runInitialSnapshot unless it is running.
func (c *Capturer) startSnapshots(ctx context.Context, js jetstream.JetStream) {
	if !c.snapshotting.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer c.snapshotting.Store(false)
		c.runInitialSnapshot(ctx, js)
	}()
}

// ensureStream creates or updates the site's stream.
func (c *Capturer) ensureStream(ctx context.Context, js jetstream.JetStream) error {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        c.cfg.Stream,
		Description: "MUSIC change events of site " + c.cfg.Site,
		Subjects:    []string{changeevent.SiteSubjects(c.cfg.Site)},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  c.cfg.DuplicateWindow,
		Replicas:    c.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("stream %s: %w", c.cfg.Stream, err)
	}
	return nil
}

// startPosition is the checkpoint, or (first start) the configured start, which is
// stored at once so that a crash before the first checkpoint does not skip changes.
func (c *Capturer) startPosition(ctx context.Context, st *state, db *sql.DB) (resumePoint, error) {
	cp, err := st.loadCheckpoint(ctx)
	if err != nil {
		return resumePoint{}, err
	}
	if cp != nil {
		pos, err := ParsePosition(cp.Position)
		return resumePoint{Pos: pos, File: cp.File, Offset: cp.Offset, ClockUs: cp.ClockUs}, err
	}
	var rp resumePoint
	switch {
	case c.cfg.Start == "earliest":
		// The oldest binlog's start: the GTIDs before it are purged, not lost to capture.
		if _, rp.Pos, err = oldestBinlogState(ctx, db); err != nil {
			return rp, err
		}
	case c.cfg.Start == "current":
		// The binlog's end as file and offset, and the GTID position of that point.
		if rp, err = currentPoint(ctx, db); err != nil {
			return rp, err
		}
	default:
		if file, off, ok := parseFileStart(c.cfg.Start); ok {
			rp.File, rp.Offset = file, off
			if rp.Pos, err = binlogGTIDPos(ctx, db, file, off); err != nil {
				return rp, err
			}
		} else {
			rp.Pos, _ = ParsePosition(c.cfg.Start)
		}
	}
	if c.cfg.InitialSnapshot {
		if err := st.markInitialSnapshot(ctx, initialSnapshot{}); err != nil {
			return rp, err
		}
	}
	if err := st.saveCheckpoint(ctx, rp); err != nil {
		return rp, err
	}
	c.log.Info("no checkpoint: starting", zap.String("start", c.cfg.Start), zap.String("position", rp.Pos.String()),
		zap.String("file", rp.File), zap.Uint32("offset", rp.Offset))
	return rp, nil
}

// binlogGTIDPos is the GTID position at a binlog file offset (MariaDB's BINLOG_GTID_POS).
func binlogGTIDPos(ctx context.Context, db *sql.DB, file string, off uint32) (Position, error) {
	var s sql.NullString
	if err := db.QueryRowContext(ctx, "SELECT BINLOG_GTID_POS(?, ?)", file, off).Scan(&s); err != nil {
		return nil, fmt.Errorf("binlog_gtid_pos(%s, %d): %w", file, off, err)
	}
	if !s.Valid {
		return nil, fmt.Errorf("binlog_gtid_pos(%s, %d): no such binlog position", file, off)
	}
	return ParsePosition(s.String)
}

// parseFileStart parses a start of the form "binlog:<file>:<offset>".
func parseFileStart(s string) (string, uint32, bool) {
	rest, ok := strings.CutPrefix(s, "binlog:")
	if !ok {
		return "", 0, false
	}
	i := strings.LastIndexByte(rest, ':')
	if i <= 0 {
		return "", 0, false
	}
	off, err := strconv.ParseUint(rest[i+1:], 10, 32)
	if err != nil || off == 0 {
		return "", 0, false
	}
	return rest[:i], uint32(off), true
}

func (c *Capturer) syncer(mc *gomysql.Config, lazy *lazyRows) *replication.BinlogSyncer {
	host, portStr, _ := net.SplitHostPort(mc.Addr)
	port, _ := strconv.Atoi(portStr)
	return replication.NewBinlogSyncer(replication.BinlogSyncerConfig{
		ServerID: c.cfg.ServerID, Flavor: mysql.MariaDBFlavor, Host: host, Port: uint16(port),
		User: mc.User, Password: mc.Passwd, Charset: "utf8mb4",
		TimestampStringLocation: time.UTC,
		HeartbeatPeriod:         c.cfg.Heartbeat,
		ReadTimeout:             3*c.cfg.Heartbeat + 10*time.Second,
		DisableRetrySync:        true,
		EventCacheCount:         256, // decoded events queued by go-mysql (bounds memory)
		RowsEventDecodeFunc:     lazy.parse,
		Option:                  c.filterOnServer,
		Logger:                  logging.Slog(c.log.Named("go-mysql")),
	})
}

// session runs one binlog dump from the checkpoint until an error or cancellation.
func (c *Capturer) session(ctx context.Context, js jetstream.JetStream, db *sql.DB, mc *gomysql.Config) error {
	setup, cancelSetup := context.WithTimeout(ctx, 30*time.Second)
	defer cancelSetup()
	if err := c.ensureStream(setup, js); err != nil {
		return err
	}
	st, err := openState(setup, js, c.cfg.StateBucket, c.cfg.Replicas)
	if err != nil {
		return err
	}
	rp, err := c.startPosition(setup, st, db)
	if err != nil {
		return err
	}
	c.startHasFile.Store(rp.hasFile())
	start := rp.Pos
	// Only the site's own domain is positioned: the other domains are changes replayed by
	// MUSIC's apply (never published), and their sequence numbers, chosen by the origin,
	// need not be monotonic here, which would make MariaDB refuse the position (tried:
	// "the binlog on the master is missing the GTID ... requested by the slave"). The price:
	// the server sends the other domains from the start of the binlog it keeps; replays are
	// flagged skip_replication, so it filters those out before sending.
	start = start.Only(c.cfg.DomainID)
	rp.Pos = start
	c.acked.Store(&rp)
	c.checkpointed(rp)
	c.m.setCheckpoint(start.String())
	// Never move past own-domain transactions that were not published: the binlog must
	// still hold everything after the checkpoint.
	if err := c.checkCoverage(setup, db, start); err != nil {
		return err
	}
	schema, err := newSchemaTracker(setup, st, db, start)
	if err != nil {
		return err
	}
	lazy := newLazyRows()
	syncer := c.syncer(mc, lazy)
	defer syncer.Close()
	streamer, err := c.startDump(syncer, rp)
	if err != nil {
		return err
	}

	readCtx, cancelRead := context.WithCancel(ctx)
	defer cancelRead()
	pipeCtx, cancelPipe := context.WithCancel(context.Background())
	defer cancelPipe()
	budget := int64(2*c.cfg.MaxInFlight + c.cfg.MaxTxnBuffer)
	p := newPipeline(js, c.cfg.Site, c.m, c.cfg.MaxInFlight, max(1, runtime.GOMAXPROCS(0)), budget, rp,
		msgLimits{events: c.cfg.MessageEvents, bytes: c.cfg.MessageBytes, part: c.cfg.PartSize})
	p.onAck = func(rp *resumePoint) { c.acked.Store(rp) }
	p.onProgress = func(events, txns int) {
		c.st.events.Add(int64(events))
		c.st.txns.Add(int64(txns))
		c.st.inFlight.Store(p.inFlight.Load())
		c.progressed()
	}

	var wg sync.WaitGroup
	var pipeErr error
	var once sync.Once
	fail := func(err error) {
		if err != nil {
			once.Do(func() { pipeErr = err; cancelPipe(); cancelRead() })
		}
	}
	for range p.workers {
		wg.Go(func() { p.encoder(pipeCtx) })
	}
	wg.Go(func() { fail(p.publish(pipeCtx)) })
	ackDone := make(chan struct{})
	go func() { defer close(ackDone); fail(p.ack(pipeCtx)) }()
	cpDone := make(chan struct{})
	go func() { defer close(cpDone); c.checkpointer(pipeCtx, st, p, ackDone) }()

	r := &reader{c: c, p: p, lazy: lazy, schema: schema, pos: start.Clone(), clockUs: rp.ClockUs, tables: map[uint64]*tableSchema{},
		noPK: map[string]bool{}, stopped: map[string]error{}, db: db}
	if g, ok := start[c.cfg.DomainID]; ok {
		r.start = &g
	}
	for name, err := range c.TableErrors() {
		r.stopped[name] = err
	}
	c.streaming()
	c.readyOnce.Do(func() { close(c.ready) })
	readErr := r.run(readCtx, streamer)
	r.abortSnapshot()
	p.close()
	// Drain: what was read is published and acknowledged (bounded by a timeout), then the
	// final checkpoint is stored.
	drain := time.AfterFunc(15*time.Second, cancelPipe)
	wg.Wait()
	<-ackDone
	drain.Stop()
	cancelPipe()
	<-cpDone
	if pipeErr != nil && !errors.Is(pipeErr, context.Canceled) {
		return pipeErr
	}
	if errors.Is(readErr, context.Canceled) && ctx.Err() == nil && pipeErr != nil {
		return pipeErr
	}
	return readErr
}

// startDump starts the binlog dump at rp: by GTID position, or by binlog file offset once
// the server refused the GTID position (see Run).
func (c *Capturer) startDump(syncer *replication.BinlogSyncer, rp resumePoint) (*replication.BinlogStreamer, error) {
	var streamer *replication.BinlogStreamer
	var err error
	if c.byFile.Load() && rp.hasFile() {
		c.log.Warn("binlog dump by file offset (the server did not find the GTID position)",
			zap.String("file", rp.File), zap.Uint32("offset", rp.Offset), zap.String("position", rp.Pos.String()))
		streamer, err = syncer.StartSync(mysql.Position{Name: rp.File, Pos: rp.Offset})
	} else {
		gset, perr := mysql.ParseMariadbGTIDSet(rp.Pos.String())
		if perr != nil {
			return nil, perr
		}
		streamer, err = syncer.StartSyncGTID(gset)
	}
	if err != nil {
		return nil, fmt.Errorf("start binlog dump at %s: %w", rp.Pos, classifyBinlogError(err, rp.Pos, c.cfg.DomainID))
	}
	c.dumpConn.Store(syncer.LastConnectionID())
	c.log.Info("binlog dump started", zap.String("position", rp.Pos.String()), zap.Uint32("server_id", c.cfg.ServerID))
	return streamer, nil
}

// checkpointer stores the acknowledged position every CheckpointInterval and once more
// when the acknowledgements are drained.
func (c *Capturer) checkpointer(ctx context.Context, st *state, p *pipeline, ackDone <-chan struct{}) {
	t := time.NewTicker(c.cfg.CheckpointInterval)
	defer t.Stop()
	saved := p.Acked()
	save := func() {
		rp := p.Acked()
		c.acked.Store(&rp)
		s := rp.Pos.String()
		if s == saved.Pos.String() && rp.File == saved.File && rp.Offset == saved.Offset {
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := st.saveCheckpoint(sctx, rp); err != nil {
			c.m.Errors.WithLabelValues("checkpoint").Inc()
			c.log.Warn("checkpoint not stored", zap.Error(err))
			return
		}
		saved = rp
		c.checkpointed(rp)
		c.m.setCheckpoint(s)
		c.m.CheckpointTime.SetToCurrentTime()
	}
	for {
		select {
		case <-t.C:
			save()
		case <-ackDone:
			save()
			return
		case <-ctx.Done():
			<-ackDone
			save()
			return
		}
	}
}

// openDB opens a database/sql pool on the source with UTC session time zone.
func (c *Capturer) openDB() (*sql.DB, error) {
	mc, err := parseDSN(c.cfg.DSN)
	if err != nil {
		return nil, err
	}
	mc.ParseTime, mc.Loc = false, time.UTC
	if mc.Params == nil {
		mc.Params = map[string]string{}
	}
	mc.Params["time_zone"] = "'+00:00'" // TIMESTAMP values in UTC, as in the binlog events
	return sql.Open("mysql", mc.FormatDSN())
}

// filterOnServer asks the server not to send transactions flagged @@skip_replication=1 at
// all (MariaDB's dump thread honours skip_replication on the dump connection, as for a
// replica with replicate_events_marked_for_skip=FILTER_ON_MASTER): apply replays other
// sites' changes with the flag, so this site's capture does not even read them. The reader
// drops flagged transactions too, should a server send them anyway.
func (c *Capturer) filterOnServer(conn *client.Conn) error {
	if !c.cfg.DropSkipReplication {
		return nil
	}
	_, err := conn.Execute("SET skip_replication=1")
	return err
}
