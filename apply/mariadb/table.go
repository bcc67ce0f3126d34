package mariadb

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strings"

	"go.uber.org/zap"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/changeevent"
)

// sqlTypeRE accepts the column types capture reports (int(11), bigint(20) unsigned,
// decimal(10,2), datetime(6), enum('a','b'), ...) and nothing that could end the type.
var sqlTypeRE = regexp.MustCompile(`^(?i:[a-z]+(\([0-9, ]+\))?( unsigned)?( zerofill)?|(enum|set)\(('([^'\\]|'')*',?)+\))$`)

// EnsureTable creates db.table from columns if it does not exist (a joining site gets its
// tables from the MUSIC store). Only columns, types, nullability and the primary key are
// reproduced; secondary indexes, defaults and character sets are not. It runs outside the
// binlog. created reports whether the table was made.
func (s *Sink) EnsureTable(ctx context.Context, db, table string, cols []changeevent.Column) (created bool, err error) {
	name, err := quoteTable(db, table)
	if err != nil {
		return false, err
	}
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema=? AND table_name=?",
		db, table).Scan(&n); err != nil {
		return false, fmt.Errorf("mariadb: look up %s: %w", name, err)
	}
	if n > 0 {
		return false, nil
	}
	var defs, pk []string
	for _, c := range cols {
		q, err := quote(c.Name)
		if err != nil {
			return false, err
		}
		if !sqlTypeRE.MatchString(c.SQLType) {
			return false, fmt.Errorf("%w: %s column %s: type %q not recreated", apply.ErrRefused, name, c.Name, c.SQLType)
		}
		null := " NULL"
		if !c.Nullable {
			null = " NOT NULL"
		}
		defs = append(defs, q+" "+c.SQLType+null)
		if c.PK {
			pk = append(pk, q)
		}
	}
	dbq, _ := quote(db)
	if len(pk) > 0 { // else a table without primary key (a multiset, see multiset.go)
		defs = append(defs, "PRIMARY KEY ("+strings.Join(pk, ", ")+")")
	}
	stmt := "CREATE TABLE IF NOT EXISTS " + name + " (" + strings.Join(defs, ", ") + ") ENGINE=InnoDB"
	if IsSequence(cols) {
		stmt = "CREATE SEQUENCE IF NOT EXISTS " + name
	}
	err = s.withSession(ctx, outsideBinlog, false, func(conn *sql.Conn) error {
		for _, q := range []string{"CREATE DATABASE IF NOT EXISTS " + dbq, stmt} {
			if _, err := conn.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("mariadb: create %s: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	s.log.Info("table created from the MUSIC store", zap.String("table", name), zap.String("statement", stmt))
	return true, nil
}
