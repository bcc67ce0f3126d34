package capture

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// Capture states (Status.State).
const (
	// StateStarting: before the first binlog session streams.
	StateStarting = "starting"
	// StateRunning: streaming, and the session made progress since the last error.
	StateRunning = "running"
	// StateRetrying: a session failed (or NATS is disconnected); capture retries with
	// backoff. LastError says why; it clears once a session makes progress again (an
	// acknowledged transaction, or caught up with nothing unacknowledged).
	StateRetrying = "retrying"
	// StateStopped: Run returned (cancelled, or a fatal error such as a purged binlog).
	StateStopped = "stopped"
)

// Status is what GET /status on capture's metrics address returns (JSON), for operators
// and `music status`. Decode it into this struct; Format prints it.
type Status struct {
	Site     string `json:"site"`
	DomainID uint32 `json:"domain_id"`
	State    string `json:"state"` // starting, running, retrying, stopped
	// Position is the own domain's GTID of the stored checkpoint (everything up to it is
	// acknowledged by JetStream); File and Offset are the same point in the binlog.
	Position       string    `json:"position"`
	File           string    `json:"file,omitempty"`
	Offset         uint32    `json:"offset,omitempty"`
	CheckpointedAt time.Time `json:"checkpointed_at,omitzero"`
	// Acked is the own domain's GTID acknowledged by JetStream (ahead of Position by at
	// most one checkpoint interval).
	Acked string `json:"acked,omitempty"`
	// LagMs is the time between the source commit and its processing of the last
	// transaction; 0 when idle.
	LagMs       int64     `json:"lag_ms"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Purged is set when capture stopped because the binlog after the checkpoint was
	// purged (LastError says which GTIDs and how to recover).
	Purged bool `json:"purged,omitempty"`
	// StoppedTables maps db.table to why capture stopped publishing it.
	StoppedTables map[string]string `json:"stopped_tables,omitempty"`
	Snapshots     []SnapshotStatus  `json:"snapshots,omitempty"`
	// PublishedEvents and PublishedTransactions count what JetStream acknowledged since
	// the process started.
	PublishedEvents       int64 `json:"published_events"`
	PublishedTransactions int64 `json:"published_transactions"`
	Reconnects            int64 `json:"reconnects"`
	InFlightEvents        int64 `json:"in_flight_events"`
	// AutoIncrement is the warning of the start-up check of auto_increment_increment (""
	// when the site steps by more than 1), see Capturer.AutoIncrementWarning.
	AutoIncrement string `json:"auto_increment_warning,omitempty"`
}

// SnapshotStatus is one snapshot's progress in Status.
type SnapshotStatus struct {
	Table      string    `json:"table"` // db.table
	Done       int64     `json:"done"`
	Total      int64     `json:"total"`
	RowsPerSec float64   `json:"rows_per_sec"`
	ETASeconds float64   `json:"eta_seconds"`
	Started    time.Time `json:"started"`
	Finished   bool      `json:"finished"`
	Error      string    `json:"error,omitempty"`
}

// Healthy reports whether the status is a capture that streams without error.
func (s Status) Healthy() bool { return s.State == StateRunning && s.LastError == "" }

// Format writes the status as indented text lines (each prefixed by indent).
func (s Status) Format(w io.Writer, indent string) {
	p := func(format string, args ...any) { fmt.Fprintf(w, indent+format+"\n", args...) }
	p("site %s (domain %d): %s", s.Site, s.DomainID, s.State)
	cp := s.Position
	if cp == "" {
		cp = "(none)"
	}
	if s.File != "" {
		cp += fmt.Sprintf(" (%s:%d)", s.File, s.Offset)
	}
	if !s.CheckpointedAt.IsZero() {
		cp += ", stored " + s.CheckpointedAt.UTC().Format(time.RFC3339)
	}
	p("  checkpoint %s", cp)
	p("  lag %d ms, published %d events in %d transactions, %d in flight, %d reconnects",
		s.LagMs, s.PublishedEvents, s.PublishedTransactions, s.InFlightEvents, s.Reconnects)
	if s.LastError != "" {
		p("  last error (%s): %s", s.LastErrorAt.UTC().Format(time.RFC3339), s.LastError)
	}
	names := make([]string, 0, len(s.StoppedTables))
	for t := range s.StoppedTables {
		names = append(names, t)
	}
	sort.Strings(names)
	for _, t := range names {
		p("  table %s stopped: %s", t, s.StoppedTables[t])
	}
	for _, sn := range s.Snapshots {
		state := fmt.Sprintf("%d/%d rows, %.0f rows/s, eta %s", sn.Done, sn.Total, sn.RowsPerSec,
			(time.Duration(sn.ETASeconds) * time.Second).String())
		if sn.Finished {
			state = fmt.Sprintf("done, %d rows", sn.Done)
		}
		if sn.Error != "" {
			state = "failed: " + sn.Error
		}
		p("  snapshot %s: %s", sn.Table, state)
	}
}

// String is Format without indent.
func (s Status) String() string {
	var b strings.Builder
	s.Format(&b, "")
	return b.String()
}

// statusState is the capturer's mutable status (under Capturer.mu unless atomic).
type statusState struct {
	state       string
	lastErr     string
	lastErrAt   time.Time
	purged      bool
	saved       *resumePoint // the stored checkpoint
	savedAt     time.Time
	lagMs       atomic.Int64
	events      atomic.Int64
	txns        atomic.Int64
	reconnects  atomic.Int64
	inFlight    atomic.Int64
	natsDownErr error
	failedAt    *GTID // own-domain transaction whose publish failed last (PublishError)
}

// Status returns the capturer's status.
func (c *Capturer) Status() Status {
	s := Status{Site: c.cfg.Site, DomainID: c.cfg.DomainID, LagMs: c.st.lagMs.Load(),
		PublishedEvents: c.st.events.Load(), PublishedTransactions: c.st.txns.Load(),
		Reconnects: c.st.reconnects.Load(), InFlightEvents: c.st.inFlight.Load(), AutoIncrement: c.AutoIncrementWarning()}
	if p := c.acked.Load(); p != nil {
		if g, ok := p.Pos[c.cfg.DomainID]; ok {
			s.Acked = g.String()
		}
	}
	for name, err := range c.TableErrors() {
		if s.StoppedTables == nil {
			s.StoppedTables = map[string]string{}
		}
		s.StoppedTables[name] = err.Error()
	}
	for _, p := range c.Snapshots() {
		sn := SnapshotStatus{Table: p.DB + "." + p.Table, Done: p.Done, Total: p.Total, RowsPerSec: p.RowsPerSec,
			ETASeconds: p.ETA.Seconds(), Started: p.Started, Finished: p.Finished}
		if p.Err != nil {
			sn.Error = p.Err.Error()
		}
		s.Snapshots = append(s.Snapshots, sn)
	}
	sort.Slice(s.Snapshots, func(i, j int) bool { return s.Snapshots[i].Started.Before(s.Snapshots[j].Started) })
	c.mu.Lock()
	defer c.mu.Unlock()
	s.State, s.LastError, s.LastErrorAt, s.Purged = c.st.state, c.st.lastErr, c.st.lastErrAt, c.st.purged
	if c.st.saved != nil {
		if g, ok := c.st.saved.Pos[c.cfg.DomainID]; ok {
			s.Position = g.String()
		}
		s.File, s.Offset, s.CheckpointedAt = c.st.saved.File, c.st.saved.Offset, c.st.savedAt
	}
	return s
}

// failed records a session error: capture retries (or stops, if fatal).
func (c *Capturer) failed(err error, state string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st.state, c.st.lastErr, c.st.lastErrAt = state, err.Error(), time.Now().UTC()
	c.health = err
}

// streaming is called when a session starts streaming: it is healthy at once unless an
// error is pending, which only progress clears (a session that fails again after
// connecting must not look healthy in between).
func (c *Capturer) streaming() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st.lastErr == "" {
		c.st.state, c.health = StateRunning, nil
	}
}

// progressed is called when a session made progress: an acknowledged batch, or caught
// up with nothing unacknowledged. It clears the last error.
func (c *Capturer) progressed() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st.state == StateStopped || c.st.purged || c.st.natsDownErr != nil {
		return
	}
	if f := c.st.failedAt; f != nil {
		// A publish failed at f: only an acknowledged position past it is progress (the
		// other transactions a new session re-reads before it are not).
		p := c.acked.Load()
		if p == nil || p.Pos[f.Domain].Seq < f.Seq {
			return
		}
		c.st.failedAt = nil
	}
	c.st.state, c.st.lastErr, c.st.lastErrAt, c.health = StateRunning, "", time.Time{}, nil
}

// natsDown marks the NATS connection lost (err) or back (nil).
func (c *Capturer) natsDown(err error) {
	c.mu.Lock()
	c.st.natsDownErr = err
	c.mu.Unlock()
	if err != nil {
		c.failed(fmt.Errorf("capture: nats disconnected: %w", err), StateRetrying)
	}
}

func (c *Capturer) checkpointed(rp resumePoint) {
	c.mu.Lock()
	c.st.saved, c.st.savedAt = &rp, time.Now().UTC()
	c.mu.Unlock()
}

// StatusHandler serves c.Status() as JSON (always 200; see Status.State).
func StatusHandler(c *Capturer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(c.Status())
	})
}
