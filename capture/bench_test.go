package capture

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
)

// BenchmarkCaptureVsRaw loads rows into site a, then measures in the same run (a) the raw
// go-mysql decode rate of that binlog range (BinlogSyncer reading and decoding, nothing
// else) and (b) capture's throughput into JetStream (until every event is acknowledged).
//
//	go test -run '^$' -bench CaptureVsRaw -benchtime 1x ./capture/
//
// MUSIC_BENCH_ROWS (default 200000) and MUSIC_BENCH_SINGLE_ROWS (default 20000) size it.
func BenchmarkCaptureVsRaw(b *testing.B) {
	bulkRows := envInt("MUSIC_BENCH_ROWS", 200000)
	singleRows := envInt("MUSIC_BENCH_SINGLE_ROWS", 20000)
	b.Run("bulk1000", func(b *testing.B) { benchCapture(b, bulkRows, 1000) })
	b.Run("single", func(b *testing.B) { benchCapture(b, singleRows, 1) })
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

func benchCapture(b *testing.B, rows, perTxn int) {
	h := newHarness(b)
	h.exec("CREATE TABLE bench (id INT PRIMARY KEY, a VARCHAR(40), n BIGINT, d DECIMAL(12,2), t DATETIME(6))")
	startFile, startOff := masterStatus(b, h.pool)
	start := binlogPos{startFile, startOff}
	loadStart := time.Now()
	load(b, h, rows, perTxn)
	b.Logf("loaded %d rows in %d-row transactions in %s", rows, perTxn, time.Since(loadStart).Round(time.Millisecond))
	endFile, endOff := masterStatus(b, h.pool)
	end := binlogPos{endFile, endOff}

	b.ResetTimer()
	for range b.N {
		rawDur, rawRows := rawDecode(b, h, start, end)
		capDur, capEvents, size := captureRun(b, h, start, end)
		jsDur := jetstreamCeiling(b, h, rows, size)
		jsRate := float64(rows) / jsDur.Seconds()
		b.ReportMetric(jsRate, "js_only_msgs/s")
		b.Logf("JetStream alone (async publish of %d pre-encoded %d-byte messages with ids, same window): %.0f msgs/s", rows, size, jsRate)
		rawRate := float64(rawRows) / rawDur.Seconds()
		capRate := float64(capEvents) / capDur.Seconds()
		b.ReportMetric(rawRate, "raw_rows/s")
		b.ReportMetric(capRate, "capture_events/s")
		b.ReportMetric(capRate/rawRate*100, "%_of_raw")
		b.Logf("%d rows, %d per transaction: raw go-mysql decode %d rows in %s = %.0f rows/s; capture %d events (acknowledged) in %s = %.0f events/s (%.0f rows/s); ratio %.0f%%",
			rows, perTxn, rawRows, rawDur.Round(time.Millisecond), rawRate, capEvents, capDur.Round(time.Millisecond), capRate, capRate, capRate/rawRate*100)
	}
}

func load(b *testing.B, h *harness, rows, perTxn int) {
	const workers = 4
	var wg sync.WaitGroup
	per := rows / workers
	for w := range workers {
		wg.Go(func() {
			for i := w * per; i < (w+1)*per; i += perTxn {
				var sb strings.Builder
				sb.WriteString("INSERT INTO bench VALUES ")
				for j := i; j < i+perTxn && j < (w+1)*per; j++ {
					if j > i {
						sb.WriteByte(',')
					}
					fmt.Fprintf(&sb, "(%d,'value %d',%d,%d.25,'2024-01-02 03:04:05.%06d')", j+1, j, j*1000, j, j%1000000)
				}
				if _, err := h.pool.Exec(sb.String()); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// jetstreamCeiling publishes n messages of an event's size with message ids, the way
// capture does, to a fresh stream: the rate JetStream itself sustains here.
func jetstreamCeiling(b *testing.B, h *harness, n, size int) time.Duration {
	ctx := context.Background()
	name := h.cfg.Stream + "_JS"
	subj := strings.ToLower(name) + ".x"
	if _, err := h.js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj},
		Storage: jetstream.FileStorage, Duplicates: 24 * time.Hour}); err != nil {
		b.Fatal(err)
	}
	defer h.js.DeleteStream(ctx, name) //nolint:errcheck
	nc, err := nats.Connect(h.cfg.NATSURL)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(h.cfg.MaxInFlight))
	payload := []byte(strings.Repeat("x", size))
	began := time.Now()
	for i := range n {
		msg := &nats.Msg{Subject: subj, Data: payload, Header: nats.Header{}}
		msg.Header[jetstream.MsgIDHeader] = []string{"bench:" + strconv.Itoa(i)}
		if _, err := js.PublishMsgAsync(msg, stallWait); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publishes not acknowledged within a minute")
	}
	return time.Since(began)
}

// rawDecode reads the binlog from start to end with go-mysql alone.
func rawDecode(b *testing.B, h *harness, start, end binlogPos) (time.Duration, int) {
	host, port, _ := net.SplitHostPort(h.site.Addr())
	p, _ := strconv.Atoi(port)
	syncer := replication.NewBinlogSyncer(replication.BinlogSyncerConfig{
		ServerID: h.cfg.ServerID + 1, Flavor: mysql.MariaDBFlavor, Host: host, Port: uint16(p), User: h.site.User,
		TimestampStringLocation: time.UTC, DisableRetrySync: true, Logger: nil,
	})
	defer syncer.Close()
	began := time.Now()
	streamer, err := syncer.StartSync(mysql.Position{Name: start.file, Pos: start.pos})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rows := 0
	file := start.file
	for {
		ev, err := streamer.GetEvent(ctx)
		if err != nil {
			b.Fatal(err)
		}
		switch e := ev.Event.(type) {
		case *replication.RotateEvent:
			file = string(e.NextLogName)
		case *replication.RowsEvent:
			rows += len(e.Rows)
		case *replication.XIDEvent:
			if !(binlogPos{file, ev.Header.LogPos}).less(end) {
				return time.Since(began), rows
			}
		}
	}
}

// captureRun runs capture from start into a fresh stream until end is acknowledged.
func captureRun(b *testing.B, h *harness, start, end binlogPos) (time.Duration, int, int) {
	cfg := h.cfg
	cfg.Start = fmt.Sprintf("binlog:%s:%d", start.file, start.pos)
	c, err := New(cfg, zap.NewNop(), nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	began := time.Now()
	go func() { done <- c.Run(ctx) }()
	for {
		if rp := c.acked.Load(); rp != nil && !(binlogPos{rp.File, rp.Offset}).less(end) {
			break
		}
		select {
		case err := <-done:
			b.Fatalf("capture ended: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	took := time.Since(began)
	cancel()
	<-done
	n := h.streamEvents()
	return took, n, int(testutil.ToFloat64(c.m.Bytes)) / max(n, 1)
}
