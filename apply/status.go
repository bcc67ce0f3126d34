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
	Pending     uint64                 `json:"pending"`   // messages not yet applied (consumer pending plus unacknowledged)
	InFlight    int                    `json:"in_flight"` // transactions queued or running
	Assembling  int                    `json:"assembling"`
	Applied     uint64                 `json:"applied"` // transactions applied by at least one sink
	Refused     uint64                 `json:"refused"`
	Skipped     uint64                 `json:"skipped"`     // transactions not applied because a table they touch is quarantined
	Fenced      uint64                 `json:"fenced"`      // sync transactions fenced out (see TableStatus.Fenced)
	Quarantined []string               `json:"quarantined"` // tables, see TableStatus.Quarantined
	Tables      map[string]TableStatus `json:"tables"`
	// LastError is the latest error; it clears once no table has an error and the
	// consumer works again (LastErrorAt stays).
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// TableStatus is one mirrored table's apply state from one origin ("db.table"; "db.*" for
// a schema change of a whole database).
type TableStatus struct {
	// LagMs is the milliseconds between now and the origin commit of the oldest change of
	// the table not yet applied (being assembled, queued, retried or skipped); with none,
	// the lag of the last applied transaction, and 0 once nothing is pending.
	LagMs int64 `json:"lag_ms"`
	// Sync: the table is a sync table (its transactions pass the sync gate).
	Sync        bool      `json:"sync,omitempty"`
	LastApplied time.Time `json:"last_applied"`
	LastGTID    string    `json:"last_gtid"`
	Rows        uint64    `json:"rows"`
	Conflicts   uint64    `json:"conflicts"`
	Refused     uint64    `json:"refused"`
	Failures    uint64    `json:"failures"` // failed apply attempts (retried)
	Retrying    bool      `json:"retrying,omitempty"`
	LastError   string    `json:"last_error,omitempty"` // cleared by the next successful apply
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Quarantined: a change of the table could not be applied (refused, or failed
	// Config.MaxRetries times): the table's transactions are skipped (acknowledged, not
	// applied) until it is released; resync the table. QuarantineReason names the change
	// (GTID, key) and the error.
	Quarantined      bool      `json:"quarantined,omitempty"`
	QuarantineReason string    `json:"quarantine_reason,omitempty"`
	QuarantinedAt    time.Time `json:"quarantined_at,omitzero"`
	// Skipped transactions since the quarantine began: how many, the first and last GTID.
	Skipped          uint64 `json:"skipped,omitempty"`
	SkippedFirstGTID string `json:"skipped_first_gtid,omitempty"`
	SkippedLastGTID  string `json:"skipped_last_gtid,omitempty"`
	// Fenced: transactions on this sync table its origin committed without owning the
	// table (it lost ownership first, or the write bypassed the gateway): not applied.
	Fenced         uint64    `json:"fenced,omitempty"`
	LastFencedGTID string    `json:"last_fenced_gtid,omitempty"`
	LastFencedAt   time.Time `json:"last_fenced_at,omitzero"`
	skippedSinceUs int64     // origin commit time of the first skipped transaction
	skippedFirst   Version
	skippedLast    Version
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
	out.Quarantined = append([]string(nil), st.s.Quarantined...)
	return out
}

// fail records err, on table too if not "".
func (st *status) fail(err error, table string) {
	st.update(func(s *OriginStatus) {
		now := time.Now()
		s.LastError, s.LastErrorAt = err.Error(), now
		if table != "" {
			ts := s.Tables[table]
			ts.LastError, ts.LastErrorAt = err.Error(), now
			s.Tables[table] = ts
		}
	})
}

// clearOriginError clears the origin's LastError when no table has one (s locked).
func clearOriginError(s *OriginStatus) {
	for _, ts := range s.Tables {
		if ts.LastError != "" {
			return
		}
	}
	s.LastError = ""
}
