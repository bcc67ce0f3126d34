package replbench

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// CreateTable creates the benchmark table: an increasing id, the source insert time in
// microseconds (for lag), and a payload.
func CreateTable(ctx context.Context, db *sql.DB, table string) error {
	_, err := db.ExecContext(ctx, "CREATE TABLE `"+table+"` (id BIGINT PRIMARY KEY, "+
		"created_us BIGINT NOT NULL, payload VARCHAR(200) NOT NULL) ENGINE=InnoDB")
	return err
}

// Insert writes rows first..first+n-1 in transactions of txSize rows each, stamping each
// transaction with the time it was sent.
func Insert(ctx context.Context, db *sql.DB, table string, first, n, txSize int) error {
	payload := strings.Repeat("x", 100)
	for start := first; start < first+n; start += txSize {
		end := min(start+txSize, first+n)
		var sb strings.Builder
		args := make([]any, 0, 3*(end-start))
		now := time.Now().UnixMicro()
		sb.WriteString("INSERT INTO `" + table + "` (id, created_us, payload) VALUES ")
		for id := start; id < end; id++ {
			if id > start {
				sb.WriteByte(',')
			}
			sb.WriteString("(?,?,?)")
			args = append(args, id, now, payload)
		}
		if _, err := db.ExecContext(ctx, sb.String(), args...); err != nil {
			return fmt.Errorf("insert rows %d..%d: %w", start, end-1, err)
		}
	}
	return nil
}

// Offered inserts rows at a fixed rate (rows per second) for d, in transactions of
// txSize rows, starting at id first. It returns how many rows it wrote; it falls behind
// (and says so in the count) when the database cannot keep up.
func Offered(ctx context.Context, db *sql.DB, table string, first, rate, txSize int, d time.Duration) (int, error) {
	interval := time.Duration(float64(time.Second) * float64(txSize) / float64(rate))
	tick := time.NewTicker(interval)
	defer tick.Stop()
	deadline := time.Now().Add(d)
	n := 0
	for time.Now().Before(deadline) {
		if err := Insert(ctx, db, table, first+n, txSize, txSize); err != nil {
			return n, err
		}
		n += txSize
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-tick.C:
		}
	}
	return n, nil
}

// Clients runs clients concurrent connections, each writing perClient single-row
// autocommit transactions: client c owns ids first+c, first+c+clients, ... (interleaved, so
// rows arrive roughly in id order).
// With update false each inserts its rows; with update true each updates its (existing)
// rows, setting created_us to the time sent and payload to UpdatedPayload.
func Clients(ctx context.Context, db *sql.DB, table string, first, clients, perClient int, update bool) error {
	db.SetMaxOpenConns(max(clients, 2))
	db.SetMaxIdleConns(max(clients, 2))
	q := "INSERT INTO `" + table + "` (id, created_us, payload) VALUES (?,?,?)"
	payload := strings.Repeat("x", 100)
	if update {
		q = "UPDATE `" + table + "` SET created_us = ?, payload = ? WHERE id = ?"
		payload = UpdatedPayload
	}
	errc := make(chan error, clients)
	for c := range clients {
		go func() {
			for i := range perClient {
				id := first + c + i*clients
				now := time.Now().UnixMicro()
				var err error
				if update {
					_, err = db.ExecContext(ctx, q, now, payload, id)
				} else {
					_, err = db.ExecContext(ctx, q, id, now, payload)
				}
				if err != nil {
					errc <- fmt.Errorf("client %d row %d: %w", c, id, err)
					return
				}
			}
			errc <- nil
		}()
	}
	var firstErr error
	for range clients {
		if err := <-errc; err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// UpdatedPayload is the payload Clients writes with update: a probe tells updated rows by it.
const UpdatedPayload = "updated"
