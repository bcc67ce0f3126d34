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

	weight int64       // events held against the pipeline's budget
	msgs   []*nats.Msg // the encoded messages: several events each, or the parts of one
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
	limits  msgLimits

	order  chan *batch // binlog order, read by publish
	encode chan *batch // read by the encoders
	acks   chan ackItem

	budget int64
	sem    *semaphore.Weighted         // events submitted and not yet acknowledged
	acked  atomic.Pointer[resumePoint] // everything up to here is acknowledged
	onAck  func(*resumePoint)
	// onProgress is called after each acknowledged batch with its events and transactions.
	onProgress func(events, txns int)
	inFlight   atomic.Int64

	submitted, done atomic.Int64 // batches
}

type ackItem struct {
	gtid   string // of the batch's events
	futs   []jetstream.PubAckFuture
	ops    map[changeevent.Op]int
	bytes  int
	txns   int
	endPos *resumePoint
	weight int64
	events int
}

var stallWait = jetstream.WithStallWait(30 * time.Second)

// newPipeline makes a pipeline holding at most budget events between submit and their
// acknowledgement (memory stays bounded whatever the transaction sizes).
func newPipeline(js jetstream.JetStream, site string, m *Metrics, window, workers int, budget int64, start resumePoint, lim msgLimits) *pipeline {
	p := &pipeline{js: js, site: site, m: m, workers: workers, budget: budget, limits: lim, sem: semaphore.NewWeighted(budget),
		order: make(chan *batch, 256), encode: make(chan *batch, 256), acks: make(chan ackItem, window)}
	p.acked.Store(&start)
	return p
}

// submit hands a batch over; it blocks while the window is full.
func (p *pipeline) submit(ctx context.Context, b *batch) error {
	b.done = make(chan struct{})
	p.submitted.Add(1)
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
	for b := range p.encode {
		b.err = p.encodeBatch(enc, b)
		close(b.done)
	}
}

// msgLimits bound a message: events and body bytes per message, and the part size of an
// event too big for one message.
type msgLimits struct {
	events, bytes, part int
}

// encodeBatch turns a batch into messages: consecutive events with one subject share a
// message (up to the limits), each event's JSON on its own line; an event whose encoding
// is over the part size goes alone, in part messages. The grouping depends only on the
// events and the limits, so a re-published transaction gets the same message ids.
func (p *pipeline) encodeBatch(enc *changeevent.Encoder, b *batch) error {
	lim := p.limits
	var body []byte // the open message's body
	var first *changeevent.Event
	var subject string
	n := 0
	flush := func() {
		if n == 0 {
			return
		}
		msg := &nats.Msg{Subject: subject, Data: body, Header: nats.Header{}}
		msg.Header[jetstream.MsgIDHeader] = []string{messageID(p.site, first, n)}
		msg.Header[changeevent.EventsHeader] = []string{strconv.Itoa(n)}
		b.msgs = append(b.msgs, msg)
		b.bytes += len(body)
		body, first, n = nil, nil, 0
	}
	for i, e := range b.events {
		if n > 0 && (b.subjects[i] != subject || n >= lim.events) {
			flush()
		}
		mark := len(body)
		if n > 0 {
			body = append(body, '\n')
		}
		if body == nil {
			body = make([]byte, 0, min(lim.bytes, 64<<10))
		}
		var err error
		body, err = enc.Append(body, e)
		if err != nil {
			return fmt.Errorf("encode %s: %w", msgID(p.site, e), err)
		}
		size := len(body) - mark
		if n > 0 {
			size-- // the newline
		}
		if n > 0 && (size > lim.part || len(body) > lim.bytes) {
			// The event does not fit the open message: close it without the event and
			// start the next one with it.
			data := append([]byte(nil), body[len(body)-size:]...)
			body = body[:mark]
			flush()
			body = data
		}
		if size > lim.part {
			// Too big for a message of its own: parts, each with its part id.
			id := msgID(p.site, e)
			parts := changeevent.Split(body, lim.part)
			for j, part := range parts {
				msg := &nats.Msg{Subject: b.subjects[i], Data: part, Header: nats.Header{}}
				msg.Header[jetstream.MsgIDHeader] = []string{changeevent.PartID(id, j)}
				msg.Header[changeevent.PartOfHeader] = []string{id}
				msg.Header[changeevent.PartHeader] = []string{strconv.Itoa(j)}
				msg.Header[changeevent.PartsHeader] = []string{strconv.Itoa(len(parts))}
				b.msgs = append(b.msgs, msg)
			}
			b.bytes += len(body)
			body, first, n = nil, nil, 0
			continue
		}
		if n == 0 {
			first, subject = e, b.subjects[i]
		}
		n++
		if len(body) >= lim.bytes {
			flush()
		}
	}
	flush()
	return nil
}

// messageID is the id of a message of n events starting with first: the first event's id,
// plus "+n-1" when the message holds more than one. Naming the whole range matters: if a
// re-published transaction were grouped differently (another limit, or an event encoded
// to another size), a message starting at the same event but holding more would otherwise
// be dropped as a duplicate and its extra events lost. With the range in the id it is
// published, and apply drops the events it already holds.
func messageID(site string, first *changeevent.Event, n int) string {
	id := msgID(site, first)
	if n > 1 {
		id += "+" + strconv.Itoa(n-1)
	}
	return id
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
		item := ackItem{endPos: b.endPos, bytes: b.bytes, txns: b.txns, weight: b.weight, events: len(b.events)}
		if len(b.events) > 0 {
			item.gtid = b.events[0].Source.GTID
		}
		if len(b.msgs) > 0 {
			item.futs = make([]jetstream.PubAckFuture, 0, len(b.msgs))
			item.ops = map[changeevent.Op]int{}
		}
		for _, e := range b.events {
			item.ops[e.Op]++
		}
		for _, msg := range b.msgs {
			fut, err := p.js.PublishMsgAsync(msg, stallWait)
			if err != nil {
				p.m.Errors.WithLabelValues("publish").Inc()
				return &PublishError{GTID: item.gtid, Err: fmt.Errorf("publish %s (%d bytes) to %s: %w",
					msg.Header.Get(jetstream.MsgIDHeader), len(msg.Data), msg.Subject, err)}
			}
			item.futs = append(item.futs, fut)
		}
		p.inFlight.Add(int64(item.events))
		p.m.InFlight.Set(float64(p.inFlight.Load()))
		select {
		case p.acks <- item:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// PublishError is a publish that JetStream refused or did not acknowledge, with the GTID
// of the transaction (or snapshot position) it belongs to: the status stays "retrying"
// until capture's acknowledged position passes it.
type PublishError struct {
	GTID string
	Err  error
}

func (e *PublishError) Error() string { return e.Err.Error() }
func (e *PublishError) Unwrap() error { return e.Err }

// ack waits for acknowledgements in order and advances the acknowledged position.
func (p *pipeline) ack(ctx context.Context) error {
	for item := range p.acks {
		for _, fut := range item.futs {
			select {
			case <-fut.Ok():
			case err := <-fut.Err():
				p.m.Errors.WithLabelValues("publish").Inc()
				return &PublishError{GTID: item.gtid, Err: fmt.Errorf("publish %s: %w", fut.Msg().Header.Get(jetstream.MsgIDHeader), err)}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		p.inFlight.Add(-int64(item.events))
		p.done.Add(1)
		p.sem.Release(item.weight)
		for op, n := range item.ops {
			p.m.Events.WithLabelValues(string(op)).Add(float64(n))
		}
		p.m.Bytes.Add(float64(item.bytes))
		p.m.Transactions.Add(float64(item.txns))
		if p.onProgress != nil && (item.events > 0 || item.endPos != nil) {
			p.onProgress(item.events, item.txns)
		}
		if item.endPos != nil {
			p.acked.Store(item.endPos)
			if p.onAck != nil {
				p.onAck(item.endPos)
			}
		}
	}
	return nil
}

// idle reports whether every submitted batch is acknowledged.
func (p *pipeline) idle() bool { return p.done.Load() == p.submitted.Load() }

// Acked is the point up to which every event is acknowledged.
func (p *pipeline) Acked() resumePoint { return *p.acked.Load() }
