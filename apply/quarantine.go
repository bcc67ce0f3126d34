package apply

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/gocql/gocql"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// QuarantineSet is the set of quarantined tables ("db.table"): tables with a change that
// could not be applied (refused, or failing past Config.MaxRetries). A worker skips every
// transaction touching a quarantined table (and records it in the status) until the table
// is released; the operator releases it when starting the table's resync. Safe for
// concurrent use; workers may share one (Config.Quarantine).
type QuarantineSet struct {
	mu     sync.Mutex
	tables map[string]Quarantine
	// onChange is called (outside the lock) after every change, e.g. to refresh a gauge.
	onChange []func()
	kv       jetstream.KeyValue // where the set is kept (Persist); nil: memory only
	log      *zap.Logger
}

// persistTimeout bounds one write of the set to its bucket.
const persistTimeout = 10 * time.Second

// Quarantine says why and since when a table is quarantined.
type Quarantine struct {
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
}

// NewQuarantineSet returns an empty set.
func NewQuarantineSet() *QuarantineSet { return &QuarantineSet{tables: map[string]Quarantine{}} }

// Quarantine adds table with reason; it reports whether the table was not quarantined
// before (an already quarantined table keeps its first reason). A persisted set
// (Persist) writes it to its bucket too.
func (q *QuarantineSet) Quarantine(table, reason string) bool {
	why := &Quarantine{Reason: reason, Since: time.Now().UTC()}
	if !q.set(table, why) {
		return false
	}
	q.persist(table, why)
	return true
}

// Release removes table from the set; it reports whether it was quarantined.
func (q *QuarantineSet) Release(table string) bool {
	had := q.set(table, nil)
	q.persist(table, nil) // also when not held here: another process may have stored it
	return had
}

// set adds (why != nil; a table already in keeps its first reason) or removes table and
// reports whether the set changed; the change callbacks run outside the lock.
func (q *QuarantineSet) set(table string, why *Quarantine) bool {
	q.mu.Lock()
	_, had := q.tables[table]
	changed := had != (why != nil)
	if why != nil && !had {
		q.tables[table] = *why
	} else if why == nil {
		delete(q.tables, table)
	}
	fs := q.onChange
	q.mu.Unlock()
	if changed {
		for _, f := range fs {
			f()
		}
	}
	return changed
}

func (q *QuarantineSet) persist(table string, why *Quarantine) {
	q.mu.Lock()
	kv, log := q.kv, q.log
	q.mu.Unlock()
	if err := q.store(kv, table, why); err != nil && log != nil {
		log.Error("quarantine not stored: it will not survive a restart of this agent", zap.String("table", table), zap.Error(err))
	}
}

// IsQuarantined reports whether table is quarantined.
func (q *QuarantineSet) IsQuarantined(table string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, ok := q.tables[table]
	return ok
}

// Quarantined returns a copy of the set: table to why and since when.
func (q *QuarantineSet) Quarantined() map[string]Quarantine {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make(map[string]Quarantine, len(q.tables))
	for k, v := range q.tables {
		out[k] = v
	}
	return out
}

// Tables returns the quarantined tables, sorted.
func (q *QuarantineSet) Tables() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]string, 0, len(q.tables))
	for k := range q.tables {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// anyOf returns the first of tables that is quarantined, or "".
func (q *QuarantineSet) anyOf(tables []string) string {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, t := range tables {
		if _, ok := q.tables[t]; ok {
			return t
		}
	}
	return ""
}

func (q *QuarantineSet) notify(f func()) {
	q.mu.Lock()
	q.onChange = append(q.onChange, f)
	q.mu.Unlock()
}

// Transient reports whether err looks like an outage (network, server unavailable or
// overloaded, timeouts, lock contention) rather than a problem with the change itself. A
// worker retries transient failures forever (the status shows them and the lag grows);
// only other failures quarantine a table after Config.MaxRetries attempts, so a MariaDB or
// Cassandra restart never quarantines anything.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	var me *mysql.MySQLError
	var re gocql.RequestError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, driver.ErrBadConn), errors.Is(err, mysql.ErrInvalidConn),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, gocql.ErrNoConnections), errors.Is(err, gocql.ErrTimeoutNoResponse),
		errors.Is(err, gocql.ErrConnectionClosed), errors.Is(err, gocql.ErrSessionClosed),
		errors.Is(err, gocql.ErrUnavailable),
		errors.As(err, &ne):
		return true
	case errors.As(err, &me):
		switch me.Number {
		case 1040, 1053, 1205, 1213, 1290, 1927, 2002, 2003, 2006, 2013: // too many connections, shutdown, lock wait, deadlock, read only, killed, gone
			return true
		}
		return false
	case errors.As(err, &re):
		switch re.Code() {
		case gocql.ErrCodeServer, gocql.ErrCodeUnavailable, gocql.ErrCodeOverloaded, gocql.ErrCodeBootstrapping,
			gocql.ErrCodeTruncate, gocql.ErrCodeWriteTimeout, gocql.ErrCodeReadTimeout, gocql.ErrCodeReadFailure,
			gocql.ErrCodeWriteFailure:
			return true
		}
		return false
	}
	s := strings.ToLower(err.Error())
	for _, m := range []string{"connection refused", "connection reset", "broken pipe", "no hosts available",
		"timeout", "timed out", "unavailable", "server shutdown", "too many connections", "i/o"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}
