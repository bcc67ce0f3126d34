package synctable

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gocql/gocql"
)

// ErrLostOwnership means a claim or a takeover found that another site (or a later
// ownership of this site) owns the table now.
var ErrLostOwnership = errors.New("synctable: ownership lost")

// Epoch is one site's ownership of one sync table: the site's commits with GTID sequence
// numbers in (Start, Last] are the table's, in that order. Base is the version (µs, as
// apply.Version.TsUs) of the commit Start+1; commit s has Base + (s - Start). A new
// epoch's Base is above every version of every earlier epoch of the table, so versions
// follow ownership order whatever the sites' clocks say.
type Epoch struct {
	Table string
	Site  string
	Start int64 // the site's last GTID seq before it took the table over
	Base  int64
	Fence int64 // the ownership's fencing token (prom)
	Last  int64 // the site's last claimed commit (Start: none yet)
}

// Version is the version (µs) of the epoch's commit seq.
func (e Epoch) Version(seq int64) int64 { return e.Base + (seq - e.Start) }

// MaxVersion is the highest version the epoch has given out (Base if none).
func (e Epoch) MaxVersion() int64 { return max(e.Base, e.Version(e.Last)) }

// Epochs keeps every sync table's ownership epochs in the MUSIC store (Cassandra), one
// partition per table:
//
//	music_sync_epochs (tbl, site, start) -> base, fence, last
//	static: owner, owner_fence          the current owner; changed by a takeover (LWT)
//	static: latest map<site, start>      each site's latest epoch
//	static: claimed map<site, seq>       each site's last claimed commit
//
// Every write is a lightweight transaction conditioned on the owner, so a site that lost
// the table can neither claim a commit nor open an epoch: once a takeover is through, the
// previous epochs are final.
type Epochs struct {
	s     *gocql.Session
	table string // keyspace-qualified
}

// NewEpochs creates the table in keyspace (which must exist) if needed.
func NewEpochs(ctx context.Context, s *gocql.Session, keyspace string) (*Epochs, error) {
	e := &Epochs{s: s, table: `"` + keyspace + `".music_sync_epochs`}
	q := "CREATE TABLE IF NOT EXISTS " + e.table + ` (tbl text, site text, start bigint,
		base bigint, fence bigint, last bigint,
		owner text static, owner_fence bigint static, latest map<text, bigint> static, claimed map<text, bigint> static,
		PRIMARY KEY (tbl, site, start)) WITH CLUSTERING ORDER BY (site ASC, start DESC)`
	if err := s.Query(q).WithContext(ctx).Exec(); err != nil {
		return nil, fmt.Errorf("synctable: create music_sync_epochs: %w", err)
	}
	return e, nil
}

// Owner is a table's current owner as the store knows it.
type Owner struct {
	Site    string
	Fence   int64
	Latest  map[string]int64 // site -> start of its latest epoch
	Claimed map[string]int64 // site -> its last claimed commit
}

// Owner reads the table's owner with a serial read (it sees every takeover that went
// through).
func (e *Epochs) Owner(ctx context.Context, table string) (Owner, error) {
	var o Owner
	err := e.s.Query("SELECT owner, owner_fence, latest, claimed FROM "+e.table+" WHERE tbl = ? LIMIT 1", table).
		WithContext(ctx).Consistency(serialRead).Scan(&o.Site, &o.Fence, &o.Latest, &o.Claimed)
	if errors.Is(err, gocql.ErrNotFound) {
		return Owner{}, nil
	}
	return o, err
}

// TakeOver makes site, with fence, the owner of table and opens its epoch: start is the
// site's last committed GTID seq, now the site's clock (µs). It returns the new epoch and
// what every site had claimed when the previous owner's epoch closed: the caller must
// have applied those commits before it runs a transaction on the table.
func (e *Epochs) TakeOver(ctx context.Context, table, site string, fence, start int64, now time.Time) (Epoch, Owner, error) {
	cur, err := e.Owner(ctx, table)
	if err != nil {
		return Epoch{}, Owner{}, err
	}
	if cur.Fence >= fence && cur.Site != "" {
		return Epoch{}, Owner{}, fmt.Errorf("%w: %s is owned by %s with fence %d, not below this site's %d",
			ErrLostOwnership, table, cur.Site, cur.Fence, fence)
	}
	// 1. Close the current epoch: from here on nobody else can claim a commit.
	cond, args := "IF owner_fence = ?", []any{site, fence, table, cur.Fence}
	if cur.Site == "" {
		cond, args = "IF owner_fence = null", args[:3]
	}
	applied, err := e.s.Query("UPDATE "+e.table+" SET owner = ?, owner_fence = ? WHERE tbl = ? "+cond, args...).
		WithContext(ctx).MapScanCAS(map[string]any{})
	if err != nil {
		return Epoch{}, Owner{}, fmt.Errorf("synctable: take over %s: %w", table, err)
	}
	if !applied {
		return Epoch{}, Owner{}, fmt.Errorf("%w: %s was taken over by another site meanwhile", ErrLostOwnership, table)
	}
	// 2. The previous epochs are final now: the new one starts above all their versions.
	final, err := e.Owner(ctx, table)
	if err != nil {
		return Epoch{}, Owner{}, err
	}
	base := now.UnixMicro()
	for s, st := range final.Latest {
		prev, err := e.epoch(ctx, table, s, st)
		if err != nil {
			return Epoch{}, Owner{}, err
		}
		base = max(base, prev.MaxVersion()+1)
	}
	// 3. Open this site's epoch, still as the owner.
	ep := Epoch{Table: table, Site: site, Start: start, Base: base, Fence: fence, Last: start}
	b := e.s.NewBatch(gocql.LoggedBatch).WithContext(ctx)
	b.Query("INSERT INTO "+e.table+" (tbl, site, start, base, fence, last) VALUES (?, ?, ?, ?, ?, ?)", table, site, start, base, fence, start)
	b.Query("UPDATE "+e.table+" SET latest[?] = ? WHERE tbl = ? IF owner = ? AND owner_fence = ?", site, start, table, site, fence)
	applied, _, err = e.s.MapExecuteBatchCAS(b, map[string]any{})
	if err != nil {
		return Epoch{}, Owner{}, fmt.Errorf("synctable: open epoch of %s: %w", table, err)
	}
	if !applied {
		return Epoch{}, Owner{}, fmt.Errorf("%w: %s was taken over by another site while this one opened its epoch", ErrLostOwnership, table)
	}
	return ep, final, nil
}

// epoch reads one epoch.
func (e *Epochs) epoch(ctx context.Context, table, site string, start int64) (Epoch, error) {
	ep := Epoch{Table: table, Site: site, Start: start}
	err := e.s.Query("SELECT base, fence, last FROM "+e.table+" WHERE tbl = ? AND site = ? AND start = ?", table, site, start).
		WithContext(ctx).Scan(&ep.Base, &ep.Fence, &ep.Last)
	if err != nil {
		return Epoch{}, fmt.Errorf("synctable: epoch %s/%s/%d: %w", table, site, start, err)
	}
	return ep, nil
}

// Claim records that ep's site committed seq (and, epochs being ranges, every commit of
// the site before it in the epoch) on the table as its owner. It fails with
// ErrLostOwnership if the site no longer owns the table and seq was not claimed before.
func (e *Epochs) Claim(ctx context.Context, ep Epoch, seq int64) (Epoch, error) {
	cas := map[string]any{}
	applied, err := e.s.Query("UPDATE "+e.table+" SET last = ?, claimed[?] = ? WHERE tbl = ? AND site = ? AND start = ?"+
		" IF owner = ? AND owner_fence = ? AND last < ?",
		seq, ep.Site, seq, ep.Table, ep.Site, ep.Start, ep.Site, ep.Fence, seq).WithContext(ctx).MapScanCAS(cas)
	if err != nil {
		return ep, fmt.Errorf("synctable: claim %s seq %d: %w", ep.Table, seq, err)
	}
	if applied {
		ep.Last = seq
		return ep, nil
	}
	if last, _ := cas["last"].(int64); last >= seq {
		ep.Last = last
		return ep, nil // claimed already, by a later commit's claim
	}
	owner, _ := cas["owner"].(string)
	return ep, fmt.Errorf("%w: %s is owned by %s now; commit seq %d of %s was not claimed in time", ErrLostOwnership, ep.Table, owner, seq, ep.Site)
}

// Verdict is what the store says of a site's commit on a sync table.
type Verdict int

const (
	Claimed Verdict = iota // in an epoch of its site: apply it, with Epoch.Version
	Pending                // its site owns the table and has not claimed it yet: wait
	Fenced                 // never will be claimed: do not apply it
)

// Judge says whether site's commit seq on table belongs to one of the site's epochs. A
// verdict of Fenced is confirmed with a serial read.
func (e *Epochs) Judge(ctx context.Context, table, site string, seq int64) (Verdict, Epoch, error) {
	v, ep, err := e.judge(ctx, table, site, seq, gocql.LocalQuorum)
	if err != nil || v != Fenced {
		return v, ep, err
	}
	return e.judge(ctx, table, site, seq, serialRead)
}

func (e *Epochs) judge(ctx context.Context, table, site string, seq int64, c gocql.Consistency) (Verdict, Epoch, error) {
	ep := Epoch{Table: table, Site: site}
	var owner string
	var ownerFence int64
	err := e.s.Query("SELECT start, base, fence, last, owner, owner_fence FROM "+e.table+
		" WHERE tbl = ? AND site = ? AND start < ? LIMIT 1", table, site, seq).WithContext(ctx).Consistency(c).
		Scan(&ep.Start, &ep.Base, &ep.Fence, &ep.Last, &owner, &ownerFence)
	switch {
	case errors.Is(err, gocql.ErrNotFound):
		return Fenced, ep, nil // the site never owned the table before this commit
	case err != nil:
		return 0, ep, fmt.Errorf("synctable: judge %s seq %d of %s: %w", table, seq, site, err)
	case seq <= ep.Last:
		return Claimed, ep, nil
	case owner == site && ownerFence == ep.Fence:
		return Pending, ep, nil
	}
	return Fenced, ep, nil
}

// serialRead reads at SERIAL: it completes any lightweight transaction in progress first,
// so it sees every takeover and claim that went through.
const serialRead = gocql.Consistency(gocql.Serial)
