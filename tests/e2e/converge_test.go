package e2e

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/gocql/gocql"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/music-coord/music/apply/cassandra"
	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/testenv"
)

const kvDDL = "CREATE TABLE kv (id BIGINT PRIMARY KEY, src VARCHAR(8) NOT NULL, n BIGINT NOT NULL, v VARCHAR(64) NOT NULL)"

// hotKeys are the rows every site writes (same-key conflicts).
const hotKeys = 16

// siteWriter is an application at one site: inserts, updates and deletes of rows in its
// own id range (only it writes them, so their final state is known) and upserts, updates
// and deletes of the shared hot rows, some of both in one transaction.
type siteWriter struct {
	site testenv.Site
	pool *sql.DB
	rng  *rand.Rand

	own     map[int64]string // own-range rows as they must end: id -> "src|n|v"
	ownIDs  []int64
	next    int64
	commits int // committed transactions that changed at least one row (binlogged)
	fails   int // transactions that failed (deadlocks with replay, ...) and were rolled back
}

func newSiteWriter(site testenv.Site, pool *sql.DB) *siteWriter {
	return &siteWriter{site: site, pool: pool, rng: rand.New(rand.NewPCG(uint64(site.Index), uint64(time.Now().UnixNano()))),
		own: map[int64]string{}, next: int64(site.Index) * 1_000_000}
}

type stmt struct {
	sql  string
	args []any
	// apply records the statement's effect on the own-range expectation once committed.
	apply func()
}

func (w *siteWriter) ownInsert(i int) stmt {
	w.next++
	id, v := w.next, fmt.Sprintf("%s-%d", w.site.Name, i)
	return stmt{"INSERT INTO kv VALUES (?, ?, 0, ?)", []any{id, w.site.Name, v}, func() {
		w.own[id] = w.site.Name + "|0|" + v
		w.ownIDs = append(w.ownIDs, id)
	}}
}

func (w *siteWriter) ownChange(i int) stmt {
	if len(w.ownIDs) == 0 {
		return w.ownInsert(i)
	}
	id := w.ownIDs[w.rng.IntN(len(w.ownIDs))]
	cur, ok := w.own[id]
	if !ok {
		return w.ownInsert(i)
	}
	if w.rng.IntN(5) == 0 {
		return stmt{"DELETE FROM kv WHERE id=?", []any{id}, func() { delete(w.own, id) }}
	}
	parts := strings.Split(cur, "|")
	n, _ := strconv.Atoi(parts[1])
	v := fmt.Sprintf("%s-u%d", w.site.Name, i)
	return stmt{"UPDATE kv SET n=n+1, v=? WHERE id=?", []any{v, id}, func() {
		w.own[id] = fmt.Sprintf("%s|%d|%s", w.site.Name, n+1, v)
	}}
}

func (w *siteWriter) hot(i int) stmt {
	id := int64(w.rng.IntN(hotKeys) + 1)
	v := fmt.Sprintf("%s-h%d", w.site.Name, i)
	switch w.rng.IntN(6) {
	case 0:
		return stmt{"DELETE FROM kv WHERE id=?", []any{id}, func() {}}
	case 1:
		return stmt{"UPDATE kv SET src=?, n=n+1, v=? WHERE id=?", []any{w.site.Name, v, id}, func() {}}
	default:
		return stmt{"INSERT INTO kv VALUES (?, ?, 0, ?) ON DUPLICATE KEY UPDATE src=VALUES(src), n=n+1, v=VALUES(v)",
			[]any{id, w.site.Name, v}, func() {}}
	}
}

// step runs one transaction of one to three statements.
func (w *siteWriter) step(ctx context.Context, i int) error {
	var stmts []stmt
	switch r := w.rng.IntN(10); {
	case r < 4:
		stmts = []stmt{w.ownInsert(i)}
	case r < 6:
		stmts = []stmt{w.ownChange(i)}
	case r < 9:
		stmts = []stmt{w.hot(i)}
	default:
		stmts = []stmt{w.ownInsert(i), w.hot(i), w.ownChange(i)}
	}
	tx, err := w.pool.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	var changed int64
	for _, s := range stmts {
		res, err := tx.ExecContext(ctx, s.sql, s.args...)
		if err != nil {
			_ = tx.Rollback()
			return err
		}
		n, _ := res.RowsAffected()
		changed += n
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	for _, s := range stmts {
		s.apply()
	}
	if changed > 0 {
		w.commits++
	}
	return nil
}

// run writes until ctx ends, about one transaction every pace.
func (w *siteWriter) run(ctx context.Context, t testing.TB, pace time.Duration) {
	for i := 0; ctx.Err() == nil; i++ {
		if err := w.step(context.Background(), i); err != nil {
			var me *mysql.MySQLError
			if errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205) {
				w.fails++ // a deadlock with a replayed transaction: rolled back, nothing binlogged
				continue
			}
			t.Errorf("site %s: %v", w.site.Name, err)
			return
		}
		time.Sleep(pace)
	}
}

// tableState is a table's rows as id -> "src|n|v" (an error text if it cannot be read).
func tableState(pool *sql.DB) (map[int64]string, error) {
	rows, err := pool.Query("SELECT id, src, n, v FROM kv")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int64]string{}
	for rows.Next() {
		var id, n int64
		var src, v string
		if err := rows.Scan(&id, &src, &n, &v); err != nil {
			return nil, err
		}
		if _, dup := out[id]; dup {
			return nil, fmt.Errorf("id %d twice", id)
		}
		out[id] = fmt.Sprintf("%s|%d|%s", src, n, v)
	}
	return out, rows.Err()
}

func storeState(session *gocql.Session, ks, db string) (map[int64]string, error) {
	iter := session.Query(fmt.Sprintf(`SELECT id, src, n, v FROM %s."%s"`, ks, cassandra.TableName(db, "kv"))).Iter()
	out := map[int64]string{}
	var id, n int64
	var src, v string
	for iter.Scan(&id, &src, &n, &v) {
		if _, dup := out[id]; dup {
			return nil, fmt.Errorf("store: id %d twice", id)
		}
		out[id] = fmt.Sprintf("%s|%d|%s", src, n, v)
	}
	return out, iter.Close()
}

func checksum(pool *sql.DB) (string, error) {
	var name string
	var sum sql.NullString
	err := pool.QueryRow("CHECKSUM TABLE kv").Scan(&name, &sum)
	return sum.String, err
}

// diff describes the first differences between two row sets.
func diff(an string, a map[int64]string, bn string, b map[int64]string) error {
	if maps.Equal(a, b) {
		return nil
	}
	var out []string
	ids := slices.Sorted(maps.Keys(a))
	for id := range b {
		if _, ok := a[id]; !ok {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		if a[id] != b[id] && len(out) < 5 {
			out = append(out, fmt.Sprintf("id %d: %s %q, %s %q", id, an, a[id], bn, b[id]))
		}
	}
	return fmt.Errorf("%s (%d rows) and %s (%d rows) differ: %s", an, len(a), bn, len(b), strings.Join(out, "; "))
}

// chaos is what a scenario does to the deployment while the writers run.
type chaos func(t *testing.T, m *mirror)

// runConverge runs the agents of three sites, creates kv at site a only, writes at every
// site for the given time while chaos happens, and checks that every site and the MUSIC
// store end with the same rows, that no write was lost, and that no stream holds a change
// of another site (no loop) or one change twice.
func runConverge(t *testing.T, natsURL string, write time.Duration, doChaos chaos) {
	ks, session := testenv.NewKeyspace(t)
	runConvergeOn(t, natsURL, testenv.Cassandra(t), ks, session, write, doChaos)
}

// runConvergeOn is runConverge with the MUSIC store in keyspace ks of the Cassandra node
// at store.
func runConvergeOn(t *testing.T, natsURL, store, ks string, session *gocql.Session, write time.Duration, doChaos chaos) {
	sites := testenv.Sites(t)
	if len(sites) < 3 {
		t.Fatalf("want three sites, have %d", len(sites))
	}
	sites = sites[:3]
	db := testenv.NewDatabase(t, sites...)
	m := newMirror(t, natsURL, db, ks, sites)
	m.store = store
	m.applyLog = "debug" // explain shows the decisions taken for rows that diverge
	m.startAll()
	var pools []*sql.DB
	for _, s := range sites {
		pools = append(pools, s.Open(t, db))
	}
	// The table is created at site a only: the DDL must reach b and c.
	testenv.Eventually(t, 30*time.Second, func() error {
		_, js := testenv.Connect(t, natsURL)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, sa := range m.sites {
			if _, err := js.Stream(ctx, sa.stream); err != nil {
				return fmt.Errorf("stream %s: %v", sa.stream, err)
			}
		}
		return nil
	})
	if _, err := pools[0].Exec(kvDDL); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, func() error {
		for i, p := range pools {
			if _, err := tableState(p); err != nil {
				return fmt.Errorf("site %s: %v", sites[i].Name, err)
			}
		}
		return nil
	})
	writers := make([]*siteWriter, len(sites))
	ctx, stopWriters := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i, s := range sites {
		writers[i] = newSiteWriter(s, pools[i])
		wg.Go(func() { writers[i].run(ctx, t, 3*time.Millisecond) })
	}
	start := time.Now()
	doChaos(t, m)
	time.Sleep(time.Until(start.Add(write)))
	stopWriters()
	wg.Wait()
	for _, w := range writers {
		t.Logf("site %s: %d transactions committed, %d deadlocks rolled back, %d own rows", w.site.Name, w.commits, w.fails, len(w.own))
	}
	converged := time.Now()
	deadline := time.Now().Add(120 * time.Second)
	for {
		err := checkConverged(pools, sites, session, ks, db)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			explain(t, m, session, ks, db, err)
			t.Fatalf("not converged within 120s: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("converged %s after the writes stopped", time.Since(converged).Round(time.Millisecond))
	final, _ := tableState(pools[0])
	for _, w := range writers {
		for id, want := range w.own {
			if got := final[id]; got != want {
				t.Errorf("site %s row %d = %q, want %q (lost write)", w.site.Name, id, got, want)
			}
		}
		for id := range final {
			if id/1_000_000 == int64(w.site.Index) {
				if _, ok := w.own[id]; !ok {
					t.Errorf("site %s row %d = %q, want deleted", w.site.Name, id, final[id])
				}
			}
		}
	}
	checkStreams(t, m, writers)
}

func checkConverged(pools []*sql.DB, sites []testenv.Site, session *gocql.Session, ks, db string) error {
	var sums []string
	var states []map[int64]string
	for i, p := range pools {
		sum, err := checksum(p)
		if err != nil {
			return fmt.Errorf("site %s: %v", sites[i].Name, err)
		}
		st, err := tableState(p)
		if err != nil {
			return fmt.Errorf("site %s: %v", sites[i].Name, err)
		}
		sums, states = append(sums, sum), append(states, st)
	}
	for i := 1; i < len(pools); i++ {
		if err := diff("site "+sites[0].Name, states[0], "site "+sites[i].Name, states[i]); err != nil {
			return err
		}
		if sums[i] != sums[0] {
			return fmt.Errorf("CHECKSUM TABLE: site %s %s, site %s %s", sites[0].Name, sums[0], sites[i].Name, sums[i])
		}
	}
	store, err := storeState(session, ks, db)
	if err != nil {
		return err
	}
	return diff("site "+sites[0].Name, states[0], "MUSIC store", store)
}

// checkStreams reads every site's stream: each event must be of the site's own GTID domain
// (a replayed change captured again would carry the origin's), no event may be there twice,
// and every transaction the site's writer committed must be there (plus the CREATE at a).
func checkStreams(t *testing.T, m *mirror, writers []*siteWriter) {
	_, js := testenv.Connect(t, m.natsURL)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i, sa := range m.sites {
		events := readStream(t, ctx, js, sa.stream)
		ids, txns := map[string]bool{}, map[string]bool{}
		for _, e := range events {
			domain, _, _ := strings.Cut(e.Source.GTID, "-")
			if domain != strconv.Itoa(sa.site.Index) || e.Source.Name != sa.name {
				t.Fatalf("stream %s holds an event of %s, GTID %s (domain of site %s is %d): a replayed change was captured again",
					sa.stream, e.Source.Name, e.Source.GTID, sa.site.Name, sa.site.Index)
			}
			id := changeevent.MsgID(e.Source.Name, e.Source.GTID, e.Transaction.Index)
			if ids[id] {
				t.Fatalf("stream %s holds event %s twice", sa.stream, id)
			}
			ids[id], txns[e.Source.GTID] = true, true
		}
		want := writers[i].commits
		if i == 0 {
			want++ // the CREATE TABLE
		}
		if len(txns) != want {
			t.Errorf("stream %s holds %d transactions, site %s committed %d", sa.stream, len(txns), sa.site.Name, want)
		}
		t.Logf("stream %s: %d events of %d transactions, all of domain %d, no duplicates", sa.stream, len(events), len(txns), sa.site.Index)
	}
}

func readStream(t *testing.T, ctx context.Context, js jetstream.JetStream, name string) []*changeevent.Event {
	t.Helper()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	total := info.State.Msgs
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*changeevent.Event
	joiner := changeevent.NewJoiner()
	var read uint64
	for read < total {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			data := msg.Data()
			part, isPart, err := changeevent.ParsePart(msg.Headers().Get)
			if err != nil {
				t.Fatalf("stream %s: %v", name, err)
			}
			if isPart {
				whole, done := joiner.Add(part, data)
				if !done {
					continue
				}
				data = whole
			}
			evs, err := changeevent.DecodeMessage(data)
			if err != nil {
				t.Fatalf("stream %s: %v", name, err)
			}
			out = append(out, evs...)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			t.Fatal(err)
		}
		if got == 0 {
			t.Fatalf("stream %s: read %d of %d messages", name, read, total)
		}
		read += uint64(got)
	}
	if joiner.Pending() > 0 {
		t.Fatalf("stream %s: %d events with parts missing", name, joiner.Pending())
	}
	return out
}

// TestThreeSitesConverge: three sites with concurrent writers at every site (disjoint
// inserts, same-key conflicts on a hot set), the apply of site b SIGKILLed and restarted
// mid-stream, and site c's agents down for a while with writes going on there; every site
// and the MUSIC store end identical, nothing lost, nothing looped or duplicated.
func TestThreeSitesConverge(t *testing.T) {
	t.Parallel()
	runConverge(t, testenv.NATS(t), 20*time.Second, func(t *testing.T, m *mirror) {
		b, c := m.sites[1], m.sites[2]
		time.Sleep(4 * time.Second)
		t.Log("SIGKILL apply b")
		b.apply.kill()
		time.Sleep(time.Second)
		b.apply.start()
		time.Sleep(2 * time.Second)
		t.Log("site c agents down")
		c.capture.stop()
		c.apply.stop()
		time.Sleep(6 * time.Second)
		t.Log("site c agents up")
		c.capture.start()
		c.apply.start()
	})
}

// TestNATSRestartConverge: the same writers with a private NATS server restarted twice
// mid-stream (the agents reconnect); every site and the MUSIC store end identical.
func TestNATSRestartConverge(t *testing.T) {
	t.Parallel()
	n := testenv.NewPrivateNATS(t)
	runConverge(t, n.URL(), 16*time.Second, func(t *testing.T, m *mirror) {
		for range 2 {
			time.Sleep(4 * time.Second)
			t.Log("restart NATS")
			n.Restart()
		}
	})
}

// TestCassandraRestartConverge: the same writers with the MUSIC store on a private
// Cassandra node that is stopped for a few seconds mid-stream (store writes fail and are
// retried, MariaDB replay goes on) and started again; every site and the store end
// identical.
func TestCassandraRestartConverge(t *testing.T) {
	t.Parallel()
	node := testenv.NewPrivateCassandra(t)
	ks, session := node.NewKeyspace(t)
	runConvergeOn(t, testenv.NATS(t), node.Host(), ks, session, 16*time.Second, func(t *testing.T, m *mirror) {
		time.Sleep(4 * time.Second)
		t.Log("Cassandra down")
		node.Stop()
		time.Sleep(3 * time.Second)
		t.Log("Cassandra up")
		node.Start()
	})
}

// explain logs, for the rows a convergence error names, what the MUSIC store holds (with
// origin, GTID and write time) and every event of the row in the streams.
func explain(t *testing.T, m *mirror, session *gocql.Session, ks, db string, cerr error) {
	var ids []int64
	for _, part := range strings.Split(cerr.Error(), "id ")[1:] {
		if id, err := strconv.ParseInt(strings.SplitN(part, ":", 2)[0], 10, 64); err == nil {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		var origin, gtid string
		var version, wt int64
		err := session.Query(fmt.Sprintf(`SELECT music_origin, music_gtid, music_version, writetime(v) FROM %s."%s" WHERE id = ?`,
			ks, cassandra.TableName(db, "kv")), id).Scan(&origin, &gtid, &version, &wt)
		t.Logf("store row %d: origin %s gtid %s music_version %d writetime(v) %d (err %v)", id, origin, gtid, version, wt, err)
	}
	_, js := testenv.Connect(t, m.natsURL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, sa := range m.sites { // what each apply consumer has had delivered and acknowledged
		for _, o := range m.sites {
			durable := "music_apply_" + changeevent.Token(sa.name) + "_" + changeevent.Token(o.name)
			c, err := js.Consumer(ctx, o.stream, durable)
			if err != nil {
				t.Logf("consumer %s: %v", durable, err)
				continue
			}
			i := c.CachedInfo()
			t.Logf("apply %s <- %s: delivered up to stream seq %d, ack floor %d, %d awaiting ack, %d redelivered, %d not delivered, %d pull requests waiting",
				sa.site.Name, o.site.Name, i.Delivered.Stream, i.AckFloor.Stream, i.NumAckPending, i.NumRedelivered, i.NumPending, i.NumWaiting)
		}
	}
	for _, sa := range m.sites {
		sa.apply.signal(syscall.SIGQUIT) // Go prints every goroutine's stack: where is apply waiting?
		data, _ := os.ReadFile(sa.apply.log)
		var stuck []string
		if i := strings.Index(string(data), "\ngoroutine "); i >= 0 {
			data = data[i+1:] // the stack dump after the log
		}
		for _, g := range strings.Split(string(data), "\n\n") {
			if strings.Contains(g, "music/apply.(*scheduler)") || strings.Contains(g, "music/apply/mariadb") {
				stuck = append(stuck, g)
			}
		}
		t.Logf("apply %s: %d goroutines in the scheduler or the MariaDB sink at the end:\n%s", sa.site.Name, len(stuck),
			strings.Join(stuck[:min(len(stuck), 12)], "\n\n"))
		for _, id := range ids {
			var lines []string
			for _, line := range strings.Split(string(data), "\n") {
				if strings.Contains(line, fmt.Sprintf(`"key": "[%d]"`, id)) {
					lines = append(lines, line)
				}
			}
			t.Logf("apply %s, row %d: last %d of %d log lines:\n%s", sa.site.Name, id, min(len(lines), 40), len(lines),
				strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	}
	for _, sa := range m.sites {
		seen := map[int64][]*changeevent.Event{}
		for _, e := range readStream(t, ctx, js, sa.stream) {
			for _, id := range ids {
				if k, ok := e.Key["id"]; ok && fmt.Sprint(k) == strconv.FormatInt(id, 10) {
					t.Logf("stream %s: row %d op %s gtid %s ts_us %d txn %d/%d after %v",
						sa.stream, id, e.Op, e.Source.GTID, e.Source.TsUs, e.Transaction.Index, e.Transaction.Total, e.After)
					seen[id] = append(seen[id], e)
				}
			}
		}
		for id, evs := range seen {
			for i := 1; i < len(evs); i++ {
				if p, c := evs[i-1], evs[i]; c.Source.TsUs <= p.Source.TsUs {
					t.Logf("row %d: %s has commit time %d µs, not after %s's %d: the commit clock went back",
						id, c.Source.GTID, c.Source.TsUs, p.Source.GTID, p.Source.TsUs)
				}
			}
		}
	}
}
