package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gocql/gocql"
)

// sliceRows is how many messages a claim reads at a time.
const sliceRows = 8

type row struct {
	bucket  int64
	id      gocql.UUID
	payload string
	claims  int   // from the lease: 0 never claimed, acked when acknowledged
	lease   int64 // from the lease: end of the current lease, ms
}

func (r row) visible(now time.Time) bool { return r.claims != acked && r.lease <= now.UnixMilli() }

// claimPart claims the first visible message of pt, or returns ErrEmpty. The caller
// holds pt.mu.
func (q *Queue) claimPart(ctx context.Context, pt *part, vis time.Duration) (Message, error) {
	if vis <= 0 {
		return Message{}, fmt.Errorf("%w: visibility must be positive", ErrInvalid)
	}
	if err := q.load(ctx, pt); err != nil {
		return Message{}, err
	}
	if time.Since(pt.swept) >= q.cfg.Sweep {
		if err := q.sweep(ctx, pt); err != nil {
			return Message{}, err
		}
	}
	for len(pt.retry) > 0 { // messages this Queue nacked
		r := pt.retry[0]
		pt.retry = pt.retry[1:]
		if m, ok, err := q.tryClaim(ctx, pt, r, vis); ok || err != nil {
			return m, err
		}
	}
	nowB := q.bucketOf(time.Now())
	for {
		for len(pt.pending) > 0 {
			r := pt.pending[0]
			pt.pending = pt.pending[1:]
			if r.claims == acked { // its ack could not delete it: finish the job
				_ = q.remove(ctx, pt.shard, pt.prio, r.bucket, r.id)
				continue
			}
			if !r.visible(time.Now()) {
				continue // leased: if its holder dies, a sweep brings it back
			}
			if m, ok, err := q.tryClaim(ctx, pt, r, vis); ok || err != nil {
				// read the rest again next time: their leases will have moved on
				pt.after, pt.pending = r.id, nil
				return m, err
			}
		}
		if pt.bucket > nowB {
			break
		}
		rows, err := q.slice(ctx, pt, pt.bucket, pt.after, sliceRows)
		if err != nil {
			return Message{}, err
		}
		if len(rows) > 0 {
			pt.after, pt.pending = rows[len(rows)-1].id, rows
			continue
		}
		if pt.bucket == nowB {
			break
		}
		pt.bucket, pt.after = pt.bucket+1, gocql.UUID{}
	}
	return Message{}, ErrEmpty
}

func (q *Queue) load(ctx context.Context, pt *part) error {
	if pt.loaded {
		return nil
	}
	err := q.sess.Query("SELECT bucket FROM "+q.cur+" WHERE shard = ? AND priority = ?", pt.shard, pt.prio).
		WithContext(ctx).Consistency(q.cfg.Consistency).Scan(&pt.cursor)
	if err != nil {
		return fmt.Errorf("queue: read cursor (was Create called?): %w", err)
	}
	pt.bucket, pt.loaded = pt.cursor, true
	return nil
}

// slice reads up to n messages of a bucket after the message after (zero: from the
// start), so the tombstones of acknowledged messages before it are not read.
func (q *Queue) slice(ctx context.Context, pt *part, bucket int64, after gocql.UUID, n int) ([]row, error) {
	cql := "SELECT id, payload FROM " + q.msgs + " WHERE shard = ? AND priority = ? AND bucket = ?"
	args := []any{pt.shard, pt.prio, bucket}
	if after != (gocql.UUID{}) {
		cql, args = cql+" AND id > ?", append(args, after)
	}
	return q.scan(ctx, pt, bucket, cql+fmt.Sprintf(" LIMIT %d", n), args)
}

// scan reads message rows and their leases.
func (q *Queue) scan(ctx context.Context, pt *part, bucket int64, cql string, args []any) ([]row, error) {
	iter := q.sess.Query(cql, args...).WithContext(ctx).Consistency(q.cfg.Consistency).Iter()
	var rows []row
	r := row{bucket: bucket}
	for iter.Scan(&r.id, &r.payload) {
		rows = append(rows, r)
	}
	pt.scanned += len(rows)
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("queue: read: %w", err)
	}
	return rows, q.withLeases(ctx, rows)
}

// withLeases reads the leases of rows, in one query.
func (q *Queue) withLeases(ctx context.Context, rows []row) error {
	if len(rows) == 0 {
		return nil
	}
	ids := make([]gocql.UUID, len(rows))
	for i, r := range rows {
		ids[i] = r.id
	}
	iter := q.sess.Query("SELECT id, claims, lease_until FROM "+q.leases+" WHERE id IN ?", ids).
		WithContext(ctx).Consistency(q.cfg.Consistency).Iter()
	type lease struct {
		claims int
		until  int64
	}
	got := map[gocql.UUID]lease{}
	var id gocql.UUID
	var l lease
	for iter.Scan(&id, &l.claims, &l.until) {
		got[id] = l
	}
	if err := iter.Close(); err != nil {
		return fmt.Errorf("queue: read leases: %w", err)
	}
	for i := range rows {
		l := got[rows[i].id]
		rows[i].claims, rows[i].lease = l.claims, l.until
	}
	return nil
}

// tryClaim leases r if its lease is still the one read: the first claim creates the
// lease (IF NOT EXISTS), a later one bumps its claim count (IF claims = n). Each lease
// is its own partition, so claims of different messages do not contend in Paxos.
func (q *Queue) tryClaim(ctx context.Context, pt *part, r row, vis time.Duration) (Message, bool, error) {
	m := Message{Shard: pt.shard, Priority: pt.prio, Bucket: r.bucket, ID: r.id, Payload: r.payload,
		Claims: r.claims + 1, Deadline: time.Now().Add(vis)}
	var err error
	if r.claims == 0 {
		err = q.cas(ctx, "INSERT INTO "+q.leases+" (id, claims, lease_until) VALUES (?, 1, ?) IF NOT EXISTS USING TTL ?",
			m.ID, m.Deadline.UnixMilli(), q.ttl())
	} else {
		err = q.cas(ctx, "UPDATE "+q.leases+" USING TTL ? SET claims = ?, lease_until = ? WHERE id = ? IF claims = ?",
			q.ttl(), m.Claims, m.Deadline.UnixMilli(), m.ID, r.claims)
	}
	switch {
	case errors.Is(err, ErrLeaseLost):
		pt.raced++
		return Message{}, false, nil // claimed or acknowledged by someone else meanwhile
	case err != nil:
		return Message{}, false, err
	}
	return m, true, nil
}

// sweep reads what lies behind pt's claim position in its live buckets: it moves the
// position back to the first visible message there (an expired lease, a nack at another
// site, a late producer), and the persisted cursor past drained buckets older than
// Grace. What lies ahead of the position the claims read anyway.
func (q *Queue) sweep(ctx context.Context, pt *part) error {
	now := time.Now()
	pt.swept = now
	oldB := q.bucketOf(now.Add(-q.cfg.Grace))
	for b := pt.cursor; b <= pt.bucket; b++ {
		upTo := gocql.UUID{}
		if b == pt.bucket {
			if upTo = pt.after; upTo == (gocql.UUID{}) {
				break // the position is the bucket's start: nothing behind it
			}
		}
		rows, err := q.behind(ctx, pt, b, upTo)
		if err != nil {
			return err
		}
		if len(rows) == 0 && b == pt.cursor && b < oldB && b < pt.bucket {
			if err := q.advance(ctx, pt, b+1); err != nil {
				return err
			}
			continue
		}
		prev := gocql.UUID{}
		for _, r := range rows {
			if r.visible(now) && pt.rewind(b, r.id, prev) {
				return nil
			}
			prev = r.id
		}
	}
	return nil
}

// behind reads bucket b whole, or up to message upTo when it is not zero.
func (q *Queue) behind(ctx context.Context, pt *part, b int64, upTo gocql.UUID) ([]row, error) {
	cql := "SELECT id, payload FROM " + q.msgs + " WHERE shard = ? AND priority = ? AND bucket = ?"
	args := []any{pt.shard, pt.prio, b}
	if upTo != (gocql.UUID{}) {
		cql, args = cql+" AND id <= ?", append(args, upTo)
	}
	return q.scan(ctx, pt, b, cql, args)
}

func (q *Queue) advance(ctx context.Context, pt *part, to int64) error {
	err := q.sess.Query("UPDATE "+q.cur+" SET bucket = ? WHERE shard = ? AND priority = ?", to, pt.shard, pt.prio).
		WithContext(ctx).Consistency(q.cfg.Consistency).Exec()
	if err != nil {
		return fmt.Errorf("queue: move cursor: %w", err)
	}
	pt.cursor = to
	if pt.bucket < to {
		pt.bucket, pt.after, pt.pending = to, gocql.UUID{}, nil
	}
	return nil
}

// rewind moves the claim position back to just after prev (zero: the bucket's start)
// so that message (bucket, id) is read again, if the position is past it; it reports
// whether it moved.
func (pt *part) rewind(bucket int64, id, prev gocql.UUID) bool {
	behind := bucket < pt.bucket || bucket == pt.bucket && pt.after != (gocql.UUID{}) && !uuidAfter(id, pt.after)
	if behind {
		pt.bucket, pt.after, pt.pending = bucket, prev, nil
	}
	return behind
}

// uuidAfter reports whether time UUID a sorts after b, as Cassandra orders timeuuid.
func uuidAfter(a, b gocql.UUID) bool {
	if ta, tb := a.Timestamp(), b.Timestamp(); ta != tb {
		return ta > tb
	}
	return bytes.Compare(a[:], b[:]) > 0
}
