package changeevent

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// An encoded event larger than one JetStream message may carry (the server's
// max_payload) is sent as several part messages on the event's subject, in order. Each
// part carries the headers below and its own message id, MsgID + "#" + part number, so a
// re-published part is dropped by the duplicate window like any event. A consumer joins
// the parts of one event (same PartOfHeader) in part order, then decodes the whole.
const (
	// PartOfHeader is the message id of the whole event a part belongs to.
	PartOfHeader = "Music-Part-Of"
	// PartHeader is the part's number, from 0.
	PartHeader = "Music-Part"
	// PartsHeader is the number of parts of the event.
	PartsHeader = "Music-Parts"
	// DefaultPartSize is the part size capture uses: well under NATS' default 1 MiB
	// max_payload, so it works with any server setting.
	DefaultPartSize = 512 << 10
)

// ErrBadPart marks a part message whose headers do not describe a part.
var ErrBadPart = errors.New("changeevent: bad part headers")

// Split cuts data into parts of at most size bytes; data that fits is one part.
func Split(data []byte, size int) [][]byte {
	if size <= 0 || len(data) <= size {
		return [][]byte{data}
	}
	parts := make([][]byte, 0, (len(data)+size-1)/size)
	for len(data) > size {
		parts = append(parts, data[:size])
		data = data[size:]
	}
	return append(parts, data)
}

// PartID is the message id of part i of the event whose message id is id.
func PartID(id string, i int) string { return id + "#" + strconv.Itoa(i) }

// PartInfo is what a part message's headers say.
type PartInfo struct {
	Of    string // the whole event's message id
	Part  int    // 0 .. Parts-1
	Parts int
}

// ParsePart reads a message's part headers through get (e.g. nats.Header.Get). ok is
// false for a message that is a whole event (no PartOfHeader).
func ParsePart(get func(string) string) (info PartInfo, ok bool, err error) {
	info.Of = get(PartOfHeader)
	if info.Of == "" {
		return PartInfo{}, false, nil
	}
	p, err1 := strconv.Atoi(get(PartHeader))
	n, err2 := strconv.Atoi(get(PartsHeader))
	if err1 != nil || err2 != nil || n < 1 || p < 0 || p >= n {
		return PartInfo{}, true, fmt.Errorf("%w: %s=%q %s=%q %s=%q", ErrBadPart, PartOfHeader, info.Of,
			PartHeader, get(PartHeader), PartsHeader, get(PartsHeader))
	}
	info.Part, info.Parts = p, n
	return info, true, nil
}

// Joiner puts events sent in parts back together. Parts may arrive more than once
// (redelivery); a part already held is ignored. Not safe for concurrent use.
type Joiner struct {
	open map[string][][]byte
}

// NewJoiner returns an empty joiner.
func NewJoiner() *Joiner { return &Joiner{open: map[string][][]byte{}} }

// Add files one part; once every part of its event is there it returns the whole
// encoded event (done true) and forgets it.
func (j *Joiner) Add(info PartInfo, data []byte) (whole []byte, done bool) {
	parts := j.open[info.Of]
	if len(parts) != info.Parts {
		parts = make([][]byte, info.Parts)
		j.open[info.Of] = parts
	}
	if parts[info.Part] == nil {
		parts[info.Part] = append([]byte{}, data...)
	}
	size := 0
	for _, p := range parts {
		if p == nil {
			return nil, false
		}
		size += len(p)
	}
	whole = make([]byte, 0, size)
	for _, p := range parts {
		whole = append(whole, p...)
	}
	delete(j.open, info.Of)
	return whole, true
}

// Pending is the number of events with parts still missing.
func (j *Joiner) Pending() int { return len(j.open) }

// A message body holds one or more encoded events of one source transaction (or one
// snapshot) and one subject, in order, separated by '\n' (newline-delimited JSON; the
// encoder never writes a raw newline inside an event). A body with one event is exactly
// that event's JSON, so a consumer that reads one event per message reads the first
// event of each. The message id is MsgID of the body's first event, plus "+<n-1>" for a
// body of n > 1 events; EventsHeader carries the event count.
const EventsHeader = "Music-Events"

// DecodeMessage decodes every event of a message body (see EventsHeader).
func DecodeMessage(data []byte) ([]*Event, error) {
	var out []*Event
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		e, err := Unmarshal(line)
		if err != nil {
			return out, fmt.Errorf("event %d of the message: %w", len(out), err)
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: empty message", ErrMalformed)
	}
	return out, nil
}
