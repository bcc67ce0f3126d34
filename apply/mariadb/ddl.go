package mariadb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/internal/ddl"
)

// ddlKinds are the event kinds the sink replays: table statements by verb, database
// statements, and opaque ones (MariaDB-only syntax the parser did not take: MariaDB does).
var ddlKinds = map[string]bool{"CREATE": true, "ALTER": true, "DROP": true, "RENAME": true, "TRUNCATE": true,
	ddl.CreateDatabase: true, ddl.AlterDatabase: true, ddl.DropDatabase: true, ddl.Opaque: true}

// alreadyDone are server errors that mean a re-run DDL finds its effect already there:
// database/table exists or is unknown, duplicate column/key, cannot drop a missing one.
var alreadyDone = map[uint16]bool{1007: true, 1008: true, 1050: true, 1051: true, 1060: true, 1061: true, 1091: true}

// applyDDL runs a schema change with the origin's GTID, once.
func (s *Sink) applyDDL(ctx context.Context, tx *apply.Txn) (apply.Result, error) {
	e := tx.Events[0]
	if tx.Own {
		return apply.Result{Duplicates: 1}, nil // it ran here already (running it again could TRUNCATE later rows)
	}
	kind := strings.ToUpper(strings.TrimSpace(e.DDL.Kind))
	if !ddlKinds[kind] || ddl.Parse(e.Source.DB, e.DDL.Statement).Kind == "" {
		return apply.Result{}, fmt.Errorf("%w: ddl %s from %s: kind %q is not replayed: %q", apply.ErrRefused,
			tx.ID, tx.Origin, e.DDL.Kind, e.DDL.Statement)
	}
	var done int
	err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+s.meta+".ddl_applied WHERE origin=? AND gtid=?",
		tx.Origin, tx.ID).Scan(&done)
	if err != nil {
		return apply.Result{}, fmt.Errorf("mariadb: read ddl_applied: %w", err)
	}
	if done > 0 {
		return apply.Result{Duplicates: 1}, nil
	}
	// The DDL of a transaction with rows (CREATE TABLE ... SELECT, published as
	// "<gtid>/ddl") leaves the GTID to its rows: it runs in the local domain, flagged
	// skip_replication, like a resync.
	part := tx.ID != e.Source.GTID
	outcome, err := s.runDDL(ctx, tx, !part)
	if errNumber(err) == errGTIDOutOfOrder {
		outcome, err = s.runDDL(ctx, tx, false)
	}
	if err != nil {
		return apply.Result{}, err
	}
	s.log.Info("ddl replayed", zap.String("origin", tx.Origin), zap.String("gtid", tx.ID),
		zap.String("db", e.Source.DB), zap.String("statement", e.DDL.Statement), zap.String("outcome", outcome))
	return apply.Result{Applied: 1}, nil
}

func (s *Sink) runDDL(ctx context.Context, tx *apply.Txn, useSeq bool) (outcome string, err error) {
	e := tx.Events[0]
	setup := replaySetup(tx, useSeq)
	if tx.ID != e.Source.GTID {
		setup = localReplay
	}
	// The connection is discarded afterwards (discard): USE cannot be undone.
	err = s.withSession(ctx, setup, true, func(conn *sql.Conn) error {
		if e.Source.DB != "" {
			db, err := quote(e.Source.DB)
			if err != nil {
				return err
			}
			if err := s.use(ctx, conn, db, e.DDL.Statement); err != nil {
				return err
			}
		}
		outcome = "applied"
		if _, err := conn.ExecContext(ctx, e.DDL.Statement); err != nil {
			n := errNumber(err)
			switch {
			case n == errGTIDOutOfOrder:
				return err
			case alreadyDone[n]:
				outcome = "already in effect: " + err.Error()
			default:
				// Retried by the worker (its status shows the error) until an operator fixes
				// the cause: later changes of the origin depend on this schema.
				return fmt.Errorf("mariadb: ddl %s from %s failed: %w: %q", tx.ID, tx.Origin, err, e.DDL.Statement)
			}
		}
		return s.markDDL(ctx, conn, tx, outcome)
	})
	if err != nil && errNumber(err) != errGTIDOutOfOrder && !strings.HasPrefix(err.Error(), "mariadb:") {
		err = fmt.Errorf("mariadb: ddl session: %w", err)
	}
	return outcome, err
}

// use makes db the session's database. A database missing here (capture does not publish
// CREATE DATABASE when filtering by table) is created first, outside the binlog, unless
// the statement is itself the CREATE or DROP DATABASE.
func (s *Sink) use(ctx context.Context, conn *sql.Conn, db, stmt string) error {
	_, err := conn.ExecContext(ctx, "USE "+db)
	if errNumber(err) != 1049 {
		if err != nil {
			return fmt.Errorf("mariadb: ddl use %s: %w", db, err)
		}
		return nil
	}
	if k := ddl.Parse("", stmt).Kind; k == ddl.CreateDatabase || k == ddl.DropDatabase {
		return nil
	}
	for _, q := range []string{"SET SESSION sql_log_bin=0", "CREATE DATABASE IF NOT EXISTS " + db, "SET SESSION sql_log_bin=1", "USE " + db} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("mariadb: create missing database %s: %w", db, err)
		}
	}
	s.log.Info("created missing database for a replayed ddl", zap.String("db", db))
	return nil
}

// markDDL records the DDL as applied, outside the binlog.
func (s *Sink) markDDL(ctx context.Context, conn *sql.Conn, tx *apply.Txn, outcome string) error {
	if len(outcome) > 255 {
		outcome = outcome[:255]
	}
	_, err := conn.ExecContext(ctx, "SET SESSION sql_log_bin=0")
	if err == nil {
		_, err = conn.ExecContext(ctx, "INSERT IGNORE INTO "+s.meta+".ddl_applied (origin,gtid,statement,outcome) VALUES (?,?,?,?)",
			tx.Origin, tx.ID, tx.Events[0].DDL.Statement, outcome)
	}
	_, err2 := conn.ExecContext(ctx, "SET SESSION sql_log_bin=1")
	if err = errors.Join(err, err2); err != nil {
		return fmt.Errorf("mariadb: record ddl %s: %w", tx.ID, err)
	}
	return nil
}
