package apply

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/music-coord/music/changeevent"
)

var (
	// ErrMalformed marks an event or transaction that cannot be applied as sent.
	ErrMalformed = errors.New("apply: malformed change")
	// ErrRefused marks a change a sink will not apply (unsupported DDL, a table without a
	// primary key, an identifier it cannot express). The worker records it in the status
	// and metrics, acknowledges it and goes on; an operator resyncs the table.
	ErrRefused = errors.New("apply: change refused")
)

// Txn is one complete source transaction: all its events in Transaction.Index order.
type Txn struct {
	Origin  string // origin site name
	ID      string // Transaction.ID, the origin GTID
	GTID    GTID
	Version Version
	Events  []*changeevent.Event
	// Resync marks a batch of independent rows, each with its own version (from its
	// Source): rows read from the MUSIC store to bring a table up to date, or snapshot rows
	// of an origin (NewSnapshotTxns). Sinks apply them without taking an origin GTID
	// (MariaDB: with skip_replication=1, so capture drops them).
	Resync bool
	// Own marks a transaction of the local site itself, read back from its own stream:
	// sinks record its version (and repair a row an older remote change overwrote) rather
	// than replay it. The worker sets it when Origin is the local site.
	Own bool
	// Sync lists the ownership units of the sync tables the transaction touches, and
	// TableVersions the versions of those tables (VersionFor), as the sync gate admitted
	// it; both empty for async tables.
	Sync          []string
	TableVersions map[string]Version
}

// IsDDL reports whether the transaction is a schema change.
func (t *Txn) IsDDL() bool {
	return len(t.Events) == 1 && t.Events[0].Op == changeevent.OpDDL
}

// NewTxn checks that events form one complete transaction and returns it. The events must
// be sorted by Transaction.Index: indexes 0 .. n-1, the last event carrying Total n (and
// possibly Last), every other one Total n (a buffered transaction) or 0 (a streamed one).
func NewTxn(events []*changeevent.Event) (*Txn, error) {
	if len(events) == 0 {
		return nil, fmt.Errorf("%w: empty transaction", ErrMalformed)
	}
	first, n := events[0], len(events)
	for i, e := range events {
		t := e.Transaction
		total := t.Total == n || (t.Total == 0 && i < n-1)
		if t.Index != i || !total || (t.Last && i != n-1) || t.ID != first.Transaction.ID {
			return nil, fmt.Errorf("%w: transaction %s: event %d has index %d/%d (last %v) of %d events", ErrMalformed,
				first.Transaction.ID, i, t.Index, t.Total, t.Last, n)
		}
		if e.Source.Name != first.Source.Name || e.Source.GTID != first.Source.GTID {
			return nil, fmt.Errorf("%w: transaction %s mixes origins or gtids", ErrMalformed, first.Transaction.ID)
		}
		if e.Op == changeevent.OpDDL && n != 1 {
			return nil, fmt.Errorf("%w: transaction %s: a ddl event must be alone", ErrMalformed, first.Transaction.ID)
		}
		if e.Op == changeevent.OpRead {
			return nil, fmt.Errorf("%w: transaction %s: a snapshot row (op r) belongs to no transaction", ErrMalformed, first.Transaction.ID)
		}
	}
	g, err := ParseGTID(first.Source.GTID)
	if err != nil {
		return nil, err
	}
	return &Txn{
		Origin: first.Source.Name, ID: first.Transaction.ID, GTID: g, Events: events,
		Version: Version{TsUs: commitUs(first.Source), Domain: g.Domain, Seq: g.Seq},
	}, nil
}

// IsSnapshot reports whether e is a snapshot row: op r, or a transaction id
// "snapshot:<db>.<table>:<ms>" (see changeevent.Transaction).
func IsSnapshot(e *changeevent.Event) bool {
	return e.Op == changeevent.OpRead || strings.HasPrefix(e.Transaction.ID, "snapshot:")
}

// NewSnapshotTxns turns snapshot rows (op r, from one message) into transactions of
// independent rows. They take the resync path in the sinks (Txn.Resync: each row carries
// its own version, from its Source; MariaDB writes them in the local domain flagged
// skip_replication). Consecutive rows with the same version share a transaction, so a
// sink that stamps a whole transaction with Txn.Version (the MUSIC store's write
// timestamp) stamps every row with its own. ID is the rows' GTID (the origin's position
// when the snapshot chunk was published), a GTID as the store expects.
func NewSnapshotTxns(events []*changeevent.Event) ([]*Txn, error) {
	if len(events) == 0 {
		return nil, fmt.Errorf("%w: empty snapshot message", ErrMalformed)
	}
	var out []*Txn
	for _, e := range events {
		if e.Op != changeevent.OpRead {
			return nil, fmt.Errorf("%w: snapshot %s: event with op %q", ErrMalformed, e.Transaction.ID, e.Op)
		}
		v, err := EventVersion(e)
		if err != nil {
			return nil, err
		}
		if n := len(out); n > 0 && out[n-1].Version == v && out[n-1].ID == e.Source.GTID && out[n-1].Origin == e.Source.Name {
			out[n-1].Events = append(out[n-1].Events, e)
			continue
		}
		g, _ := ParseGTID(e.Source.GTID)
		out = append(out, &Txn{Origin: e.Source.Name, ID: e.Source.GTID, GTID: g, Version: v,
			Events: []*changeevent.Event{e}, Resync: true})
	}
	return out, nil
}

// NewResyncTxn groups rows read from the MUSIC store (op "r", each with its own origin,
// GTID and commit time in Source) into one resync transaction.
func NewResyncTxn(events []*changeevent.Event) (*Txn, error) {
	if len(events) == 0 {
		return nil, fmt.Errorf("%w: empty resync batch", ErrMalformed)
	}
	for _, e := range events {
		if e.Op != changeevent.OpRead {
			return nil, fmt.Errorf("%w: resync event with op %q", ErrMalformed, e.Op)
		}
		if _, err := EventVersion(e); err != nil {
			return nil, err
		}
	}
	v, _ := EventVersion(events[0])
	return &Txn{Origin: events[0].Source.Name, ID: "resync", Version: v, Events: events, Resync: true}, nil
}

// EventVersion is the version of the transaction an event belongs to.
func EventVersion(e *changeevent.Event) (Version, error) {
	g, err := ParseGTID(e.Source.GTID)
	if err != nil {
		return Version{}, err
	}
	return Version{TsUs: commitUs(e.Source), Domain: g.Domain, Seq: g.Seq}, nil
}

// commitUs is the source commit time in µs (ts_us, or ts_ms for events without it).
func commitUs(s changeevent.Source) int64 {
	if s.TsUs != 0 {
		return s.TsUs
	}
	return s.TsMs * 1000
}

// Result says what a sink did with a transaction's rows.
type Result struct {
	Applied    int // row changes written
	Duplicates int // row changes already applied (re-delivery)
	Conflicts  int // row changes older than the row's winning version, not applied
}

// Sink applies source transactions.
//
// Apply applies tx all or nothing and idempotently: applying a transaction again, or an
// older version of a row after a newer one, changes nothing. It returns an error wrapping
// ErrRefused for a change it will never apply (the caller skips it), any other error for a
// failure worth retrying. Apply is called concurrently for transactions that touch
// disjoint rows.
type Sink interface {
	Name() string
	Apply(ctx context.Context, tx *Txn) (Result, error)
}
