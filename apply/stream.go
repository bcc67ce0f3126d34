package apply

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/music-coord/music/changeevent"
)

// StreamSink is a Sink that can also apply one transaction piece by piece, so a
// transaction of any size is applied all or nothing in bounded memory (see the package
// documentation, Streamed transactions).
type StreamSink interface {
	Sink
	// BeginStream starts applying the transaction tx describes: Origin, ID, GTID, Version
	// and Own are set, Events is nil (they come through Stream.Apply).
	BeginStream(ctx context.Context, tx *Txn) (Stream, error)
}

// Stream is one transaction being applied chunk by chunk: Apply is called with its events
// in Transaction.Index order (each chunk once, never concurrently), then Commit, or Abort
// at any point (also after a failed Apply or Commit). Errors mean what they mean for
// Sink.Apply; after an error the worker aborts the stream and, unless the change is
// refused, begins the whole transaction again.
type Stream interface {
	Apply(ctx context.Context, events []*changeevent.Event) (Result, error)
	Commit(ctx context.Context) (Result, error)
	Abort()
}

// beginStream starts a stream on s; a sink that cannot stream gets the whole transaction
// at Commit (held in memory, as before streaming existed).
func beginStream(ctx context.Context, s Sink, tx *Txn) (Stream, error) {
	if ss, ok := s.(StreamSink); ok {
		return ss.BeginStream(ctx, tx)
	}
	return &bufferedStream{s: s, tx: *tx}, nil
}

type bufferedStream struct {
	s  Sink
	tx Txn
}

func (b *bufferedStream) Apply(_ context.Context, events []*changeevent.Event) (Result, error) {
	b.tx.Events = append(b.tx.Events, events...)
	return Result{}, nil
}

func (b *bufferedStream) Commit(ctx context.Context) (Result, error) { return b.s.Apply(ctx, &b.tx) }

func (b *bufferedStream) Abort() { b.tx.Events = nil }

// streamStart reports whether a message starts a streamed transaction: its first event
// is the transaction's first and carries Total 0 (capture streams transactions over its
// buffer), and the message does not end the transaction.
func streamStart(events []*changeevent.Event) bool {
	f, l := events[0].Transaction, events[len(events)-1].Transaction
	return f.Index == 0 && f.Total == 0 && !l.Last
}

// remnant reports whether a message of a transaction neither held nor known is the rest of
// a transaction whose earlier messages were acknowledged: a streamed transaction's message
// past the first (Total 0), or a last message past index 0. A transaction's messages are
// consecutive in the stream and delivered in order, and acknowledged only once every sink
// has the transaction, so its first message can only be missing because it was.
func remnant(events []*changeevent.Event) bool {
	f := events[0].Transaction
	return f.Index > 0 && (f.Total == 0 || f.Last)
}

// streamTxn is a streamed transaction as the consumer loop (handle) sees it. The events
// go to the applying task (runStream) through ch, a message at a time; ch is unbuffered,
// so the consumer decodes the next message while the task applies one, and waits for it
// otherwise (back-pressure).
type streamTxn struct {
	hdr   *Txn // Events nil
	gtid  string
	next  int // the next event index expected
	msgs  int // messages taken
	ahead map[int]streamChunk
	ch    chan streamChunk
	gone  chan struct{} // closed when the task ends; why says why if it ended early
	why   string
}

// streamChunk is one message's events (or the message ending a transaction that cannot
// be completed: err set, no events).
type streamChunk struct {
	events      []*changeevent.Event
	seqs        []uint64
	final       bool  // nothing of the transaction follows
	err         error // the transaction cannot be applied as sent
	unassembled bool  // err: too many messages for MaxAckPending
}

// startStream starts applying a streamed transaction: a barrier task in the scheduler
// (every earlier transaction of the origin first, every later one after it), fed message
// by message.
func (w *Worker) startStream(ctx context.Context, r *run, events []*changeevent.Event, seqs []uint64) error {
	first := events[0]
	g, err := ParseGTID(first.Source.GTID)
	if err != nil {
		w.reject(tablesOf(events), first.Source.GTID, commitUs(first.Source), events, err)
		r.track.complete(seqs...)
		return nil
	}
	hdr := &Txn{Origin: first.Source.Name, ID: first.Transaction.ID, GTID: g,
		Version: Version{TsUs: commitUs(first.Source), Domain: g.Domain, Seq: g.Seq}, Own: w.cfg.Origin == w.cfg.Local}
	st := &streamTxn{hdr: hdr, gtid: first.Source.GTID, ahead: map[int]streamChunk{}, ch: make(chan streamChunk), gone: make(chan struct{})}
	r.streams[hdr.ID] = st
	r.assembling.Add(1) // until its last message is there
	tok := r.lag.begin(tablesOf(events), hdr.Version.TsUs)
	w.log.Info("streamed transaction: applying it message by message", zap.String("gtid", hdr.ID))
	if err := r.sched.submit(ctx, nil, func() { w.runStream(ctx, r, st, tok) }); err != nil {
		return err
	}
	return w.feedStream(ctx, r, st, events, seqs)
}

// feedStream hands one message of a streamed transaction to its task, in index order.
func (w *Worker) feedStream(ctx context.Context, r *run, st *streamTxn, events []*changeevent.Event, seqs []uint64) error {
	st.msgs++
	r.track.lighten(r.nc, seqs...) // decoded: the body is not needed any more
	switch first := events[0].Transaction.Index; {
	case first < st.next: // applied already: a copy published again under another sequence
		r.track.complete(seqs...)
		return nil
	case first > st.next: // early (not seen with an ordered consumer; kept until its turn)
		if _, ok := st.ahead[first]; ok {
			r.track.complete(seqs...)
		} else {
			st.ahead[first] = streamChunk{events: events, seqs: seqs}
		}
	default:
		c := st.check(events, seqs)
		for {
			if err := w.sendChunk(ctx, r, st, c); err != nil {
				return err
			}
			if c.final {
				w.endStream(r, st, c.err)
				return nil
			}
			n, ok := st.ahead[st.next]
			if !ok {
				break
			}
			delete(st.ahead, st.next)
			c = st.check(n.events, n.seqs)
		}
	}
	if st.msgs >= w.cfg.MaxAckPending {
		// The consumer delivers nothing more until these are acknowledged: the transaction
		// can never be complete.
		err := fmt.Errorf("transaction %s: %d messages delivered and still incomplete (%d events): it cannot be applied within max_ack_pending %d; raise max_ack_pending and resync the tables",
			st.hdr.ID, st.msgs, st.next, w.cfg.MaxAckPending)
		var held []uint64
		for _, c := range st.ahead {
			held = append(held, c.seqs...)
		}
		if err := w.sendChunk(ctx, r, st, streamChunk{seqs: held, final: true, err: err, unassembled: true}); err != nil {
			return err
		}
		w.endStream(r, st, err)
	}
	return nil
}

// endStream forgets a streamed transaction once its last message went to its task (or it
// was given up): later copies of its messages are acknowledged as done, or, if it was
// given up, as skipped.
func (w *Worker) endStream(r *run, st *streamTxn, err error) {
	delete(r.streams, st.hdr.ID)
	r.assembling.Add(-1)
	if err != nil {
		r.abandoned[st.hdr.ID] = err.Error()
	} else {
		r.asm.finished.add(st.hdr.ID)
	}
}

// check validates the next message of a streamed transaction and advances next.
func (st *streamTxn) check(events []*changeevent.Event, seqs []uint64) streamChunk {
	c := streamChunk{events: events, seqs: seqs}
	for i, e := range events {
		t := e.Transaction
		var err error
		switch {
		case t.ID != st.hdr.ID || e.Source.Name != st.hdr.Origin || e.Source.GTID != st.gtid:
			err = fmt.Errorf("message mixes transactions %s and %s", st.hdr.ID, t.ID)
		case t.Index != st.next+i:
			err = fmt.Errorf("event index %d where %d was expected", t.Index, st.next+i)
		case t.Last != (t.Total != 0), t.Last && (t.Total != t.Index+1 || i != len(events)-1):
			err = fmt.Errorf("event %d says total %d, last %v", t.Index, t.Total, t.Last)
		case e.Op == changeevent.OpDDL || e.Op == changeevent.OpRead:
			err = fmt.Errorf("event %d: op %q in a streamed transaction", t.Index, e.Op)
		}
		if err != nil {
			c.err, c.final = fmt.Errorf("%w: streamed transaction %s: %w", ErrMalformed, st.hdr.ID, err), true
			return c
		}
		c.final = t.Last
	}
	st.next += len(events)
	return c
}

// sendChunk hands c to the task; if the task gave the transaction up, c is acknowledged as
// skipped (its tables quarantined) instead.
func (w *Worker) sendChunk(ctx context.Context, r *run, st *streamTxn, c streamChunk) error {
	select {
	case <-st.gone:
	default:
		select {
		case st.ch <- c:
			return nil
		case <-st.gone:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for _, t := range tablesOf(c.events) {
		if w.quar.Quarantine(t, fmt.Sprintf("gtid %s: %s", st.hdr.ID, st.why)) {
			w.log.Error("table quarantined: its streamed transaction was given up", zap.String("table", t),
				zap.String("gtid", st.hdr.ID), zap.String("why", st.why))
		}
	}
	r.track.complete(c.seqs...)
	return nil
}

// streamRun is the task applying one streamed transaction.
type streamRun struct {
	w       *Worker
	r       *run
	st      *streamTxn
	tok     uint64
	got     [][]uint64 // stream sequences of each message received, in order
	mu      sync.Mutex // seqs: read by the progress ticker
	seqs    []uint64   // all of them
	final   bool       // the last message was received
	tables  []string
	tableIn map[string]bool
	rows    map[string]uint64
	store   jetstream.Stream // to read received messages again for a retry
	stop    func()           // stops the progress ticker
}

// streamFailure says which sink (or "stream": reading a message again) failed, with the
// events of the chunk at hand (for the quarantine reason).
type streamFailure struct {
	sink   string
	events []*changeevent.Event
	err    error
	skip   string // a table of the transaction is quarantined
	unasm  bool
}

// runStream applies a streamed transaction: each message's events go to every sink's
// Stream as they come; after the last, every sink commits, and only then are the
// messages acknowledged. A failed attempt aborts every sink's stream and starts again
// from the first message (read again from JetStream by sequence, so nothing is held in
// memory), with the worker's retry, refusal and quarantine rules.
func (w *Worker) runStream(ctx context.Context, r *run, st *streamTxn, tok uint64) {
	defer close(st.gone)
	sr := &streamRun{w: w, r: r, st: st, tok: tok, tableIn: map[string]bool{}, rows: map[string]uint64{}}
	hdr := st.hdr
	giveUp := func(why string) {
		st.why = why
		r.lag.end(tok)
		stopProgressNow(sr)
		r.track.complete(sr.seqs...)
	}
	// Its messages stay unacknowledged for as long as it takes: keep JetStream from
	// redelivering them every AckWait meanwhile.
	pctx, stopProgress := context.WithCancel(ctx)
	defer stopProgress()
	sr.stop = stopProgress
	go func() {
		t := time.NewTicker(max(w.cfg.AckWait/3, 100*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-pctx.Done():
				return
			case <-t.C:
				sr.mu.Lock()
				seqs := append([]uint64(nil), sr.seqs...)
				sr.mu.Unlock()
				r.track.progress(r.nc, seqs...)
			}
		}
	}()
	backoff := w.cfg.RetryBackoff
	start := time.Now()
	for attempt := 1; ; attempt++ {
		results, f := sr.attempt(ctx)
		switch {
		case f == nil:
			for i, s := range w.sinks {
				w.metrics.Duration.WithLabelValues(s.Name()).Observe(time.Since(start).Seconds())
				w.count(s, hdr, sr.tables, results[i])
			}
			w.appliedRows(hdr, sr.tables, sr.rows)
			r.lag.end(tok)
			stopProgressNow(sr)
			r.track.complete(sr.seqs...)
			w.log.Info("streamed transaction applied", zap.String("gtid", hdr.ID), zap.Int("messages", len(sr.seqs)),
				zap.Int("attempts", attempt), zap.Duration("took", time.Since(start)))
			return
		case ctx.Err() != nil:
			return // nothing acknowledged: redelivered to the next Run
		case f.skip != "":
			why := "table " + f.skip + " is quarantined"
			w.skip(hdr.ID, hdr.Version.TsUs, sr.tables, why)
			giveUp(why)
			return
		case f.unasm:
			for _, t := range sr.tables {
				w.metrics.Unassembled.WithLabelValues(w.cfg.Origin, t).Inc()
			}
			w.log.Error("streamed transaction cannot be completed; quarantining its tables", zap.String("gtid", hdr.ID),
				zap.Strings("tables", sr.tables), zap.Error(f.err))
			w.giveUp(sr.tables, hdr.ID, hdr.Version.TsUs, f.events, f.err)
			giveUp(f.err.Error())
			return
		case errors.Is(f.err, ErrRefused) || errors.Is(f.err, ErrMalformed):
			w.refuse(f.sink, sr.tables, hdr.ID, hdr.Version.TsUs, f.events, f.err)
			giveUp(f.err.Error())
			return
		}
		transient := w.failed(f.sink, hdr.ID, sr.tables, attempt, f.err)
		if attempt >= w.cfg.MaxRetries && !transient {
			err := fmt.Errorf("%s failed %d times: %w", f.sink, attempt, f.err)
			w.giveUp(sr.tables, hdr.ID, hdr.Version.TsUs, f.events, err)
			giveUp(err.Error())
			return
		}
		w.log.Warn("streamed transaction failed; applying it again from its first message", zap.String("sink", f.sink),
			zap.String("gtid", hdr.ID), zap.Strings("tables", sr.tables), zap.Int("attempt", attempt),
			zap.Bool("transient", transient), zap.Duration("backoff", backoff), zap.Error(f.err))
		if Sleep(ctx, backoff) != nil {
			return
		}
		backoff = min(backoff*2, w.cfg.MaxRetryBackoff)
	}
}

// attempt applies the transaction once: the messages received so far (read again), then
// the rest as it comes, then commits every sink.
func (sr *streamRun) attempt(ctx context.Context) ([]Result, *streamFailure) {
	w := sr.w
	streams := make([]Stream, 0, len(w.sinks))
	committed := false
	defer func() {
		if !committed {
			for _, s := range streams {
				s.Abort()
			}
		}
	}()
	for _, s := range w.sinks {
		str, err := beginStream(ctx, s, sr.st.hdr)
		if err != nil {
			return nil, &streamFailure{sink: s.Name(), err: err}
		}
		streams = append(streams, str)
	}
	results := make([]Result, len(w.sinks))
	apply := func(events []*changeevent.Event) *streamFailure {
		if q := w.quar.anyOf(tablesOf(events)); q != "" {
			return &streamFailure{skip: q}
		}
		for i, s := range streams {
			res, err := s.Apply(ctx, events)
			if err != nil {
				return &streamFailure{sink: w.sinks[i].Name(), events: events, err: err}
			}
			results[i] = results[i].add(res)
		}
		return nil
	}
	for _, seqs := range sr.got { // received in an earlier attempt
		events, err := sr.reread(ctx, seqs)
		if err != nil {
			return nil, &streamFailure{sink: "stream", err: err}
		}
		if f := apply(events); f != nil {
			return nil, f
		}
	}
	for !sr.final {
		var c streamChunk
		select {
		case c = <-sr.st.ch:
		case <-ctx.Done():
			return nil, &streamFailure{err: ctx.Err()}
		}
		sr.receive(c)
		if c.err != nil {
			return nil, &streamFailure{events: c.events, err: c.err, unasm: c.unassembled}
		}
		if f := apply(c.events); f != nil {
			return nil, f
		}
	}
	if q := w.quar.anyOf(sr.tables); q != "" {
		return nil, &streamFailure{skip: q}
	}
	for i, s := range streams {
		res, err := s.Commit(ctx)
		if err != nil {
			return nil, &streamFailure{sink: w.sinks[i].Name(), err: err}
		}
		results[i] = results[i].add(res)
	}
	committed = true
	return results, nil
}

// receive takes a chunk over: its sequences (acknowledged with the transaction), tables
// and row counts.
func (sr *streamRun) receive(c streamChunk) {
	sr.final = c.final
	sr.mu.Lock()
	sr.seqs = append(sr.seqs, c.seqs...)
	sr.mu.Unlock()
	if c.err == nil {
		sr.got = append(sr.got, c.seqs)
	}
	var fresh []string
	for _, e := range c.events {
		t := tableOf(e)
		sr.rows[t]++
		if !sr.tableIn[t] {
			sr.tableIn[t] = true
			sr.tables = append(sr.tables, t)
			fresh = append(fresh, t)
		}
	}
	if len(fresh) > 0 {
		sr.r.lag.extend(sr.tok, fresh...)
	}
}

// reread reads a message received earlier again from the stream (joining its parts).
func (sr *streamRun) reread(ctx context.Context, seqs []uint64) ([]*changeevent.Event, error) {
	if sr.store == nil {
		s, err := sr.w.js.Stream(ctx, sr.w.cfg.Stream)
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", sr.w.cfg.Stream, err)
		}
		sr.store = s
	}
	var body []byte
	j := changeevent.NewJoiner()
	for _, seq := range seqs {
		m, err := sr.store.GetMsg(ctx, seq)
		if err != nil {
			return nil, fmt.Errorf("read message %d again: %w", seq, err)
		}
		info, isPart, err := changeevent.ParsePart(m.Header.Get)
		switch {
		case err != nil:
			return nil, fmt.Errorf("%w: message %d: %w", ErrMalformed, seq, err)
		case !isPart:
			body = m.Data
		default:
			if whole, done := j.Add(info, m.Data); done {
				body = whole
			}
		}
	}
	if body == nil {
		return nil, fmt.Errorf("%w: messages %v do not hold a whole message body", ErrMalformed, seqs)
	}
	return changeevent.DecodeMessage(body)
}

// stopProgressNow stops the progress ticker before the messages are acknowledged (an
// in-progress signal after the acknowledgement is ignored by JetStream anyway).
func stopProgressNow(sr *streamRun) {
	if sr.stop != nil {
		sr.stop()
	}
}

func (r Result) add(o Result) Result {
	return Result{Applied: r.Applied + o.Applied, Duplicates: r.Duplicates + o.Duplicates, Conflicts: r.Conflicts + o.Conflicts}
}
