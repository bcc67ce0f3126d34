package capture

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/semaphore"

	"github.com/music-coord/music/changeevent"
)

// batch is a run of consecutive events, handed from the binlog reader to the publisher
// in binlog order. A batch that ends a transaction carries the position after it.
type batch struct {
	events   []*changeevent.Event
	subjects []string
	endPos   *resumePoint // nil unless the batch ends a source transaction
	txns     int          // source transactions the batch completes

	weight int64 // events held against the pipeline's budget
	msgs   []*nats.Msg
	bytes  int
	err    error
	done   chan struct{} // closed when msgs are encoded
}

// pipeline encodes batches in parallel, publishes them in order with a bounded window of
// unacknowledged messages, and tracks the position up to which everything is acknowledged.
type pipeline struct {
	js      jetstream.JetStream
	site    string
	m       *Metrics
	workers int

	order  chan *batch // binlog order, read by publish
	encode chan *batch // read by the encoders
	acks   chan ackItem

	budget   int64
	sem      *semaphore.Weighted         // events submitted and not yet acknowledged
	acked    atomic.Pointer[resumePoint] // everything up to here is acknowledged
	onAck    func(*resumePoint)
	inFlight atomic.Int64
}

type ackItem struct {
	futs   []jetstream.PubAckFuture
	ops    map[changeevent.Op]int
	bytes  int
	txns   int
	endPos *resumePoint
	weight int64
}

var stallWait = jetstream.WithStallWait(30 * time.Second)

// newPipeline makes a pipeline holding at most budget events between submit and their
// acknowledgement (memory stays bounded whatever the transaction sizes).
func newPipeline(js jetstream.JetStream, site string, m *Metrics, window, workers int, budget int64, start resumePoint) *pipeline {
	p := &pipeline{js: js, site: site, m: m, workers: workers, budget: budget, sem: semaphore.NewWeighted(budget),
		order: make(chan *batch, 256), encode: make(chan *batch, 256), acks: make(chan ackItem, window)}
	p.acked.Store(&start)
	return p
}

// submit hands a batch over; it blocks while the window is full.
func (p *pipeline) submit(ctx context.Context, b *batch) error {
	b.done = make(chan struct{})
	b.weight = min(int64(len(b.events)), p.budget)
	if err := p.sem.Acquire(ctx, b.weight); err != nil {
		return err
	}
	select {
	case p.order <- b:
	case <-ctx.Done():
		return ctx.Err()
	}
	if len(b.events) == 0 {
		close(b.done)
		return nil
	}
	select {
	case p.encode <- b:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close ends the input: publish and ack drain what was submitted.
func (p *pipeline) close() {
	close(p.order)
	close(p.encode)
}

func (p *pipeline) encoder(ctx context.Context) {
	enc := changeevent.NewEncoder()
	size := 512
	for b := range p.encode {
		b.msgs = make([]*nats.Msg, len(b.events))
		for i, e := range b.events {
			data, err := enc.Append(make([]byte, 0, size), e)
			size = max(size, len(data)+64)
			if err != nil {
				b.err = fmt.Errorf("encode %s: %w", changeevent.MsgID(p.site, e.Source.GTID, e.Source.Row), err)
				break
			}
			msg := &nats.Msg{Subject: b.subjects[i], Data: data, Header: nats.Header{}}
			msg.Header[jetstream.MsgIDHeader] = []string{msgID(p.site, e)}
			b.msgs[i] = msg
			b.bytes += len(data)
		}
		close(b.done)
	}
}

// msgID is changeevent.MsgID (without fmt); snapshot rows use their snapshot id.
func msgID(site string, e *changeevent.Event) string {
	id := e.Source.GTID
	if e.Op == changeevent.OpRead {
		id = e.Transaction.ID
	}
	return site + ":" + id + ":" + strconv.Itoa(e.Source.Row)
}

// publish sends encoded batches in order, asynchronously.
func (p *pipeline) publish(ctx context.Context) error {
	defer close(p.acks)
	for b := range p.order {
		select {
		case <-b.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if b.err != nil {
			return b.err
		}
		item := ackItem{endPos: b.endPos, bytes: b.bytes, txns: b.txns, weight: b.weight}
		if len(b.msgs) > 0 {
			item.futs = make([]jetstream.PubAckFuture, 0, len(b.msgs))
			item.ops = map[changeevent.Op]int{}
		}
		for i, msg := range b.msgs {
			fut, err := p.js.PublishMsgAsync(msg, stallWait)
			if err != nil {
				p.m.Errors.WithLabelValues("publish").Inc()
				return fmt.Errorf("publish to %s: %w", msg.Subject, err)
			}
			item.futs = append(item.futs, fut)
			item.ops[b.events[i].Op]++
		}
		p.inFlight.Add(int64(len(item.futs)))
		p.m.InFlight.Set(float64(p.inFlight.Load()))
		select {
		case p.acks <- item:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// ack waits for acknowledgements in order and advances the acknowledged position.
func (p *pipeline) ack(ctx context.Context) error {
	for item := range p.acks {
		for _, fut := range item.futs {
			select {
			case <-fut.Ok():
			case err := <-fut.Err():
				p.m.Errors.WithLabelValues("publish").Inc()
				return fmt.Errorf("publish %s: %w", fut.Msg().Header.Get(jetstream.MsgIDHeader), err)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		p.inFlight.Add(-int64(len(item.futs)))
		p.sem.Release(item.weight)
		for op, n := range item.ops {
			p.m.Events.WithLabelValues(string(op)).Add(float64(n))
		}
		p.m.Bytes.Add(float64(item.bytes))
		p.m.Transactions.Add(float64(item.txns))
		if item.endPos != nil {
			p.acked.Store(item.endPos)
			if p.onAck != nil {
				p.onAck(item.endPos)
			}
		}
	}
	return nil
}

// Acked is the point up to which every event is acknowledged.
func (p *pipeline) Acked() resumePoint { return *p.acked.Load() }
