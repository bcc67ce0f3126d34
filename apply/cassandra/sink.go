package cassandra

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/gocql/gocql"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/changeevent"
)

// Config configures the sink.
type Config struct {
	Keyspace    string      `yaml:"keyspace"`
	Replication Replication `yaml:"replication"` // used by EnsureKeyspace
	Concurrency int         `yaml:"concurrency"` // concurrent writes per transaction; default 32
}

// Sink writes transactions into the MUSIC store. It is safe for concurrent use.
type Sink struct {
	session  *gocql.Session
	keyspace string // raw name
	ks       string // quoted
	conc     int
	log      *zap.Logger

	mu     sync.Mutex
	tables map[string]*table // by db.table
}

var _ apply.Sink = (*Sink)(nil)

// EnsureKeyspace creates the keyspace with its replication if it does not exist.
func EnsureKeyspace(ctx context.Context, session *gocql.Session, cfg Config) error {
	ks, err := quote(cfg.Keyspace, 48)
	if err != nil {
		return fmt.Errorf("cassandra: keyspace: %w", err)
	}
	repl, err := cfg.Replication.CQL()
	if err != nil {
		return err
	}
	if err := session.Query("CREATE KEYSPACE IF NOT EXISTS " + ks + " WITH replication = " + repl).WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("cassandra: create keyspace %s: %w", ks, err)
	}
	return nil
}

// New returns a sink writing into cfg.Keyspace, which must exist (see EnsureKeyspace); it
// creates the registry table music_tables there.
func New(ctx context.Context, session *gocql.Session, cfg Config, log *zap.Logger) (*Sink, error) {
	ks, err := quote(cfg.Keyspace, 48)
	if err != nil {
		return nil, fmt.Errorf("cassandra: keyspace: %w", err)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 32
	}
	s := &Sink{session: session, keyspace: cfg.Keyspace, ks: ks, conc: cfg.Concurrency,
		log: log.With(zap.String("sink", "cassandra")), tables: map[string]*table{}}
	stmt := "CREATE TABLE IF NOT EXISTS " + ks + ".music_tables (cql_table text PRIMARY KEY, db text, tbl text, columns text)"
	if err := session.Query(stmt).WithContext(ctx).Exec(); err != nil {
		return nil, fmt.Errorf("cassandra: create music_tables: %w", err)
	}
	return s, nil
}

// Name is "cassandra".
func (s *Sink) Name() string { return "cassandra" }

// Apply writes the last change of every row of tx with tx's write timestamp.
func (s *Sink) Apply(ctx context.Context, tx *apply.Txn) (apply.Result, error) {
	wt, err := tx.Version.WriteTimestamp()
	if err != nil {
		return apply.Result{}, err
	}
	if tx.IsDDL() {
		return s.applyDDL(ctx, tx)
	}
	final, err := lastChanges(tx)
	if err != nil {
		return apply.Result{}, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.conc)
	var batch *gocql.Batch
	size := 0
	flush := func() {
		if batch == nil {
			return
		}
		b := batch
		batch, size = nil, 0
		g.Go(func() error { return s.session.ExecuteBatch(b) })
	}
	for _, c := range final {
		if emptyKey(c) {
			if c.Image == nil {
				continue // the store cannot hold such a row, so there is nothing to delete
			}
			_ = g.Wait()
			return apply.Result{}, fmt.Errorf("%w: cassandra: %s.%s key %s: an empty primary key cannot be stored "+
				"(Cassandra: key may not be empty); the row stays at the sites only", apply.ErrRefused,
				c.Event.Source.DB, c.Event.Source.Table, c.Key)
		}
		t, err := s.ensureTable(gctx, c.Event.Source.DB, c.Event.Source.Table, c.Event.Columns)
		if err != nil {
			_ = g.Wait()
			return apply.Result{}, err
		}
		stmt, args, err := statement(t, tx, c)
		if err != nil {
			_ = g.Wait()
			return apply.Result{}, err
		}
		n := approxSize(args)
		if size+n > maxBatchBytes {
			flush() // a big row goes alone: Cassandra fails multi-row batches over 640 KiB
		}
		if batch == nil {
			batch = s.session.NewBatch(gocql.UnloggedBatch).WithTimestamp(wt).WithContext(gctx)
		}
		batch.Query(stmt, args...)
		if size += n; len(batch.Entries) >= maxBatchRows || size >= maxBatchBytes {
			flush()
		}
	}
	flush()
	if err := g.Wait(); err != nil {
		return apply.Result{}, fmt.Errorf("cassandra: apply %s from %s: %w", tx.ID, tx.Origin, err)
	}
	return apply.Result{Applied: len(final)}, nil
}

// lastChanges returns each row's last change in tx, in order of first appearance.
// A transaction's rows go to the store in unlogged batches (all under the transaction's
// write timestamp): fewer requests than one per row, and small enough to stay under
// Cassandra's batch size warning (5 KiB by default).
const (
	maxBatchRows  = 32
	maxBatchBytes = 4 << 10
)

// approxSize estimates the bytes a row's values take in a batch.
func approxSize(args []any) int {
	n := 0
	for _, a := range args {
		switch v := a.(type) {
		case string:
			n += len(v)
		case []byte:
			n += len(v)
		default:
			n += 8
		}
	}
	return n + 16
}

func lastChanges(tx *apply.Txn) ([]apply.RowChange, error) {
	idx := map[string]int{}
	var out []apply.RowChange
	for _, e := range tx.Events {
		cs, err := apply.Changes(e)
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			k := apply.TableKey(e) + "\x00" + c.Key
			if i, ok := idx[k]; ok {
				out[i] = c
				continue
			}
			idx[k] = len(out)
			out = append(out, c)
		}
	}
	return out, nil
}

// emptyKey reports whether c's row has a one-column primary key whose value is empty (""
// or no bytes): Cassandra refuses an empty partition key.
func emptyKey(c apply.RowChange) bool {
	pk := apply.PKColumns(c.Event.Columns)
	if len(pk) != 1 {
		return false
	}
	row := c.Image
	if row == nil {
		row = c.Event.Before
	}
	switch v := row[pk[0].Name].(type) {
	case string:
		return v == ""
	case []byte:
		return len(v) == 0
	}
	return false
}

// statement builds the INSERT of an image or the DELETE of a key.
func statement(t *table, tx *apply.Txn, c apply.RowChange) (string, []any, error) {
	e := c.Event
	kinds := map[string]changeevent.Kind{}
	for _, col := range e.Columns {
		kinds[col.Name] = col.Kind
	}
	if c.Image == nil {
		var where []string
		var args []any
		for _, col := range apply.PKColumns(e.Columns) {
			v, err := cqlValue(col.Kind, e.Before[col.Name])
			if err != nil {
				return "", nil, err
			}
			where = append(where, `"`+col.Name+`"=?`)
			args = append(args, v)
		}
		return "DELETE FROM " + t.name + " WHERE " + strings.Join(where, " AND "), args, nil
	}
	var names, marks []string
	var args []any
	for _, col := range e.Columns {
		raw, ok := c.Image[col.Name]
		if !ok {
			continue
		}
		v, err := cqlValue(col.Kind, raw)
		if err != nil {
			return "", nil, err
		}
		names = append(names, `"`+col.Name+`"`)
		marks = append(marks, "?")
		args = append(args, v)
	}
	names = append(names, "music_origin", "music_gtid", "music_version")
	marks = append(marks, "?", "?", "?")
	wt, _ := tx.Version.WriteTimestamp()
	args = append(args, tx.Origin, tx.ID, wt)
	return "INSERT INTO " + t.name + " (" + strings.Join(names, ",") + ") VALUES (" + strings.Join(marks, ",") + ")", args, nil
}
