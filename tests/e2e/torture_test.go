package e2e

import (
	"bufio"
	"context"
	_ "embed"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/music-coord/music/internal/testenv"
)

//go:embed testdata/torture.sql
var tortureSQL string

// tortureTables are the tables the torture script leaves, each compared at every site and
// in the store at the end. storeSkips are compared at the sites only, with the reason.
var (
	tortureTables = []string{"types", "charsets", "ci_keys", "nopk", "parent", "child", "ddl1", "r1n", "r2",
		"likeit", "ctas", "loaded"}
	storeSkips = map[string]string{
		// InnoDB performs cascades without logging them; the sites replay with cascades,
		// the store (written from the stream) never sees the cascaded child rows.
		"child": "foreign key cascades are not in the row binlog and the store performs none",
		// Known store gaps found by this script, open in the schema issue: the store's copy
		// of the DATE/DATETIME/TIMESTAMP edge values reads back differently from the sites,
		// and a table created without a key (CREATE ... SELECT) that gets one later is not
		// rebuilt in the store (its rows are kept as copies without the key columns' values).
		"types": "store: DATE/DATETIME/TIMESTAMP edge values read back differently (open)",
		"ctas":  "store: a key added to a table created without one is refused (open)",
	}
)

func init() {
	mysql.RegisterReaderHandler("torture", func() io.Reader {
		var b strings.Builder
		for i := 1; i <= 2000; i++ {
			fmt.Fprintf(&b, "%d,loaded %d\n", i, i)
		}
		return strings.NewReader(b.String())
	})
}

// tortureStatements splits the script into statements (each ends with ';' at the end of
// a line; lines starting with "--" are comments).
func tortureStatements() []string {
	var out []string
	var cur strings.Builder
	sc := bufio.NewScanner(strings.NewReader(tortureSQL))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		cur.WriteString(line + "\n")
		if strings.HasSuffix(strings.TrimSpace(line), ";") {
			out = append(out, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	return out
}

// TestTorture loads the torture script (every type and charset, DDL forms, keys, a table
// without primary key, foreign key cascades, generated columns, XA, LOAD DATA, savepoints)
// at site a and compares every table at every site and in the store.
func TestTorture(t *testing.T) {
	sites := testenv.Sites(t)[:3]
	ks, _ := testenv.NewKeyspace(t)
	db := testenv.NewDatabase(t, sites...)
	m := newMirror(t, testenv.NATS(t), db, ks, sites)
	m.withStatusAddrs(t)
	m.startAll()
	d := &drill{t: t, m: m, db: db, ks: ks}
	for _, s := range sites {
		d.pools = append(d.pools, s.Open(t, db))
	}
	d.waitStreams()
	time.Sleep(time.Second) // captures streaming from their start position

	ctx := context.Background()
	conn, err := d.pools[0].Conn(ctx) // one session: XA, transactions, savepoints
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range tortureStatements() {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("site a: %s: %v", q, err)
		}
	}
	conn.Close()

	var failed []string
	for _, table := range tortureTables {
		out, ok := d.settle(table, storeSkips[table] == "")
		t.Logf("music verify %s:\n%s", table, out)
		if !ok {
			failed = append(failed, table)
		}
	}
	if len(failed) > 0 {
		t.Fatalf("not identical: %s\n%s", strings.Join(failed, ", "), d.status())
	}
	for table, why := range storeSkips {
		t.Logf("%s compared at the sites only: %s", table, why)
	}
}

// settle waits up to two minutes for table to verify identical (withStore: at every site
// and in the store; otherwise at the sites), and returns the last `music verify` output.
func (d *drill) settle(table string, withStore bool) (string, bool) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, err := d.verify(table)
		if err == nil && strings.Contains(out, "IDENTICAL") {
			return out, true
		}
		if !withStore && sitesAgree(out) {
			return out, true
		}
		if time.Now().After(deadline) {
			return out, false
		}
		time.Sleep(time.Second)
	}
}

// sitesAgree reports whether the `music verify` output shows one digest and one CHECKSUM
// TABLE for every site (the store aside).
func sitesAgree(out string) bool {
	seen, n := map[string]bool{}, 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && f[0] == "site" {
			seen[f[3]+" "+f[4]] = true
			n++
		}
	}
	return n > 1 && len(seen) == 1
}
