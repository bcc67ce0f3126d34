package mariadb

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/changeevent"
)

var _ apply.Repairer = (*Sink)(nil)

// Repair makes db.table hold exactly the reference's rows, whatever row_versions says,
// while the workers keep replaying (see the package documentation, "Resync"). It runs in
// two phases: copy (every reference row, compared by content under its locks) and delete
// (every local row the reference does not hold).
func (s *Sink) Repair(ctx context.Context, ref apply.Reference, db, table string, opt apply.RepairOptions, progress func(apply.ResyncProgress)) (apply.ResyncProgress, error) {
	p := apply.ResyncProgress{DB: db, Table: table, Started: time.Now(), Phase: "copy"}
	if opt.Batch <= 0 {
		opt.Batch = 500
	}
	if opt.KeepRecent == 0 {
		opt.KeepRecent = time.Minute
	}
	report := func() {
		if progress != nil {
			progress(p)
		}
	}
	cols, err := ref.Columns(ctx, db, table)
	if err != nil {
		return p, err
	}
	pk := apply.PKColumns(cols)
	if len(pk) == 0 {
		return p, fmt.Errorf("%w: %s.%s has no primary key", apply.ErrRefused, db, table)
	}
	r := &repair{s: s, db: db, table: table, pk: pk, seen: map[[32]byte]struct{}{}}
	if opt.KeepRecent > 0 {
		r.keepFrom = p.Started.Add(-opt.KeepRecent).UnixMicro()
	} else {
		r.keepFrom = 1<<63 - 1
	}
	err = ref.Scan(ctx, db, table, opt.Batch, func(events []*changeevent.Event) error {
		if err := r.copyBatch(ctx, events, &p); err != nil {
			return err
		}
		p.Rows += len(events)
		report()
		return nil
	})
	if err != nil {
		return p, err
	}
	p.Phase = "delete"
	report()
	if r.keyMismatch != "" {
		return p, fmt.Errorf("%w: local keys of %s.%s do not encode like the reference's (%s): rows the reference does not hold were not deleted",
			apply.ErrRefused, db, table, r.keyMismatch)
	}
	if err := r.deletePhase(ctx, opt.Batch, &p, report); err != nil {
		return p, err
	}
	p.Done, p.Phase = true, "done"
	report()
	return p, nil
}

// repair is the state of one table's repair.
type repair struct {
	s         *Sink
	db, table string
	pk        []changeevent.Column // the reference's primary key columns
	seen      map[[32]byte]struct{}
	keepFrom  int64 // µs: local versions from then on are too recent for the reference
	// keyMismatch is set when a local row's key, read back and encoded, does not match the
	// reference key it was found by: deleting "missing" keys would then be unsafe.
	keyMismatch string
}

// copyBatch brings the reference rows of one batch into the table, in one transaction:
// versions are read FOR UPDATE (the conflict rule's lock, so a replay of the same keys
// waits or is waited for), and so are the local rows; a row is written if it is missing or
// its content differs from the reference's, unless a newer version is recorded here (a
// change that reached this site before the reference: it wins). row_versions then holds the
// reference row's version, with what the resync wrote recorded as the row's last write (so
// the own stream can still restore a newer local write it overwrote).
func (r *repair) copyBatch(ctx context.Context, events []*changeevent.Event, prog *apply.ResyncProgress) error {
	tx, err := apply.NewResyncTxn(events)
	if err != nil {
		return err
	}
	p, err := newPlan(tx)
	if err != nil {
		return err
	}
	for _, k := range p.keys {
		r.seen[k.hash] = struct{}{}
	}
	var out apply.ResyncProgress
	err = r.s.retry(ctx, func() error {
		out = apply.ResyncProgress{}
		return r.s.withSession(ctx, localReplay, false, func(conn *sql.Conn) error {
			_, err := r.s.inTx(ctx, conn, func(sqlTx *sql.Tx) (apply.Result, error) {
				return apply.Result{}, r.copyTx(ctx, sqlTx, p, &out)
			})
			return err
		})
	})
	if err != nil {
		return err
	}
	prog.Applied += out.Applied
	prog.Duplicates += out.Duplicates
	prog.Conflicts += out.Conflicts
	prog.Versioned += out.Versioned
	return nil
}

func (r *repair) copyTx(ctx context.Context, tx *sql.Tx, p *plan, out *apply.ResyncProgress) error {
	s := r.s
	current, err := s.lockVersions(ctx, tx, p)
	if err != nil {
		return err
	}
	var cand []metaKey
	for _, k := range p.keys {
		st := current[k]
		if !st.absent && st.version.Compare(p.ver[k].v) > 0 {
			out.Conflicts++ // a newer change is here already
			s.log.Debug("resync: newer version kept", zap.String("table", k.table), zap.String("key", p.text[k]),
				zap.Stringer("version", st.version), zap.Stringer("reference", p.ver[k].v))
			continue
		}
		cand = append(cand, k)
	}
	if len(cand) == 0 {
		return nil
	}
	exists, err := r.lockRows(ctx, tx, p, cand)
	if err != nil {
		return err
	}
	differ, err := r.differs(ctx, tx, p, cand, exists)
	if err != nil {
		return err
	}
	write := map[metaKey]bool{}
	recs := map[metaKey]record{}
	for _, k := range cand {
		st := current[k]
		switch {
		case !exists[k] || differ[k]:
			write[k] = true
		case st.absent || st.deleted || st.version.Compare(p.ver[k].v) != 0:
			out.Versioned++
		default:
			out.Duplicates++
			continue
		}
		recs[k] = record{}
	}
	if len(recs) == 0 {
		return nil
	}
	n, err := s.writeRows(ctx, tx, p, write)
	if err != nil {
		return err
	}
	out.Applied += n
	pos, err := s.localPos(ctx, tx)
	if err != nil {
		return err
	}
	for k := range recs {
		w, err := winnerJSON(p.last[k])
		if err != nil {
			return err
		}
		recs[k] = record{localPos: pos, repair: true, winner: w}
	}
	return s.writeVersions(ctx, tx, p, recs, current)
}

// lockRows locks the local rows of keys (FOR UPDATE) and tells which exist. It also reads
// their primary key back and encodes it as the stream would: a key that does not come out
// the same marks the table's keys as not reliably encoded (see keyMismatch).
func (r *repair) lockRows(ctx context.Context, tx *sql.Tx, p *plan, keys []metaKey) (map[metaKey]bool, error) {
	table, err := quoteTable(r.db, r.table)
	if err != nil {
		return nil, err
	}
	names, err := quotedNames(r.pk)
	if err != nil {
		return nil, err
	}
	exists := map[metaKey]bool{}
	byText := map[string]metaKey{}
	var args []any
	var tuples []string
	for _, k := range keys {
		c := p.last[k]
		byText[p.text[k]] = k
		for _, col := range r.pk {
			args = append(args, sqlValue(col.Kind, c.Image[col.Name]))
		}
		tuples = append(tuples, placeholders(len(r.pk)))
	}
	q := "SELECT " + strings.Join(names, ",") + " FROM " + table + " WHERE (" + strings.Join(names, ",") + ") IN (" +
		join(tuples) + ") FOR UPDATE"
	rs, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("lock rows of %s: %w", table, err)
	}
	defer rs.Close()
	for rs.Next() {
		key, _, err := scanKey(rs, r.pk)
		if err != nil {
			return nil, fmt.Errorf("lock rows of %s: %w", table, err)
		}
		k, ok := byText[key]
		if !ok {
			if r.keyMismatch == "" {
				r.keyMismatch = "local key " + key
			}
			continue
		}
		exists[k] = true
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("lock rows of %s: %w", table, err)
	}
	return exists, nil
}

// differs compares, for the keys whose local row exists, the row with the reference's image
// on the server: the images are written into a temporary copy of the table (not binlogged,
// private to the session) and both sides hashed the same way, so every column type
// compares exactly as stored.
func (r *repair) differs(ctx context.Context, tx *sql.Tx, p *plan, keys []metaKey, exists map[metaKey]bool) (map[metaKey]bool, error) {
	s := r.s
	var present []metaKey
	for _, k := range keys {
		if exists[k] {
			present = append(present, k)
		}
	}
	out := map[metaKey]bool{}
	if len(present) == 0 {
		return out, nil
	}
	src, err := quoteTable(r.db, r.table)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(r.db + "." + r.table))
	tmp := "r_" + hex.EncodeToString(sum[:12])
	for _, q := range []string{
		"DROP TEMPORARY TABLE IF EXISTS " + s.meta + "." + tmp,
		"CREATE TEMPORARY TABLE " + s.meta + "." + tmp + " LIKE " + src,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("temporary copy of %s: %w", src, err)
		}
	}
	defer tx.ExecContext(context.WithoutCancel(ctx), "DROP TEMPORARY TABLE IF EXISTS "+s.meta+"."+tmp) //nolint:errcheck
	var real, copies []apply.RowChange
	for _, k := range present {
		c := p.last[k]
		e := *c.Event
		e.Source.DB, e.Source.Table = strings.Trim(s.meta, "`"), tmp
		real = append(real, c)
		copies = append(copies, apply.RowChange{Event: &e, Key: c.Key, Image: c.Image})
	}
	if _, err := s.writeChanges(ctx, tx, copies); err != nil {
		return nil, err
	}
	now, err := s.hashes(ctx, tx, real)
	if err != nil {
		return nil, err
	}
	then, err := s.hashes(ctx, tx, copies)
	if err != nil {
		return nil, err
	}
	for i, k := range present {
		a, okA := now[i]
		b, okB := then[i]
		out[k] = !okA || !okB || a != b
	}
	return out, nil
}

// hashes returns the row hash (see hashQuery) of each change's key, by index, in batched
// UNION ALL statements; a key without a row is missing from the map.
func (s *Sink) hashes(ctx context.Context, tx *sql.Tx, changes []apply.RowChange) (map[int]string, error) {
	out := map[int]string{}
	for start := 0; start < len(changes); start += 200 {
		var parts []string
		var args []any
		for i := start; i < min(start+200, len(changes)); i++ {
			q, a, err := hashQuery(changes[i], i, false)
			if err != nil {
				return nil, err
			}
			parts = append(parts, q)
			args = append(args, a...)
		}
		rs, err := tx.QueryContext(ctx, strings.Join(parts, " UNION ALL "), args...)
		if err != nil {
			return nil, fmt.Errorf("row hashes: %w", err)
		}
		for rs.Next() {
			var i int
			var h []byte
			if err := rs.Scan(&i, &h); err != nil {
				rs.Close()
				return nil, fmt.Errorf("row hashes: %w", err)
			}
			out[i] = string(h)
		}
		err = rs.Err()
		rs.Close()
		if err != nil {
			return nil, fmt.Errorf("row hashes: %w", err)
		}
	}
	return out, nil
}

// localKey is a local row's primary key: its values and canonical text.
type localKey struct {
	text string
	row  changeevent.Row
}

// deletePhase walks the local table in primary key order and deletes, batch by batch, the
// rows the reference did not hold (see deleteBatch).
func (r *repair) deletePhase(ctx context.Context, batch int, prog *apply.ResyncProgress, report func()) error {
	table, err := quoteTable(r.db, r.table)
	if err != nil {
		return err
	}
	names, err := quotedNames(r.pk)
	if err != nil {
		return err
	}
	var after []any // the last key read
	for {
		var page []localKey
		err := r.s.withSession(ctx, replaySession, false, func(conn *sql.Conn) error {
			where, args := keyAfter(names, after)
			q := "SELECT " + strings.Join(names, ",") + " FROM " + table + where + " ORDER BY " + strings.Join(names, ",") +
				" LIMIT " + strconv.Itoa(batch)
			rs, err := conn.QueryContext(ctx, q, args...)
			if err != nil {
				return fmt.Errorf("read keys of %s: %w", table, err)
			}
			defer rs.Close()
			for rs.Next() {
				text, row, err := scanKey(rs, r.pk)
				if err != nil {
					return fmt.Errorf("read keys of %s: %w", table, err)
				}
				page = append(page, localKey{text, row})
			}
			return rs.Err()
		})
		if err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		last := page[len(page)-1].row
		after = after[:0]
		for _, c := range r.pk {
			after = append(after, sqlValue(c.Kind, last[c.Name]))
		}
		prog.Local += len(page)
		var gone []localKey
		for _, k := range page {
			if _, ok := r.seen[sha256.Sum256([]byte(k.text))]; !ok {
				gone = append(gone, k)
			}
		}
		if len(gone) > 0 {
			deleted, kept, err := r.deleteBatch(ctx, gone)
			if err != nil {
				return err
			}
			prog.Deleted += deleted
			prog.Kept += kept
		}
		report()
		if len(page) < batch {
			return nil
		}
	}
}

// keyAfter is the WHERE clause of keyset pagination after the key values after (none: "").
// (a,b) > (x,y) is written as a > x OR (a = x AND b > y), which MariaDB turns into ranges
// of the primary key.
func keyAfter(names []string, after []any) (string, []any) {
	if len(after) == 0 {
		return "", nil
	}
	var ors []string
	var args []any
	for i := range names {
		var ands []string
		for j := 0; j < i; j++ {
			ands = append(ands, names[j]+"=?")
			args = append(args, after[j])
		}
		ands = append(ands, names[i]+">?")
		args = append(args, after[i])
		ors = append(ors, "("+strings.Join(ands, " AND ")+")")
	}
	return " WHERE " + strings.Join(ors, " OR "), args
}

// deleteBatch deletes local rows the reference does not hold, in one transaction with
// their versions locked. A row is kept when a version recorded here is recent (at or after
// keepFrom): a change the reference cannot have yet, arrived while it was read. Each
// deleted row leaves a tombstone: the version recorded before (it loses to any newer change
// of the row), or, for a row no version was ever recorded for (drift: written outside
// MUSIC), version zero; and the delete is recorded as the row's last write, so a local
// write it removed comes back through the own stream (see applyOwn) if it was one.
func (r *repair) deleteBatch(ctx context.Context, keys []localKey) (deleted, kept int, err error) {
	p := &plan{text: map[metaKey]string{}, deleted: map[metaKey]bool{}, ver: map[metaKey]version{}, last: map[metaKey]apply.RowChange{}}
	for _, k := range keys {
		e := &changeevent.Event{Op: changeevent.OpDelete, Before: k.row, Columns: r.pk,
			Source: changeevent.Source{DB: r.db, Table: r.table}}
		c := apply.RowChange{Event: e, Key: k.text}
		mk := metaKey{r.db, r.table, sha256.Sum256([]byte(k.text))}
		p.keys = append(p.keys, mk)
		p.text[mk], p.deleted[mk], p.last[mk] = k.text, true, c
		p.changes = append(p.changes, c)
		p.ver[mk] = version{v: apply.Version{Domain: r.s.domain}, origin: "resync"}
	}
	err = r.s.retry(ctx, func() error {
		deleted, kept = 0, 0
		return r.s.withSession(ctx, localReplay, false, func(conn *sql.Conn) error {
			_, err := r.s.inTx(ctx, conn, func(tx *sql.Tx) (apply.Result, error) {
				current, err := r.s.lockVersions(ctx, tx, p)
				if err != nil {
					return apply.Result{}, err
				}
				del := map[metaKey]bool{}
				for _, k := range p.keys {
					st := current[k]
					if !st.absent && !st.deleted && st.version.TsUs >= r.keepFrom {
						kept++
						continue
					}
					del[k] = true
				}
				if len(del) == 0 {
					return apply.Result{}, nil
				}
				if _, err := r.s.writeRows(ctx, tx, p, del); err != nil {
					return apply.Result{}, err
				}
				pos, err := r.s.localPos(ctx, tx)
				if err != nil {
					return apply.Result{}, err
				}
				recs := map[metaKey]record{}
				for k := range del {
					w, err := winnerJSON(p.last[k])
					if err != nil {
						return apply.Result{}, err
					}
					rec := record{localPos: pos, repair: true, winner: w, keepDeleted: true}
					if st := current[k]; !st.fresh && !st.absent {
						rec.keep = &version{st.version, st.origin, st.gtid}
					}
					recs[k] = rec
				}
				deleted = len(del)
				return apply.Result{}, r.s.writeVersions(ctx, tx, p, recs, current)
			})
			return err
		})
	})
	return deleted, kept, err
}

// retry runs fn again after a deadlock, lock wait timeout or version race, like Apply.
func (s *Sink) retry(ctx context.Context, fn func() error) error {
	for attempt := 0; ; attempt++ {
		err := fn()
		n := errNumber(err)
		if err == nil || !(n == errDeadlock || n == errLockWait || errors.Is(err, errVersionRace)) || attempt >= 8 {
			return err
		}
		if err := apply.Sleep(ctx, time.Duration(attempt+1)*20*time.Millisecond); err != nil {
			return err
		}
	}
}

func quotedNames(cols []changeevent.Column) ([]string, error) {
	out := make([]string, len(cols))
	for i, c := range cols {
		q, err := quote(c.Name)
		if err != nil {
			return nil, err
		}
		out[i] = q
	}
	return out, nil
}

// selectList is the select expressions of cols (quoted names), read under
// changeevent.ReadSession: see changeevent.SelectExpr.
func selectList(cols []changeevent.Column, quoted []string) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = changeevent.SelectExpr(c, quoted[i])
	}
	return out
}

// scanKey reads one row of primary key columns (text protocol) into event values and
// their canonical key text.
func scanKey(rs *sql.Rows, pk []changeevent.Column) (string, changeevent.Row, error) {
	raw := make([]sql.RawBytes, len(pk))
	dest := make([]any, len(pk))
	for i := range raw {
		dest[i] = &raw[i]
	}
	if err := rs.Scan(dest...); err != nil {
		return "", nil, err
	}
	row := changeevent.Row{}
	for i, c := range pk {
		v, err := changeevent.FromText(c.Kind, raw[i])
		if err != nil {
			return "", nil, fmt.Errorf("column %s: %w", c.Name, err)
		}
		row[c.Name] = v
	}
	text, err := apply.EncodeKey(pk, row)
	return text, row, err
}
