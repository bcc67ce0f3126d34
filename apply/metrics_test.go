package apply_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/apply/applytest"
	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/testenv"
)

func TestMetricsAndStatus(t *testing.T) {
	site := testenv.Sites(t)[0]
	db := testenv.NewDatabase(t, site)
	if _, err := site.Open(t, db).Exec(applytest.KVDDL); err != nil {
		t.Fatal(err)
	}
	_, js := testenv.Connect(t, testenv.NATS(t))
	prefix := testenv.Prefix(t)
	x := newOrigin(t, js, prefix, "x", 10)
	kv := applytest.KV(db)
	// A table name MariaDB cannot hold: the sink refuses its change.
	bad := applytest.Table{DB: db, Name: "bad`name", Columns: []changeevent.Column{{Name: "a", Kind: changeevent.KindInt, PK: true}}}
	publish(t, js, x.Tx(time.Now().UnixMilli()-5000, kv.Insert(applytest.Row(1, "new")))...)
	publish(t, js, x.Tx(time.Now().UnixMilli()-9000, kv.Update(applytest.Row(1, "new"), applytest.Row(1, "older")))...)
	publish(t, js, x.Tx(time.Now().UnixMilli(), bad.Insert(changeevent.Row{"a": int64(1)}))...)
	reg := prometheus.NewRegistry()
	m := apply.NewMetrics(reg)
	w, _ := startWith(t, js, site.Name, x, m, openSink(t, site))
	testenv.Eventually(t, 20*time.Second, func() error {
		if st := w.Status(); st.Applied+st.Refused != 3 || st.Pending != 0 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	checks := []struct {
		name string
		c    prometheus.Collector
		want float64
	}{
		{"transactions", m.Transactions.WithLabelValues(x.Name, "mariadb"), 2},
		{"rows applied", m.Rows.WithLabelValues(x.Name, "mariadb", "applied"), 1},
		{"rows conflict", m.Rows.WithLabelValues(x.Name, "mariadb", "conflict"), 1},
		{"conflicts", m.Conflicts.WithLabelValues(x.Name, db+".kv", "mariadb"), 1},
		{"refused", m.Refused.WithLabelValues(x.Name, db+".bad`name", "mariadb"), 1},
		{"pending", m.Pending.WithLabelValues(x.Name), 0},
	}
	for _, c := range checks {
		if got := testutil.ToFloat64(c.c); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.Lag); n != 1 {
		t.Errorf("lag histogram series = %d, want 1", n)
	}
	st := w.Status()
	if st.Refused != 1 || !strings.Contains(st.LastError, "cannot be quoted") || st.Tables[db+".kv"].Conflicts != 1 {
		t.Fatalf("status %+v: want 1 refusal naming the bad identifier and 1 conflict on kv", st)
	}
	// The last kv transaction committed 9 s before it was applied: that is its lag, until
	// the worker sees nothing pending and reports 0.
	if ts := st.Tables[db+".kv"]; ts.LastGTID == "" || ts.LastApplied.IsZero() || (ts.LagMs != 0 && ts.LagMs < 9000) {
		t.Fatalf("table status %+v: want last gtid and time, and a lag of 9 s or 0", ts)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if lag := w.Status().Tables[db+".kv"].LagMs; lag != 0 {
			return fmt.Errorf("lag %d ms while nothing is pending", lag)
		}
		if g := testutil.ToFloat64(m.LagMs.WithLabelValues(x.Name, db+".kv")); g != 0 {
			return fmt.Errorf("lag gauge %v", g)
		}
		return nil
	})
}
