package apply_test

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/apply/applytest"
	"github.com/music-coord/music/apply/cassandra"
	"github.com/music-coord/music/apply/mariadb"
	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/testenv"
)

// origin is a simulated origin site with its own stream.
type origin struct {
	*applytest.Origin
	stream string
}

// newOrigin creates a stream for a uniquely named origin site (so tests sharing the NATS
// server never overlap) with capture's subjects and duplicate window.
func newOrigin(t testing.TB, js jetstream.JetStream, prefix, suffix string, domain uint32) *origin {
	t.Helper()
	name := strings.ToLower(prefix) + suffix
	stream := prefix + "_" + strings.ToUpper(suffix)
	_, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: stream,
		Subjects: []string{changeevent.SiteSubjects(name)}, Storage: jetstream.FileStorage, Duplicates: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return &origin{Origin: applytest.NewOrigin(name, domain), stream: stream}
}

// publish sends events as capture does: subject per table, message id per (site, gtid, row).
func publish(t testing.TB, js jetstream.JetStream, events ...*changeevent.Event) {
	t.Helper()
	for _, e := range events {
		data, err := changeevent.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		subj := changeevent.Subject(e.Source.Name, e.Source.DB, e.Source.Table)
		if e.Source.Table == "" {
			subj = changeevent.Subject(e.Source.Name, e.Source.DB, "_")
		}
		if _, err := js.Publish(context.Background(), subj, data,
			jetstream.WithMsgID(changeevent.MsgID(e.Source.Name, e.Source.GTID, e.Transaction.Index))); err != nil {
			t.Fatal(err)
		}
	}
}

// start runs a worker for (local, o) until the returned stop is called (also at cleanup).
func start(t testing.TB, js jetstream.JetStream, local string, o *origin, sinks ...apply.Sink) (*apply.Worker, func()) {
	t.Helper()
	return startWith(t, js, local, o, nil, sinks...)
}

func startWith(t testing.TB, js jetstream.JetStream, local string, o *origin, m *apply.Metrics, sinks ...apply.Sink) (*apply.Worker, func()) {
	t.Helper()
	w, err := apply.NewWorker(js, apply.Config{Local: local, Origin: o.Name, Stream: o.stream,
		Durable: "apply_" + local, Workers: 8, PollInterval: 200 * time.Millisecond}, sinks, m, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(ctx); err != nil {
			t.Errorf("worker %s<-%s: %v", local, o.Name, err)
		}
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return w, stop
}

func openSink(t testing.TB, site testenv.Site) *mariadb.Sink {
	t.Helper()
	s, err := mariadb.Open(context.Background(), mariadb.Config{DSN: site.DSN("")}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func storeSink(t testing.TB) (*cassandra.Sink, *gocql.Session, string) {
	t.Helper()
	ks, session := testenv.NewKeyspace(t)
	s, err := cassandra.New(context.Background(), session, cassandra.Config{Keyspace: ks}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return s, session, ks
}

// tableRows is db.kv as sorted "id=v" (or an error text if the table is missing).
func tableRows(db *sql.DB) string {
	rs, err := db.Query("SELECT id, COALESCE(v,'NULL') FROM kv ORDER BY id")
	if err != nil {
		return err.Error()
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		var id int64
		var v string
		_ = rs.Scan(&id, &v)
		out = append(out, fmt.Sprintf("%d=%s", id, v))
	}
	return strings.Join(out, " ")
}

func storeRows(session *gocql.Session, ks, db string) string {
	iter := session.Query(fmt.Sprintf(`SELECT id, v FROM %s."%s"`, ks, cassandra.TableName(db, "kv"))).Iter()
	var id int64
	var v string
	var out []string
	for iter.Scan(&id, &v) {
		out = append(out, fmt.Sprintf("%d=%s", id, v))
	}
	if err := iter.Close(); err != nil {
		return err.Error()
	}
	sort.Slice(out, func(i, j int) bool { return idOf(out[i]) < idOf(out[j]) })
	return strings.Join(out, " ")
}

func idOf(s string) int {
	var n int
	fmt.Sscanf(s, "%d=", &n)
	return n
}

func equal(got func() string, want string) func() error {
	return func() error {
		if g := got(); g != want {
			return fmt.Errorf("got %q, want %q", g, want)
		}
		return nil
	}
}

func TestWorkerAppliesOnlyCompleteTransactions(t *testing.T) {
	site := testenv.Sites(t)[1]
	db := testenv.NewDatabase(t, site)
	pool := site.Open(t, db)
	_, js := testenv.Connect(t, testenv.NATS(t))
	o := newOrigin(t, js, testenv.Prefix(t), "x", 5)
	store, session, ks := storeSink(t)
	kv := applytest.KV(db)
	create := applytest.DDL(db, "kv", "CREATE", applytest.KVDDL)
	create.Columns = kv.Columns
	publish(t, js, o.Tx(1000, create)...)
	publish(t, js, o.Tx(1001, kv.Insert(applytest.Row(1, "a")), kv.Insert(applytest.Row(2, "b")))...)
	partial := o.Tx(1002, kv.Insert(applytest.Row(3, "c")), kv.Insert(applytest.Row(4, "d")), kv.Update(applytest.Row(1, "a"), applytest.Row(1, "a2")))
	publish(t, js, partial[:2]...)
	publish(t, js, o.Tx(1003, kv.Insert(applytest.Row(5, "e")))...)
	w, _ := start(t, js, site.Name, o, openSink(t, site), store)

	testenv.Eventually(t, 20*time.Second, equal(func() string { return tableRows(pool) }, "1=a 2=b 5=e"))
	testenv.Eventually(t, 20*time.Second, equal(func() string { return storeRows(session, ks, db) }, "1=a 2=b 5=e"))
	time.Sleep(300 * time.Millisecond)
	if got, want := tableRows(pool), "1=a 2=b 5=e"; got != want {
		t.Fatalf("with a transaction incomplete: rows %q, want %q", got, want)
	}
	cons, err := js.Consumer(context.Background(), o.stream, "apply_"+site.Name)
	if err != nil {
		t.Fatal(err)
	}
	if floor := cons.CachedInfo().AckFloor.Stream; floor != 3 {
		t.Fatalf("ack floor %d, want 3: nothing of the incomplete transaction may be acknowledged", floor)
	}
	publish(t, js, partial[2])
	want := "1=a2 2=b 3=c 4=d 5=e"
	testenv.Eventually(t, 20*time.Second, equal(func() string { return tableRows(pool) }, want))
	testenv.Eventually(t, 20*time.Second, equal(func() string { return storeRows(session, ks, db) }, want))
	testenv.Eventually(t, 5*time.Second, func() error {
		st := w.Status()
		if st.Pending != 0 || st.Applied != 4 || st.Tables[db+".kv"].LagMs != 0 {
			return fmt.Errorf("status %+v: want 4 applied, nothing pending, no lag", st)
		}
		return nil
	})
}

// load publishes n single-row transactions cycling over 20 keys, and returns the final
// table contents.
func load(t testing.TB, js jetstream.JetStream, o *origin, kv applytest.Table, n int, ts int64) string {
	t.Helper()
	final := map[int64]string{}
	for i := range n {
		id := int64(i % 20)
		v := fmt.Sprintf("%s-%d", o.Name[len(o.Name)-1:], i)
		var e *changeevent.Event
		if _, ok := final[id]; ok {
			e = kv.Update(applytest.Row(id, final[id]), applytest.Row(id, v))
		} else {
			e = kv.Insert(applytest.Row(id, v))
		}
		final[id] = v
		publish(t, js, o.Tx(ts+int64(i), e, kv.Insert(applytest.Row(1000+int64(i), "log")))...)
	}
	var out []string
	for id := range int64(20) {
		out = append(out, fmt.Sprintf("%d=%s", id, final[id]))
	}
	for i := range n {
		out = append(out, fmt.Sprintf("%d=log", 1000+i))
	}
	return strings.Join(out, " ")
}

func TestWorkerRestartMidStream(t *testing.T) {
	site := testenv.Sites(t)[2]
	db := testenv.NewDatabase(t, site)
	pool := site.Open(t, db)
	if _, err := pool.Exec(applytest.KVDDL); err != nil {
		t.Fatal(err)
	}
	_, js := testenv.Connect(t, testenv.NATS(t))
	o := newOrigin(t, js, testenv.Prefix(t), "x", 6)
	want := load(t, js, o, applytest.KV(db), 400, 10_000)
	sink := openSink(t, site)
	w, stop := start(t, js, site.Name, o, sink)
	testenv.Eventually(t, 20*time.Second, func() error {
		if n := w.Status().Applied; n < 50 {
			return fmt.Errorf("%d applied", n)
		}
		return nil
	})
	stop() // cancel without draining
	first := w.Status().Applied
	if first >= 400 {
		t.Fatalf("the first worker applied everything (%d) before it was stopped", first)
	}
	w2, _ := start(t, js, site.Name, o, sink)
	testenv.Eventually(t, 60*time.Second, equal(func() string { return tableRows(pool) }, want))
	testenv.Eventually(t, 5*time.Second, func() error {
		if st := w2.Status(); st.Pending != 0 {
			return fmt.Errorf("pending %d", st.Pending)
		}
		return nil
	})
	t.Logf("first worker applied %d, second %d transactions", first, w2.Status().Applied)
	// A third run binds the (recreated) consumer again and finds nothing to do.
	w3, _ := start(t, js, site.Name, o, sink)
	testenv.Eventually(t, 5*time.Second, func() error {
		if st := w3.Status(); st.LastError != "" || st.Pending != 0 {
			return fmt.Errorf("third worker: pending %d, last error %q", st.Pending, st.LastError)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond)
	if st := w3.Status(); st.LastError != "" || st.Applied != 0 {
		t.Fatalf("third worker: %+v, want nothing applied and no error", st)
	}
}

func TestConvergenceAcrossSitesAndStore(t *testing.T) {
	sites := testenv.Sites(t)
	a, b := sites[0], sites[1]
	db := testenv.NewDatabase(t, a, b)
	pa, pb := a.Open(t, db), b.Open(t, db)
	for _, p := range []*sql.DB{pa, pb} {
		if _, err := p.Exec(applytest.KVDDL); err != nil {
			t.Fatal(err)
		}
	}
	_, js := testenv.Connect(t, testenv.NATS(t))
	prefix := testenv.Prefix(t)
	x, y := newOrigin(t, js, prefix, "x", 7), newOrigin(t, js, prefix, "y", 8)
	kv := applytest.KV(db)
	// Same 20 keys written by both origins with interleaved commit times: x at even ms, y at
	// odd ms from a later start, so y wins wherever it wrote last; plus a delete at x.
	load(t, js, x, kv, 60, 100_000)
	load(t, js, y, kv, 50, 100_001)
	publish(t, js, x.Tx(100_055, kv.Delete(applytest.Row(3, "?")))...)
	store, session, ks := storeSink(t)
	// Site a follows x then y; site b follows y first, x only once y is done.
	start(t, js, a.Name, x, openSink(t, a), store)
	start(t, js, a.Name, y, openSink(t, a), store)
	wy, _ := start(t, js, b.Name, y, openSink(t, b), store)
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := wy.Status().Applied; n != 50 {
			return fmt.Errorf("b applied %d of y", n)
		}
		return nil
	})
	start(t, js, b.Name, x, openSink(t, b), store)
	var want []string
	for id := range 20 {
		if id == 3 {
			continue
		}
		// x's i-th change to id is at 100000+i, y's at 100001+i: the last writer is the one
		// with the highest i for that id, y on ties (it is 1 ms later).
		lastX, lastY := 40+id, 40+id
		if id >= 10 {
			lastY = 20 + id
		}
		if 100_001+lastY > 100_000+lastX {
			want = append(want, fmt.Sprintf("%d=y-%d", id, lastY))
		} else {
			want = append(want, fmt.Sprintf("%d=x-%d", id, lastX))
		}
	}
	for i := range 60 {
		want = append(want, fmt.Sprintf("%d=log", 1000+i))
	}
	w := strings.Join(want, " ")
	testenv.Eventually(t, 30*time.Second, equal(func() string { return tableRows(pa) }, w))
	testenv.Eventually(t, 30*time.Second, equal(func() string { return tableRows(pb) }, w))
	if storeRows(session, ks, db) != w {
		time.Sleep(5 * time.Second)
	}
	if got := storeRows(session, ks, db); got != w {
		for _, id := range []int{10, 15} {
			var v, origin, gtid string
			var wt, ver int64
			err := session.Query(fmt.Sprintf(`SELECT v, music_origin, music_gtid, music_version, writetime(v) FROM %s."%s" WHERE id=?`,
				ks, cassandra.TableName(db, "kv")), id).Scan(&v, &origin, &gtid, &ver, &wt)
			t.Logf("store id %d: v=%s origin=%s gtid=%s version=%d writetime=%d (%v)", id, v, origin, gtid, ver, wt, err)
		}
		t.Fatalf("store: got %q, want %q", got, w)
	}
	var ca, cb string
	pa.QueryRow("CHECKSUM TABLE kv").Scan(new(string), &ca)
	pb.QueryRow("CHECKSUM TABLE kv").Scan(new(string), &cb)
	if ca != cb {
		t.Fatalf("CHECKSUM TABLE differs: a %s, b %s", ca, cb)
	}
}

func TestNATSRestartEndsConverged(t *testing.T) {
	site := testenv.Sites(t)[0]
	db := testenv.NewDatabase(t, site)
	pool := site.Open(t, db)
	if _, err := pool.Exec(applytest.KVDDL); err != nil {
		t.Fatal(err)
	}
	srv := testenv.NewPrivateNATS(t)
	_, js := testenv.Connect(t, srv.URL())
	o := newOrigin(t, js, testenv.Prefix(t), "x", 9)
	kv := applytest.KV(db)
	w, _ := start(t, js, site.Name, o, openSink(t, site))
	for i := range 50 {
		publish(t, js, o.Tx(int64(1000+i), kv.Insert(applytest.Row(int64(i), "before")))...)
	}
	srv.Restart()
	for i := range 50 {
		var err error
		for range 100 { // publish retries while the client reconnects
			if err = tryPublish(js, o.Tx(int64(2000+i), kv.Insert(applytest.Row(int64(100+i), "after")))[0]); err == nil {
				break
			}
			o.Seq-- // same GTID again
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	var want []string
	for i := range 50 {
		want = append(want, fmt.Sprintf("%d=before", i))
	}
	for i := range 50 {
		want = append(want, fmt.Sprintf("%d=after", 100+i))
	}
	testenv.Eventually(t, 60*time.Second, equal(func() string { return tableRows(pool) }, strings.Join(want, " ")))
	testenv.Eventually(t, 10*time.Second, func() error {
		if st := w.Status(); st.Pending != 0 {
			return fmt.Errorf("pending %d", st.Pending)
		}
		return nil
	})
}

func tryPublish(js jetstream.JetStream, e *changeevent.Event) error {
	data, err := changeevent.Marshal(e)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = js.Publish(ctx, changeevent.Subject(e.Source.Name, e.Source.DB, e.Source.Table), data,
		jetstream.WithMsgID(changeevent.MsgID(e.Source.Name, e.Source.GTID, e.Transaction.Index)))
	return err
}
