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
	"strconv"
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
	Show           int      `yaml:"show"` // differing rows to print per copy
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
	fs.IntVar(&cfg.Show, "show", 3, "differing rows to print per copy (0: none)")
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
			for _, r := range examples(sets[names[0]], sets[names[i+1]], cfg.Show) {
				fmt.Printf("    only in %s: %s\n", names[0], r)
			}
			for _, r := range examples(sets[names[i+1]], sets[names[0]], cfg.Show) {
				fmt.Printf("    only in %s: %s\n", names[i+1], r)
			}
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

// examples returns up to n rows of a (sorted) that b does not hold as often.
func examples(a, b map[string]int, n int) []string {
	var out []string
	for r, k := range a {
		if k > b[r] {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	if len(out) > n {
		out = out[:n]
	}
	for i, r := range out { // long values cut, so every column shows
		fields := strings.Split(r, ";")
		for j, f := range fields {
			if len(f) > 80 {
				fields[j] = f[:77] + "..."
			}
		}
		out[i] = strings.Join(fields, ";")
	}
	return out
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

// siteDigest reads every row of the table at one site as exact event values (text in the
// column's own character set, read with character_set_results=binary and decoded as
// capture does; INET6 and UUID as their 16 bytes; BIT as its number; TIMESTAMP in UTC),
// so a site's rows and the store's compare value for value.
func siteDigest(ctx context.Context, dsn, db, table string) ([]string, string, error) {
	pool, err := sql.Open("mysql", dsn)
	if err != nil {
		return nil, "", err
	}
	defer pool.Close()
	conn, err := pool.Conn(ctx)
	if err != nil {
		return nil, "", err
	}
	defer conn.Close()
	qt := "`" + strings.ReplaceAll(db, "`", "``") + "`.`" + strings.ReplaceAll(table, "`", "``") + "`"
	var tn string
	var sum sql.NullString
	if err := conn.QueryRowContext(ctx, "CHECKSUM TABLE "+qt).Scan(&tn, &sum); err != nil {
		return nil, "", fmt.Errorf("checksum table: %w", err)
	}
	cols, exprs, err := siteColumns(ctx, conn, db, table)
	if err != nil {
		return nil, "", err
	}
	if _, err := conn.ExecContext(ctx, changeevent.ReadSession); err != nil {
		return nil, "", err
	}
	rs, err := conn.QueryContext(ctx, "SELECT "+strings.Join(exprs, ",")+" FROM "+qt)
	if err != nil {
		return nil, "", err
	}
	defer rs.Close()
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
			v, err := changeevent.FromRaw(c, vals[i])
			if err != nil {
				return nil, "", fmt.Errorf("column %s: %w", c.Name, err)
			}
			row[c.Name] = valueText(v)
		}
		out = append(out, canonical(row))
	}
	return out, sum.String, rs.Err()
}

// siteColumns describes the table's columns as capture does (kind, character set) and
// the select expression of each.
func siteColumns(ctx context.Context, conn *sql.Conn, db, table string) ([]changeevent.Column, []string, error) {
	rows, err := conn.QueryContext(ctx, `SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IFNULL(CHARACTER_SET_NAME,''), IFNULL(COLLATION_NAME,'')
		FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=? AND TABLE_NAME=? ORDER BY ORDINAL_POSITION`, db, table)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var cols []changeevent.Column
	var exprs []string
	for rows.Next() {
		var name, dataType, colType, cs, coll string
		if err := rows.Scan(&name, &dataType, &colType, &cs, &coll); err != nil {
			return nil, nil, err
		}
		c := changeevent.Column{Name: name, Kind: changeevent.KindOf(dataType, colType), SQLType: colType}
		c.SetCharset(cs, coll)
		cols, exprs = append(cols, c), append(exprs, changeevent.SelectExpr(c, "`"+strings.ReplaceAll(name, "`", "``")+"`"))
	}
	if len(cols) == 0 {
		return nil, nil, fmt.Errorf("table %s.%s not found", db, table)
	}
	return cols, exprs, rows.Err()
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
				row[c] = valueText(v)
			}
			out = append(out, canonical(row))
		}
		return nil
	})
	return out, err
}

// valueText renders an event value canonically: numbers in their shortest exact decimal
// form, text and bytes quoted byte for byte (a text column's UTF-8 and the same bytes
// render alike), NULL as NULL.
func valueText(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case []byte:
		return strconv.Quote(string(x))
	case string:
		return strconv.Quote(x)
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case int64:
		return strconv.FormatInt(x, 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	default:
		return strconv.Quote(fmt.Sprint(x))
	}
}
