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

// tracker acknowledges, with AckAll, the highest stream sequence below which every
// delivered message is done.
type tracker struct {
	mu    sync.Mutex
	seqs  []uint64 // delivered, not yet acknowledged, ascending
	done  map[uint64]bool
	msgs  map[uint64]jetstream.Msg
	floor uint64 // highest acknowledged
	ack   func(seq uint64, m jetstream.Msg)
}

func newTracker(floor uint64, onError func(error)) *tracker {
	return &tracker{done: map[uint64]bool{}, msgs: map[uint64]jetstream.Msg{}, floor: floor,
		ack: func(_ uint64, m jetstream.Msg) {
			if err := m.Ack(); err != nil && onError != nil {
				onError(err)
			}
		}}
}

// add registers a delivered message; it reports false for one already held or acknowledged.
func (t *tracker) add(seq uint64, m jetstream.Msg) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, held := t.msgs[seq]; held || seq <= t.floor {
		return false
	}
	t.msgs[seq] = m
	i := sort.Search(len(t.seqs), func(i int) bool { return t.seqs[i] >= seq })
	t.seqs = append(t.seqs, 0)
	copy(t.seqs[i+1:], t.seqs[i:])
	t.seqs[i] = seq
	return true
}

// complete marks messages done and acknowledges what became contiguous.
func (t *tracker) complete(seqs ...uint64) {
	t.mu.Lock()
	for _, s := range seqs {
		if _, held := t.msgs[s]; held {
			t.done[s] = true
		}
	}
	var last jetstream.Msg
	n := 0
	for n < len(t.seqs) && t.done[t.seqs[n]] {
		s := t.seqs[n]
		last = t.msgs[s]
		t.floor = s
		delete(t.done, s)
		delete(t.msgs, s)
		n++
	}
	t.seqs = t.seqs[n:]
	floor := t.floor
	t.mu.Unlock()
	if n > 0 {
		t.ack(floor, last) // AckAll: acknowledges every message up to floor
	}
}

// held is the number of delivered, unacknowledged messages.
func (t *tracker) held() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.seqs)
}
