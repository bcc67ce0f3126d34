package mariadb

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/changeevent"
)

// applyOwn handles a transaction of this site read back from its own stream. Its rows are
// already here, written by the application, but the conflict rule has not seen them:
//
//   - a row no change from elsewhere ever touched: record the version, write nothing;
//   - an older version than the row's winner: the local write lost. If it was committed
//     before the winner was applied here (its GTID sequence is at most the recorded local
//     position), the winner already overwrote it; otherwise the row keeps the loser here
//     until a resync (counted as a conflict and logged);
//   - a newer version: if a change from elsewhere was applied after this write (sequence
//     at most the recorded position) and the row still holds exactly what that change
//     wrote (compared on the server, see unchangedSinceApply), that change overwrote this
//     newer local write: write the local image back. Otherwise the row holds this or a
//     later local write: record only.
//
// The transaction runs with skip_replication=1 in the local domain, so capture drops it.
func (s *Sink) applyOwn(ctx context.Context, tx *sql.Tx, t *apply.Txn, p *plan, current map[metaKey]stored) (apply.Result, error) {
	var res apply.Result
	seq := t.GTID.Seq
	recs := map[metaKey]record{}
	candidates := map[metaKey]bool{}
	for _, k := range p.keys {
		st := current[k]
		if !st.absent && st.repair && seq <= st.localPos && p.ver[k].v.Compare(st.version) > 0 {
			candidates[k] = true
		}
	}
	same, err := s.unchangedSinceApply(ctx, tx, p, candidates, current)
	if err != nil {
		return res, err
	}
	rewrite := map[metaKey]bool{}
	restore := map[metaKey]stored{}
	for _, k := range p.keys {
		st, in := current[k], p.ver[k]
		switch c := in.v.Compare(st.version); {
		case st.absent:
			recs[k] = record{}
		case c == 0, c < 0 && st.version.Domain == s.domain:
			res.Duplicates++ // a redelivery (a later own write of the row may be recorded already)
		case c < 0:
			res.Conflicts++
			s.log.Warn("conflict: local write older than the row's winner",
				zap.String("db", k.db), zap.String("table", k.table), zap.String("key", p.text[k]),
				zap.String("gtid", in.gtid), zap.Stringer("version", in.v), zap.Bool("restore_winner", seq > st.localPos),
				zap.String("winner_origin", st.origin), zap.String("winner_gtid", st.gtid), zap.Stringer("winner_version", st.version))
			if seq > st.localPos { // written after the winner was applied: put the winner back
				restore[k] = st
			}
		case same[k]:
			rewrite[k] = true
		default:
			recs[k] = record{localPos: st.localPos, repair: st.repair && seq <= st.localPos, winner: st.winner}
		}
		s.lostInsert(k, p, st, in.v.Compare(st.version) > 0)
		s.trace("own", k, p, st, zap.Bool("candidate", candidates[k]), zap.Bool("rewrite", rewrite[k]),
			zap.Bool("restore", restore[k].gtid != ""))
	}
	if len(rewrite) > 0 {
		n, err := s.writeRows(ctx, tx, p, rewrite)
		if err != nil {
			return res, err
		}
		res.Applied = n
		for k := range rewrite {
			w, err := winnerJSON(p.last[k]) // what the row now holds, for the next check
			if err != nil {
				return res, err
			}
			recs[k] = record{localPos: current[k].localPos, repair: true, winner: w}
			s.log.Info("local write restored over an older change applied after it",
				zap.String("db", k.db), zap.String("table", k.table), zap.String("key", p.text[k]), zap.String("gtid", t.ID))
		}
	}
	if len(restore) > 0 {
		if err := s.restoreWinners(ctx, tx, p, restore, recs); err != nil {
			return res, err
		}
	}
	return res, s.writeVersions(ctx, tx, p, recs, current)
}

// restoreWinners writes back the winning change of rows a newer-in-time but losing local
// write overwrote (one-second binlog times make this common: a later local write in the
// same second as a winner from a higher domain). The rows then count as overwritten by a
// non-own change again.
func (s *Sink) restoreWinners(ctx context.Context, tx *sql.Tx, p *plan, restore map[metaKey]stored, recs map[metaKey]record) error {
	var changes []apply.RowChange
	keys := map[metaKey]bool{} // restored keys -> the winner was a delete
	for _, k := range p.keys {
		st, ok := restore[k]
		if !ok {
			continue
		}
		if st.winner == nil {
			s.log.Warn("cannot restore the winner: not recorded; resync the table", zap.String("db", k.db),
				zap.String("table", k.table), zap.String("key", p.text[k]))
			continue
		}
		c, err := decodeWinner(st.winner)
		if err != nil {
			return fmt.Errorf("decode recorded winner of %s.%s %s: %w", k.db, k.table, p.text[k], err)
		}
		changes = append(changes, c)
		keys[k] = c.Image == nil
	}
	if _, err := s.writeChanges(ctx, tx, changes); err != nil {
		return err
	}
	pos, err := s.localPos(ctx, tx)
	if err != nil {
		return err
	}
	for k, deleted := range keys {
		st := restore[k]
		recs[k] = record{localPos: pos, repair: true, winner: st.winner, // the winner stays recorded
			keep: &version{st.version, st.origin, st.gtid}, keepDeleted: deleted}
	}
	return nil
}

// winner is the compact record of a non-own change of one row, enough to write it again.
type winner struct {
	Op   changeevent.Op  `json:"o"` // "r" (write Row) or "d" (delete the key in Row)
	DB   string          `json:"d"`
	T    string          `json:"t"`
	Cols []winnerColumn  `json:"c"`
	Row  changeevent.Row `json:"r"`
}

type winnerColumn struct {
	N  string           `json:"n"`
	K  changeevent.Kind `json:"k"`
	PK bool             `json:"p,omitempty"`
}

// winnerJSON records a non-own change of one row: the image it wrote, or the key it deleted.
func winnerJSON(c apply.RowChange) ([]byte, error) {
	e := c.Event
	w := winner{Op: changeevent.OpRead, DB: e.Source.DB, T: e.Source.Table, Row: c.Image}
	cols := e.Columns
	if c.Image == nil {
		w.Op, w.Row, cols = changeevent.OpDelete, changeevent.Row{}, apply.PKColumns(e.Columns)
		for _, col := range cols {
			w.Row[col.Name] = e.Before[col.Name]
		}
	}
	for _, col := range cols {
		w.Cols = append(w.Cols, winnerColumn{N: col.Name, K: col.Kind, PK: col.PK})
	}
	return json.Marshal(w)
}

// decodeWinner turns a recorded winner back into a row change with exact values.
func decodeWinner(data []byte) (apply.RowChange, error) {
	var w winner
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&w); err != nil {
		return apply.RowChange{}, err
	}
	e := &changeevent.Event{Op: w.Op, Source: changeevent.Source{DB: w.DB, Table: w.T}}
	for _, c := range w.Cols {
		e.Columns = append(e.Columns, changeevent.Column{Name: c.N, Kind: c.K, PK: c.PK})
		v, err := changeevent.FromJSON(c.K, w.Row[c.N])
		if err != nil {
			return apply.RowChange{}, fmt.Errorf("column %s: %w", c.N, err)
		}
		w.Row[c.N] = v
	}
	c := apply.RowChange{Event: e}
	if w.Op == changeevent.OpDelete {
		e.Before = w.Row
	} else {
		e.After, c.Image = w.Row, w.Row
	}
	return c, nil
}

// localPos returns the local domain's highest sequence number in @@gtid_binlog_pos.
func (s *Sink) localPos(ctx context.Context, tx *sql.Tx) (uint64, error) {
	var pos string
	if err := tx.QueryRowContext(ctx, "SELECT @@global.gtid_binlog_pos").Scan(&pos); err != nil {
		return 0, fmt.Errorf("read gtid_binlog_pos: %w", err)
	}
	return s.parsePos(pos), nil
}

// posExpr is localPos as an SQL expression, for a statement to read the position itself
// (record.posAtWrite): the local domain's sequence number in @@global.gtid_binlog_pos (which
// holds one GTID per domain), 0 if the domain has none.
func (s *Sink) posExpr() string {
	return fmt.Sprintf("COALESCE(CAST(SUBSTRING_INDEX(REGEXP_SUBSTR(CONCAT(',', REPLACE(@@global.gtid_binlog_pos, ' ', '')),"+
		" ',%d-[0-9]+-[0-9]+'), '-', -1) AS UNSIGNED), 0)", s.domain)
}

func (s *Sink) parsePos(pos string) uint64 {
	var max uint64
	for _, g := range strings.Split(pos, ",") {
		gt, err := apply.ParseGTID(strings.TrimSpace(g))
		if err == nil && gt.Domain == s.domain && gt.Seq > max {
			max = gt.Seq
		}
	}
	return max
}

// unchangedSinceApply tells, for each candidate key, whether its row still holds exactly
// what apply last wrote there (the change recorded in row_versions.winner): no local write
// came after. The row is read FOR UPDATE, so no local write can slip in before a rewrite.
// The recorded image is written into a temporary copy of the table and hashed the same way
// as the row, so both go through the same column types; this runs only for candidates
// (own writes an older change overwrote), never on the path of ordinary replays.
func (s *Sink) unchangedSinceApply(ctx context.Context, tx *sql.Tx, p *plan, candidates map[metaKey]bool, current map[metaKey]stored) (map[metaKey]bool, error) {
	out := map[metaKey]bool{}
	for _, k := range p.keys {
		if !candidates[k] {
			continue
		}
		st := current[k]
		if st.winner == nil {
			s.log.Warn("no record of apply's last write to the row; a local write it overwrote stays overwritten until a resync",
				zap.String("db", k.db), zap.String("table", k.table), zap.String("key", p.text[k]))
			continue
		}
		w, err := decodeWinner(st.winner)
		if err != nil {
			return nil, fmt.Errorf("decode the recorded last write of %s.%s %s: %w", k.db, k.table, p.text[k], err)
		}
		now, err := s.rowHash(ctx, tx, w)
		if err != nil {
			return nil, err
		}
		if w.Image == nil { // apply deleted the row: unchanged if it is still gone
			out[k] = now == nil
			continue
		}
		then, err := s.imageHash(ctx, tx, w)
		if err != nil {
			return nil, err
		}
		out[k] = now != nil && bytes.Equal(now, then)
	}
	return out, nil
}

// imageHash is the hash the row would have if it held exactly c's image: c is written into
// a temporary copy of its table (not binlogged, private to the session) and hashed there.
func (s *Sink) imageHash(ctx context.Context, tx *sql.Tx, c apply.RowChange) ([]byte, error) {
	src, err := quoteTable(c.Event.Source.DB, c.Event.Source.Table)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(c.Event.Source.DB + "." + c.Event.Source.Table))
	tmp := "w_" + hex.EncodeToString(sum[:12])
	for _, q := range []string{
		"DROP TEMPORARY TABLE IF EXISTS " + s.meta + "." + tmp, // the table's schema may have changed since
		"CREATE TEMPORARY TABLE " + s.meta + "." + tmp + " LIKE " + src,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("temporary copy of %s: %w", src, err)
		}
	}
	e := *c.Event
	e.Source.DB, e.Source.Table = strings.Trim(s.meta, "`"), tmp
	copied := apply.RowChange{Event: &e, Key: c.Key, Image: c.Image}
	if _, err := s.writeChanges(ctx, tx, []apply.RowChange{copied}); err != nil {
		return nil, err
	}
	return s.rowHash(ctx, tx, copied)
}

// rowHash returns the MD5 of the current row of c's key over c's columns (nil when there
// is no such row), computed by the server; the row is read FOR UPDATE.
func (s *Sink) rowHash(ctx context.Context, tx *sql.Tx, c apply.RowChange) ([]byte, error) {
	q, args, err := hashQuery(c, 0, true)
	if err != nil {
		return nil, err
	}
	var i int
	var h []byte
	switch err := tx.QueryRowContext(ctx, q, args...).Scan(&i, &h); {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("row hash: %w", err)
	}
	return h, nil
}

// hashQuery selects i and the row's hash for one key (FOR UPDATE if lock).
func hashQuery(c apply.RowChange, i int, lock bool) (string, []any, error) {
	e := c.Event
	table, err := quoteTable(e.Source.DB, e.Source.Table)
	if err != nil {
		return "", nil, err
	}
	var cols, where []string
	var args []any
	img := c.Image
	if img == nil {
		img = e.Before
	}
	for _, col := range e.Columns {
		q, err := quote(col.Name)
		if err != nil {
			return "", nil, err
		}
		cols = append(cols, "IFNULL(HEX(CAST("+q+" AS BINARY)),'N')")
		if col.PK {
			where = append(where, q+"=?")
			args = append(args, sqlValue(col.Kind, img[col.Name]))
		}
	}
	if len(where) == 0 {
		where = []string{"1"} // a sequence: its one row
	}
	q := "(SELECT " + strconv.Itoa(i) + ", UNHEX(MD5(CONCAT_WS(',', " + strings.Join(cols, ", ") + "))) FROM " + table +
		" WHERE " + strings.Join(where, " AND ")
	if lock {
		q += " FOR UPDATE"
	}
	return q + ")", args, nil
}

// trace logs, at debug level, the decision taken for one key (for diagnosing divergence).
func (s *Sink) trace(path string, k metaKey, p *plan, st stored, fields ...zap.Field) {
	if !s.log.Core().Enabled(zap.DebugLevel) {
		return
	}
	in := p.ver[k]
	s.log.Debug("decision", append([]zap.Field{zap.String("path", path), zap.String("table", k.table),
		zap.String("key", p.text[k]), zap.String("gtid", in.gtid), zap.Stringer("version", in.v),
		zap.Bool("absent", st.absent), zap.String("stored_gtid", st.gtid), zap.Stringer("stored", st.version),
		zap.Uint64("local_pos", st.localPos), zap.Bool("repair", st.repair)}, fields...)...)
}
