package apply

import (
	"sync"
	"time"
)

// OriginStatus is what a worker shows about one origin site.
type OriginStatus struct {
	Local       string                 `json:"local"`
	Origin      string                 `json:"origin"`
	Stream      string                 `json:"stream"`
	Consumer    string                 `json:"consumer"`
	Pending     uint64                 `json:"pending"`   // messages not yet applied
	InFlight    int                    `json:"in_flight"` // transactions queued or running
	Applied     uint64                 `json:"applied"`   // transactions applied by at least one sink
	Refused     uint64                 `json:"refused"`
	Tables      map[string]TableStatus `json:"tables"`
	LastError   string                 `json:"last_error,omitempty"`
	LastErrorAt time.Time              `json:"last_error_at,omitzero"`
}

// TableStatus is one mirrored table's apply state from one origin.
type TableStatus struct {
	LagMs       int64     `json:"lag_ms"` // 0 when caught up
	LastApplied time.Time `json:"last_applied"`
	LastGTID    string    `json:"last_gtid"`
	Rows        uint64    `json:"rows"`
	Conflicts   uint64    `json:"conflicts"`
	Refused     uint64    `json:"refused"`
	LastError   string    `json:"last_error,omitempty"`
}

// status is a worker's mutable status.
type status struct {
	mu sync.Mutex
	s  OriginStatus
}

func (st *status) update(f func(*OriginStatus)) {
	st.mu.Lock()
	defer st.mu.Unlock()
	f(&st.s)
}

func (st *status) snapshot() OriginStatus {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := st.s
	out.Tables = make(map[string]TableStatus, len(st.s.Tables))
	for k, v := range st.s.Tables {
		out.Tables[k] = v
	}
	return out
}

func (st *status) fail(err error, table string) {
	st.update(func(s *OriginStatus) {
		s.LastError, s.LastErrorAt = err.Error(), time.Now()
		if table != "" {
			ts := s.Tables[table]
			ts.LastError = err.Error()
			s.Tables[table] = ts
		}
	})
}
