package capture

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
)

// PurgedError says capture cannot continue from its checkpoint without losing changes:
// transactions of the site's own domain after the checkpoint are no longer in the binlog
// (purged), or the server refuses the position (MariaDB error 1236). They were never
// published; the captured tables must be resnapshotted.
type PurgedError struct {
	// Position is the checkpoint's position (own domain).
	Position string
	// Domain is the site's GTID domain.
	Domain uint32
	// LostFrom and LostTo bound the own-domain GTIDs that may be lost (LostTo "" when
	// unknown); FirstAvailable is the first own-domain GTID the binlog still has ("" when
	// unknown).
	LostFrom, LostTo, FirstAvailable string
	// Tables are the captured tables to resnapshot (when capture could list them).
	Tables []string
	// Err is the server's error, if the server refused the position.
	Err error
}

func (e *PurgedError) Error() string {
	var b strings.Builder
	pos := e.Position
	if pos == "" {
		pos = "(no GTID of the domain yet)"
	}
	fmt.Fprintf(&b, "capture: binlog purged: transactions of domain %d after the checkpoint %s are not in the binlog and were never published", e.Domain, pos)
	switch {
	case e.LostFrom != "" && e.LostTo != "":
		fmt.Fprintf(&b, "; GTIDs %s to %s may be lost", e.LostFrom, e.LostTo)
	case e.LostFrom != "":
		fmt.Fprintf(&b, "; GTIDs from %s may be lost", e.LostFrom)
	}
	if e.FirstAvailable != "" {
		fmt.Fprintf(&b, " (the first available is %s)", e.FirstAvailable)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, " (server: %v)", e.Err)
	}
	b.WriteString("; to recover, resnapshot every captured table: set auto_snapshot_on_purge: true " +
		"(capture then continues from the binlog's current end and snapshots every captured table), or " +
		"delete the checkpoint (nats kv del <state_bucket> checkpoint) and run " +
		"`music capture --start current --snapshot db.table` for each captured table")
	if len(e.Tables) > 0 {
		shown := e.Tables
		if len(shown) > 20 {
			shown = shown[:20]
		}
		fmt.Fprintf(&b, " (%d tables: %s", len(e.Tables), strings.Join(shown, ","))
		if len(shown) < len(e.Tables) {
			b.WriteString(",...")
		}
		b.WriteString(")")
	}
	return b.String()
}

func (e *PurgedError) Unwrap() error { return e.Err }

// next is the GTID after g in its domain (the server id is unknown: shown as g's).
func next(g GTID) string { return GTID{Domain: g.Domain, Server: g.Server, Seq: g.Seq + 1}.String() }

// firstGTIDAfter is the text of the first GTID after the checkpoint's own GTID (own nil:
// the domain's first).
func firstGTIDAfter(domain uint32, own *GTID) string {
	if own == nil {
		return fmt.Sprintf("%d-*-1", domain)
	}
	return next(*own)
}

// oldestBinlogState is the oldest binlog file and the GTID state at its start (its
// Gtid_list event: the last GTID of each domain in the purged binlog before it).
func oldestBinlogState(ctx context.Context, db *sql.DB) (string, Position, error) {
	var file string
	rows, err := db.QueryContext(ctx, "SHOW BINARY LOGS")
	if err != nil {
		return "", nil, fmt.Errorf("show binary logs: %w", err)
	}
	if rows.Next() {
		cols, _ := rows.Columns()
		vals := make([]any, len(cols))
		vals[0] = &file
		for i := 1; i < len(vals); i++ {
			vals[i] = new(sql.RawBytes)
		}
		if err := rows.Scan(vals...); err != nil {
			rows.Close()
			return "", nil, err
		}
	}
	rows.Close()
	if file == "" {
		return "", nil, errors.New("show binary logs: no binlog (is log_bin on?)")
	}
	ev, err := db.QueryContext(ctx, "SHOW BINLOG EVENTS IN '"+strings.ReplaceAll(file, "'", "''")+"' LIMIT 4")
	if err != nil {
		return "", nil, fmt.Errorf("show binlog events in %s: %w", file, err)
	}
	defer ev.Close()
	for ev.Next() {
		var name, typ, info string
		var pos, server, end uint64
		if err := ev.Scan(&name, &pos, &typ, &server, &end, &info); err != nil {
			return "", nil, err
		}
		if typ == "Gtid_list" {
			p, err := ParsePosition(strings.Trim(strings.TrimSpace(info), "[]"))
			if err != nil {
				return "", nil, fmt.Errorf("gtid list of %s: %w", file, err)
			}
			return file, p, nil
		}
	}
	return file, Position{}, ev.Err()
}

// checkCoverage returns a *PurgedError when the binlog no longer holds every own-domain
// transaction after the checkpoint position pos: the oldest binlog file starts after a
// GTID of the domain newer than the checkpoint's (or the checkpoint has none).
func (c *Capturer) checkCoverage(ctx context.Context, db *sql.DB, pos Position) error {
	file, state, err := oldestBinlogState(ctx, db)
	if err != nil {
		return err
	}
	last, purged := state[c.cfg.DomainID]
	if !purged {
		return nil // nothing of the domain was purged
	}
	own, has := pos[c.cfg.DomainID]
	if has && own.Seq >= last.Seq {
		return nil
	}
	pe := &PurgedError{Position: pos.Only(c.cfg.DomainID).String(), Domain: c.cfg.DomainID, LostTo: last.String(),
		FirstAvailable: "the first of domain " + fmt.Sprint(c.cfg.DomainID) + " in " + file}
	if has {
		pe.LostFrom = next(own)
	} else {
		pe.LostFrom = firstGTIDAfter(c.cfg.DomainID, nil)
	}
	return pe
}

// checkGap verifies the session's first own-domain transaction g (whose GTID event starts
// at file:off) directly follows the checkpoint's own GTID start (nil: none): either it is
// start's successor, or the binlog's GTID state just before g has start as the domain's
// last GTID, or the oldest binlog file still follows start (the transactions in between
// are there but flagged skip_replication, which the dump filters). Otherwise transactions
// in between were purged: a *PurgedError.
func (c *Capturer) checkGap(ctx context.Context, db *sql.DB, start *GTID, g GTID, file string, off uint32) error {
	if start != nil && (g.Seq <= start.Seq || g.Server == start.Server && g.Seq == start.Seq+1) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	before, err := binlogGTIDPos(ctx, db, file, off)
	if err != nil {
		return fmt.Errorf("check the binlog before %s: %w", g, err)
	}
	prev, ok := before[c.cfg.DomainID]
	switch {
	case start == nil && !ok, start != nil && ok && prev == *start:
		return nil
	case start != nil && c.checkCoverage(ctx, db, Position{c.cfg.DomainID: *start}) == nil:
		// The binlog still holds everything after the checkpoint: what lies between are
		// transactions of the domain the dump does not send (flagged skip_replication:
		// apply's own-site writes, such as snapshot rows and repairs), not a purge.
		return nil
	}
	pe := &PurgedError{Domain: c.cfg.DomainID, LostFrom: firstGTIDAfter(c.cfg.DomainID, start), FirstAvailable: g.String()}
	if start != nil {
		pe.Position = start.String()
	}
	if ok {
		pe.LostTo = prev.String()
	}
	c.log.Error("gap in the binlog: the first transaction of the domain received does not follow the checkpoint",
		zap.Stringer("first", g), zap.String("before_it", before.String()), zap.String("checkpoint", pe.Position))
	return pe
}

// currentPoint is the binlog's current end as a resume point.
func currentPoint(ctx context.Context, db *sql.DB) (resumePoint, error) {
	var rp resumePoint
	var ignored1, ignored2 sql.NullString
	row := db.QueryRowContext(ctx, "SHOW MASTER STATUS")
	if err := row.Scan(&rp.File, &rp.Offset, &ignored1, &ignored2); err != nil {
		return rp, fmt.Errorf("show master status (is the binlog on?): %w", err)
	}
	var err error
	rp.Pos, err = binlogGTIDPos(ctx, db, rp.File, rp.Offset)
	return rp, err
}

// recoverPurge (auto_snapshot_on_purge) moves the checkpoint to the binlog's current end
// and schedules a snapshot of every captured table (kept in the state bucket like the
// initial snapshot, so a restart resumes it).
func (c *Capturer) recoverPurge(ctx context.Context, st *state, db *sql.DB) (resumePoint, error) {
	rp, err := currentPoint(ctx, db)
	if err != nil {
		return rp, err
	}
	if err := st.markInitialSnapshot(ctx, initialSnapshot{}); err != nil {
		return rp, err
	}
	if err := st.saveCheckpoint(ctx, rp); err != nil {
		return rp, err
	}
	c.m.PurgeResnapshots.Inc()
	c.log.Error("binlog purged: auto_snapshot_on_purge: continuing from the binlog's current end and resnapshotting every captured table",
		zap.String("position", rp.Pos.String()), zap.String("file", rp.File), zap.Uint32("offset", rp.Offset))
	return rp, nil
}

// capturedTableNames lists the captured tables as db.table (nil on error).
func (c *Capturer) capturedTableNames(ctx context.Context, db *sql.DB) []string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tables, err := c.capturedTables(ctx, db)
	if err != nil {
		return nil
	}
	out := make([]string, len(tables))
	for i, t := range tables {
		out[i] = t.db + "." + t.table
	}
	return out
}
