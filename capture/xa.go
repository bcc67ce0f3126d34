package capture

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-mysql-org/go-mysql/replication"
	"go.uber.org/zap"

	"github.com/music-coord/music/changeevent"
)

// Two-phase XA transactions (MariaDB 10.5+ binlog). XA PREPARE writes an event group of
// its own: a GTID event flagged FL_PREPARED_XA (the XID follows in the GTID event), the
// rows, and an XA_PREPARE_LOG_EVENT instead of the XID event. The later XA COMMIT or XA
// ROLLBACK (from any connection, also after a server restart) is a second group: a GTID
// event flagged FL_COMPLETED_XA (with the XID) and the query "XA COMMIT X'..',X'..',n" or
// "XA ROLLBACK ...". XA COMMIT ... ONE PHASE is logged like any transaction.
//
// The reader keeps a prepared group's events in memory until its completion: at XA COMMIT
// they are published as ONE transaction under the commit group's GTID (and commit time);
// at XA ROLLBACK they are dropped. While a prepared transaction to be published is open,
// the resume point given to the checkpoint stays just before the oldest open prepare, so
// a restart reads the prepare again (see the package doc, Transactions).

const (
	flPreparedXA  = 0x40 // FL_PREPARED_XA: the group is an XA PREPARE
	flCompletedXA = 0x80 // FL_COMPLETED_XA: the group is an XA COMMIT or XA ROLLBACK
	flGroupCommit = 0x02 // FL_GROUP_COMMIT_ID: a commit id follows the flags
)

// xid is an XA transaction id: format id, global transaction id and branch qualifier.
type xid struct {
	format       uint32
	gtrid, bqual string
}

// String is the XID as MariaDB writes it in the binlog: X'gtrid',X'bqual',format.
func (x xid) String() string {
	return "X'" + hex.EncodeToString([]byte(x.gtrid)) + "',X'" + hex.EncodeToString([]byte(x.bqual)) + "'," +
		strconv.FormatUint(uint64(x.format), 10)
}

// gtidEventXID reads the XID of a GTID event flagged FL_PREPARED_XA or FL_COMPLETED_XA
// from its raw event (header, body, maybe checksum): after sequence number (8), domain
// (4) and flags (1), the commit id (8) if FL_GROUP_COMMIT_ID, then format id (4 LE),
// gtrid length (1), bqual length (1), gtrid and bqual.
func gtidEventXID(raw []byte) (xid, bool) {
	if len(raw) < replication.EventHeaderSize+13 {
		return xid{}, false
	}
	body := raw[replication.EventHeaderSize:]
	flags := body[12]
	if flags&(flPreparedXA|flCompletedXA) == 0 {
		return xid{}, false
	}
	p := 13
	if flags&flGroupCommit != 0 {
		p += 8
	}
	if len(body) < p+6 {
		return xid{}, false
	}
	format := binary.LittleEndian.Uint32(body[p:])
	gl, bl := int(body[p+4]), int(body[p+5])
	p += 6
	if gl > 64 || bl > 64 || len(body) < p+gl+bl {
		return xid{}, false
	}
	return xid{format: format, gtrid: string(body[p : p+gl]), bqual: string(body[p+gl : p+gl+bl])}, true
}

// xaPrepareXID reads the XID of an XA_PREPARE_LOG_EVENT body: one_phase (1), format id,
// gtrid length and bqual length (4 LE each), gtrid and bqual.
func xaPrepareXID(body []byte) (xid, bool) {
	if len(body) < 13 {
		return xid{}, false
	}
	format := binary.LittleEndian.Uint32(body[1:])
	gl, bl := binary.LittleEndian.Uint32(body[5:]), binary.LittleEndian.Uint32(body[9:])
	if gl > 64 || bl > 64 || uint32(len(body)) < 13+gl+bl {
		return xid{}, false
	}
	return xid{format: format, gtrid: string(body[13 : 13+gl]), bqual: string(body[13+gl : 13+gl+bl])}, true
}

// parseXAStatement reads "XA COMMIT|ROLLBACK X'hex',X'hex',n" as MariaDB logs it: the
// verb and the XID (ok false when the XID is not in that form).
func parseXAStatement(q string) (verb string, x xid, ok bool) {
	f := strings.Fields(q)
	if len(f) < 2 || !strings.EqualFold(f[0], "XA") {
		return "", xid{}, false
	}
	verb = strings.ToUpper(f[1])
	rest := strings.TrimSpace(strings.Join(f[2:], " "))
	parts := strings.Split(rest, ",")
	if len(parts) != 3 {
		return verb, xid{}, false
	}
	unhex := func(s string) (string, bool) {
		s = strings.TrimSpace(s)
		if len(s) < 3 || (s[0] != 'X' && s[0] != 'x') || s[1] != '\'' || s[len(s)-1] != '\'' {
			return "", false
		}
		b, err := hex.DecodeString(s[2 : len(s)-1])
		return string(b), err == nil
	}
	g, ok1 := unhex(parts[0])
	b, ok2 := unhex(parts[1])
	n, err := strconv.ParseUint(strings.TrimSpace(parts[2]), 10, 32)
	if !ok1 || !ok2 || err != nil {
		return verb, xid{}, false
	}
	return verb, xid{format: uint32(n), gtrid: g, bqual: b}, true
}

// preparedXA is a prepared XA transaction waiting for its XA COMMIT or XA ROLLBACK.
type preparedXA struct {
	xid      xid
	gtid     GTID // of the prepare group
	before   resumePoint
	events   []*changeevent.Event
	subjects []string
	skip     string // why its rows would not be published ("" if they would)
	// hold: the transaction has events to publish, so the checkpoint stays at before.
	hold bool
}

// xaState is the reader's open prepared XA transactions, in prepare order.
type xaState struct {
	open []*preparedXA
}

func (s *xaState) find(x xid) int {
	for i, p := range s.open {
		if p.xid == x {
			return i
		}
	}
	return -1
}

// take removes and returns the open prepared transaction x (nil if there is none).
func (s *xaState) take(x xid) *preparedXA {
	i := s.find(x)
	if i < 0 {
		return nil
	}
	p := s.open[i]
	s.open = append(s.open[:i], s.open[i+1:]...)
	return p
}

// held is the point before the oldest open prepare that holds the checkpoint (nil: none).
func (s *xaState) held() *resumePoint {
	for _, p := range s.open {
		if p.hold {
			return &p.before
		}
	}
	return nil
}

// resume is the resume point to store after what the reader has read so far: the point
// after the last complete transaction, or, while a prepared XA transaction to be published
// is open, the point just before the oldest one's prepare group.
func (r *reader) resume() *resumePoint {
	if h := r.xa.held(); h != nil {
		rp := *h
		rp.Pos = h.Pos.Clone()
		return &rp
	}
	return &resumePoint{Pos: r.pos.Clone(), File: r.file, Offset: r.logPos, ClockUs: r.clockUs}
}

// beginXA notes, at a GTID event, whether the group is an XA PREPARE or an XA completion,
// its XID, and (for a prepare) the resume point just before it.
func (r *reader) beginXA(ev *replication.BinlogEvent, e *replication.MariadbGTIDEvent) {
	switch {
	case e.Flags&flPreparedXA != 0:
		r.txn.xa = xaPrepare
	case e.Flags&flCompletedXA != 0:
		r.txn.xa = xaComplete
	default:
		return
	}
	r.txn.xid, r.txn.xidOK = gtidEventXID(ev.RawData)
	r.txn.before = resumePoint{Pos: r.pos.Clone(), File: r.file, Offset: ev.Header.LogPos - ev.Header.EventSize, ClockUs: r.clockUs}
}

// prepare ends an XA PREPARE group (at its XA_PREPARE_LOG_EVENT): its events are kept
// until the transaction's completion, nothing is published.
func (r *reader) prepare(ctx context.Context, ev *replication.BinlogEvent, body []byte) error {
	if !r.txn.active {
		return nil
	}
	x, ok := xaPrepareXID(body)
	if !ok {
		x, ok = r.txn.xid, r.txn.xidOK
	}
	if !ok {
		return fmt.Errorf("XA PREPARE at %s:%d (%s): unreadable XID", r.file, ev.Header.LogPos, r.txn.gtidStr)
	}
	if r.txn.xa != xaPrepare {
		// Not flagged (should not happen): the point before the group is unknown, so hold
		// at the last stored point, which is before it.
		r.txn.before = *r.p.acked.Load()
	}
	r.txn.active = false
	p := &preparedXA{xid: x, gtid: r.txn.gtid, before: r.txn.before, skip: r.txn.skip}
	if r.txn.count > len(r.txn.buf) {
		return fmt.Errorf("XA PREPARE %s: events already streamed", r.txn.gtidStr) // add never streams a prepare
	}
	if len(r.txn.buf) > 0 && p.skip == "" {
		p.events = append([]*changeevent.Event(nil), r.txn.buf...)
		p.subjects = append([]string(nil), r.txn.subjects...)
		p.hold = true
	}
	if old := r.xa.take(x); old != nil {
		// The same XID prepared again without completion seen (a re-read after a dump
		// restart inside this session): the newer prepare replaces it.
		r.c.log.Warn("XA transaction prepared twice", zap.String("xid", x.String()), zap.Stringer("first", old.gtid),
			zap.String("again", r.txn.gtidStr))
	}
	r.xa.open = append(r.xa.open, p)
	if r.txn.gtid.Domain == r.c.cfg.DomainID {
		r.pos[r.txn.gtid.Domain] = r.txn.gtid
	}
	if p.hold {
		r.c.log.Info("XA transaction prepared: its events wait for XA COMMIT, the checkpoint stays before it",
			zap.String("xid", x.String()), zap.String("gtid", r.txn.gtidStr), zap.Int("events", len(p.events)),
			zap.Int("open", len(r.xa.open)))
	}
	if err := r.p.submit(ctx, &batch{endPos: r.resume()}); err != nil {
		return err
	}
	return r.flushSnapshot(ctx)
}

// complete handles the query of an XA completion group ("XA COMMIT ..." or "XA ROLLBACK
// ..."): a commit publishes the prepared events as one transaction under this group's
// GTID; a rollback drops them.
func (r *reader) complete(ctx context.Context, ev *replication.BinlogEvent, verb string, qx xid, qok bool) error {
	x, ok := r.txn.xid, r.txn.xidOK
	if !ok {
		x, ok = qx, qok
	}
	var p *preparedXA
	if ok {
		p = r.xa.take(x)
	}
	r.txn.buf, r.txn.subjects, r.txn.count, r.txn.touched = r.txn.buf[:0], r.txn.subjects[:0], 0, r.txn.touched[:0]
	own := r.txn.gtid.Domain == r.c.cfg.DomainID && r.txn.skip == ""
	switch {
	case verb != "COMMIT":
		if r.txn.skip == "" {
			r.txn.skip = "xa_rollback"
		}
	case p == nil:
		if own {
			// Its XA PREPARE lies before this session's start: it had nothing captured (a
			// prepare with captured rows holds the checkpoint before it), or capture started
			// for the first time between its XA PREPARE and XA COMMIT.
			r.c.log.Info("XA COMMIT of a transaction prepared before the session's start: nothing to publish",
				zap.String("xid", x.String()), zap.String("gtid", r.txn.gtidStr))
			r.txn.skip = "xa_unknown"
		}
	case !p.hold:
		if r.txn.skip == "" {
			r.txn.skip = p.skip
		}
	case r.txn.skip != "":
		r.c.log.Warn("XA COMMIT not published: the commit is not of this site's domain or skip_replication",
			zap.String("xid", x.String()), zap.String("prepared", p.gtid.String()), zap.String("gtid", r.txn.gtidStr),
			zap.String("reason", r.txn.skip))
	default:
		for i, e := range p.events {
			e.Source.ServerID, e.Source.GTID = r.txn.gtid.Server, r.txn.gtidStr
			e.Source.TsMs, e.Source.TsUs = r.txn.tsUs/1000, r.txn.tsUs
			e.Transaction = changeevent.Transaction{ID: r.txn.gtidStr, Index: r.txn.count}
			e.Source.Row = r.txn.count
			r.txn.tables[e.Source.DB+"."+e.Source.Table] = struct{}{}
			if s := r.snap; s != nil && s.db == e.Source.DB && s.table == e.Source.Table {
				if e.Op == changeevent.OpUpdate {
					r.txn.touched = append(r.txn.touched, snapTouch{key: keyString(keyOf(e.Before, e.Key))})
				}
				r.txn.touched = append(r.txn.touched, snapTouch{key: keyString(e.Key)})
			}
			if err := r.add(ctx, e, p.subjects[i]); err != nil {
				return err
			}
		}
		r.c.log.Info("XA transaction committed", zap.String("xid", x.String()), zap.String("prepared", p.gtid.String()),
			zap.String("gtid", r.txn.gtidStr), zap.Int("events", len(p.events)))
	}
	if p != nil && p.hold && verb != "COMMIT" {
		r.c.log.Info("XA transaction rolled back: nothing published", zap.String("xid", x.String()),
			zap.String("prepared", p.gtid.String()), zap.String("gtid", r.txn.gtidStr))
	}
	return r.commit(ctx, ev)
}

// keyOf is row's values of key's columns.
func keyOf(row, key changeevent.Row) changeevent.Row {
	out := changeevent.Row{}
	for k := range key {
		out[k] = row[k]
	}
	return out
}

// xaKind is what an event group is for XA.
type xaKind uint8

const (
	xaNone     xaKind = iota
	xaPrepare         // XA PREPARE group (ends with an XA_PREPARE_LOG_EVENT)
	xaComplete        // XA COMMIT or XA ROLLBACK group (a query)
)

// xaQuery handles an "XA ..." statement in the binlog: the completion of a prepared
// transaction, or the XA END of a prepare group (ignored).
func (r *reader) xaQuery(ctx context.Context, ev *replication.BinlogEvent, q string) error {
	verb, x, ok := parseXAStatement(q)
	if !r.txn.active || verb != "COMMIT" && verb != "ROLLBACK" {
		return nil
	}
	return r.complete(ctx, ev, verb, x, ok)
}
