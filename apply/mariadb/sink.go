package mariadb

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/changeevent"
)

// Config configures the sink.
type Config struct {
	DSN        string `yaml:"dsn"`         // go-sql-driver DSN of the local MariaDB (a user with SUPER or equivalent)
	MetaSchema string `yaml:"meta_schema"` // schema of MUSIC's metadata tables; default "music"
	BatchRows  int    `yaml:"batch_rows"`  // rows per statement; default 1000
	MaxConns   int    `yaml:"max_conns"`   // connection pool size; default 16
	// TombstoneRetention: tombstones are kept at least this long after their commit time
	// (see the package documentation); default 24h.
	TombstoneRetention time.Duration `yaml:"tombstone_retention"`
	// TombstoneSweepInterval is how often the sweeper runs; default 10m.
	TombstoneSweepInterval time.Duration `yaml:"tombstone_sweep_interval"`
}

// Sink replays transactions into one MariaDB server. It is safe for concurrent use.
type Sink struct {
	cfg    Config
	reset  string // restores a session's defaults, see withSession
	db     *sql.DB
	replay replayConns // connections kept in a replay's session, see withReplay
	meta   string // quoted schema
	batch  int
	log    *zap.Logger
	domain uint32 // the local gtid_domain_id

	tables       tableInfoCache         // foreign keys and triggers per table, see fk.go
	lostInserts  *prometheus.CounterVec // music_apply_lost_inserts_total{db,table}
	fkUncheckedN *prometheus.CounterVec // music_apply_fk_unchecked_total{db,table}, see engine.go
	unguarded    *prometheus.CounterVec // music_apply_unguarded_triggers_total{db,table}
}

var _ apply.Sink = (*Sink)(nil)

// Open connects to the server and creates the metadata schema and tables if missing
// (with sql_log_bin=0, so they are not captured).
func Open(ctx context.Context, cfg Config, log *zap.Logger) (*Sink, error) {
	if cfg.MetaSchema == "" {
		cfg.MetaSchema = "music"
	}
	if cfg.BatchRows <= 0 {
		cfg.BatchRows = 1000
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 16
	}
	if cfg.TombstoneRetention <= 0 {
		cfg.TombstoneRetention = 24 * time.Hour
	}
	if cfg.TombstoneSweepInterval <= 0 {
		cfg.TombstoneSweepInterval = 10 * time.Minute
	}
	meta, err := quote(cfg.MetaSchema)
	if err != nil {
		return nil, fmt.Errorf("mariadb: meta_schema: %w", err)
	}
	mc, err := mysql.ParseDSN(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("mariadb: dsn: %w", err)
	}
	mc.InterpolateParams = true // one round trip per statement
	mc.ParseTime = false
	db, err := sql.Open("mysql", mc.FormatDSN())
	if err != nil {
		return nil, fmt.Errorf("mariadb: open: %w", err)
	}
	db.SetMaxOpenConns(cfg.MaxConns)
	db.SetMaxIdleConns(cfg.MaxConns)
	s := &Sink{cfg: cfg, reset: resetSession(mc.Params), db: db, replay: replayConns{max: cfg.MaxConns / 2}, meta: meta, batch: cfg.BatchRows, log: log.With(zap.String("sink", "mariadb")),
		lostInserts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "music_apply_lost_inserts_total",
			Help: "Inserts of different rows at different sites that collided on one key: the older insert is lost (see AUTO_INCREMENT in OPERATIONS.md)."},
			[]string{"db", "table"}),
		fkUncheckedN: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "music_apply_fk_unchecked_total",
			Help: "Transactions replayed without foreign key checks after their foreign key errors persisted (no cascades): a possible divergence."},
			[]string{"db", "table"}),
		unguarded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "music_apply_unguarded_triggers_total",
			Help: "Triggers of mirrored tables that do not test @@skip_replication: they fire again for replayed rows."},
			[]string{"db", "table"})}
	if err := s.createMeta(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Collectors returns the sink's metrics, for registration.
func (s *Sink) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.lostInserts, s.unguarded, s.fkUncheckedN}
}

// Name is "mariadb".
func (s *Sink) Name() string { return "mariadb" }

// Close closes the connection pool.
func (s *Sink) Close() error {
	s.replay.close()
	return s.db.Close()
}

func (s *Sink) createMeta(ctx context.Context) error {
	stmts := []string{
		"CREATE DATABASE IF NOT EXISTS " + s.meta,
		`CREATE TABLE IF NOT EXISTS ` + s.meta + `.row_versions (
			db VARCHAR(64) NOT NULL, tbl VARCHAR(64) NOT NULL, pk_hash BINARY(32) NOT NULL,
			ts_us BIGINT NOT NULL, domain_id INT UNSIGNED NOT NULL, seq BIGINT UNSIGNED NOT NULL,
			origin VARCHAR(64) NOT NULL, gtid VARCHAR(64) NOT NULL, deleted TINYINT NOT NULL,
			pk TEXT NOT NULL, PRIMARY KEY (db, tbl, pk_hash)) ENGINE=InnoDB`,
		// Metadata of an earlier MUSIC: commit times were whole seconds in ms.
		`ALTER TABLE ` + s.meta + `.row_versions CHANGE COLUMN IF EXISTS ts_ms ts_us BIGINT NOT NULL`,
		`ALTER TABLE ` + s.meta + `.row_versions ADD COLUMN IF NOT EXISTS local_pos BIGINT UNSIGNED NOT NULL DEFAULT 0,
			ADD COLUMN IF NOT EXISTS repair TINYINT NOT NULL DEFAULT 0,
			ADD COLUMN IF NOT EXISTS winner MEDIUMBLOB NULL`,
		// The tombstone sweeper finds old tombstones by this index.
		`ALTER TABLE ` + s.meta + `.row_versions ADD INDEX IF NOT EXISTS tombstones (deleted, ts_us)`,
		// The last transaction of each origin applied to each sync table (see recordSync).
		`CREATE TABLE IF NOT EXISTS ` + s.meta + `.sync_applied (
			db VARCHAR(64) NOT NULL, tbl VARCHAR(64) NOT NULL, origin VARCHAR(64) NOT NULL,
			seq BIGINT UNSIGNED NOT NULL, gtid VARCHAR(64) NOT NULL,
			applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
			PRIMARY KEY (db, tbl, origin)) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS ` + s.meta + `.ddl_applied (
			origin VARCHAR(64) NOT NULL, gtid VARCHAR(64) NOT NULL, statement MEDIUMTEXT NOT NULL,
			outcome VARCHAR(255) NOT NULL, applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
			PRIMARY KEY (origin, gtid)) ENGINE=InnoDB`,
	}
	return s.withSession(ctx, outsideBinlog, false, func(conn *sql.Conn) error {
		for _, q := range stmts {
			if _, err := conn.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("mariadb: create metadata tables: %w", err)
			}
		}
		if err := conn.QueryRowContext(ctx, "SELECT @@global.gtid_domain_id").Scan(&s.domain); err != nil {
			return fmt.Errorf("mariadb: read gtid_domain_id: %w", err)
		}
		return nil
	})
}

// recordSync notes, in the replay's own transaction, that tx is applied to each sync
// ownership unit it touches ("db.table" or "db.pattern", kept as db, tbl): the gateway of
// this site reads it before it takes a unit over, to know that every commit the other
// sites acknowledged on it is here (the worker applies a unit's transactions in their
// origin's order, so the last one names a prefix).
func (s *Sink) recordSync(ctx context.Context, sqlTx *sql.Tx, tx *apply.Txn) error {
	for _, t := range tx.Sync {
		db, table, _ := strings.Cut(t, ".")
		if _, err := sqlTx.ExecContext(ctx, "INSERT INTO "+s.meta+".sync_applied (db, tbl, origin, seq, gtid) VALUES (?, ?, ?, ?, ?)"+
			" ON DUPLICATE KEY UPDATE gtid = IF(VALUES(seq) >= seq, VALUES(gtid), gtid), seq = GREATEST(seq, VALUES(seq))",
			db, table, tx.Origin, tx.GTID.Seq, tx.ID); err != nil {
			return fmt.Errorf("mariadb: record sync progress of %s: %w", t, err)
		}
	}
	return nil
}

// MariaDB error numbers the sink reacts to.
const (
	errDupKey         = 1062
	errDeadlock       = 1213
	errLockWait       = 1205
	errGTIDOutOfOrder = 1950
	errRowReferenced  = 1451 // a parent row still has children (foreign_key_checks=1)
	errNoParent       = 1452 // a child row without its parent (foreign_key_checks=1)
)

func errNumber(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

// Apply replays tx in one local transaction; see the package documentation.
func (s *Sink) Apply(ctx context.Context, tx *apply.Txn) (apply.Result, error) {
	if tx.IsDDL() {
		s.tables.forget()       // foreign keys and triggers may have changed
		defer s.tables.forget() // again: a lookup meanwhile may have read the old schema
		return s.applyDDL(ctx, tx)
	}
	p, err := newPlan(tx)
	if err != nil {
		return apply.Result{}, err
	}
	if p.fk, err = s.engineEffects(ctx, tx); err != nil {
		return apply.Result{}, err
	}
	useSeq := true
	fkRetries := 0
	for attempt := 0; ; attempt++ {
		res, err := s.applyOnce(ctx, tx, p, useSeq)
		switch n := errNumber(err); {
		case err == nil:
			return res, nil
		case n == errGTIDOutOfOrder && useSeq:
			s.log.Warn("server refused the origin gtid_seq_no; replaying with a server-chosen one",
				zap.String("gtid", tx.ID), zap.Error(err))
			useSeq = false
		case (n == errRowReferenced || n == errNoParent) && p.fk:
			// One origin's transactions on tables linked by foreign keys apply in its order
			// (OrderKeys), but another origin's may not have come yet: wait for it. If it
			// does not come, replay without checks: a possible divergence (engine.go).
			if fkRetries++; fkRetries > 20 {
				s.fkUnchecked(tx, err)
				p.fk = false
				continue
			}
			if err := apply.Sleep(ctx, time.Duration(min(fkRetries, 10))*50*time.Millisecond); err != nil {
				return apply.Result{}, err
			}
		case (n == errDeadlock || n == errLockWait || errors.Is(err, errVersionRace)) && attempt < 8:
			if err := apply.Sleep(ctx, time.Duration(attempt+1)*20*time.Millisecond); err != nil {
				return apply.Result{}, err
			}
		default:
			return apply.Result{}, fmt.Errorf("mariadb: apply %s from %s: %w", tx.ID, tx.Origin, err)
		}
	}
}

// replaySetup is the session of a replay: the origin's GTID so the transaction keeps it
// (a resync or own-stream repair runs in the local domain instead), always flagged
// skip_replication (capture asks the server not to send flagged transactions, so the local
// capture never reads replays), no foreign key checks, UTC. withSession restores the
// defaults afterwards.
func replaySetup(tx *apply.Txn, useSeq bool) string {
	base, seq := replayBase(tx, useSeq, false)
	return base + seq
}

// replayBase is replaySetup's statement (with foreign_key_checks=1 if fk, see engine.go)
// in two parts: the settings every replay of tx's origin shares (base) and the
// transaction's gtid_seq_no assignment (seq: ", gtid_seq_no=N", or "" for a local replay,
// whose base sets 0). See withReplay.
func replayBase(tx *apply.Txn, useSeq, fk bool) (base, seq string) {
	// gtid_seq_no is always set (0 lets the server choose).
	base = localReplay
	if !tx.Resync && !tx.Own {
		n := uint64(0)
		if useSeq {
			n = tx.GTID.Seq
		}
		base = replaySession + fmt.Sprintf(", skip_replication=1, gtid_domain_id=%d, server_id=%d", tx.GTID.Domain, tx.GTID.Server)
		seq = fmt.Sprintf(", gtid_seq_no=%d", n)
	}
	if fk {
		base += ", foreign_key_checks=1" // the later assignment wins: InnoDB performs cascades
	}
	return base, seq
}

// metaKey identifies a row in row_versions.
type metaKey struct {
	db, table string
	hash      [32]byte
}

func newMetaKey(c apply.RowChange) metaKey {
	return metaKey{c.Event.Source.DB, c.Event.Source.Table, sha256.Sum256([]byte(c.Key))}
}

// stored is a row's winning version as row_versions has it.
type stored struct {
	version  apply.Version
	origin   string
	gtid     string
	absent   bool
	deleted  bool   // a tombstone
	fresh    bool   // no row at all in row_versions (absent, and to be inserted)
	localPos uint64 // local domain's binlog seq when a non-own change was last written
	repair   bool   // own changes up to localPos may have been overwritten
	winner   []byte // apply's last write to the row (the winning change, or a rewritten own one), compact JSON
}

// record is what writeVersions stores besides the version.
type record struct {
	localPos uint64
	// posAtWrite: store the local position as the versions' INSERT reads it (posExpr)
	// instead of localPos, saving a round trip.
	posAtWrite bool
	repair   bool
	winner   []byte
	// keep, when set, is the version to store instead of the transaction's (a restored
	// winner), with keepDeleted the row's state. The plan itself is never changed: a
	// transaction retried after a deadlock must start from the same plan.
	keep        *version
	keepDeleted bool
}

// plan is a transaction's row changes and the distinct keys they touch.
type plan struct {
	changes []apply.RowChange
	keys    []metaKey
	text    map[metaKey]string  // canonical key text
	deleted map[metaKey]bool    // the row's state after the transaction
	ver     map[metaKey]version // the version each key gets
	last    map[metaKey]apply.RowChange
	multi   []*changeevent.Event // changes of tables without a primary key, see multiset.go
	fk      bool                 // a table has foreign keys: replay with foreign_key_checks=1
	again   bool                 // a later chunk of a streamed transaction, see stream.go
}

// version is a change's version and where it comes from.
type version struct {
	v            apply.Version
	origin, gtid string
}

func newPlan(tx *apply.Txn) (*plan, error) {
	p := &plan{text: map[metaKey]string{}, deleted: map[metaKey]bool{}, ver: map[metaKey]version{},
		last: map[metaKey]apply.RowChange{}}
	txv := version{tx.Version, tx.Origin, tx.ID}
	for _, e := range tx.Events {
		if IsMultiset(e) {
			p.multi = append(p.multi, e)
			continue
		}
		cs, err := rowChanges(e)
		if err != nil {
			return nil, err
		}
		v := txv
		if tv, ok := tx.TableVersions[e.Source.DB+"."+e.Source.Table]; ok {
			v.v = tv
		}
		if tx.Resync {
			if v.v, err = apply.EventVersion(e); err != nil {
				return nil, err
			}
			v.origin, v.gtid = e.Source.Name, e.Source.GTID
		}
		for _, c := range cs {
			p.ver[newMetaKey(c)] = v
			k := newMetaKey(c)
			if _, seen := p.text[k]; !seen {
				p.keys = append(p.keys, k)
				p.text[k] = c.Key
			}
			p.deleted[k] = c.Image == nil
			p.last[k] = c
			p.changes = append(p.changes, c)
		}
	}
	return p, nil
}

func (s *Sink) applyOnce(ctx context.Context, tx *apply.Txn, p *plan, useSeq bool) (res apply.Result, err error) {
	base, seq := replayBase(tx, useSeq, p.fk)
	err = s.withReplay(ctx, base, seq, func(conn *sql.Conn) error {
		var err error
		res, err = s.inTx(ctx, conn, func(sqlTx *sql.Tx) (apply.Result, error) {
			res, err := s.applyTx(ctx, sqlTx, tx, p)
			if err == nil && !tx.Own {
				err = s.recordSync(ctx, sqlTx, tx)
			}
			return res, err
		})
		return err
	})
	return res, err
}

// inTx runs fn in a transaction on conn (READ COMMITTED, set with the session), committed
// if fn succeeds and rolled back otherwise.
func (s *Sink) inTx(ctx context.Context, conn *sql.Conn, fn func(*sql.Tx) (apply.Result, error)) (apply.Result, error) {
	sqlTx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return apply.Result{}, err
	}
	res, err := fn(sqlTx)
	if err != nil {
		_ = sqlTx.Rollback()
		return res, err
	}
	return res, sqlTx.Commit()
}

func (s *Sink) applyTx(ctx context.Context, sqlTx *sql.Tx, tx *apply.Txn, p *plan) (res apply.Result, err error) {
	current, err := s.lockVersions(ctx, sqlTx, p)
	if err != nil {
		return res, err
	}
	if tx.Own {
		if res, err = s.applyOwn(ctx, sqlTx, tx, p, current); err != nil {
			return res, err
		}
		return res, s.applyMultiset(ctx, sqlTx, tx, p, &res)
	}
	win := map[metaKey]bool{}
	for _, k := range p.keys {
		st, in := current[k], p.ver[k]
		switch c := in.v.Compare(st.version); {
		case st.absent || c > 0 || c == 0 && p.again:
			win[k] = true
		case c == 0:
			res.Duplicates++
		default:
			res.Conflicts++
			s.log.Warn("conflict: older change not applied",
				zap.String("db", k.db), zap.String("table", k.table), zap.String("key", p.text[k]),
				zap.String("origin", in.origin), zap.String("gtid", in.gtid), zap.Stringer("version", in.v),
				zap.String("winner_origin", st.origin), zap.String("winner_gtid", st.gtid),
				zap.Stringer("winner_version", st.version))
		}
		s.lostInsert(k, p, st, win[k])
		s.trace("remote", k, p, st, zap.Bool("win", win[k]))
	}
	if len(win) > 0 {
		n, err := s.writeRows(ctx, sqlTx, p, win)
		if err != nil {
			return res, err
		}
		res.Applied = n
		recs, err := s.remoteRecords(p, win)
		if err != nil {
			return res, err
		}
		if err := s.writeVersions(ctx, sqlTx, p, recs, current); err != nil {
			return res, err
		}
	}
	return res, s.applyMultiset(ctx, sqlTx, tx, p, &res)
}

// lostInsert logs and counts an insert that collided with a different row another site
// inserted under the same key (typically AUTO_INCREMENT ids without per-site
// auto_increment_increment/offset): last writer wins keeps one of them, the other insert
// is lost everywhere. in is the change for k; won tells which one survives.
func (s *Sink) lostInsert(k metaKey, p *plan, st stored, won bool) {
	c, ok := p.last[k]
	if !ok || c.Event.Op != changeevent.OpCreate || st.absent || st.deleted || st.origin == "" || st.origin == p.ver[k].origin {
		return
	}
	if p.ver[k].v.Compare(st.version) == 0 {
		return
	}
	lost, kept := p.ver[k], version{st.version, st.origin, st.gtid}
	if won {
		lost, kept = kept, lost
	}
	s.lostInserts.WithLabelValues(k.db, k.table).Inc()
	s.log.Error("lost insert: two different inserts at two sites collided on one key; the older one is lost at every site",
		zap.String("db", k.db), zap.String("table", k.table), zap.String("key", p.text[k]),
		zap.String("lost_origin", lost.origin), zap.String("lost_gtid", lost.gtid), zap.Stringer("lost_version", lost.v),
		zap.String("kept_origin", kept.origin), zap.String("kept_gtid", kept.gtid), zap.Stringer("kept_version", kept.v),
		zap.String("hint", "give every site auto_increment_increment >= the number of sites and its own auto_increment_offset"))
}

// remoteRecords notes, for rows a non-own change just wrote, the local binlog position
// (own changes up to it may have been overwritten: the versions' INSERT reads it, after the
// rows are written and locked, see posAtWrite) and the change itself (to restore it, or to
// tell whether a local write came after).
func (s *Sink) remoteRecords(p *plan, keys map[metaKey]bool) (map[metaKey]record, error) {
	recs := make(map[metaKey]record, len(keys))
	for k := range keys {
		w, err := winnerJSON(p.last[k])
		if err != nil {
			return nil, err
		}
		recs[k] = record{posAtWrite: true, repair: true, winner: w}
		if s.log.Core().Enabled(zap.DebugLevel) {
			s.log.Debug("decision", zap.String("path", "remote-written"), zap.String("key", p.text[k]),
				zap.String("gtid", p.ver[k].gtid), zap.String("new_local_pos", "at write"), zap.Bool("deleted", p.deleted[k]))
		}
	}
	return recs, nil
}

// errVersionRace: another transaction recorded a version for a key this one found new;
// the transaction is retried and then sees it.
var errVersionRace = errors.New("a concurrent transaction recorded the key first")

// lockVersions reads every key's version FOR UPDATE. A key without a row is new (fresh):
// writeVersions inserts it without ON DUPLICATE KEY, so of two transactions that both
// found it new, the second fails on the duplicate and is retried (errVersionRace).
func (s *Sink) lockVersions(ctx context.Context, tx *sql.Tx, p *plan) (map[metaKey]stored, error) {
	out := make(map[metaKey]stored, len(p.keys))
	for start := 0; start < len(p.keys); start += s.batch {
		chunk := p.keys[start:min(start+s.batch, len(p.keys))]
		var args []any
		var tuples []string
		for _, k := range chunk {
			args = append(args, k.db, k.table, k.hash[:])
			tuples = append(tuples, "(?,?,?)")
		}
		sel := "SELECT db,tbl,pk_hash,ts_us,domain_id,seq,origin,gtid,local_pos,repair,winner,deleted FROM " + s.meta +
			".row_versions WHERE (db,tbl,pk_hash) IN (" + join(tuples) + ") FOR UPDATE"
		rs, err := tx.QueryContext(ctx, sel, args...)
		if err != nil {
			return nil, fmt.Errorf("read versions: %w", err)
		}
		for rs.Next() {
			var k metaKey
			var h []byte
			var st stored
			if err := rs.Scan(&k.db, &k.table, &h, &st.version.TsUs, &st.version.Domain, &st.version.Seq, &st.origin, &st.gtid,
				&st.localPos, &st.repair, &st.winner, &st.deleted); err != nil {
				rs.Close()
				return nil, fmt.Errorf("read versions: %w", err)
			}
			copy(k.hash[:], h)
			st.absent = st.version.TsUs == -1 // a placeholder of an earlier MUSIC
			out[k] = st
		}
		// A read cut short (a deadlock or lock wait timeout while rows stream in) ends the
		// loop with the error in Err: without this check the missing keys would look new.
		if err := rs.Err(); err != nil {
			rs.Close()
			return nil, fmt.Errorf("read versions: %w", err)
		}
		if err := rs.Close(); err != nil {
			return nil, fmt.Errorf("read versions: %w", err)
		}
		for _, k := range chunk {
			if _, ok := out[k]; !ok {
				out[k] = stored{version: apply.Version{TsUs: -1}, absent: true, fresh: true}
			}
		}
	}
	return out, nil
}

// writeVersions stores recs: keys found new (current[k].fresh) with a plain INSERT, the
// others (locked by lockVersions) with INSERT ... ON DUPLICATE KEY UPDATE.
func (s *Sink) writeVersions(ctx context.Context, tx *sql.Tx, p *plan, recs map[metaKey]record, current map[metaKey]stored) error {
	var fresh, known []metaKey
	for _, k := range p.keys {
		if _, ok := recs[k]; !ok {
			continue
		}
		if current[k].fresh {
			fresh = append(fresh, k)
		} else {
			known = append(known, k)
		}
	}
	if err := s.insertVersions(ctx, tx, p, recs, fresh, false); err != nil {
		return err
	}
	return s.insertVersions(ctx, tx, p, recs, known, true)
}

func (s *Sink) insertVersions(ctx context.Context, tx *sql.Tx, p *plan, recs map[metaKey]record, keys []metaKey, upsert bool) error {
	for start := 0; start < len(keys); start += s.batch {
		chunk := keys[start:min(start+s.batch, len(keys))]
		var args []any
		var rows []string
		for _, k := range chunk {
			v, r, deleted := p.ver[k], recs[k], p.deleted[k]
			if r.keep != nil {
				v, deleted = *r.keep, r.keepDeleted
			}
			args = append(args, k.db, k.table, k.hash[:], v.v.TsUs, v.v.Domain, v.v.Seq,
				v.origin, v.gtid, deleted, p.text[k])
			if r.posAtWrite {
				args = append(args, r.repair, r.winner)
				rows = append(rows, "(?,?,?,?,?,?,?,?,?,?,"+s.posExpr()+",?,?)")
				continue
			}
			args = append(args, r.localPos, r.repair, r.winner)
			rows = append(rows, "(?,?,?,?,?,?,?,?,?,?,?,?,?)")
		}
		q := "INSERT INTO " + s.meta + ".row_versions (db,tbl,pk_hash,ts_us,domain_id,seq,origin,gtid,deleted,pk,local_pos,repair,winner) VALUES " +
			join(rows)
		if upsert {
			q += " ON DUPLICATE KEY UPDATE ts_us=VALUES(ts_us), domain_id=VALUES(domain_id), seq=VALUES(seq)," +
				" origin=VALUES(origin), gtid=VALUES(gtid), deleted=VALUES(deleted), pk=VALUES(pk)," +
				" local_pos=VALUES(local_pos), repair=VALUES(repair), winner=VALUES(winner)"
		}
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			if errNumber(err) == errDupKey {
				return fmt.Errorf("write versions: %w: %w", errVersionRace, err)
			}
			return fmt.Errorf("write versions: %w", err)
		}
	}
	return nil
}

func join(parts []string) string {
	n := 0
	for _, p := range parts {
		n += len(p) + 1
	}
	b := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, p...)
	}
	return string(b)
}
