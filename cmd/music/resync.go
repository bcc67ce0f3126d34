package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/gocql/gocql"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/apply/cassandra"
	"github.com/music-coord/music/apply/mariadb"
	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/logging"
	"github.com/music-coord/music/recipes/store"
)

// resyncConfig is `music resync`: which tables of which site, and from where.
type resyncConfig struct {
	Site       string         `yaml:"site"`      // the site repaired (its MariaDB is mariadb.dsn), or whose agent writes the store (to: store)
	Tables     []string       `yaml:"tables"`    // db.table
	To         string         `yaml:"to"`        // "site" (default): the site's MariaDB; "store": the MUSIC store, from a site
	From       string         `yaml:"from"`      // "store" (default) or "site"
	FromSite   string         `yaml:"from_site"` // the reference site when reading from a peer
	Peers      []string       `yaml:"peers"`     // name=DSN of the sites that may be a reference
	MariaDB    mariadb.Config `yaml:"mariadb"`
	Cassandra  applyCassandra `yaml:"cassandra"`
	Batch      int            `yaml:"batch"`       // rows per local transaction
	KeepRecent time.Duration  `yaml:"keep_recent"` // local rows the reference lacks are kept if their version is this recent
	// NATSURL and QuarantineBucket: where the site's apply agent keeps its quarantined
	// tables (apply.QuarantineSet.Persist); a repaired table is released there when its
	// resync starts. Empty nats_url: no release.
	NATSURL          string          `yaml:"nats_url"`
	QuarantineBucket string          `yaml:"quarantine_bucket"`
	Log              logging.Options `yaml:"log"`
}

func (c *resyncConfig) Validate() error {
	c.Tables, c.Peers, c.Cassandra.Hosts = dedupe(c.Tables), dedupe(c.Peers), dedupe(c.Cassandra.Hosts)
	if c.FromSite != "" {
		c.From = "site"
	}
	toStore := c.To == "store"
	switch {
	case c.To != "" && c.To != "site" && !toStore:
		return fmt.Errorf("to: %q is neither site nor store", c.To)
	case c.Site == "":
		return errors.New("site: must be set")
	case len(c.Tables) == 0:
		return errors.New("table: name at least one db.table")
	case c.MariaDB.DSN == "" && !toStore:
		return errors.New("mariadb.dsn: the site's MariaDB must be set")
	case c.Batch < 1:
		return errors.New("batch: must be positive")
	case toStore && (c.From != "site" || len(c.Cassandra.Hosts) == 0):
		return errors.New("to: store needs a reference site (--from-site, --peer) and cassandra.hosts")
	}
	if c.MariaDB.DSN != "" {
		if _, err := mysql.ParseDSN(c.MariaDB.DSN); err != nil {
			return fmt.Errorf("mariadb.dsn: %v", err)
		}
	}
	for _, t := range c.Tables {
		if db, table, ok := strings.Cut(t, "."); !ok || db == "" || table == "" {
			return fmt.Errorf("table: %q is not db.table", t)
		}
	}
	switch c.From {
	case "store":
		if len(c.Cassandra.Hosts) == 0 {
			return errors.New("cassandra.hosts: needed to resync from the MUSIC store")
		}
		var cl gocql.Consistency
		if err := cl.UnmarshalText([]byte(c.Cassandra.Consistency)); err != nil {
			return fmt.Errorf("cassandra.consistency: %q is not a consistency level", c.Cassandra.Consistency)
		}
	case "site":
		if c.FromSite == "" {
			return errors.New("from_site: name the reference site")
		}
		if c.FromSite == c.Site && !toStore {
			return fmt.Errorf("from_site: %q is the site being repaired", c.FromSite)
		}
		if c.peerDSN() == "" {
			return fmt.Errorf("peer: no DSN for site %q (give --peer %s=DSN)", c.FromSite, c.FromSite)
		}
	default:
		return fmt.Errorf("from: %q is neither store nor site", c.From)
	}
	for _, p := range c.Peers {
		if name, dsn, ok := strings.Cut(p, "="); !ok || name == "" || dsn == "" {
			return fmt.Errorf("peer: %q is not name=DSN", p)
		}
	}
	if c.NATSURL != "" && c.QuarantineBucket == "" {
		c.QuarantineBucket = apply.QuarantineBucket(c.Site)
	}
	return c.Log.Validate()
}

func (c *resyncConfig) peerDSN() string {
	for _, p := range c.Peers {
		if name, dsn, ok := strings.Cut(p, "="); ok && name == c.FromSite {
			return dsn
		}
	}
	return ""
}

// runResync makes tables of the site hold exactly the reference's rows (the MUSIC store,
// or a peer site's MariaDB) while its apply agent keeps mirroring. See apply/mariadb
// ("Resync") for how concurrent replays keep the conflict rule.
func runResync(args []string) int {
	cfg := &resyncConfig{From: "store", MariaDB: mariadb.Config{MetaSchema: "music"}, Batch: 500, KeepRecent: time.Minute,
		Cassandra: applyCassandra{Keyspace: "music", Consistency: "LOCAL_QUORUM"}, Log: logging.DefaultOptions()}
	fs := flag.NewFlagSet("music resync", flag.ContinueOnError)
	fs.String("config", "", "YAML config file (keys: site, tables, from, from_site, peers, mariadb{dsn,meta_schema,batch_rows,max_conns}, cassandra{hosts,keyspace,consistency}, batch, keep_recent, nats_url, quarantine_bucket, log)")
	fs.StringVar(&cfg.Site, "site", cfg.Site, "the site to repair (with --to store: the site whose agent quarantined the table)")
	fs.StringVar(&cfg.To, "to", "site", "what is repaired: site (the site's MariaDB) or store (the MUSIC store, from --from-site)")
	fs.Var(listFlag{&cfg.Tables}, "table", "db.table to repair (repeatable, comma-separated)")
	fs.StringVar(&cfg.From, "from", cfg.From, "reference: store (the MUSIC store) or site (a peer site, see --from-site)")
	fs.StringVar(&cfg.FromSite, "from-site", cfg.FromSite, "reference site: read the rows from its MariaDB (needs --peer NAME=DSN)")
	fs.Var(listFlag{&cfg.Peers}, "peer", "a site's MariaDB as name=DSN (repeatable)")
	fs.StringVar(&cfg.MariaDB.DSN, "mariadb-dsn", cfg.MariaDB.DSN, "the repaired site's MariaDB DSN, e.g. root@tcp(127.0.0.1:3306)/")
	fs.StringVar(&cfg.MariaDB.MetaSchema, "meta-schema", cfg.MariaDB.MetaSchema, "MUSIC metadata schema (at the site and at a peer)")
	fs.Var(listFlag{&cfg.Cassandra.Hosts}, "cassandra-hosts", "MUSIC store contact points (for --from store)")
	fs.StringVar(&cfg.Cassandra.Keyspace, "cassandra-keyspace", cfg.Cassandra.Keyspace, "MUSIC store keyspace")
	fs.StringVar(&cfg.Cassandra.Consistency, "cassandra-consistency", cfg.Cassandra.Consistency, "read consistency level")
	fs.IntVar(&cfg.Batch, "batch", cfg.Batch, "rows per local transaction")
	fs.StringVar(&cfg.NATSURL, "nats-url", cfg.NATSURL, "NATS URL of the site's apply agent, to release the table's quarantine (empty: none)")
	fs.StringVar(&cfg.QuarantineBucket, "quarantine-bucket", cfg.QuarantineBucket, "JetStream KV bucket of the agent's quarantines (default MUSIC_QUARANTINE_<SITE>)")
	fs.DurationVar(&cfg.KeepRecent, "keep-recent", cfg.KeepRecent, "keep local rows the reference lacks when their version is this recent (changes the reference cannot have yet); negative: none")
	if code, ok := parseFlags("resync", fs, args, cfg); !ok {
		return code
	}
	log, ok := newLogger("resync", cfg.Log)
	if !ok {
		return 2
	}
	defer log.Sync() //nolint:errcheck
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := resync(ctx, cfg, os.Stdout, log); err != nil {
		fmt.Fprintf(os.Stderr, "music resync: %v\n", err)
		return 1
	}
	return 0
}

func resync(ctx context.Context, cfg *resyncConfig, out io.Writer, log *zap.Logger) error {
	var sink apply.Sink
	target := "site " + cfg.Site
	if cfg.To != "store" {
		db, err := mariadb.Open(ctx, cfg.MariaDB, log)
		if err != nil {
			return fmt.Errorf("site %s: %w", cfg.Site, err)
		}
		defer db.Close()
		sink = db
	}
	var ref apply.Reference
	from := "the MUSIC store"
	if cfg.From == "site" {
		peer, err := mariadb.OpenPeer(cfg.peerDSN(), cfg.MariaDB.MetaSchema, cfg.FromSite)
		if err != nil {
			return err
		}
		defer peer.Close()
		ref, from = peer, "site "+cfg.FromSite
	} else {
		s, closeStore, err := openStore(ctx, cfg, log)
		if err != nil {
			return err
		}
		defer closeStore()
		ref = s
	}
	if cfg.To == "store" {
		store, closeStore, err := openStore(ctx, cfg, log)
		if err != nil {
			return err
		}
		defer closeStore()
		sink, target = store, "the MUSIC store"
		ref = stampUnversioned{ref, time.Now()}
	}
	var quarantine jetstream.KeyValue
	if cfg.NATSURL != "" {
		nc, err := nats.Connect(cfg.NATSURL, nats.Name("music resync "+cfg.Site))
		if err != nil {
			return fmt.Errorf("connect to nats %s: %w", cfg.NATSURL, err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		if quarantine, err = js.KeyValue(ctx, cfg.QuarantineBucket); err != nil {
			fmt.Fprintf(out, "no quarantine bucket %s (%v): nothing to release\n", cfg.QuarantineBucket, err)
			quarantine = nil
		}
	}
	var failed []string
	for _, t := range cfg.Tables {
		db, table, _ := strings.Cut(t, ".")
		fmt.Fprintf(out, "resync %s.%s at %s from %s\n", db, table, target, from)
		if quarantine != nil {
			// Released first: changes arriving from now on apply again; the ones skipped
			// while quarantined are what this resync repairs.
			if err := apply.ReleaseStored(ctx, quarantine, t); err != nil {
				fmt.Fprintf(out, "  FAILED: %v\n", err)
				failed = append(failed, t)
				continue
			}
		}
		var last time.Time
		p, err := apply.ResyncWith(ctx, ref, sink, db, table, apply.RepairOptions{Batch: cfg.Batch, KeepRecent: cfg.KeepRecent},
			func(p apply.ResyncProgress) {
				if time.Since(last) >= time.Second || p.Done {
					last = time.Now()
					fmt.Fprintln(out, "  "+progressLine(p))
				}
			})
		if err != nil {
			fmt.Fprintf(out, "  FAILED after %s: %v\n", time.Since(p.Started).Round(time.Millisecond), err)
			failed = append(failed, t)
			continue
		}
		fmt.Fprintf(out, "done %s.%s in %s: %d reference rows; %d written (missing or different), %d unchanged, %d versions set, "+
			"%d kept (newer here); %d local rows deleted (not in the reference), %d kept (too recent)\n",
			db, table, time.Since(p.Started).Round(time.Millisecond), p.Rows, p.Applied, p.Duplicates, p.Versioned,
			p.Conflicts, p.Deleted, p.Kept)
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d tables failed: %s", len(failed), len(cfg.Tables), strings.Join(failed, ", "))
	}
	return nil
}

// progressLine is one line of a resync's progress.
func progressLine(p apply.ResyncProgress) string {
	return fmt.Sprintf("%-6s read %d, written %d, unchanged %d, newer here %d | local examined %d, deleted %d, kept %d | %.0f rows/s",
		p.Phase, p.Rows, p.Applied, p.Duplicates, p.Conflicts, p.Local, p.Deleted, p.Kept, p.Rate())
}

// streamHorizon is the tombstone sweeper's horizon for an apply agent (see apply/mariadb,
// "Tombstones"): for each worker's durable consumer, the commit time of the oldest message
// it has not acknowledged (the first after its ack floor; now when it has nothing pending),
// the earliest over all origins. An origin's commit clock only moves forward, so every
// change of that origin still to be applied here is at least that old. A message that
// cannot be read or decoded (a part of a split event) is an error: the sweep waits.
func streamHorizon(js jetstream.JetStream, workers []*apply.Worker) mariadb.Horizon {
	return func(ctx context.Context) (time.Time, error) {
		h := time.Now()
		for _, w := range workers {
			st := w.Status()
			c, err := js.Consumer(ctx, st.Stream, st.Consumer)
			if err != nil {
				return time.Time{}, fmt.Errorf("consumer %s: %w", st.Consumer, err)
			}
			info, err := c.Info(ctx)
			if err != nil {
				return time.Time{}, fmt.Errorf("consumer %s: %w", st.Consumer, err)
			}
			if info.NumPending == 0 && info.NumAckPending == 0 {
				continue
			}
			stream, err := js.Stream(ctx, st.Stream)
			if err != nil {
				return time.Time{}, fmt.Errorf("stream %s: %w", st.Stream, err)
			}
			seq := max(info.AckFloor.Stream+1, stream.CachedInfo().State.FirstSeq)
			msg, err := stream.GetMsg(ctx, seq)
			if err != nil {
				return time.Time{}, fmt.Errorf("stream %s message %d: %w", st.Stream, seq, err)
			}
			events, err := changeevent.DecodeMessage(msg.Data)
			if err != nil || len(events) == 0 {
				return time.Time{}, fmt.Errorf("stream %s message %d: no commit time (%v)", st.Stream, seq, err)
			}
			v, err := apply.EventVersion(events[0])
			if err != nil {
				return time.Time{}, err
			}
			if t := time.UnixMicro(v.TsUs); t.Before(h) {
				h = t
			}
		}
		return h, nil
	}
}

// openStore opens the MUSIC store as the sink a resync writes (--to store).
func openStore(ctx context.Context, cfg *resyncConfig, log *zap.Logger) (*cassandra.Sink, func(), error) {
	cl := gocql.NewCluster(cfg.Cassandra.Hosts...)
	_ = cl.Consistency.UnmarshalText([]byte(cfg.Cassandra.Consistency))
	cl.Timeout, cl.ConnectTimeout = 20*time.Second, 10*time.Second
	store.Tune(cl)
	session, err := cl.CreateSession()
	if err != nil {
		return nil, nil, fmt.Errorf("cassandra %v: %w", cfg.Cassandra.Hosts, err)
	}
	s, err := cassandra.New(ctx, session, cassandra.Config{Keyspace: cfg.Cassandra.Keyspace}, log)
	if err != nil {
		session.Close()
		return nil, nil, err
	}
	return s, session.Close, nil
}

// stampUnversioned gives the reference site's rows that have no recorded version (written
// there while MUSIC did not record them, e.g. while the table was quarantined) the time
// the resync started, with the site's domain: the site's content is the truth as of then,
// so it overwrites what the store holds of those rows, and any change committed later
// still wins.
type stampUnversioned struct {
	apply.Reference
	at time.Time
}

func (r stampUnversioned) Scan(ctx context.Context, db, table string, batch int, fn func([]*changeevent.Event) error) error {
	return r.Reference.Scan(ctx, db, table, batch, func(events []*changeevent.Event) error {
		for _, e := range events {
			if e.Source.TsUs == 0 {
				e.Source.TsUs, e.Source.TsMs = r.at.UnixMicro(), r.at.UnixMilli()
			}
		}
		return fn(events)
	})
}
