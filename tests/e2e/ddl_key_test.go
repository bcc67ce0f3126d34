package e2e

import (
	"strings"
	"testing"

	"github.com/music-coord/music/internal/testenv"
)

// TestDDLKeyChangeStore runs, through the real agents of three sites, column changes
// followed by a primary-key change, written in a burst (capture may read a DDL event's
// columns after later statements changed the table: the CREATE can carry the final key).
// The MUSIC store must end with every row of the sites, and the table not quarantined.
func TestDDLKeyChangeStore(t *testing.T) {
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
	for _, q := range []string{
		"CREATE TABLE ddl1 (id INT PRIMARY KEY, a INT, b VARCHAR(10))",
		"INSERT INTO ddl1 VALUES (1,1,'one'),(2,2,'two')",
		"ALTER TABLE ddl1 ADD COLUMN c DATETIME(6) NULL AFTER a, MODIFY b VARCHAR(40) NOT NULL DEFAULT ''",
		"ALTER TABLE ddl1 RENAME COLUMN a TO a2",
		"ALTER TABLE ddl1 CHANGE b b2 VARCHAR(50)",
		"INSERT INTO ddl1 (id, a2, b2) VALUES (3,3,'three')",
		"ALTER TABLE ddl1 DROP COLUMN c",
		"ALTER TABLE ddl1 ADD INDEX (a2), ADD UNIQUE KEY u_b2 (b2)",
		"ALTER TABLE ddl1 DROP PRIMARY KEY, ADD PRIMARY KEY (id, a2)",
		"INSERT INTO ddl1 VALUES (1,100,'one again')",
	} {
		if _, err := a.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	d.identical(t, "ddl1", 4)
	if out := d.status(); strings.Contains(out, "quarantin") {
		t.Errorf("status shows a quarantine:\n%s", out)
	}
	d.statusClean(t)
}
