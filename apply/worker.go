package apply

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/music-coord/music/changeevent"
)

// Config configures the worker that follows one origin site.
type Config struct {
	Local         string        // this site's name
	Origin        string        // the origin site followed; Local itself for the own-stream follower (Txn.Own)
	Stream        string        // default changeevent.StreamName(Origin)
	Durable       string        // consumer name; default music_apply_<local>_<origin>
	FilterSubject string        // default changeevent.SiteSubjects(Origin)
	Workers       int           // transactions applied concurrently; default 8
	MaxInFlight   int           // transactions queued or running; default 256
	MaxAckPending int           // unacknowledged messages (the largest transaction's messages must fit); default 20000
	FetchBatch    int           // messages pulled per request; default 500
	AckWait       time.Duration // redelivery timeout of an unacknowledged message; default 2m
	PollInterval  time.Duration // consumer info / lag refresh; default 2s
	// MaxRetries is the number of failed attempts of a transaction on a sink (other than
	// outages, see Transient, which are retried forever) after which its tables are
	// quarantined; default 10. Attempts are spaced by RetryBackoff (default 50ms), doubling
	// up to MaxRetryBackoff (default 5s).
	MaxRetries      int
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
	// Quarantine is the set of quarantined tables; nil: the worker's own. Workers of
	// several origins may share one, so a table quarantined for one origin's change is
	// skipped for all (the resync then covers all of them).
	Quarantine *QuarantineSet
	// Gate admits transactions on sync tables (nil: every table is async).
	Gate SyncGate
}

func (c *Config) setDefaults() {
	if c.Stream == "" {
		c.Stream = changeevent.StreamName(c.Origin)
	}
	if c.Durable == "" {
		c.Durable = "music_apply_" + changeevent.Token(c.Local) + "_" + changeevent.Token(c.Origin)
	}
	if c.FilterSubject == "" {
		c.FilterSubject = changeevent.SiteSubjects(c.Origin)
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Workers, 8)
	def(&c.MaxInFlight, 256)
	def(&c.MaxAckPending, 20000)
	def(&c.FetchBatch, 500)
	def(&c.MaxRetries, 10)
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defd(&c.AckWait, 2*time.Minute)
	defd(&c.PollInterval, 2*time.Second)
	defd(&c.RetryBackoff, 50*time.Millisecond)
	defd(&c.MaxRetryBackoff, 5*time.Second)
	if c.Quarantine == nil {
		c.Quarantine = NewQuarantineSet()
	}
}

// Worker follows one origin's stream and applies its transactions to sinks.
type Worker struct {
	cfg     Config
	js      jetstream.JetStream
	sinks   []Sink
	metrics *Metrics
	log     *zap.Logger
	status  status
	quar    *QuarantineSet
}

// NewWorker returns a worker; Run starts it.
func NewWorker(js jetstream.JetStream, cfg Config, sinks []Sink, metrics *Metrics, log *zap.Logger) (*Worker, error) {
	if cfg.Local == "" || cfg.Origin == "" {
		return nil, errors.New("apply: worker needs Local and Origin")
	}
	if len(sinks) == 0 {
		return nil, errors.New("apply: worker needs a sink")
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	cfg.setDefaults()
	w := &Worker{cfg: cfg, js: js, sinks: sinks, metrics: metrics, quar: cfg.Quarantine,
		log: log.With(zap.String("local", cfg.Local), zap.String("origin", cfg.Origin))}
	w.status.s = OriginStatus{Local: cfg.Local, Origin: cfg.Origin, Stream: cfg.Stream, Consumer: cfg.Durable,
		Tables: map[string]TableStatus{}}
	w.quar.notify(w.quarantineChanged)
	w.quarantineChanged()
	return w, nil
}

// Status returns a snapshot of the worker's status.
func (w *Worker) Status() OriginStatus { return w.status.snapshot() }

// Quarantine returns the worker's set of quarantined tables.
func (w *Worker) Quarantine() *QuarantineSet { return w.quar }

// Release lifts the quarantine of table ("db.table"): its later changes apply again. The
// changes skipped while it was quarantined (TableStatus.Skipped, first and last GTID) are
// not applied: release the table when its resync starts (the resync brings the rows the
// skipped changes wrote, and the conflict rule keeps whichever is newer), not after it
// ends, or the changes skipped in between are missed. It reports whether the table was
// quarantined.
func (w *Worker) Release(table string) bool {
	had := w.quar.Release(table)
	if had {
		w.log.Info("quarantine released", zap.String("table", table))
	}
	return had
}

// quarantineChanged brings the status and gauge in line with the quarantine set.
func (w *Worker) quarantineChanged() {
	q := w.quar.Quarantined()
	w.metrics.Quarantined.WithLabelValues(w.cfg.Origin).Set(float64(len(q)))
	w.status.update(func(st *OriginStatus) {
		st.Quarantined = st.Quarantined[:0]
		for t := range q {
			st.Quarantined = append(st.Quarantined, t)
		}
		sort.Strings(st.Quarantined)
		for t, ts := range st.Tables {
			if _, in := q[t]; !in && ts.Quarantined {
				ts.Quarantined, ts.QuarantineReason = false, ""
				ts.LastError = ""
				st.Tables[t] = ts
			}
		}
		for t, why := range q {
			ts := st.Tables[t]
			if !ts.Quarantined {
				ts.Quarantined, ts.QuarantineReason, ts.QuarantinedAt = true, why.Reason, why.Since
				ts.Skipped, ts.SkippedFirstGTID, ts.SkippedLastGTID, ts.skippedSinceUs = 0, "", "", 0
				st.Tables[t] = ts
			}
		}
		clearOriginError(st)
	})
}

// run is the state of one Run.
type run struct {
	asm   *assembler
	track *tracker
	sched *scheduler
	lag   *lagTracker
	cons  jetstream.Consumer
	// parts
	joiner    *changeevent.Joiner
	partSeqs  map[string][]uint64 // stream sequences of the parts held, per event (PartOfHeader)
	partsDone *recent             // events whose parts were all joined
	// abandoned transactions (more messages than MaxAckPending): later events are
	// acknowledged and their tables quarantined too.
	abandoned  map[string]string
	assembling atomic.Int64
	// streamed transactions being applied chunk by chunk (see stream.go), by Transaction.ID
	streams map[string]*streamTxn
	nc      *nats.Conn // for acknowledgements that keep no message body (tracker.lighten)
}

// Run consumes and applies until ctx ends, then waits for running applies to stop and
// returns nil. It does not drain: what is not acknowledged is redelivered to the next Run.
// Errors (stream missing, NATS down) are logged, shown in the status and retried with
// exponential backoff.
func (w *Worker) Run(ctx context.Context) error {
	var r *run
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := w.consume(ctx, &r)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			w.log.Warn("apply consumer interrupted; retrying", zap.Error(err), zap.Duration("backoff", backoff))
			w.status.fail(err, "")
			_ = Sleep(ctx, backoff)
			backoff = min(backoff*2, 10*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
	}
	if r != nil {
		r.sched.wait()
	}
	return nil
}

// consume binds the consumer (first time: positioned after the acknowledged floor, so a
// restarted worker gets unacknowledged messages again at once) and handles messages until
// the iterator fails.
func (w *Worker) consume(ctx context.Context, rp **run) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if *rp == nil {
		cons, err := w.bind(cctx)
		if err != nil {
			return err
		}
		*rp = &run{asm: newAssembler(100000), sched: newScheduler(w.cfg.MaxInFlight, w.cfg.Workers), cons: cons,
			track: newTracker(func(err error) { w.log.Debug("ack failed", zap.Error(err)) }), lag: newLagTracker(),
			joiner: changeevent.NewJoiner(), partSeqs: map[string][]uint64{}, partsDone: newRecent(100000),
			abandoned: map[string]string{}, streams: map[string]*streamTxn{}, nc: w.js.Conn()}
		go w.poll(ctx, *rp)
	}
	r := *rp
	if r.cons == nil {
		cons, err := w.bind(cctx)
		if err != nil {
			return err
		}
		r.cons = cons
	}
	it, err := r.cons.Messages(jetstream.PullMaxMessages(w.cfg.FetchBatch))
	if err != nil {
		r.cons = nil
		return fmt.Errorf("apply: consume %s: %w", w.cfg.Stream, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// Bind again: messages the iterator had buffered are gone with it, and a
			// recreated consumer delivers them again at once rather than after AckWait.
			r.cons = nil
			return fmt.Errorf("apply: next message of %s: %w", w.cfg.Stream, err)
		}
		if err := w.handle(ctx, r, msg); err != nil {
			return err
		}
	}
}

// bind creates the durable consumer, recreating it after its acknowledged floor if it has
// unacknowledged messages (so they come again at once, not after AckWait) or an older
// acknowledgement policy.
func (w *Worker) bind(ctx context.Context) (jetstream.Consumer, error) {
	cc := jetstream.ConsumerConfig{
		Durable: w.cfg.Durable, FilterSubject: w.cfg.FilterSubject, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: w.cfg.AckWait, MaxAckPending: w.cfg.MaxAckPending, DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxRequestBatch: w.cfg.FetchBatch,
	}
	stream, err := w.js.Stream(ctx, w.cfg.Stream)
	if err != nil {
		return nil, fmt.Errorf("apply: stream %s: %w", w.cfg.Stream, err)
	}
	if old, err := stream.Consumer(ctx, w.cfg.Durable); err == nil {
		info := old.CachedInfo()
		floor := info.AckFloor.Stream
		if info.NumAckPending == 0 && info.Config.AckPolicy == cc.AckPolicy {
			// The delivery start cannot change on an existing consumer: keep its own.
			cc.DeliverPolicy, cc.OptStartSeq = info.Config.DeliverPolicy, info.Config.OptStartSeq
			c, err := stream.CreateOrUpdateConsumer(ctx, cc)
			if err != nil {
				return nil, fmt.Errorf("apply: update consumer %s: %w", w.cfg.Durable, err)
			}
			return c, nil
		}
		if err := stream.DeleteConsumer(ctx, w.cfg.Durable); err != nil {
			return nil, fmt.Errorf("apply: reset consumer %s: %w", w.cfg.Durable, err)
		}
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, floor+1
		w.log.Info("resuming after the acknowledged floor", zap.Uint64("floor", floor),
			zap.Int("unacknowledged", info.NumAckPending))
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("apply: consumer %s: %w", w.cfg.Durable, err)
	}
	c, err := stream.CreateOrUpdateConsumer(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("apply: create consumer %s: %w", w.cfg.Durable, err)
	}
	return c, nil
}

// handle files one message: joins parts, decodes the events, assembles transactions
// and submits complete ones (or snapshot rows) to the scheduler, which blocks when full
// (back-pressure).
func (w *Worker) handle(ctx context.Context, r *run, msg jetstream.Msg) error {
	meta, err := msg.Metadata()
	if err != nil {
		return fmt.Errorf("apply: message metadata: %w", err)
	}
	seq := meta.Sequence.Stream
	if !r.track.add(seq, msg) {
		w.log.Debug("redelivery of a held message dropped", zap.Uint64("seq", seq), zap.Uint64("delivered", meta.NumDelivered))
		return nil
	}
	body, seqs := msg.Data(), []uint64{seq}
	info, isPart, err := changeevent.ParsePart(msg.Headers().Get)
	if err != nil {
		w.reject([]string{subjectTable(msg.Subject())}, "", 0, nil, fmt.Errorf("stream sequence %d: %w", seq, err))
		r.track.complete(seq)
		return nil
	}
	if isPart {
		if r.partsDone.has(info.Of) {
			r.track.complete(seq) // a part of an event joined already (its ack was lost)
			return nil
		}
		r.partSeqs[info.Of] = append(r.partSeqs[info.Of], seq)
		whole, done := r.joiner.Add(info, body)
		if !done {
			return nil
		}
		body, seqs = whole, r.partSeqs[info.Of]
		delete(r.partSeqs, info.Of)
		r.partsDone.add(info.Of)
	}
	events, err := changeevent.DecodeMessage(body)
	if err != nil {
		tables := []string{subjectTable(msg.Subject())}
		if len(events) > 0 {
			tables = tablesOf(events)
		}
		w.reject(tables, "", 0, events, fmt.Errorf("stream sequence %d: %w", seq, err))
		r.track.complete(seqs...)
		return nil
	}
	if events[0].Source.Name != w.cfg.Origin {
		r.track.complete(seqs...) // not this origin's change (the local site's own, or misrouted)
		return nil
	}
	if IsSnapshot(events[0]) {
		return w.snapshot(ctx, r, events, seqs)
	}
	id := events[0].Transaction.ID
	if st := r.streams[id]; st != nil {
		return w.feedStream(ctx, r, st, events, seqs)
	}
	if why, ok := r.abandoned[id]; ok { // the rest of a transaction given up (counted once)
		for _, t := range tablesOf(events) {
			if w.quar.Quarantine(t, fmt.Sprintf("gtid %s: %s", events[0].Source.GTID, why)) {
				w.log.Error("table quarantined: its transaction cannot be assembled", zap.String("table", t),
					zap.String("gtid", events[0].Source.GTID))
			}
		}
		r.track.complete(seqs...)
		return nil
	}
	if !r.asm.holds(id) && !r.asm.finished.has(id) {
		switch {
		case streamStart(events):
			return w.startStream(ctx, r, events, seqs)
		case remnant(events):
			// The rest of a transaction whose first messages were acknowledged, i.e. applied
			// by every sink (a crash or lost acknowledgements between its messages' acks).
			w.log.Info("rest of an applied transaction acknowledged", zap.String("gtid", id),
				zap.Int("first_index", events[0].Transaction.Index), zap.Uint64s("seqs", seqs))
			r.track.complete(seqs...)
			return nil
		}
	}
	done, p, created, dup, err := r.asm.add(events, body, seqs)
	if created && done == nil {
		p.tok = r.lag.begin(p.tables, p.tsUs)
		r.assembling.Add(1)
	}
	if !created && (done != nil || err != nil) {
		r.assembling.Add(-1)
	}
	switch {
	case dup:
		w.log.Debug("events held already or of a finished transaction dropped", zap.Uint64s("seqs", seqs), zap.String("gtid", id))
		r.track.complete(seqs...)
		return nil
	case err != nil:
		r.lag.end(p.tok)
		w.reject(p.tables, p.gtid, p.tsUs, events, err)
		r.track.complete(p.seqs...)
		return nil
	case done == nil:
		if len(p.seqs) >= w.cfg.MaxAckPending {
			w.abandon(r, p)
		}
		return nil
	}
	r.lag.end(done.tok)
	tx, err := NewTxn(done.events)
	if err != nil {
		w.reject(done.tables, done.events[0].Source.GTID, commitUs(done.events[0].Source), done.events, err)
		r.track.complete(done.seqs...)
		return nil
	}
	tx.Own = w.cfg.Origin == w.cfg.Local
	keys, err := w.orderedKeys(ctx, r, tx)
	if err != nil {
		return err
	}
	w.log.Debug("transaction assembled", zap.String("gtid", tx.ID), zap.Int("events", len(tx.Events)), zap.Int("messages", len(done.seqs)))
	tok := r.lag.begin(done.tables, tx.Version.TsUs)
	if tx.Own && w.cfg.Gate != nil {
		w.cfg.Gate.Received(tx)
	}
	return r.sched.submitTxn(ctx, tx, keys, func() {
		if w.exec(ctx, tx, done.tables) {
			r.track.complete(done.seqs...)
			r.lag.end(tok)
		}
	})
}

// abandon gives up a transaction that holds MaxAckPending messages and is still not
// complete: the consumer cannot deliver its next message, so it could never be
// assembled, and every other table would stall behind it. Its tables are quarantined
// and its messages acknowledged (the rest of it too, as it comes).
func (w *Worker) abandon(r *run, p *partial) {
	err := fmt.Errorf("transaction %s: %d messages delivered and still incomplete (%d events of %s): it cannot be assembled within max_ack_pending %d; raise max_ack_pending and resync the tables",
		p.id, len(p.seqs), len(p.indexes), totalText(p.total), w.cfg.MaxAckPending)
	for _, t := range p.tables {
		w.metrics.Unassembled.WithLabelValues(w.cfg.Origin, t).Inc()
	}
	w.log.Error("transaction cannot be assembled; quarantining its tables", zap.String("gtid", p.gtid),
		zap.Strings("tables", p.tables), zap.Int("messages", len(p.seqs)), zap.Error(err))
	r.asm.drop(p)
	r.assembling.Add(-1)
	r.lag.end(p.tok)
	r.abandoned[p.id] = err.Error()
	w.giveUp(p.tables, p.gtid, p.tsUs, nil, err)
	r.track.complete(p.seqs...)
}

func totalText(total int) string {
	if total == 0 {
		return "an unknown total"
	}
	return fmt.Sprint(total)
}

// snapshot submits a message of snapshot rows: independent rows, in transactions of rows
// with the same version (NewSnapshotTxns); the message is acknowledged once all are done.
func (w *Worker) snapshot(ctx context.Context, r *run, events []*changeevent.Event, seqs []uint64) error {
	txs, err := NewSnapshotTxns(events)
	if err != nil {
		w.reject(tablesOf(events), events[0].Source.GTID, commitUs(events[0].Source), events, err)
		r.track.complete(seqs...)
		return nil
	}
	left := atomic.Int64{}
	left.Store(int64(len(txs)))
	for _, tx := range txs {
		tx.Own = w.cfg.Origin == w.cfg.Local
		tables := tablesOf(tx.Events)
		keys, err := w.orderedKeys(ctx, r, tx)
		if err != nil {
			return err
		}
		tok := r.lag.begin(tables, tx.Version.TsUs)
		if err := r.sched.submit(ctx, keys, func() {
			if w.exec(ctx, tx, tables) {
				r.lag.end(tok)
				if left.Add(-1) == 0 {
					r.track.complete(seqs...)
				}
			}
		}); err != nil {
			return err
		}
	}
	return nil
}

// txnKeys returns the rows a transaction touches, or nil (a barrier) for DDL or rows
// without a usable key. orderedKeys adds the sinks' order keys (OrderHinter).
func txnKeys(tx *Txn) []string {
	if tx.IsDDL() {
		return nil
	}
	keys := []string{}
	for _, e := range tx.Events {
		cs, err := Changes(e)
		if err != nil {
			return nil
		}
		for _, c := range cs {
			keys = append(keys, TableKey(e)+"\x00"+c.Key)
		}
	}
	return keys
}

// exec applies tx (touching tables) to every sink, or skips it when one of its tables is
// quarantined. It returns false only when ctx ended first (nothing is acknowledged).
func (w *Worker) exec(ctx context.Context, tx *Txn, tables []string) bool {
	if q := w.quar.anyOf(tables); q != "" {
		w.skip(tx.ID, tx.Version.TsUs, tables, "table "+q+" is quarantined")
		w.gateDone(tx, false)
		return true
	}
	if w.cfg.Gate != nil {
		ok, stopped := w.admitSync(ctx, tx, tables)
		if !ok {
			if !stopped {
				w.gateDone(tx, false)
			}
			return !stopped
		}
	}
	anyApplied := false
	for _, s := range w.sinks {
		switch w.applyOne(ctx, s, tx, tables) {
		case stopped:
			return false
		case gaveUp:
			w.gateDone(tx, false)
			return true
		case appliedBySink:
			anyApplied = true
		}
	}
	if anyApplied {
		w.applied(tx, tables)
	}
	w.gateDone(tx, true)
	return true
}

// gateDone tells the sync gate an own transaction is finished.
func (w *Worker) gateDone(tx *Txn, applied bool) {
	if tx.Own && w.cfg.Gate != nil {
		w.cfg.Gate.Done(tx, applied)
	}
}

type outcome int

const (
	appliedBySink outcome = iota
	gaveUp                // refused or failing: the tables are quarantined
	stopped               // ctx ended
)

// applyOne applies tx to s until it succeeds, is refused or keeps failing (its tables
// are quarantined), or ctx ends.
func (w *Worker) applyOne(ctx context.Context, s Sink, tx *Txn, tables []string) outcome {
	backoff := w.cfg.RetryBackoff
	for attempt := 1; ; attempt++ {
		start := time.Now()
		res, err := s.Apply(ctx, tx)
		switch {
		case err == nil:
			w.metrics.Duration.WithLabelValues(s.Name()).Observe(time.Since(start).Seconds())
			w.count(s, tx, tables, res)
			return appliedBySink
		case errors.Is(err, ErrRefused) || errors.Is(err, ErrMalformed):
			w.refuseBy(s.Name(), tables, tx, err)
			return gaveUp
		case ctx.Err() != nil:
			return stopped
		}
		transient := w.failed(s.Name(), tx.ID, tables, attempt, err)
		if attempt >= w.cfg.MaxRetries && !transient {
			w.giveUp(tables, tx.ID, tx.Version.TsUs, tx.Events,
				fmt.Errorf("%s failed %d times: %w", s.Name(), attempt, err))
			return gaveUp
		}
		w.log.Warn("apply failed; retrying", zap.String("sink", s.Name()), zap.String("gtid", tx.ID),
			zap.Strings("tables", tables), zap.Int("attempt", attempt), zap.Bool("transient", transient),
			zap.Duration("backoff", backoff), zap.Error(err))
		if Sleep(ctx, backoff) != nil {
			return stopped
		}
		backoff = min(backoff*2, w.cfg.MaxRetryBackoff)
	}
}

// failed records a failed attempt (metric, status) and reports whether err is an outage.
func (w *Worker) failed(sink, gtid string, tables []string, attempt int, err error) (transient bool) {
	w.metrics.Errors.WithLabelValues(w.cfg.Origin, sink).Inc()
	w.status.update(func(st *OriginStatus) {
		now := time.Now()
		st.LastError, st.LastErrorAt = err.Error(), now
		for _, t := range tables {
			ts := st.Tables[t]
			ts.Failures++
			ts.Retrying = true
			ts.LastError, ts.LastErrorAt = fmt.Sprintf("gtid %s attempt %d on %s: %v", gtid, attempt, sink, err), now
			st.Tables[t] = ts
		}
	})
	return Transient(err)
}

func (w *Worker) count(s Sink, tx *Txn, tables []string, res Result) {
	m := w.metrics
	m.Transactions.WithLabelValues(w.cfg.Origin, s.Name()).Inc()
	m.Rows.WithLabelValues(w.cfg.Origin, s.Name(), "applied").Add(float64(res.Applied))
	m.Rows.WithLabelValues(w.cfg.Origin, s.Name(), "duplicate").Add(float64(res.Duplicates))
	m.Rows.WithLabelValues(w.cfg.Origin, s.Name(), "conflict").Add(float64(res.Conflicts))
	if res.Conflicts > 0 {
		table := tables[0]
		m.Conflicts.WithLabelValues(w.cfg.Origin, table, s.Name()).Add(float64(res.Conflicts))
		w.status.update(func(st *OriginStatus) {
			ts := st.Tables[table]
			ts.Conflicts += uint64(res.Conflicts)
			st.Tables[table] = ts
		})
	}
}

// applied records lag and progress once every sink has tx, and clears its tables' errors.
func (w *Worker) applied(tx *Txn, tables []string) {
	rows := map[string]uint64{}
	for _, e := range tx.Events {
		rows[tableOf(e)]++
	}
	w.appliedRows(tx, tables, rows)
}

// appliedRows is applied with the rows per table counted by the caller (a streamed
// transaction's events are gone by then).
func (w *Worker) appliedRows(tx *Txn, tables []string, rows map[string]uint64) {
	now := time.Now()
	lag := (now.UnixMicro() - tx.Version.TsUs) / 1000
	if tx.Resync { // snapshot rows: each its own version
		lag = (now.UnixMicro() - commitUs(tx.Events[len(tx.Events)-1].Source)) / 1000
	}
	w.metrics.Lag.WithLabelValues(w.cfg.Origin).Observe(float64(lag) / 1000)
	w.status.update(func(st *OriginStatus) {
		st.Applied++
		for _, table := range tables {
			ts := st.Tables[table]
			ts.LagMs, ts.LastApplied, ts.LastGTID = lag, now, tx.ID
			ts.Rows += rows[table]
			ts.LastError, ts.Retrying = "", false
			st.Tables[table] = ts
			w.metrics.LagMs.WithLabelValues(w.cfg.Origin, table).Set(float64(lag))
		}
		clearOriginError(st)
	})
}

// reject refuses a change before any sink saw it (it cannot be decoded or assembled).
func (w *Worker) reject(tables []string, gtid string, tsUs int64, events []*changeevent.Event, err error) {
	w.refuse("", tables, gtid, tsUs, events, err)
}

// refuseBy records a sink's refusal of tx.
func (w *Worker) refuseBy(sink string, tables []string, tx *Txn, err error) {
	w.refuse(sink, tables, tx.ID, tx.Version.TsUs, tx.Events, err)
}

// refuse counts a refusal against each table and quarantines them: the change is not
// applied, so the tables need a resync, and their later changes must not be applied
// without it.
func (w *Worker) refuse(sink string, tables []string, gtid string, tsUs int64, events []*changeevent.Event, err error) {
	if len(tables) == 0 {
		tables = []string{"*.*"}
	}
	for _, t := range tables {
		w.metrics.Refused.WithLabelValues(w.cfg.Origin, t, sink).Inc()
	}
	w.status.update(func(st *OriginStatus) {
		st.Refused++
		for _, t := range tables {
			ts := st.Tables[t]
			ts.Refused++
			st.Tables[t] = ts
		}
	})
	w.giveUp(tables, gtid, tsUs, events, fmt.Errorf("refused%s: %w", map[bool]string{true: " by " + sink}[sink != ""], err))
}

// giveUp quarantines tables for a change that is not applied: status (error naming the
// change's GTID and a key), metric, error log. The change itself counts as skipped.
func (w *Worker) giveUp(tables []string, gtid string, tsUs int64, events []*changeevent.Event, err error) {
	if gtid == "" {
		gtid = "(unknown)"
	}
	for _, t := range tables {
		key := firstKey(events, t)
		reason := fmt.Sprintf("gtid %s key %s: %v", gtid, key, err)
		fresh := w.quar.Quarantine(t, reason)
		w.status.fail(errors.New(reason), t)
		if fresh {
			w.log.Error("table quarantined: a change cannot be applied; resync the table, which releases it",
				zap.String("table", t), zap.String("key", key), zap.String("gtid", gtid), zap.Error(err))
		}
	}
	w.skip(gtid, tsUs, tables, err.Error())
}

// skip records a transaction not applied because of a quarantine; every table it touches
// is quarantined (a transaction applies all or nothing).
func (w *Worker) skip(gtid string, tsUs int64, tables []string, why string) {
	for _, t := range tables {
		if w.quar.Quarantine(t, fmt.Sprintf("gtid %s: %s", gtid, why)) {
			w.log.Error("table quarantined: its transaction touches a quarantined table", zap.String("table", t),
				zap.String("gtid", gtid), zap.String("why", why))
		}
		w.metrics.Skipped.WithLabelValues(w.cfg.Origin, t).Inc()
	}
	v := Version{TsUs: tsUs}
	if g, err := ParseGTID(gtid); err == nil {
		v.Domain, v.Seq = g.Domain, g.Seq
	}
	w.status.update(func(st *OriginStatus) {
		st.Skipped++
		for _, t := range tables {
			ts := st.Tables[t]
			// Skipped transactions of disjoint rows run in parallel: first and last by version.
			if ts.Skipped == 0 || v.Compare(ts.skippedFirst) < 0 {
				ts.SkippedFirstGTID, ts.skippedSinceUs, ts.skippedFirst = gtid, tsUs, v
			}
			if ts.Skipped == 0 || v.Compare(ts.skippedLast) > 0 {
				ts.SkippedLastGTID, ts.skippedLast = gtid, v
			}
			ts.Skipped++
			ts.Retrying = false
			st.Tables[t] = ts
		}
	})
	w.log.Debug("transaction skipped", zap.String("gtid", gtid), zap.Strings("tables", tables), zap.String("why", why))
}

// firstKey names the first row key events touch in table, for the quarantine reason.
func firstKey(events []*changeevent.Event, table string) string {
	n, key := 0, ""
	for _, e := range events {
		if tableOf(e) != table {
			continue
		}
		n++
		if key != "" {
			continue
		}
		if e.Op == changeevent.OpDDL {
			key = "(ddl)"
			continue
		}
		if cs, err := Changes(e); err == nil && len(cs) > 0 {
			key = cs[0].Key
		} else if len(e.Key) > 0 {
			key = fmt.Sprint(map[string]any(e.Key))
		}
	}
	switch {
	case key == "":
		return "(unknown)"
	case n > 1:
		return fmt.Sprintf("%s (first of %d rows)", key, n)
	}
	return key
}

// tableOf names an event's table for status, metrics and quarantine: db.table, or db.*
// for a schema change of a whole database.
func tableOf(e *changeevent.Event) string {
	db, t := e.Source.DB, e.Source.Table
	if db == "" {
		db = "*"
	}
	if t == "" {
		t = "*"
	}
	return db + "." + t
}

// tablesOf returns the distinct tables of events, in order of appearance.
func tablesOf(events []*changeevent.Event) []string {
	var out []string
	seen := map[string]bool{}
	for _, e := range events {
		if t := tableOf(e); !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

// subjectTable names the table of a change-event subject (music.cdc.<site>.<db>.<table>).
func subjectTable(subject string) string {
	parts := strings.Split(subject, ".")
	if len(parts) != 5 {
		return "*.*"
	}
	unescape := func(s string) string {
		if s == "_" {
			return "*"
		}
		if u, err := url.PathUnescape(s); err == nil {
			return u
		}
		return s
	}
	return unescape(parts[3]) + "." + unescape(parts[4])
}

// poll refreshes the pending count and lag gauges until ctx ends. A table with a change
// not yet done (assembling, queued, retrying) lags by that change's age, a quarantined one
// by its first skipped change's age; other tables keep the lag of their last apply, 0
// once nothing is pending.
func (w *Worker) poll(ctx context.Context, r *run) {
	t := time.NewTicker(w.cfg.PollInterval)
	defer t.Stop()
	stalled := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := w.js.Consumer(ictx, w.cfg.Stream, w.cfg.Durable)
		cancel()
		if err != nil {
			continue
		}
		info := c.CachedInfo()
		held := r.track.held()
		pending := info.NumPending + uint64(held)
		w.metrics.Pending.WithLabelValues(w.cfg.Origin).Set(float64(pending))
		// Stalled: the consumer delivers nothing more and nothing held can complete.
		nowStalled := held >= w.cfg.MaxAckPending && r.sched.running() == 0
		if nowStalled && !stalled {
			err := fmt.Errorf("stalled: %d unacknowledged messages (max_ack_pending %d) all belong to %d incomplete transactions; raise max_ack_pending",
				held, w.cfg.MaxAckPending, r.assembling.Load())
			w.log.Error("apply stalled", zap.Error(err))
			w.status.fail(err, "")
		}
		stalled = nowStalled
		oldest := r.lag.oldest()
		now := time.Now().UnixMicro()
		w.status.update(func(st *OriginStatus) {
			st.Pending, st.InFlight, st.Assembling = pending, r.sched.running(), int(r.assembling.Load())
			for table, ts := range st.Tables {
				switch us, waiting := oldest[table]; {
				case ts.Quarantined && ts.skippedSinceUs > 0:
					ts.LagMs = max(0, (now-ts.skippedSinceUs)/1000)
				case waiting:
					ts.LagMs = max(0, (now-us)/1000)
				case pending == 0:
					ts.LagMs = 0 // caught up
				}
				st.Tables[table] = ts
				w.metrics.LagMs.WithLabelValues(w.cfg.Origin, table).Set(float64(ts.LagMs))
			}
			for table, us := range oldest { // tables not seen before
				if _, ok := st.Tables[table]; !ok {
					st.Tables[table] = TableStatus{LagMs: max(0, (now-us)/1000)}
					w.metrics.LagMs.WithLabelValues(w.cfg.Origin, table).Set(float64((now - us) / 1000))
				}
			}
			if !nowStalled && strings.HasPrefix(st.LastError, "stalled:") {
				clearOriginError(st)
			}
		})
	}
}

// Sleep waits d, or returns ctx.Err() as soon as ctx is done.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
