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

// Each REST benchmark has a raw twin (direct gocql or go-zookeeper) in the same run, so
// the REST overhead can be read off as a ratio. p50 and p99 are reported per operation.

func timed(b *testing.B, f func(i int)) {
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		f(i)
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

func BenchmarkEventualPut(b *testing.B) {
	e := newEnv(b)
	e.createKV("kv")
	rows := e.table("kv") + "/rows"
	b.Run("rest", func(b *testing.B) {
		timed(b, func(i int) {
			e.must(200, "POST", rows, map[string]any{"values": map[string]any{"k": fmt.Sprint(i % 100), "v": i}})
		})
	})
	b.Run("raw", func(b *testing.B) {
		timed(b, func(i int) {
			if err := e.sess.Query("INSERT INTO "+e.ks+".kv (k, v) VALUES (?, ?)", fmt.Sprint(i%100), i).Consistency(gocql.One).Exec(); err != nil {
				b.Fatal(err)
			}
		})
	})
}

func BenchmarkEventualGet(b *testing.B) {
	e := newEnv(b)
	e.createKV("kv")
	rows := e.table("kv") + "/rows"
	e.must(200, "POST", rows, map[string]any{"values": map[string]any{"k": "a", "v": 1}})
	b.Run("rest", func(b *testing.B) {
		timed(b, func(int) { e.must(200, "GET", rows+"?k=a", nil) })
	})
	b.Run("raw", func(b *testing.B) {
		timed(b, func(int) {
			var v int
			if err := e.sess.Query("SELECT v FROM "+e.ks+".kv WHERE k = ?", "a").Consistency(gocql.One).Scan(&v); err != nil {
				b.Fatal(err)
			}
		})
	})
}

func BenchmarkCriticalPut(b *testing.B) {
	e := newEnv(b)
	e.createKV("kv")
	rows := e.table("kv") + "/rows"
	ref := e.lockRef(e.ks + ".kv.a")
	ci := map[string]string{"type": "critical", "lockId": ref}
	b.Run("rest", func(b *testing.B) {
		timed(b, func(i int) {
			e.must(200, "POST", rows, map[string]any{"values": map[string]any{"k": "a", "v": i}, "consistencyInfo": ci})
		})
	})
	b.Run("raw", func(b *testing.B) {
		ts := time.Now().UnixMicro() + 1<<40
		timed(b, func(i int) {
			err := e.sess.Query("INSERT INTO "+e.ks+".kv (k, v) VALUES (?, ?) USING TIMESTAMP ?", "a", i, ts+int64(i)).
				Consistency(gocql.Quorum).Exec()
			if err != nil {
				b.Fatal(err)
			}
		})
	})
}

func BenchmarkLockCycle(b *testing.B) {
	e := newEnv(b)
	name := e.ks + ".kv.a"
	b.Run("rest", func(b *testing.B) {
		timed(b, func(int) {
			ref := e.must(200, "POST", Prefix+"/locks/create/"+name, nil)["lock"].(map[string]any)["lock"].(string)
			e.must(200, "GET", Prefix+"/locks/acquire/"+ref, nil)
			e.must(200, "DELETE", Prefix+"/locks/release/"+ref, nil)
		})
	})
	b.Run("service", func(b *testing.B) {
		ctx := b.Context()
		timed(b, func(int) {
			r, err := e.locks.Create(ctx, name, lock.Write, "", 0)
			if err == nil {
				_, err = e.locks.Acquire(ctx, r.String())
			}
			if err == nil {
				err = e.locks.Release(ctx, r.String())
			}
			if err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("raw", func(b *testing.B) {
		conn := testenv.ZKConnect(b)
		l := zk.NewLock(conn, testenv.ZKRoot(b)+"/rawlock", zk.WorldACL(zk.PermAll))
		timed(b, func(int) {
			if err := l.Lock(); err != nil {
				b.Fatal(err)
			}
			if err := l.Unlock(); err != nil {
				b.Fatal(err)
			}
		})
	})
}
