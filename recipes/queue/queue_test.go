package queue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/music-coord/music/internal/testenv"
)

var testCfg = Config{Shards: 4, Priorities: 3, Bucket: time.Second, Grace: 3 * time.Second, Sweep: 200 * time.Millisecond}

// newSites returns the same queue opened at n sites, each with its own session.
func newSites(t testing.TB, n int, cfg Config) []*Queue {
	t.Helper()
	ks, sess := testenv.NewKeyspace(t)
	var qs []*Queue
	for i := range n {
		if i > 0 {
			c := testenv.CassandraCluster(t)
			var err error
			if sess, err = c.CreateSession(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(sess.Close)
		}
		q, err := New(sess, ks, "jobs", cfg)
		if err != nil {
			t.Fatal(err)
		}
		qs = append(qs, q)
	}
	if err := qs[0].Create(context.Background()); err != nil {
		t.Fatal(err)
	}
	return qs
}

func TestPriorityAndFIFO(t *testing.T) {
	q := newSites(t, 1, testCfg)[0]
	ctx := context.Background()
	for _, m := range []struct {
		prio    int
		payload string
	}{{1, "a"}, {2, "z"}, {1, "b"}, {0, "urgent"}, {1, "c"}} {
		if _, err := q.Enqueue(ctx, "order-7", m.prio, m.payload); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for {
		m, err := q.ClaimShard(ctx, q.Shard("order-7"), time.Minute)
		if errors.Is(err, ErrEmpty) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.Payload)
		if err := q.Ack(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(got) != "[urgent a b c z]" {
		t.Fatalf("claimed %v, want [urgent a b c z]", got)
	}
	if _, err := q.Enqueue(ctx, "x", 3, ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("priority 3: %v", err)
	}
}

// A consumer that dies with a message: the message comes back after its lease, the dead
// consumer's late ack fails, the new holder's succeeds, and a nack makes it visible.
func TestExpiredLeaseAndNack(t *testing.T) {
	q := newSites(t, 1, testCfg)[0]
	ctx := context.Background()
	if _, err := q.Enqueue(ctx, "k", 1, "job"); err != nil {
		t.Fatal(err)
	}
	dead, err := q.Claim(ctx, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Claim(ctx, time.Minute); !errors.Is(err, ErrEmpty) {
		t.Fatalf("claim while leased: %v", err)
	}
	var again Message
	testenv.Eventually(t, 10*time.Second, func() error {
		again, err = q.Claim(ctx, time.Minute)
		return err
	})
	if again.ID != dead.ID || again.Claims != 2 {
		t.Fatalf("reclaimed %+v, want %v at claim 2", again, dead.ID)
	}
	if err := q.Ack(ctx, dead); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("late ack: %v", err)
	}
	if err := q.Nack(ctx, again); err != nil {
		t.Fatal(err)
	}
	third, err := q.Claim(ctx, time.Minute)
	if err != nil || third.ID != dead.ID || third.Claims != 3 {
		t.Fatalf("after nack: %+v %v", third, err)
	}
	if err := q.Ack(ctx, third); err != nil {
		t.Fatal(err)
	}
	if err := q.Ack(ctx, third); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("second ack: %v", err)
	}
}

// Producers and consumers at three sites move every message once; a consumer dies
// holding messages; none is lost and none is acknowledged twice.
func TestProducersConsumersThreeSites(t *testing.T) {
	total := 20000 // MUSICQ_MESSAGES overrides: 1000000 for a soak
	if n, err := strconv.Atoi(os.Getenv("MUSICQ_MESSAGES")); err == nil && n > 0 {
		total = n
	}
	qs := newSites(t, 3, Config{Shards: 8, Priorities: 3, Bucket: time.Second, Grace: 3 * time.Second, Sweep: 300 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background()) // bounded by go test -timeout
	if d, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(ctx, d.Add(-10*time.Second))
	}
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	var produced atomic.Int64
	for p := range 6 {
		q := qs[p%3]
		wg.Go(func() {
			for i := p; i < total; i += 6 {
				if _, err := q.Enqueue(ctx, fmt.Sprint("key", i%97), i%3, fmt.Sprint(i)); err != nil {
					t.Error(err)
					return
				}
				produced.Add(1)
			}
		})
	}
	var mu sync.Mutex
	acked := map[string]int{}
	var nacked, abandoned atomic.Int64
	consume := func(q *Queue, dieAfter int) {
		for n := 0; ; n++ {
			m, err := q.Claim(ctx, 2*time.Second)
			if errors.Is(err, ErrEmpty) {
				mu.Lock()
				done := len(acked) == total
				mu.Unlock()
				if done || ctx.Err() != nil {
					return
				}
				time.Sleep(20 * time.Millisecond)
				continue
			}
			if err != nil {
				t.Error(err)
				return
			}
			if n == dieAfter { // dies mid-job: never acks, never comes back
				abandoned.Add(1)
				return
			}
			if n%50 == 7 {
				if err := q.Nack(ctx, m); err != nil && !errors.Is(err, ErrLeaseLost) {
					t.Error(err)
				}
				nacked.Add(1)
				continue
			}
			if err := q.Ack(ctx, m); errors.Is(err, ErrLeaseLost) {
				continue // our lease ran out and someone else has it
			} else if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			acked[m.Payload]++
			mu.Unlock()
		}
	}
	var cw sync.WaitGroup
	for c := range 9 {
		dieAfter := -1
		if c == 4 {
			dieAfter = 25
		}
		cw.Go(func() { consume(qs[c%3], dieAfter) })
	}
	wg.Wait()
	cw.Wait()
	elapsed := time.Since(start)
	for p, n := range acked {
		if n != 1 {
			t.Fatalf("message %s acknowledged %d times", p, n)
		}
	}
	if len(acked) != total {
		t.Fatalf("%d of %d messages acknowledged", len(acked), total)
	}
	scanned, raced := 0, 0
	for _, q := range qs {
		for _, pt := range q.parts {
			scanned, raced = scanned+pt.scanned, raced+pt.raced
		}
	}
	t.Logf("%d messages in %v (%.0f/s enqueued+claimed+acked), %d nacks, %d abandoned, %d rows read, %d claims lost to a race",
		total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), nacked.Load(), abandoned.Load(), scanned, raced)
}
