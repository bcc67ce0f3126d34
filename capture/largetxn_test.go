package capture

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/testenv"
)

// BenchmarkLargeTransaction publishes one transaction of MUSIC_BENCH_TXN_ROWS (default
// 1,000,000) rows through `music capture` and reports the process's peak RSS:
//
//	go test -run '^$' -bench LargeTransaction -benchtime 1x -timeout 20m ./capture/
func BenchmarkLargeTransaction(b *testing.B) {
	rows := envInt("MUSIC_BENCH_TXN_ROWS", 1000000)
	bin := buildMusicB(b)
	h := newHarness(b)
	h.exec("CREATE TABLE big (id INT PRIMARY KEY, v VARCHAR(40), n BIGINT)")
	cfgPath := h.writeConfigB(b)
	cmd := startMusicB(b, bin, cfgPath)
	began := time.Now()
	h.exec(fmt.Sprintf("INSERT INTO big SELECT seq, CONCAT('row ', seq), seq * 3 FROM seq_1_to_%d", rows))
	b.Logf("inserted %d rows in one transaction in %s", rows, time.Since(began).Round(time.Millisecond))
	ctx := context.Background()
	lastEvent := func(seq uint64) (*changeevent.Event, *changeevent.Event, error) {
		s, err := h.js.Stream(ctx, h.cfg.Stream)
		if err != nil {
			return nil, nil, err
		}
		if seq == 0 {
			info, err := s.Info(ctx)
			if err != nil {
				return nil, nil, err
			}
			seq = info.State.LastSeq
		}
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			return nil, nil, err
		}
		events, err := changeevent.DecodeMessage(m.Data)
		if err != nil {
			return nil, nil, err
		}
		return events[0], events[len(events)-1], nil
	}
	testenv.Eventually(b, 10*time.Minute, func() error {
		_, e, err := lastEvent(0)
		if err != nil {
			return err
		}
		if !e.Transaction.Last || e.Source.Table != "big" {
			return fmt.Errorf("last event %s row %d, transaction %+v", e.Source.Table, e.Source.Row, e.Transaction)
		}
		return nil
	})
	took := time.Since(began)
	hwm := peakRSS(b, cmd.Process.Pid)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	_, e, err := lastEvent(0)
	if err != nil {
		b.Fatal(err)
	}
	fe, _, err := lastEvent(2) // 1 is the CREATE
	if err != nil {
		b.Fatal(err)
	}
	if e.Transaction.Total != rows || e.Transaction.Index != rows-1 || fe.Transaction.Total != 0 || fe.Transaction.Index != 0 {
		b.Fatalf("last event transaction %+v, first %+v", e.Transaction, fe.Transaction)
	}
	b.ReportMetric(float64(hwm)/1024, "peak_rss_MB")
	b.ReportMetric(float64(rows)/took.Seconds(), "events/s")
	b.Logf("1 transaction of %d rows published in %s; capture process peak RSS %d MB", rows, took.Round(time.Millisecond), hwm/1024)
}

// peakRSS is VmHWM of a process in kB.
func peakRSS(b *testing.B, pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}
