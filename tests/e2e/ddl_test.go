package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/music-coord/music/internal/testenv"
)

// TestDDLMirrored runs schema changes at site a of a three-site mirror, with writes in
// between, through the real agents: column adds, renames (RENAME COLUMN, CHANGE), a
// primary-key change, table renames (one, then a swap of two through a temporary name in
// one statement, each followed by inserts), CREATE TABLE ... LIKE and ... SELECT,
// TRUNCATE, a multi-table DROP, ALTER DATABASE, CREATE OR REPLACE. Every table ends
// IDENTICAL at every site and in the MUSIC store. A change the store cannot mirror (a
// column type change) is refused with a status naming the statement while later changes
// flow.
func TestDDLMirrored(t *testing.T) {
	sites := testenv.Sites(t)
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
	a := d.pools[0]
	run := func(t *testing.T, stmts ...string) {
		t.Helper()
		for _, q := range stmts {
			if _, err := a.Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}

	t.Run("columns and primary key", func(t *testing.T) {
		run(t, "CREATE TABLE t (id INT PRIMARY KEY, a INT, k INT NOT NULL DEFAULT 0)",
			"INSERT INTO t VALUES (1,1,0),(2,2,0)",
			"ALTER TABLE t ADD COLUMN c VARCHAR(10)",
			"INSERT INTO t VALUES (3,3,0,'x')",
			"ALTER TABLE t RENAME COLUMN a TO a2",
			"INSERT INTO t VALUES (4,4,0,'y')",
			"UPDATE t SET a2 = a2 + 10 WHERE id = 1",
			"ALTER TABLE t CHANGE c c2 VARCHAR(40)",
			"UPDATE t SET c2 = 'changed' WHERE id = 3",
			"ALTER TABLE t MODIFY c2 VARCHAR(80)",
			"ALTER TABLE t DROP PRIMARY KEY, ADD PRIMARY KEY (id, k)",
			"INSERT INTO t VALUES (1, 100, 1, 'same id, other k')",
			"ALTER TABLE t ADD INDEX ia (a2), ALGORITHM=INPLACE, LOCK=NONE")
		d.identical(t, "t", 5)
	})

	t.Run("table renames and swap", func(t *testing.T) {
		run(t, "CREATE TABLE r1 (id INT PRIMARY KEY, v VARCHAR(10))",
			"CREATE TABLE r2 (id INT PRIMARY KEY, w INT)",
			"INSERT INTO r1 VALUES (1,'one'),(2,'two')",
			"INSERT INTO r2 VALUES (1,10)",
			"RENAME TABLE r1 TO r1n",
			"INSERT INTO r1n VALUES (3,'three')",
			"RENAME TABLE r1n TO tmp, r2 TO r1n, tmp TO r2",
			"INSERT INTO r1n VALUES (2,20)",
			"INSERT INTO r2 VALUES (4,'four')",
			"ALTER TABLE r2 RENAME TO r3, ADD COLUMN z INT",
			"INSERT INTO r3 VALUES (5,'five',5)")
		d.identical(t, "r1n", 2)
		d.identical(t, "r3", 5)
		for i, p := range d.pools {
			var n int
			if err := p.QueryRow("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA=? AND TABLE_NAME IN ('r1','r2','tmp')", db).Scan(&n); err != nil || n != 0 {
				t.Fatalf("site %s: %d old tables left (%v)", sites[i].Name, n, err)
			}
		}
	})

	t.Run("create like, create select, truncate, drop", func(t *testing.T) {
		run(t, "CREATE TABLE lk LIKE t",
			"INSERT INTO lk SELECT * FROM t",
			"CREATE TABLE cs (PRIMARY KEY (id)) AS SELECT id, v FROM r3",
			"INSERT INTO cs VALUES (99, 'later')",
			"CREATE TABLE tr (id INT PRIMARY KEY, v INT)",
			"INSERT INTO tr VALUES (1,1),(2,2)",
			"TRUNCATE TABLE tr",
			"INSERT INTO tr VALUES (3,3)",
			"CREATE TABLE g1 (id INT PRIMARY KEY)", "CREATE TABLE g2 (id INT PRIMARY KEY)",
			"INSERT INTO g1 VALUES (1)", "INSERT INTO g2 VALUES (1)",
			"DROP TABLE g1, g2",
			"CREATE OR REPLACE TABLE rp (id INT PRIMARY KEY, v INT)",
			"INSERT INTO rp VALUES (1,1)",
			"CREATE OR REPLACE TABLE rp (id INT PRIMARY KEY, v2 VARCHAR(5))",
			"INSERT INTO rp VALUES (2,'b')",
			"ALTER DATABASE `"+db+"` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
		d.identical(t, "lk", 5)
		d.identical(t, "cs", 6)
		d.identical(t, "tr", 1)
		d.identical(t, "rp", 1)
		testenv.Eventually(t, time.Minute, func() error {
			for i, p := range d.pools {
				var n int
				var coll string
				if err := p.QueryRow("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA=? AND TABLE_NAME IN ('g1','g2')", db).Scan(&n); err != nil || n != 0 {
					return fmt.Errorf("site %s: dropped tables still there (%d, %v)", sites[i].Name, n, err)
				}
				if err := p.QueryRow("SELECT DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME=?", db).Scan(&coll); err != nil || coll != "utf8mb4_unicode_ci" {
					return fmt.Errorf("site %s: database collation %q (%v)", sites[i].Name, coll, err)
				}
			}
			return nil
		})
	})

	t.Run("refused change", func(t *testing.T) {
		run(t, "CREATE TABLE ty (id INT PRIMARY KEY, v INT)", "INSERT INTO ty VALUES (1, 1)")
		d.identical(t, "ty", 1)
		stmt := "ALTER TABLE ty MODIFY v VARCHAR(20)"
		run(t, stmt, "INSERT INTO ty VALUES (2, 'two')", "INSERT INTO t VALUES (9, 9, 0, 'after')")
		d.identical(t, "t", 6) // later changes keep flowing
		testenv.Eventually(t, time.Minute, func() error {
			if out := d.status(); !strings.Contains(out, "ty") || !strings.Contains(out, "MODIFY v VARCHAR(20)") {
				return fmt.Errorf("status does not name the refused statement:\n%s", out)
			}
			return nil
		})
	})

	for _, tbl := range []string{"t", "r1n", "r3", "lk", "cs", "tr", "rp"} {
		out, err := d.verify(tbl)
		if err != nil || !strings.Contains(out, "IDENTICAL") {
			t.Errorf("%s at the end: %v\n%s", tbl, err, out)
		}
	}
}
