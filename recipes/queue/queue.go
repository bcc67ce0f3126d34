package queue

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gocql/gocql"

	"github.com/music-coord/music/recipes/store"
)

var (
	// ErrEmpty means no message was visible.
	ErrEmpty = errors.New("queue: no visible message")
	// ErrLeaseLost means the message was claimed again after the caller's lease expired,
	// or was acknowledged already.
	ErrLeaseLost = errors.New("queue: lease lost")
	// ErrInvalid means a bad argument: priority, visibility or name.
	ErrInvalid = errors.New("queue: invalid request")
)

// Config tunes a queue. Shards, Priorities and Bucket are part of the layout: every
// Queue on the same tables must use the same values.
type Config struct {
	Shards      int           // default 16
	Priorities  int           // default 3; 0 is the most urgent
	Bucket      time.Duration // time slice of a partition; default 10s
	Grace       time.Duration // bound on producers' clock skew and enqueue latency; default 1m
	Sweep       time.Duration // how often a claimer sweeps a shard's live buckets; default 10s
	Retention   time.Duration // how long a message's lease record is kept; default 7 days
	Consistency gocql.Consistency
}

func (c *Config) defaults() {
	if c.Shards <= 0 {
		c.Shards = 16
	}
	if c.Priorities <= 0 {
		c.Priorities = 3
	}
	if c.Bucket <= 0 {
		c.Bucket = 10 * time.Second
	}
	if c.Grace <= 0 {
		c.Grace = time.Minute
	}
	if c.Sweep <= 0 {
		c.Sweep = 10 * time.Second
	}
	if c.Retention <= 0 {
		c.Retention = 7 * 24 * time.Hour
	}
	if c.Consistency == 0 {
		c.Consistency = gocql.Quorum
	}
}

// Message is a claimed (or just enqueued) message.
type Message struct {
	Shard, Priority int
	Bucket          int64
	ID              gocql.UUID
	Payload         string
	Claims          int       // the claim the holder made: 1 for the first delivery
	Deadline        time.Time // end of the lease
}

// Queue is one queue: tables <name>_msgs and <name>_cursor in a keyspace. It is safe for
// concurrent use; Queues in other processes share the queue through Cassandra.
type Queue struct {
	sess              *gocql.Session
	msgs, leases, cur string
	cfg               Config
	parts             []*part // by shard*Priorities + priority
	rr                atomic.Uint32
}

// part is this Queue's view of one (shard, priority): where claims read next.
type part struct {
	mu      sync.Mutex
	loaded  bool
	cursor  int64      // persisted: buckets before it are drained
	bucket  int64      // claim position: bucket ...
	after   gocql.UUID // ... and the last message passed in it (zero: its start)
	swept   time.Time
	shard   int
	prio    int
	retry   []row // messages this Queue nacked, claimed before the others
	pending []row // read, not yet tried: the claim position is after the last
	scanned int   // rows read, for tests and metrics
	raced   int   // claims lost to another claimer
}

// New returns the queue name in keyspace; Create makes its tables.
func New(sess *gocql.Session, keyspace, name string, cfg Config) (*Queue, error) {
	ks, err := store.Ident("keyspace", keyspace)
	if err == nil {
		name, err = store.Ident("queue", name)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	cfg.defaults()
	q := &Queue{sess: sess, msgs: ks + "." + name + "_msgs", leases: ks + "." + name + "_leases",
		cur: ks + "." + name + "_cursor", cfg: cfg}
	for s := range cfg.Shards {
		for p := range cfg.Priorities {
			q.parts = append(q.parts, &part{shard: s, prio: p})
		}
	}
	q.rr.Store(rand.Uint32()) // Queues at other sites start on other shards
	return q, nil
}

// Create makes the queue's tables and cursors if they do not exist.
func (q *Queue) Create(ctx context.Context) error {
	for _, cql := range []string{
		"CREATE TABLE IF NOT EXISTS " + q.msgs + ` (shard int, priority int, bucket bigint, id timeuuid,
			payload text, PRIMARY KEY ((shard, priority, bucket), id))`,
		"CREATE TABLE IF NOT EXISTS " + q.leases + " (id timeuuid PRIMARY KEY, claims int, lease_until bigint)",
		"CREATE TABLE IF NOT EXISTS " + q.cur + " (shard int, priority int, bucket bigint, PRIMARY KEY ((shard, priority)))",
	} {
		if err := q.sess.Query(cql).WithContext(ctx).Exec(); err != nil {
			return fmt.Errorf("queue: create: %w", err)
		}
	}
	start := q.bucketOf(time.Now().Add(-q.cfg.Grace))
	for _, pt := range q.parts {
		_, err := q.sess.Query("INSERT INTO "+q.cur+" (shard, priority, bucket) VALUES (?, ?, ?) IF NOT EXISTS",
			pt.shard, pt.prio, start).WithContext(ctx).MapScanCAS(map[string]any{})
		if err != nil {
			return fmt.Errorf("queue: create cursor: %w", err)
		}
	}
	return nil
}

// Drop deletes the queue's tables.
func (q *Queue) Drop(ctx context.Context) error {
	for _, t := range []string{q.msgs, q.leases, q.cur} {
		if err := q.sess.Query("DROP TABLE IF EXISTS " + t).WithContext(ctx).Exec(); err != nil {
			return fmt.Errorf("queue: drop: %w", err)
		}
	}
	return nil
}

func (q *Queue) bucketOf(t time.Time) int64 { return t.UnixMilli() / q.cfg.Bucket.Milliseconds() }

// Shard is the shard a shard key maps to.
func (q *Queue) Shard(key string) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(q.cfg.Shards))
}

// Enqueue adds payload to the shard of shardKey at priority (0 first).
func (q *Queue) Enqueue(ctx context.Context, shardKey string, priority int, payload string) (Message, error) {
	if priority < 0 || priority >= q.cfg.Priorities {
		return Message{}, fmt.Errorf("%w: priority %d is not in [0, %d)", ErrInvalid, priority, q.cfg.Priorities)
	}
	id := gocql.TimeUUID()
	m := Message{Shard: q.Shard(shardKey), Priority: priority, Bucket: q.bucketOf(id.Time()), ID: id, Payload: payload}
	err := q.sess.Query("INSERT INTO "+q.msgs+" (shard, priority, bucket, id, payload) VALUES (?, ?, ?, ?, ?)",
		m.Shard, m.Priority, m.Bucket, m.ID, m.Payload).WithContext(ctx).Consistency(q.cfg.Consistency).Exec()
	if err != nil {
		return Message{}, fmt.Errorf("queue: enqueue: %w", err)
	}
	return m, nil
}

// Claim leases the first visible message for visibility: the most urgent priority
// first, shards in turn, those no other Claim of this Queue is reading first. It returns
// ErrEmpty when none is visible.
func (q *Queue) Claim(ctx context.Context, visibility time.Duration) (Message, error) {
	start := int(q.rr.Add(1))
	for _, wait := range []bool{false, true} {
		for p := range q.cfg.Priorities {
			for i := range q.cfg.Shards {
				pt := q.parts[((start+i)%q.cfg.Shards)*q.cfg.Priorities+p]
				if !wait && !pt.mu.TryLock() {
					continue
				} else if wait {
					pt.mu.Lock()
				}
				m, err := q.claimPart(ctx, pt, visibility)
				pt.mu.Unlock()
				if !errors.Is(err, ErrEmpty) {
					return m, err
				}
			}
		}
	}
	return Message{}, ErrEmpty
}

// ClaimShard is Claim on one shard: its messages come out in FIFO order per priority.
func (q *Queue) ClaimShard(ctx context.Context, shard int, visibility time.Duration) (Message, error) {
	if shard < 0 || shard >= q.cfg.Shards {
		return Message{}, fmt.Errorf("%w: shard %d is not in [0, %d)", ErrInvalid, shard, q.cfg.Shards)
	}
	for p := range q.cfg.Priorities {
		pt := q.parts[shard*q.cfg.Priorities+p]
		pt.mu.Lock()
		m, err := q.claimPart(ctx, pt, visibility)
		pt.mu.Unlock()
		if !errors.Is(err, ErrEmpty) {
			return m, err
		}
	}
	return Message{}, ErrEmpty
}

// acked is the claims value of an acknowledged message's lease.
const acked = -1

// Ack deletes a claimed message. ErrLeaseLost means someone claimed it since.
func (q *Queue) Ack(ctx context.Context, m Message) error {
	err := q.cas(ctx, "UPDATE "+q.leases+" USING TTL ? SET claims = ? WHERE id = ? IF claims = ?",
		q.ttl(), acked, m.ID, m.Claims)
	if err != nil {
		return err
	}
	return q.remove(ctx, m.Shard, m.Priority, m.Bucket, m.ID)
}

// remove deletes an acknowledged message's row; a claimer that finds the row of an
// acknowledged message removes it again.
func (q *Queue) remove(ctx context.Context, shard, prio int, bucket int64, id gocql.UUID) error {
	err := q.sess.Query("DELETE FROM "+q.msgs+" WHERE shard = ? AND priority = ? AND bucket = ? AND id = ?",
		shard, prio, bucket, id).WithContext(ctx).Consistency(q.cfg.Consistency).Exec()
	if err != nil {
		return fmt.Errorf("queue: delete acknowledged message: %w", err)
	}
	return nil
}

// Nack makes a claimed message visible again now.
func (q *Queue) Nack(ctx context.Context, m Message) error {
	err := q.cas(ctx, "UPDATE "+q.leases+" USING TTL ? SET lease_until = 0 WHERE id = ? IF claims = ?",
		q.ttl(), m.ID, m.Claims)
	if err == nil {
		pt := q.parts[m.Shard*q.cfg.Priorities+m.Priority]
		pt.mu.Lock()
		pt.retry = append(pt.retry, row{bucket: m.Bucket, id: m.ID, payload: m.Payload, claims: m.Claims})
		pt.mu.Unlock()
	}
	return err
}

func (q *Queue) ttl() int { return int(q.cfg.Retention.Seconds()) }

func (q *Queue) cas(ctx context.Context, cql string, args ...any) error {
	applied, err := q.sess.Query(cql, args...).WithContext(ctx).Consistency(q.cfg.Consistency).
		SerialConsistency(gocql.Serial).MapScanCAS(map[string]any{})
	switch {
	case err != nil:
		return fmt.Errorf("queue: %w", err)
	case !applied:
		return ErrLeaseLost
	}
	return nil
}
