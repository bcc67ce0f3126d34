package apply_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/apply/applytest"
	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/testenv"
)

// writer is an application at one site that also plays capture: every local transaction
// is published to the site's stream with its real GTID and a one-second commit time, as
// the binlog has it.
type writer struct {
	site testenv.Site
	db   *sql.DB
	o    *origin
	kv   applytest.Table
	js   jetstream.JetStream

	clockUs int64
}

func (w *writer) write(t *testing.T, rng *rand.Rand, i int) {
	ctx := context.Background()
	id := int64(rng.IntN(10))
	conn, err := w.db.Conn(ctx)
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Error(err)
		return
	}
	var before changeevent.Row
	var v string
	switch err := tx.QueryRowContext(ctx, "SELECT v FROM kv WHERE id=? FOR UPDATE", id).Scan(&v); {
	case err == nil:
		before = changeevent.Row{"id": id, "v": v}
	case !errors.Is(err, sql.ErrNoRows):
		t.Error(err)
		tx.Rollback()
		return
	}
	var e *changeevent.Event
	after := changeevent.Row{"id": id, "v": fmt.Sprintf("%s-%d", w.site.Name, i)}
	switch {
	case before != nil && rng.IntN(5) == 0:
		_, err = tx.ExecContext(ctx, "DELETE FROM kv WHERE id=?", id)
		e = w.kv.Delete(before)
	case before != nil:
		_, err = tx.ExecContext(ctx, "UPDATE kv SET v=? WHERE id=?", after["v"], id)
		e = w.kv.Update(before, after)
	default:
		_, err = tx.ExecContext(ctx, "INSERT INTO kv (id, v) VALUES (?, ?)", id, after["v"])
		e = w.kv.Insert(after)
	}
	if err == nil {
		err = tx.Commit()
	}
	var gtid string
	if err == nil {
		err = conn.QueryRowContext(ctx, "SELECT @@last_gtid").Scan(&gtid)
	}
	if err != nil {
		t.Error(err)
		return
	}
	evs := w.o.Tx(time.Now().Unix()*1000, e)
	evs[0].Source.GTID, evs[0].Transaction.ID = gtid, gtid
	// The commit clock, as capture keeps it: the wall clock, strictly increasing per site.
	w.clockUs = max(time.Now().UnixMicro(), w.clockUs+1)
	evs[0].Source.TsUs, evs[0].Source.TsMs = w.clockUs, w.clockUs/1000
	publish(t, w.js, evs...)
}

// Two sites write the same ten rows concurrently; each follows its own stream and the
// other's, and both write the MUSIC store. They end identical, and so does the store.
func TestActiveActiveConcurrentWritersConverge(t *testing.T) {
	sites := testenv.Sites(t)
	db := testenv.NewDatabase(t, sites[0], sites[1])
	_, js := testenv.Connect(t, testenv.NATS(t))
	prefix := testenv.Prefix(t)
	kv := applytest.Table{DB: db, Name: "kv", Columns: []changeevent.Column{
		{Name: "id", Kind: changeevent.KindInt, SQLType: "bigint(20)", PK: true},
		{Name: "v", Kind: changeevent.KindString, SQLType: "varchar(64)", Nullable: true},
	}}
	store, session, ks := storeSink(t)
	var writers []*writer
	for _, s := range sites[:2] {
		pool := s.Open(t, db)
		if _, err := pool.Exec("CREATE TABLE kv (id BIGINT PRIMARY KEY, v VARCHAR(64))"); err != nil {
			t.Fatal(err)
		}
		o := newOrigin(t, js, prefix, s.Name, uint32(s.Index))
		writers = append(writers, &writer{site: s, db: pool, o: o, kv: kv, js: js})
	}
	var workers []*apply.Worker
	for _, w := range writers {
		sink := openSink(t, w.site)
		for _, o := range writers {
			wk, _ := start(t, js, w.o.Name, o.o, sink, store)
			workers = append(workers, wk)
		}
	}
	var wg sync.WaitGroup
	for n, w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(n), 42))
			for i := range 150 {
				w.write(t, rng, i)
			}
		}()
	}
	wg.Wait()
	testenv.Eventually(t, 60*time.Second, func() error {
		for _, wk := range workers {
			if st := wk.Status(); st.Pending != 0 || st.Applied != 150 {
				return fmt.Errorf("%s<-%s: %d applied, %d pending", st.Local, st.Origin, st.Applied, st.Pending)
			}
		}
		return nil
	})
	a, b := tableRows(writers[0].db), tableRows(writers[1].db)
	if a != b {
		t.Fatalf("sites differ:\n a %s\n b %s", a, b)
	}
	if s := storeRows(session, ks, db); s != a {
		t.Fatalf("store differs from the sites:\n store %s\n sites %s", s, a)
	}
	var ca, cb string
	writers[0].db.QueryRow("CHECKSUM TABLE kv").Scan(new(string), &ca)
	writers[1].db.QueryRow("CHECKSUM TABLE kv").Scan(new(string), &cb)
	if ca != cb {
		t.Fatalf("CHECKSUM TABLE differs: %s vs %s", ca, cb)
	}
	t.Logf("converged: %s", a)
}
