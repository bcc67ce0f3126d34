package applytest

import (
	"bytes"
	"context"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/music-coord/music/changeevent"
)

// Format is how Messages packs events, as capture does.
type Format struct {
	// EventsPerMessage is the most events one message body holds (capture's default is
	// 500); 0 or 1: one event per message.
	EventsPerMessage int
	// PartSize is the largest body: a message is closed before it would grow past it, and
	// an event larger than it alone goes out in parts; 0: changeevent.DefaultPartSize.
	PartSize int
}

// Subject is the subject capture publishes e on (DDL without a table on "_").
func Subject(e *changeevent.Event) string {
	t := e.Source.Table
	if t == "" {
		t = "_"
	}
	return changeevent.Subject(e.Source.Name, e.Source.DB, t)
}

// MsgID is the message id capture gives the message starting with e.
func MsgID(e *changeevent.Event) string {
	id := e.Source.GTID
	if e.Op == changeevent.OpRead {
		id = e.Transaction.ID
	}
	return e.Source.Name + ":" + id + ":" + strconv.Itoa(e.Source.Row)
}

// Messages packs events into messages the way capture does: consecutive events of one
// transaction (or snapshot) and one subject share a message body, '\n'-separated, up to
// f.EventsPerMessage events and f.PartSize bytes; an event bigger than f.PartSize is sent
// as part messages (changeevent.PartOfHeader ...).
func Messages(events []*changeevent.Event, f Format) ([]*nats.Msg, error) {
	per := max(f.EventsPerMessage, 1)
	size := f.PartSize
	if size <= 0 {
		size = changeevent.DefaultPartSize
	}
	var out []*nats.Msg
	var cur []*changeevent.Event
	var buf bytes.Buffer
	flush := func() {
		if len(cur) == 0 {
			return
		}
		m := nats.NewMsg(Subject(cur[0]))
		m.Data = append([]byte(nil), buf.Bytes()...)
		m.Header.Set(jetstream.MsgIDHeader, MsgID(cur[0]))
		m.Header.Set(changeevent.EventsHeader, strconv.Itoa(len(cur)))
		out = append(out, m)
		cur = cur[:0]
		buf.Reset()
	}
	for _, e := range events {
		data, err := changeevent.Marshal(e)
		if err != nil {
			return nil, err
		}
		if len(data) > size { // alone, in parts
			flush()
			id := MsgID(e)
			parts := changeevent.Split(data, size)
			for i, p := range parts {
				m := nats.NewMsg(Subject(e))
				m.Data = p
				m.Header.Set(jetstream.MsgIDHeader, changeevent.PartID(id, i))
				m.Header.Set(changeevent.PartOfHeader, id)
				m.Header.Set(changeevent.PartHeader, strconv.Itoa(i))
				m.Header.Set(changeevent.PartsHeader, strconv.Itoa(len(parts)))
				out = append(out, m)
			}
			continue
		}
		if len(cur) > 0 && (len(cur) >= per || cur[0].Transaction.ID != e.Transaction.ID ||
			Subject(cur[0]) != Subject(e) || buf.Len()+1+len(data) > size) {
			flush()
		}
		if len(cur) > 0 {
			buf.WriteByte('\n')
		}
		buf.Write(data)
		cur = append(cur, e)
	}
	flush()
	return out, nil
}

// Publish sends msgs to js in order, asynchronously, and waits for every acknowledgement.
func Publish(ctx context.Context, js jetstream.JetStream, msgs []*nats.Msg) error {
	futs := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			return err
		}
		futs = append(futs, f)
	}
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Streamed stamps events as one transaction of o committed at tsMs the way capture
// streams a transaction bigger than its buffer: every event with Total 0, the last with
// Last and the final Total.
func (o *Origin) Streamed(tsMs int64, events ...*changeevent.Event) []*changeevent.Event {
	o.Tx(tsMs, events...)
	for _, e := range events {
		e.Transaction.Total = 0
	}
	last := &events[len(events)-1].Transaction
	last.Total, last.Last = len(events), true
	return events
}

// Snapshot stamps rows as snapshot reads of t at o: op r, transaction id
// "snapshot:<db>.<table>:<startMs>", Total 0, the origin's current GTID and the read
// time as commit time, rows numbered from first.
func (o *Origin) Snapshot(t Table, startMs, tsMs int64, first int, rows ...changeevent.Row) []*changeevent.Event {
	gtid := strconv.FormatUint(uint64(o.Domain), 10) + "-" + strconv.FormatUint(uint64(o.Domain), 10) + "-" + strconv.FormatUint(o.Seq, 10)
	id := "snapshot:" + t.DB + "." + t.Name + ":" + strconv.FormatInt(startMs, 10)
	out := make([]*changeevent.Event, len(rows))
	for i, r := range rows {
		key := changeevent.Row{}
		for _, c := range t.Columns {
			if c.PK {
				key[c.Name] = r[c.Name]
			}
		}
		out[i] = &changeevent.Event{Op: changeevent.OpRead, After: r, Key: key, Columns: t.Columns,
			Source: changeevent.Source{Connector: "mariadb", Version: "test", Name: o.Name, ServerID: o.Domain, GTID: gtid,
				Row: first + i, TsMs: tsMs, DB: t.DB, Table: t.Name, Snapshot: "true"},
			TsMs: tsMs, Transaction: changeevent.Transaction{ID: id, Index: first + i}}
	}
	return out
}
