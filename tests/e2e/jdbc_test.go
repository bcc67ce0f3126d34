package e2e

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/music-coord/music/internal/testenv"
)

// smokeCheck is one line of JdbcSmoke's output.
type smokeCheck struct {
	Check  string `json:"check"`
	OK     bool   `json:"ok"`
	Ms     int64  `json:"ms"`
	Detail string `json:"detail"`
	Error  string `json:"error"`
	Done   bool   `json:"done"`
	Failed int    `json:"failed"`
}

// jdbcChecks are the checks JdbcSmoke makes on a sync table S and an async table A.
func jdbcChecks(sync, async string) []string {
	out := []string{"login/root-no-password", "login/native-password", "login/wrong-password-refused", "both-tables/transaction"}
	for _, table := range []string{sync, async} {
		for _, prep := range []string{"server-prep", "client-prep"} {
			for _, c := range []string{"autocommit", "for-update-commit-rollback", "batch", "blob-20MiB", "blob-20MiB-stream"} {
				out = append(out, table+"/"+prep+"/"+c)
			}
		}
		out = append(out, table+"/multi-statement", table+"/multi-statement-transaction")
	}
	return out
}

// TestSyncJDBC runs MariaDB Connector/J 3.5 unchanged through site a's gateway of three
// mirrored sites (tests/camunda, music.e2e.JdbcSmoke): root without password, a user with
// a mysql_native_password password, a wrong password refused; server-side and client-side
// prepared statements, SELECT ... FOR UPDATE in explicit transactions, autocommit,
// batches, multi-statements and 20 MiB BLOB parameters, on a sync table and on an async
// table, and a transaction over both. Both tables end identical at every site and in the
// store.
func TestSyncJDBC(t *testing.T) {
	cp := javaClasspath(t)
	sites := testenv.Sites(t)
	ks, _ := testenv.NewKeyspace(t)
	db := testenv.NewDatabase(t, sites...)
	m := newMirror(t, testenv.NATS(t), db, ks, sites)
	m.syncTables = []string{db + ".jsync"}
	m.withStatusAddrs(t)
	m.startAll()
	d := &drill{t: t, m: m, db: db, ks: ks}
	for _, s := range sites {
		d.pools = append(d.pools, s.Open(t, db))
	}
	d.waitStreams()
	for _, table := range []string{"jsync", "jasync"} {
		d.exec(d.pools[0], "CREATE TABLE "+table+" (id INT PRIMARY KEY, v BIGINT NOT NULL, note VARCHAR(100), b LONGBLOB)")
	}
	d.waitTable("jasync")

	// A user with a password, at site a only (unlogged: no other site sees it).
	user, password := testenv.UniqueName(t), "pw-"+testenv.UniqueName(t)
	d.unlogged(d.pools[0], "CREATE USER '"+user+"'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('"+password+"')",
		"GRANT ALL ON `"+db+"`.* TO '"+user+"'@'%'")
	t.Cleanup(func() { d.unlogged(d.pools[0], "DROP USER IF EXISTS '"+user+"'@'%'") })
	var plugin string
	if err := d.pools[0].QueryRow("SELECT plugin FROM mysql.user WHERE user = ?", user).Scan(&plugin); err != nil || plugin != "mysql_native_password" {
		t.Fatalf("user %s: plugin %q (%v)", user, plugin, err)
	}

	gws := m.startGateways(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := javaRun(ctx, t, cp, "JdbcSmoke", gws[0].addr, db, "jsync", "jasync", user, password)
	t.Logf("JdbcSmoke through gateway a: %s", time.Since(start).Round(time.Millisecond))
	got := map[string]smokeCheck{}
	for _, c := range jsonLines[smokeCheck](t, out) {
		if c.Done {
			continue
		}
		got[c.Check] = c
		t.Logf("%-48s ok=%-5v %5d ms %s%s", c.Check, c.OK, c.Ms, c.Detail, c.Error)
	}
	var failed []string
	for _, name := range jdbcChecks("jsync", "jasync") {
		c, ok := got[name]
		switch {
		case !ok:
			failed = append(failed, name+": not run")
		case !c.OK:
			failed = append(failed, name+": "+c.Error)
		}
	}
	sort.Strings(failed)
	if len(failed) > 0 || err != nil {
		t.Fatalf("JdbcSmoke: %d checks failed (%v):\n%s", len(failed), err, strings.Join(failed, "\n"))
	}

	st := gws[0].statusOf(t)
	t.Logf("gateway a: %+v", st.Stats)
	if st.Stats.Commits == 0 || st.Stats.Fenced > 0 || st.Stats.Unconfirmed > 0 {
		t.Errorf("gateway a: %d commits, %d fenced, %d unconfirmed", st.Stats.Commits, st.Stats.Fenced, st.Stats.Unconfirmed)
	}
	d.waitIdentical(t, "jsync")
	d.waitIdentical(t, "jasync")
}
