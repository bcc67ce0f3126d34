package capture

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/testenv"
)

func buildMusic(t *testing.T) string { return buildMusicB(t) }

func buildMusicB(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "music")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/music")
	cmd.Dir = testenv.Local(t).Repo
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func (h *harness) writeConfig(t *testing.T) string { return h.writeConfigB(t) }

func (h *harness) writeConfigB(t testing.TB) string {
	t.Helper()
	yaml := fmt.Sprintf(`site: %s
dsn: "%s"
nats_url: %s
domain_id: %d
server_id: %d
stream: %s
state_bucket: %s
start: "%s"
include: ["%s.*"]
checkpoint_interval: 200ms
metrics_addr: ""
log: {level: warn, format: console}
`, h.cfg.Site, h.cfg.DSN, h.cfg.NATSURL, h.cfg.DomainID, h.cfg.ServerID, h.cfg.Stream, h.cfg.StateBucket, h.cfg.Start, h.db)
	path := filepath.Join(t.TempDir(), "capture.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func startMusic(t *testing.T, bin, cfgPath string) *exec.Cmd { return startMusicB(t, bin, cfgPath) }

func startMusicB(t testing.TB, bin, cfgPath string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "capture", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

// TestKillDuringLoad SIGKILLs `music capture` in the middle of a 100,000-row load, starts
// it again, and checks that every committed row is in the stream exactly once.
func TestKillDuringLoad(t *testing.T) {
	t.Parallel()
	bin := buildMusic(t)
	h := newHarness(t)
	h.exec("CREATE TABLE bulk (id INT PRIMARY KEY, v VARCHAR(40), n BIGINT)")
	cfgPath := h.writeConfig(t)
	cmd := startMusic(t, bin, cfgPath)
	const txns, perTxn = 100, 1000
	ctx := context.Background()
	loadDone := make(chan error, 1)
	go func() {
		for i := range txns {
			var b strings.Builder
			b.WriteString("INSERT INTO bulk VALUES ")
			for j := range perTxn {
				id := i*perTxn + j + 1
				if j > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, "(%d,'row %d',%d)", id, id, id*7)
			}
			if _, err := h.pool.ExecContext(ctx, b.String()); err != nil {
				loadDone <- err
				return
			}
		}
		_, err := h.pool.ExecContext(ctx, "UPDATE bulk SET n=-n WHERE id % 1000 = 0")
		loadDone <- err
	}()
	testenv.Eventually(t, 60*time.Second, func() error {
		if n := h.streamEvents(); n < 30000 {
			return fmt.Errorf("%d events before the kill", n)
		}
		return nil
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killedAt := h.streamEvents()
	t.Logf("killed capture with %d events in the stream", killedAt)
	if err := <-loadDone; err != nil {
		t.Fatal(err)
	}
	cmd = startMusic(t, bin, cfgPath)
	want := 1 + txns*perTxn + txns // the CREATE, the inserts, the updates
	testenv.Eventually(t, 90*time.Second, func() error {
		if n := h.streamEvents(); n < want {
			return fmt.Errorf("%d events, want %d", n, want)
		}
		return nil
	})
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	events := h.read(h.cfg.Stream, want, 30*time.Second)
	if len(events) != want {
		t.Fatalf("stream has %d events, want exactly %d (duplicates?)", len(events), want)
	}
	seen := map[string]bool{}
	for _, e := range events {
		id := changeevent.MsgID(h.cfg.Site, e.Source.GTID, e.Source.Row)
		if seen[id] {
			t.Fatalf("event %s twice", id)
		}
		seen[id] = true
	}
	rows := fold(events, "bulk")
	if len(rows) != txns*perTxn {
		t.Fatalf("folded %d rows, want %d", len(rows), txns*perTxn)
	}
	for id := 1; id <= txns*perTxn; id++ {
		r := rows[keyString(changeevent.Row{"id": int64(id)})]
		n := int64(id * 7)
		if id%1000 == 0 {
			n = -n
		}
		if r == nil || r["v"] != fmt.Sprintf("row %d", id) || r["n"] != n {
			t.Fatalf("row %d = %v", id, r)
		}
	}
}

// TestSnapshotWhileWriting snapshots a table while a writer keeps changing it; folding the
// stream gives exactly the table's final content.
func TestSnapshotWhileWriting(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.exec("CREATE TABLE s (id INT PRIMARY KEY, v VARCHAR(40), n INT)")
	var b strings.Builder
	b.WriteString("INSERT INTO s VALUES ")
	for i := 1; i <= 20000; i++ {
		if i > 1 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "(%d,'v%d',%d)", i, i, i)
	}
	h.exec(b.String())
	cfg := h.cfg
	cfg.Start = binlogEnd(t, h.pool)
	cfg.SnapshotChunk = 1000
	r := h.start(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var writes int
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(1, 2))
		for ctx.Err() == nil {
			id := rng.IntN(22000) + 1
			var err error
			switch rng.IntN(3) {
			case 0:
				_, err = h.pool.Exec("UPDATE s SET n=n+1, v=CONCAT('u',n) WHERE id=?", id)
			case 1:
				_, err = h.pool.Exec("DELETE FROM s WHERE id=?", id)
			default:
				_, err = h.pool.Exec("INSERT INTO s VALUES (?, 'new', 0) ON DUPLICATE KEY UPDATE n=n*2", id)
			}
			if err != nil {
				t.Error(err)
				return
			}
			writes++
		}
	})
	time.Sleep(100 * time.Millisecond)
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer scancel()
	if err := r.c.Snapshot(sctx, h.db, "s"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	cancel()
	wg.Wait()
	h.exec("INSERT INTO s VALUES (100000, 'marker', 0)")
	var events []*changeevent.Event
	testenv.Eventually(t, 60*time.Second, func() error {
		events = h.read(cfg.Stream, 1, 10*time.Second)
		last := events[len(events)-1]
		if last.After == nil || last.After["v"] != "marker" {
			return fmt.Errorf("marker not yet in the stream (%d events)", len(events))
		}
		return nil
	})
	progress := r.c.Snapshots()
	if len(progress) != 1 || !progress[0].Finished || progress[0].Done == 0 || progress[0].Done != progress[0].Total {
		t.Errorf("snapshot progress %+v", progress)
	}
	got := fold(events, "s")
	want := tableRows(t, h.pool, h.db, "s")
	t.Logf("%d writes during the snapshot, %d events, %d rows", writes, len(events), len(want))
	if len(got) != len(want) {
		t.Errorf("folded %d rows, table has %d", len(got), len(want))
	}
	for k, w := range want {
		if g := got[k]; !reflect.DeepEqual(g, w) {
			t.Fatalf("row %s: stream %v, table %v", k, g, w)
		}
	}
}

// tableRows reads a table with the snapshot's conversion, keyed like fold.
func tableRows(t *testing.T, pool *sql.DB, db, table string) map[string]changeevent.Row {
	t.Helper()
	st := &schemaTracker{db: pool}
	cols, err := st.describe(context.Background(), db, table)
	if err != nil {
		t.Fatal(err)
	}
	s := &snapshotState{db: db, table: table, columns: cols}
	rows, err := pool.Query("SELECT * FROM " + quoteIdent(db) + "." + quoteIdent(table))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]changeevent.Row{}
	raw := make([]sql.RawBytes, len(cols))
	ptrs := make([]any, len(raw))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row, err := snapshotRow(s, raw)
		if err != nil {
			t.Fatal(err)
		}
		key := changeevent.Row{}
		for _, c := range cols {
			if c.PK {
				key[c.Name] = row[c.Name]
			}
		}
		out[keyString(key)] = row
	}
	return out
}

// TestInitialSnapshot: the first start publishes the existing rows of every captured table.
func TestInitialSnapshot(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.exec("CREATE TABLE a (id INT PRIMARY KEY)", "CREATE TABLE b (id INT PRIMARY KEY, v TEXT)",
		"INSERT INTO a VALUES (1),(2)", "INSERT INTO b VALUES (1,'x')")
	cfg := h.cfg
	cfg.Start = "current"
	cfg.InitialSnapshot = true
	h.start(cfg)
	events := h.read(cfg.Stream, 3, 30*time.Second)
	if len(fold(events, "a")) != 2 || len(fold(events, "b")) != 1 {
		t.Fatalf("%d events, want the 3 rows", len(events))
	}
	for _, e := range events {
		if e.Op != changeevent.OpRead {
			t.Errorf("event %s of %s, want r", e.Op, e.Source.Table)
		}
	}
}
