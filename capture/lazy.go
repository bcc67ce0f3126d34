package capture

import (
	"sync"

	"github.com/go-mysql-org/go-mysql/replication"
)

// lazyRows defers the decoding of rows events until the reader knows it wants them.
// go-mysql decodes every rows event as it parses the stream; most of a site's binlog can be
// changes replayed from other sites (other GTID domains), which capture drops, and tables
// outside the filters. The parser now only decodes the header (table id) and keeps a copy of
// the event body; the reader decodes the rows of the events it publishes.
type lazyRows struct {
	mu      sync.Mutex
	pending map[*replication.RowsEvent]lazyBody
}

type lazyBody struct {
	pos  int // where the rows start, after the header
	data []byte
}

func newLazyRows() *lazyRows {
	return &lazyRows{pending: map[*replication.RowsEvent]lazyBody{}}
}

// parse is go-mysql's RowsEventDecodeFunc: called by the parser goroutine for each rows
// event.
func (l *lazyRows) parse(e *replication.RowsEvent, data []byte) error {
	pos, err := e.DecodeHeader(data)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.pending[e] = lazyBody{pos: pos, data: append([]byte(nil), data...)}
	l.mu.Unlock()
	return nil
}

// take removes e's body; with decode, it decodes e's rows into e.Rows. The reader calls it
// for every rows event, so no body is kept longer than its event.
func (l *lazyRows) take(e *replication.RowsEvent, decode bool) error {
	l.mu.Lock()
	b, ok := l.pending[e]
	delete(l.pending, e)
	l.mu.Unlock()
	if !ok || !decode {
		return nil
	}
	return e.DecodeData(b.pos, b.data)
}
