package replbench

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
)

var safeName = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// Endpoint is a MariaDB server as seen by another one.
type Endpoint struct {
	Host string
	Port int
	User string
}

// StartNative makes replica replicate database db from primary with MariaDB's own
// asynchronous, single-threaded replication, starting at primary's current GTID position
// (history before it is not replayed). primaryDB and replicaDB are connections to each
// server; replica must not be replicating already from another primary.
func StartNative(ctx context.Context, primaryDB, replicaDB *sql.DB, primary Endpoint, db string) error {
	if !safeName.MatchString(db) || !safeName.MatchString(primary.Host+primary.User) {
		return fmt.Errorf("replbench: database %q, host %q or user %q has characters outside [A-Za-z0-9_.-]", db, primary.Host, primary.User)
	}
	var pos string
	if err := primaryDB.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_binlog_pos").Scan(&pos); err != nil {
		return fmt.Errorf("read primary gtid_binlog_pos: %w", err)
	}
	stmts := []string{
		"STOP SLAVE",
		"RESET SLAVE ALL",
		"SET GLOBAL slave_parallel_threads = 0",
		fmt.Sprintf("SET GLOBAL replicate_do_db = '%s'", db),
		fmt.Sprintf("SET GLOBAL gtid_slave_pos = '%s'", pos),
		fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='%s', MASTER_PORT=%d, MASTER_USER='%s', MASTER_USE_GTID=slave_pos",
			primary.Host, primary.Port, primary.User),
		"START SLAVE",
	}
	for _, s := range stmts {
		if _, err := replicaDB.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("replica: %s: %w", s, err)
		}
	}
	return nil
}

// StopNative stops and forgets the replica's replication.
func StopNative(ctx context.Context, replicaDB *sql.DB) error {
	for _, s := range []string{"STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL replicate_do_db = ''"} {
		if _, err := replicaDB.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("replica: %s: %w", s, err)
		}
	}
	return nil
}
