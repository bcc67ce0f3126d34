package rest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/gocql/gocql"

	"github.com/music-coord/music/consistency/lock"
	"github.com/music-coord/music/internal/testenv"
)

// Each benchmark times a REST operation next to its raw twin (direct gocql or
// go-zookeeper), interleaved in one loop so that both see the same load on the shared
// servers. It reports p50 and p99 per variant (<variant>-p50-µs, ...) and the REST
// overhead over the last variant, the raw ceiling, at p50 (overhead-%). ns/op is the sum
// of all variants. The API and the raw twins share one gocql session configured as the
// server configures its own (store.Tune): with gocql's default write coalescing both
// sides would carry about a millisecond of client-side wait, which hides the REST
// overhead in the ratio. Run:
//
//	go test -run '^$' -bench . -benchtime 2s ./recipes/rest/

type variant struct {
	name string
	op   func(i int)
}

func compare(b *testing.B, vs ...variant) {
	lat := make([][]time.Duration, len(vs))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k := range vs {
			k = (k + i) % len(vs) // rotate the order so none always runs first
			t0 := time.Now()
			vs[k].op(i)
			lat[k] = append(lat[k], time.Since(t0))
		}
	}
	b.StopTimer()
	p50 := make([]float64, len(vs))
	for k, v := range vs {
		slices.Sort(lat[k])
		p50[k] = float64(lat[k][len(lat[k])/2].Microseconds())
		b.ReportMetric(p50[k], v.name+"-p50-µs")
		b.ReportMetric(float64(lat[k][len(lat[k])*99/100].Microseconds()), v.name+"-p99-µs")
	}
	b.ReportMetric(100*(p50[0]/p50[len(p50)-1]-1), "overhead-%")
}

func BenchmarkEventualPut(b *testing.B) {
	e := newEnv(b)
	e.createKV("kv")
	rows := e.table("kv") + "/rows"
	compare(b, variant{"rest", func(i int) {
		e.must(200, "POST", rows, map[string]any{"values": map[string]any{"k": fmt.Sprint(i % 100), "v": i}})
	}}, variant{"raw", func(i int) {
		if err := e.sess.Query("INSERT INTO "+e.ks+".kv (k, v) VALUES (?, ?)", fmt.Sprint(i%100), i).Consistency(gocql.One).Exec(); err != nil {
			b.Fatal(err)
		}
	}})
}

// The raw get reads the whole row, as the REST select does.
func BenchmarkEventualGet(b *testing.B) {
	e := newEnv(b)
	e.createKV("kv")
	rows := e.table("kv") + "/rows"
	e.must(200, "POST", rows, map[string]any{"values": map[string]any{"k": "a", "v": 1}})
	compare(b, variant{"rest", func(int) {
		e.must(200, "GET", rows+"?k=a", nil)
	}}, variant{"raw", func(int) {
		var k string
		var v int
		if err := e.sess.Query("SELECT k, v FROM "+e.ks+".kv WHERE k = ?", "a").Consistency(gocql.One).Scan(&k, &v); err != nil {
			b.Fatal(err)
		}
	}})
}

// The raw twin is the QUORUM write with a fencing timestamp, without the holder check.
func BenchmarkCriticalPut(b *testing.B) {
	e := newEnv(b)
	e.createKV("kv")
	rows := e.table("kv") + "/rows"
	ref := e.lockRef(e.ks + ".kv.a")
	ci := map[string]string{"type": "critical", "lockId": ref}
	ts := time.Now().UnixMicro() + 1<<40
	compare(b, variant{"rest", func(i int) {
		e.must(200, "POST", rows, map[string]any{"values": map[string]any{"k": "a", "v": i}, "consistencyInfo": ci})
	}}, variant{"raw", func(i int) {
		err := e.sess.Query("INSERT INTO "+e.ks+".kv (k, v) VALUES (?, ?) USING TIMESTAMP ?", "a", i, ts+int64(i)).
			Consistency(gocql.Quorum).Exec()
		if err != nil {
			b.Fatal(err)
		}
	}})
}

// A lock cycle is create reference + acquire + release. REST takes three HTTP calls (the
// ONAP protocol); "service" is the same cycle on the lock service in-process; "raw" is
// go-zookeeper's zk.Lock: create a sequential node, list the queue, delete the node. All
// three make the same three ZooKeeper round trips when the name's node exists: two
// writes and one read. Each variant has its own lock name, so they do not queue behind
// each other.
func BenchmarkLockCycle(b *testing.B) {
	e := newEnv(b)
	ctx := b.Context()
	conn := testenv.ZKConnect(b)
	raw := zk.NewLock(conn, testenv.ZKRoot(b)+"/rawlock", zk.WorldACL(zk.PermAll))
	compare(b, variant{"rest", func(int) {
		ref := e.must(200, "POST", Prefix+"/locks/create/"+e.ks+".kv.rest", nil)["lock"].(map[string]any)["lock"].(string)
		e.must(200, "GET", Prefix+"/locks/acquire/"+ref, nil)
		e.must(200, "DELETE", Prefix+"/locks/release/"+ref, nil)
	}}, variant{"service", func(int) {
		r, err := e.locks.Create(ctx, e.ks+".kv.service", lock.Write, "", 0)
		if err == nil {
			_, err = e.locks.Acquire(ctx, r.String())
		}
		if err == nil {
			err = e.locks.Release(ctx, r.String())
		}
		if err != nil {
			b.Fatal(err)
		}
	}}, variant{"raw", func(int) {
		if err := raw.Lock(); err != nil {
			b.Fatal(err)
		}
		if err := raw.Unlock(); err != nil {
			b.Fatal(err)
		}
	}})
}
