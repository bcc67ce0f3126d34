package store

import (
	"context"
	"time"

	"github.com/gocql/gocql"
	"go.uber.org/zap"

	"github.com/music-coord/music/consistency/lock"
)

// Locks is what the store needs of the lock service.
type Locks interface {
	Create(ctx context.Context, name string, typ lock.Type, owner string, lease time.Duration) (lock.Ref, error)
	Wait(ctx context.Context, ref string) (lock.Holding, error)
	Check(ctx context.Context, ref string) (lock.Holding, error)
	Release(ctx context.Context, ref string) error
	MarkSynced(ctx context.Context, name string) error
	Holders(ctx context.Context, name string) ([]string, error)
}

var _ Locks = (*lock.Service)(nil)

// Store runs MUSIC's data operations on one Cassandra session.
type Store struct {
	sess        *gocql.Session
	locks       Locks
	log         *zap.Logger
	meta        metaCache
	AtomicWait  time.Duration // how long an atomic operation waits for its lock (default 10s)
	AtomicLease time.Duration // the lease of an atomic operation's lock (default 30s)
}

// New returns a Store on sess using locks for critical and atomic operations.
func New(sess *gocql.Session, locks Locks, log *zap.Logger) *Store {
	if log == nil {
		log = zap.NewNop()
	}
	return &Store{sess: sess, locks: locks, log: log, meta: metaCache{tables: map[string]*table{}},
		AtomicWait: 10 * time.Second, AtomicLease: 30 * time.Second}
}

// Tune sets the gocql options the store is meant to run with. Write coalescing is off:
// gocql would hold every frame for up to 200µs waiting for company, which Go's
// millisecond netpoll timeout turns into about a millisecond on a lone request, several
// times the request itself. Routing is token-aware, so a request goes to a replica.
func Tune(c *gocql.ClusterConfig) {
	c.WriteCoalesceWaitTime = 0
	c.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.RoundRobinHostPolicy())
}

// Ping runs a trivial query against Cassandra.
func (s *Store) Ping(ctx context.Context) error {
	var v string
	err := s.sess.Query(`SELECT release_version FROM system.local`).WithContext(ctx).Consistency(gocql.One).Scan(&v)
	return classify("ping", err)
}

// consistencies are ONAP's consistency level names, with the level a read uses for each:
// reads do not take ANY, so it reads at ONE.
var consistencies = map[string]gocql.Consistency{
	"ANY": gocql.One, "ONE": gocql.One, "TWO": gocql.Two, "THREE": gocql.Three,
	"QUORUM": gocql.Quorum, "ALL": gocql.All, "LOCAL_QUORUM": gocql.LocalQuorum,
	"EACH_QUORUM": gocql.EachQuorum, "LOCAL_ONE": gocql.LocalOne,
	"SERIAL": gocql.Consistency(gocql.Serial), "LOCAL_SERIAL": gocql.Consistency(gocql.LocalSerial),
}

// ValidConsistency reports whether level is one of ONAP's consistency level names
// (ONE, QUORUM, LOCAL_QUORUM, ALL, ANY, SERIAL, ...), in upper case.
func ValidConsistency(level string) bool { _, ok := consistencies[level]; return ok }

// PingAt reads system_auth.roles, a replicated table, at consistency level (an ONAP
// name, see ValidConsistency): it succeeds when enough replicas answer.
func (s *Store) PingAt(ctx context.Context, level string) error {
	c, ok := consistencies[level]
	if !ok {
		return invalid("consistency %q is not a consistency level", level)
	}
	iter := s.sess.Query(`SELECT role FROM system_auth.roles LIMIT 1`).WithContext(ctx).Consistency(c).Iter()
	return classify("ping at "+level, iter.Close())
}
