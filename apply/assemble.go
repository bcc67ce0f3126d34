package apply

import (
	"fmt"
	"sort"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/music-coord/music/changeevent"
)

// assembler collects a transaction's events, delivered in one or more messages, until all
// are there. A transaction is complete once it holds Total events with indexes 0 ..
// Total-1, Total being known from any of its events: every event of a buffered
// transaction carries it, only the Last one of a streamed transaction does.
//
// Memory: a transaction that arrives in one message is decoded once and handed over. One
// spread over several messages keeps its decoded events while they are at most
// keepDecoded (the common case: a 1,000-row transaction is two messages), and is decoded
// once. A bigger one is held as its message bodies (the encoded JSON, which the
// unacknowledged messages hold anyway) plus a set of its indexes; its events are decoded
// again, all at once, when it completes. So an assembling transaction costs at most about
// keepDecoded decoded events or its encoded size, and a complete one its decoded events
// until every sink has it.
// keepDecoded is the most events an assembling transaction keeps decoded (see assembler).
const keepDecoded = 5000

type assembler struct {
	open     map[string]*partial // by Transaction.ID
	finished *recent             // recently completed (or given up) transactions
}

type partial struct {
	id      string
	gtid    string
	tsUs    int64
	indexes map[int]struct{}
	maxIdx  int
	total   int // 0 while unknown (a streamed transaction before its last event)
	bodies  [][]byte
	events  []*changeevent.Event // the events of bodies, while decoded (at most keepDecoded)
	decoded bool                 // events holds every event of bodies
	seqs    []uint64
	tables  []string
	tableIn map[string]bool
	tok     uint64 // lag tracker entry, set by the worker
}

// assembled is a complete transaction.
type assembled struct {
	events []*changeevent.Event
	seqs   []uint64
	tables []string
	tok    uint64
}

func newAssembler(keep int) *assembler {
	return &assembler{open: map[string]*partial{}, finished: newRecent(keep)}
}

// add files the events of one message (all of one transaction; body is the message body
// they were decoded from, seqs its stream sequences). It returns the complete transaction
// once its last event is there (done), or the partial it is still assembling (p, new
// true for its first message). dup is true when every event was held already or the
// transaction is finished: the caller acknowledges seqs. An error (the events do not fit
// together) gives up the transaction: p holds everything delivered of it, finished.
func (a *assembler) add(events []*changeevent.Event, body []byte, seqs []uint64) (done *assembled, p *partial, created, dup bool, err error) {
	id := events[0].Transaction.ID
	if a.finished.has(id) {
		return nil, nil, false, true, nil
	}
	p = a.open[id]
	if p == nil {
		p = &partial{id: id, gtid: events[0].Source.GTID, tsUs: commitUs(events[0].Source), indexes: map[int]struct{}{},
			maxIdx: -1, tableIn: map[string]bool{}, decoded: true}
		a.open[id] = p
		created = true
	}
	fresh := 0
	for _, e := range events {
		t := e.Transaction
		if tbl := tableOf(e); !p.tableIn[tbl] {
			p.tableIn[tbl] = true
			p.tables = append(p.tables, tbl)
		}
		switch {
		case t.ID != id:
			err = fmt.Errorf("%w: message mixes transactions %s and %s", ErrMalformed, id, t.ID)
		case t.Index < 0:
			err = fmt.Errorf("%w: transaction %s: event index %d", ErrMalformed, id, t.Index)
		case t.Last && t.Total <= 0:
			err = fmt.Errorf("%w: transaction %s: last event %d without the total", ErrMalformed, id, t.Index)
		case t.Total > 0 && p.total > 0 && t.Total != p.total:
			err = fmt.Errorf("%w: transaction %s: event %d says %d events, another %d", ErrMalformed, id, t.Index, t.Total, p.total)
		}
		if err != nil {
			break
		}
		if t.Total > 0 {
			p.total = t.Total
		}
		if _, held := p.indexes[t.Index]; held {
			continue
		}
		p.indexes[t.Index] = struct{}{}
		p.maxIdx = max(p.maxIdx, t.Index)
		fresh++
	}
	p.seqs = append(p.seqs, seqs...)
	if err == nil && p.total > 0 && (p.maxIdx >= p.total || len(p.indexes) > p.total) {
		err = fmt.Errorf("%w: transaction %s: event index %d of %d events", ErrMalformed, id, p.maxIdx, p.total)
	}
	if err != nil {
		a.drop(p)
		return nil, p, created, false, err
	}
	if fresh == 0 {
		p.seqs = p.seqs[:len(p.seqs)-len(seqs)]
		return nil, p, created, true, nil
	}
	if p.decoded && len(p.events)+len(events) <= keepDecoded {
		p.events = append(p.events, events...)
	} else {
		p.decoded, p.events = false, nil
	}
	if p.total == 0 || len(p.indexes) < p.total {
		p.bodies = append(p.bodies, body)
		return nil, p, created, false, nil
	}
	bodies := append(p.bodies, body)
	held, decoded := p.events, p.decoded
	a.drop(p)
	if decoded { // every event decoded already: no second decode
		sort.SliceStable(held, func(i, j int) bool { return held[i].Transaction.Index < held[j].Transaction.Index })
		return &assembled{events: dedupe(held), seqs: p.seqs, tables: p.tables, tok: p.tok}, p, created, false, nil
	}
	all := make([]*changeevent.Event, 0, p.total)
	for _, b := range bodies {
		evs, err := changeevent.DecodeMessage(b)
		if err != nil {
			return nil, p, created, false, fmt.Errorf("transaction %s decoded again: %w", id, err)
		}
		all = append(all, evs...)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Transaction.Index < all[j].Transaction.Index })
	return &assembled{events: dedupe(all), seqs: p.seqs, tables: p.tables, tok: p.tok}, p, created, false, nil
}

// dedupe drops repeated indexes of sorted events (the first stays).
func dedupe(events []*changeevent.Event) []*changeevent.Event {
	out := events[:0]
	for i, e := range events {
		if i > 0 && e.Transaction.Index == events[i-1].Transaction.Index {
			continue
		}
		out = append(out, e)
	}
	return out
}

// drop forgets p and remembers its transaction as finished (completed or given up), so a
// late redelivery of one of its events is recognised.
func (a *assembler) drop(p *partial) {
	delete(a.open, p.id)
	p.bodies, p.events = nil, nil
	a.finished.add(p.id)
}

// holds reports whether a transaction is being assembled.
func (a *assembler) holds(id string) bool { _, ok := a.open[id]; return ok }

// pending is the number of transactions being assembled.
func (a *assembler) pending() int { return len(a.open) }

// recent is a bounded set of strings: the oldest are forgotten first.
type recent struct {
	set   map[string]struct{}
	order []string
	keep  int
}

func newRecent(keep int) *recent { return &recent{set: map[string]struct{}{}, keep: keep} }

func (r *recent) has(k string) bool { _, ok := r.set[k]; return ok }

func (r *recent) add(k string) {
	if _, ok := r.set[k]; ok {
		return
	}
	r.set[k] = struct{}{}
	r.order = append(r.order, k)
	if len(r.order) > r.keep {
		delete(r.set, r.order[0])
		r.order = r.order[1:]
	}
}

// tracker holds the delivered messages not yet acknowledged, and acknowledges each one on
// its own (AckExplicit) once its transaction is done. Acknowledging a floor instead (AckAll)
// would also acknowledge messages the client had received but never handed over (dropped
// with a consumer iterator that had to be restarted), which JetStream would then never
// deliver again.
type tracker struct {
	mu   sync.Mutex
	msgs map[uint64]acker
	ack  func(seq uint64, m acker)
}

// acker is what the tracker keeps of a message: a jetstream.Msg, or only its reply
// subject once its body is no longer needed (see lighten).
type acker interface{ Ack() error }

// replyAck acknowledges a message by its reply subject, as jetstream.Msg.Ack does, without
// holding its body.
type replyAck struct {
	nc    *nats.Conn
	reply string
}

func (a replyAck) Ack() error { return a.nc.Publish(a.reply, []byte("+ACK")) }

func newTracker(onError func(error)) *tracker {
	return &tracker{msgs: map[uint64]acker{},
		ack: func(_ uint64, m acker) {
			if err := m.Ack(); err != nil && onError != nil {
				onError(err)
			}
		}}
}

// add registers a delivered message; it reports false for one already held (a
// redelivery while its transaction is still queued or running).
func (t *tracker) add(seq uint64, m jetstream.Msg) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, held := t.msgs[seq]; held {
		return false
	}
	t.msgs[seq] = m
	return true
}

// lighten keeps only the reply subject of held messages whose body has been used, so a
// long transaction's unacknowledged messages do not keep their bodies in memory.
func (t *tracker) lighten(nc *nats.Conn, seqs ...uint64) {
	if nc == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range seqs {
		if m, ok := t.msgs[s].(jetstream.Msg); ok && m != nil && m.Reply() != "" {
			t.msgs[s] = replyAck{nc: nc, reply: m.Reply()}
		}
	}
}

// complete acknowledges messages whose transaction is done.
func (t *tracker) complete(seqs ...uint64) {
	for _, s := range seqs {
		t.mu.Lock()
		m, held := t.msgs[s]
		delete(t.msgs, s)
		t.mu.Unlock()
		if held {
			t.ack(s, m)
		}
	}
}

// progress tells JetStream that held messages are still being worked on, which resets
// their AckWait: a streamed transaction applied for longer than AckWait is not
// redelivered meanwhile.
func (t *tracker) progress(nc *nats.Conn, seqs ...uint64) {
	for _, s := range seqs {
		t.mu.Lock()
		m := t.msgs[s]
		t.mu.Unlock()
		switch m := m.(type) {
		case replyAck:
			_ = m.nc.Publish(m.reply, []byte("+WPI"))
		case jetstream.Msg:
			if m != nil {
				_ = m.InProgress()
			}
		}
	}
}

// held is the number of delivered, unacknowledged messages.
func (t *tracker) held() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.msgs)
}

// lagTracker knows the origin commit time of every transaction delivered and not yet
// done (assembling, queued, running or retrying), per table, so the status shows a lag
// that grows while a table's change waits.
type lagTracker struct {
	mu   sync.Mutex
	next uint64
	open map[uint64]lagEntry
}

type lagEntry struct {
	tables []string
	tsUs   int64
}

func newLagTracker() *lagTracker { return &lagTracker{open: map[uint64]lagEntry{}} }

func (l *lagTracker) begin(tables []string, tsUs int64) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.next++
	l.open[l.next] = lagEntry{tables: tables, tsUs: tsUs}
	return l.next
}

// extend adds tables to an open entry (a streamed transaction met a new table).
func (l *lagTracker) extend(tok uint64, tables ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.open[tok]; ok {
		e.tables = append(append([]string(nil), e.tables...), tables...)
		l.open[tok] = e
	}
}

func (l *lagTracker) end(tok uint64) {
	l.mu.Lock()
	delete(l.open, tok)
	l.mu.Unlock()
}

// oldest returns, per table, the earliest commit time (µs) of a transaction not done.
func (l *lagTracker) oldest() map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int64{}
	for _, e := range l.open {
		for _, t := range e.tables {
			if v, ok := out[t]; !ok || e.tsUs < v {
				out[t] = e.tsUs
			}
		}
	}
	return out
}
