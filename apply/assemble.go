package apply

import (
	"sort"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/music-coord/music/changeevent"
)

// assembler collects a transaction's events until all are there.
type assembler struct {
	open map[string]*partial // by Transaction.ID
	// finished remembers recently completed transaction ids so that a late redelivery of
	// one of their events is recognised, not mistaken for a new partial transaction.
	finished map[string]struct{}
	order    []string
	keep     int
}

type partial struct {
	events map[int]*changeevent.Event
	seqs   []uint64
}

func newAssembler(keep int) *assembler {
	return &assembler{open: map[string]*partial{}, finished: map[string]struct{}{}, keep: keep}
}

// add files ev (delivered at stream sequence seq). It returns the complete transaction's
// events and stream sequences once the last one arrives. dup is true for an event of a
// transaction already complete or an index already held.
func (a *assembler) add(ev *changeevent.Event, seq uint64) (events []*changeevent.Event, seqs []uint64, dup bool) {
	id := ev.Transaction.ID
	if _, ok := a.finished[id]; ok {
		return nil, nil, true
	}
	p := a.open[id]
	if p == nil {
		p = &partial{events: map[int]*changeevent.Event{}}
		a.open[id] = p
	}
	if _, ok := p.events[ev.Transaction.Index]; ok {
		return nil, nil, true
	}
	p.events[ev.Transaction.Index] = ev
	p.seqs = append(p.seqs, seq)
	total := ev.Transaction.Total
	if total < 1 {
		total = 1
	}
	if len(p.events) < total {
		return nil, nil, false
	}
	delete(a.open, id)
	a.finish(id)
	events = make([]*changeevent.Event, 0, len(p.events))
	for _, e := range p.events {
		events = append(events, e)
	}
	sort.Slice(events, func(i, j int) bool { return events[i].Transaction.Index < events[j].Transaction.Index })
	return events, p.seqs, false
}

func (a *assembler) finish(id string) {
	a.finished[id] = struct{}{}
	a.order = append(a.order, id)
	if len(a.order) > a.keep {
		delete(a.finished, a.order[0])
		a.order = a.order[1:]
	}
}

// tracker holds the delivered messages not yet acknowledged, and acknowledges each one on
// its own (AckExplicit) once its transaction is done. Acknowledging a floor instead (AckAll)
// would also acknowledge messages the client had received but never handed over (dropped
// with a consumer iterator that had to be restarted), which JetStream would then never
// deliver again.
type tracker struct {
	mu   sync.Mutex
	msgs map[uint64]jetstream.Msg
	ack  func(seq uint64, m jetstream.Msg)
}

func newTracker(onError func(error)) *tracker {
	return &tracker{msgs: map[uint64]jetstream.Msg{},
		ack: func(_ uint64, m jetstream.Msg) {
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

// held is the number of delivered, unacknowledged messages.
func (t *tracker) held() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.msgs)
}
