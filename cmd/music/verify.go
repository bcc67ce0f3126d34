package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/gocql/gocql"
	"go.uber.org/zap"

	"github.com/music-coord/music/apply/cassandra"
	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/recipes/store"
)

// verifyConfig names one table and where its copies live.
type verifyConfig struct {
	DB             string   `yaml:"db"`
	Table          string   `yaml:"table"`
	Sites          []string `yaml:"sites"` // name=DSN
	CassandraHosts []string `yaml:"cassandra_hosts"`
	Keyspace       string   `yaml:"cassandra_keyspace"`
}

func (c *verifyConfig) Validate() error {
	switch {
	case c.DB == "" || c.Table == "":
		return errors.New("db and table: both must be set")
	case len(c.Sites) == 0:
		return errors.New("site: give at least one name=DSN")
	}
	for _, s := range c.Sites {
		if name, dsn, ok := strings.Cut(s, "="); !ok || name == "" || dsn == "" {
			return fmt.Errorf("site: %q is not name=DSN", s)
		}
	}
	return nil
}

// runVerify compares one table's content at every site and in the MUSIC store: for each
// copy it prints the row count and a digest of the rows (order-independent), plus
// MariaDB's CHECKSUM TABLE at the sites. Exit status 0 when all digests agree.
func runVerify(args []string) int {
	cfg := &verifyConfig{Keyspace: "music"}
	fs := flag.NewFlagSet("music verify", flag.ContinueOnError)
	fs.String("config", "", "YAML config file (keys: db, table, sites, cassandra_hosts, cassandra_keyspace)")
	fs.StringVar(&cfg.DB, "db", cfg.DB, "database")
	fs.StringVar(&cfg.Table, "table", cfg.Table, "table")
	fs.Var(listFlag{&cfg.Sites}, "site", "site as name=DSN (repeatable)")
	fs.Var(listFlag{&cfg.CassandraHosts}, "cassandra-hosts", "MUSIC store contact points (empty: sites only)")
	fs.StringVar(&cfg.Keyspace, "cassandra-keyspace", cfg.Keyspace, "MUSIC store keyspace")
	if code, ok := parseFlags("verify", fs, args, cfg); !ok {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var digests, names []string
	sets := map[string]map[string]int{} // copy -> row multiset
	fmt.Printf("%-12s %8s  %-16s  %s\n", "COPY", "ROWS", "DIGEST", "CHECKSUM TABLE")
	for _, s := range cfg.Sites {
		name, dsn, _ := strings.Cut(s, "=")
		rows, sum, err := siteDigest(ctx, dsn, cfg.DB, cfg.Table)
		if err != nil {
			fmt.Fprintf(os.Stderr, "music verify: site %s: %v\n", name, err)
			return 1
		}
		fmt.Printf("%-12s %8d  %-16s  %s\n", "site "+name, len(rows), digest(rows), sum)
		digests, names = append(digests, digest(rows)), append(names, "site "+name)
		sets["site "+name] = multiset(rows)
	}
	if len(cfg.CassandraHosts) > 0 {
		rows, err := storeRows(ctx, cfg)
		if err != nil {
			fmt.Fprintf(os.Stderr, "music verify: MUSIC store: %v\n", err)
			return 1
		}
		fmt.Printf("%-12s %8d  %-16s\n", "store", len(rows), digest(rows))
		digests, names = append(digests, digest(rows)), append(names, "store")
		sets["store"] = multiset(rows)
	}
	different := false
	for i, d := range digests[1:] {
		if d != digests[0] {
			if !different {
				fmt.Println("DIFFERENT: the copies do not hold the same rows")
			}
			different = true
			lacks, extra := setDiff(sets[names[0]], sets[names[i+1]])
			fmt.Printf("  %s vs %s: %d rows of %s not found as such, %d rows not in %s\n",
				names[i+1], names[0], lacks, names[0], extra, names[0])
		}
	}
	if different {
		fmt.Printf("  repair a site with: music resync --site NAME --table %s.%s [--from store | --from-site NAME --peer NAME=DSN]\n", cfg.DB, cfg.Table)
		return 1
	}
	fmt.Println("IDENTICAL: every copy holds the same rows")
	return 0
}

// multiset counts each canonical row.
func multiset(rows []string) map[string]int {
	m := make(map[string]int, len(rows))
	for _, r := range rows {
		m[r]++
	}
	return m
}

// setDiff returns how many rows of a are not in b (missing or different there) and how
// many rows of b are not in a (extra or different).
func setDiff(a, b map[string]int) (lacks, extra int) {
	for r, n := range a {
		lacks += max(n-b[r], 0)
	}
	for r, n := range b {
		extra += max(n-a[r], 0)
	}
	return lacks, extra
}

// digest hashes rows (each already a canonical text) independently of their order.
func digest(rows []string) string {
	s := slices.Clone(rows)
	slices.Sort(s)
	h := sha256.New()
	for _, r := range s {
		h.Write([]byte(r))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// canonical renders one row as name=value pairs in column-name order.
func canonical(row map[string]string) string {
	names := make([]string, 0, len(row))
	for n := range row {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s=%s;", n, row[n])
	}
	return b.String()
}

func siteDigest(ctx context.Context, dsn, db, table string) ([]string, string, error) {
	pool, err := sql.Open("mysql", dsn)
	if err != nil {
		return nil, "", err
	}
	defer pool.Close()
	qt := "`" + strings.ReplaceAll(db, "`", "``") + "`.`" + strings.ReplaceAll(table, "`", "``") + "`"
	var tn string
	var sum sql.NullString
	if err := pool.QueryRowContext(ctx, "CHECKSUM TABLE "+qt).Scan(&tn, &sum); err != nil {
		return nil, "", fmt.Errorf("checksum table: %w", err)
	}
	rs, err := pool.QueryContext(ctx, "SELECT * FROM "+qt)
	if err != nil {
		return nil, "", err
	}
	defer rs.Close()
	cols, _ := rs.Columns()
	var out []string
	for rs.Next() {
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			return nil, "", err
		}
		row := make(map[string]string, len(cols))
		for i, c := range cols {
			if vals[i] == nil {
				row[c] = "NULL"
			} else {
				row[c] = fmt.Sprintf("%q", vals[i])
			}
		}
		out = append(out, canonical(row))
	}
	return out, sum.String, rs.Err()
}

func storeRows(ctx context.Context, cfg *verifyConfig) ([]string, error) {
	cl := gocql.NewCluster(cfg.CassandraHosts...)
	cl.Timeout, cl.ConnectTimeout = 20*time.Second, 10*time.Second
	cl.Consistency = gocql.Quorum
	store.Tune(cl)
	session, err := cl.CreateSession()
	if err != nil {
		return nil, err
	}
	defer session.Close()
	sink, err := cassandra.New(ctx, session, cassandra.Config{Keyspace: cfg.Keyspace}, zap.NewNop())
	if err != nil {
		return nil, err
	}
	var out []string
	err = sink.Scan(ctx, cfg.DB, cfg.Table, 1000, func(events []*changeevent.Event) error {
		for _, e := range events {
			row := make(map[string]string, len(e.After))
			for c, v := range e.After {
				row[c] = storeText(v)
			}
			out = append(out, canonical(row))
		}
		return nil
	})
	return out, err
}

// storeText renders a MUSIC store value as MariaDB's text protocol would.
func storeText(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case []byte:
		return fmt.Sprintf("%q", x)
	case string:
		return fmt.Sprintf("%q", x)
	default:
		return fmt.Sprintf("%q", fmt.Sprint(x))
	}
}
