package apply

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

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
	MaxAckPending int           // unacknowledged messages (the largest transaction must fit); default 20000
	FetchBatch    int           // messages pulled per request; default 500
	AckWait       time.Duration // redelivery timeout of an unacknowledged message; default 2m
	PollInterval  time.Duration // consumer info / lag refresh; default 2s
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
	if c.AckWait <= 0 {
		c.AckWait = 2 * time.Minute
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 2 * time.Second
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
	w := &Worker{cfg: cfg, js: js, sinks: sinks, metrics: metrics,
		log: log.With(zap.String("local", cfg.Local), zap.String("origin", cfg.Origin))}
	w.status.s = OriginStatus{Local: cfg.Local, Origin: cfg.Origin, Stream: cfg.Stream, Consumer: cfg.Durable,
		Tables: map[string]TableStatus{}}
	return w, nil
}

// Status returns a snapshot of the worker's status.
func (w *Worker) Status() OriginStatus { return w.status.snapshot() }

// run is the state of one Run.
type run struct {
	asm   *assembler
	track *tracker
	sched *scheduler
	cons  jetstream.Consumer
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
			track: newTracker(func(err error) { w.log.Debug("ack failed", zap.Error(err)) })}
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

// handle files one message; a complete transaction is submitted to the scheduler, which
// blocks when full (back-pressure).
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
	ev, err := changeevent.Unmarshal(msg.Data())
	if err != nil {
		w.refuse(nil, "", fmt.Errorf("stream sequence %d: %w", seq, err))
		r.track.complete(seq)
		return nil
	}
	if ev.Source.Name != w.cfg.Origin {
		r.track.complete(seq) // not this origin's change (the local site's own, or misrouted)
		return nil
	}
	if ev.Transaction.Total > w.cfg.MaxAckPending {
		w.status.fail(fmt.Errorf("transaction %s has %d events, more than max_ack_pending %d: it cannot be assembled",
			ev.Transaction.ID, ev.Transaction.Total, w.cfg.MaxAckPending), TableKey(ev))
	}
	events, seqs, dup := r.asm.add(ev, seq)
	if dup {
		w.log.Debug("event of a finished transaction dropped", zap.Uint64("seq", seq), zap.String("gtid", ev.Transaction.ID))
		r.track.complete(seq)
		return nil
	}
	if events == nil {
		return nil
	}
	tx, err := NewTxn(events)
	if err != nil {
		w.refuse(nil, "", err)
		r.track.complete(seqs...)
		return nil
	}
	tx.Own = w.cfg.Origin == w.cfg.Local
	keys := txnKeys(tx)
	w.log.Debug("transaction assembled", zap.String("gtid", tx.ID), zap.Uint64s("seqs", seqs), zap.Strings("keys", keys))
	return r.sched.submit(ctx, keys, func() {
		if w.applyAll(ctx, tx) {
			r.track.complete(seqs...)
		}
	})
}

// txnKeys returns the rows a transaction touches, or nil (a barrier) for DDL or rows
// without a usable key.
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

// applyAll applies tx to every sink, retrying failures with backoff; it returns false only
// when ctx ended first.
func (w *Worker) applyAll(ctx context.Context, tx *Txn) bool {
	anyApplied := false
	for _, s := range w.sinks {
		ok, refused := w.applyOne(ctx, s, tx)
		if !ok {
			return false
		}
		anyApplied = anyApplied || !refused
	}
	if anyApplied {
		w.applied(tx)
	}
	return true
}

// applyOne applies tx to s until it succeeds or is refused (ok), or ctx ends (not ok).
func (w *Worker) applyOne(ctx context.Context, s Sink, tx *Txn) (ok, refused bool) {
	backoff := 50 * time.Millisecond
	table := txnTable(tx)
	for {
		start := time.Now()
		res, err := s.Apply(ctx, tx)
		switch {
		case err == nil:
			w.metrics.Duration.WithLabelValues(s.Name()).Observe(time.Since(start).Seconds())
			w.count(s, tx, res)
			return true, false
		case errors.Is(err, ErrRefused):
			w.refuse(tx, s.Name(), err)
			return true, true
		case ctx.Err() != nil:
			return false, false
		}
		w.metrics.Errors.WithLabelValues(w.cfg.Origin, s.Name()).Inc()
		w.status.fail(err, table)
		w.log.Warn("apply failed; retrying", zap.String("sink", s.Name()), zap.String("gtid", tx.ID),
			zap.Duration("backoff", backoff), zap.Error(err))
		if Sleep(ctx, backoff) != nil {
			return false, false
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (w *Worker) count(s Sink, tx *Txn, res Result) {
	m := w.metrics
	m.Transactions.WithLabelValues(w.cfg.Origin, s.Name()).Inc()
	m.Rows.WithLabelValues(w.cfg.Origin, s.Name(), "applied").Add(float64(res.Applied))
	m.Rows.WithLabelValues(w.cfg.Origin, s.Name(), "duplicate").Add(float64(res.Duplicates))
	m.Rows.WithLabelValues(w.cfg.Origin, s.Name(), "conflict").Add(float64(res.Conflicts))
	if res.Conflicts > 0 {
		table := txnTable(tx)
		m.Conflicts.WithLabelValues(w.cfg.Origin, table, s.Name()).Add(float64(res.Conflicts))
		w.status.update(func(st *OriginStatus) {
			ts := st.Tables[table]
			ts.Conflicts += uint64(res.Conflicts)
			st.Tables[table] = ts
		})
	}
}

// applied records lag and progress once every sink has tx.
func (w *Worker) applied(tx *Txn) {
	now := time.Now()
	lag := (now.UnixMicro() - tx.Version.TsUs) / 1000
	w.metrics.Lag.WithLabelValues(w.cfg.Origin).Observe(float64(lag) / 1000)
	w.status.update(func(st *OriginStatus) {
		st.Applied++
		for _, e := range tx.Events {
			table := TableKey(e)
			ts := st.Tables[table]
			ts.LagMs, ts.LastApplied, ts.LastGTID = lag, now, tx.ID
			ts.Rows++
			st.Tables[table] = ts
			w.metrics.LagMs.WithLabelValues(w.cfg.Origin, table).Set(float64(lag))
		}
	})
}

func (w *Worker) refuse(tx *Txn, sink string, err error) {
	table := ""
	if tx != nil {
		table = txnTable(tx)
	}
	w.metrics.Refused.WithLabelValues(w.cfg.Origin, sink).Inc()
	w.status.fail(err, table)
	w.status.update(func(st *OriginStatus) {
		st.Refused++
		if table != "" {
			ts := st.Tables[table]
			ts.Refused++
			st.Tables[table] = ts
		}
	})
	w.log.Error("change refused; resync the table once fixed", zap.String("sink", sink), zap.String("table", table), zap.Error(err))
}

// txnTable names the transaction's first table, for status and metrics.
func txnTable(tx *Txn) string {
	e := tx.Events[0]
	if e.Source.Table == "" {
		return strings.TrimSuffix(e.Source.DB+".", ".")
	}
	return TableKey(e)
}

// poll refreshes the pending count and lag gauges until ctx ends.
func (w *Worker) poll(ctx context.Context, r *run) {
	t := time.NewTicker(w.cfg.PollInterval)
	defer t.Stop()
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
		pending := info.NumPending + uint64(r.track.held())
		w.metrics.Pending.WithLabelValues(w.cfg.Origin).Set(float64(pending))
		w.status.update(func(st *OriginStatus) {
			st.Pending, st.InFlight = pending, r.sched.running()
			if pending > 0 {
				return
			}
			for table, ts := range st.Tables { // caught up: no lag
				ts.LagMs = 0
				st.Tables[table] = ts
				w.metrics.LagMs.WithLabelValues(w.cfg.Origin, table).Set(0)
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
