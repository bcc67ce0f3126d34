package lock

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/zap"
)

// Service manages lock queues under one ZooKeeper root. It is safe for concurrent use;
// several Services (MUSIC servers) may share a root.
type Service struct {
	conn  *zk.Conn
	root  string
	log   *zap.Logger
	lease time.Duration
	now   func() time.Time
	acl   []zk.ACL
	held  heldCache
}

// Option configures a Service.
type Option func(*Service)

// WithLogger sets the logger (default: none).
func WithLogger(l *zap.Logger) Option { return func(s *Service) { s.log = l } }

// WithDefaultLease sets the lease given to references created without one (default 60s).
func WithDefaultLease(d time.Duration) Option { return func(s *Service) { s.lease = d } }

// WithCheckCache sets how long Check and Acquire may trust a holding verified while ZooKeeper
// reports no change to the reference (default 1s; 0 turns the cache off). See heldCache.
func WithCheckCache(d time.Duration) Option { return func(s *Service) { s.held.ttl = d } }

// New returns a Service keeping its queues under root, which it creates if needed.
func New(conn *zk.Conn, root string, opts ...Option) (*Service, error) {
	s := &Service{conn: conn, root: path.Clean("/" + root), log: zap.NewNop(), lease: time.Minute,
		now: time.Now, acl: zk.WorldACL(zk.PermAll), held: heldCache{ttl: time.Second}}
	for _, o := range opts {
		o(s)
	}
	if err := s.mkdirs(s.root); err != nil {
		return nil, fmt.Errorf("lock: create root %s: %w", s.root, err)
	}
	return s, nil
}

func (s *Service) mkdirs(p string) error {
	cur := ""
	for _, part := range strings.Split(strings.Trim(p, "/"), "/") {
		cur += "/" + part
		if _, err := s.conn.Create(cur, nil, 0, s.acl); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return err
		}
	}
	return nil
}

func (s *Service) dir(n Name) string { return s.root + "/" + n.node() }

// Create queues a new reference for name and returns it. A zero leaseDur means the
// default lease; a negative one means no lease (the reference lives until released).
func (s *Service) Create(ctx context.Context, name string, typ Type, owner string, leaseDur time.Duration) (Ref, error) {
	n, err := ParseName(name)
	if err != nil {
		return Ref{}, err
	}
	if typ != Read {
		typ = Write
	}
	if leaseDur == 0 {
		leaseDur = s.lease
	}
	now := s.now()
	l := lease{Type: typ, Owner: owner, Created: now.UnixMicro(), LeaseMS: max(leaseDur.Milliseconds(), 0)}
	l.renew(now)
	p, err := s.createRef(n, typ, l.encode())
	if err != nil {
		return Ref{}, fmt.Errorf("lock: create reference for %s: %w", name, err)
	}
	e, ok := parseEntry(path.Base(p))
	if !ok {
		return Ref{}, fmt.Errorf("lock: unexpected znode %s", p)
	}
	return Ref{Name: n, Seq: e.seq}, nil
}

// createRef creates a reference's sequential znode, and the name's node first if this
// is the name's first reference.
func (s *Service) createRef(n Name, typ Type, data []byte) (string, error) {
	p, err := s.conn.Create(s.dir(n)+"/"+prefix(typ), data, zk.FlagSequence, s.acl)
	if !errors.Is(err, zk.ErrNoNode) {
		return p, err
	}
	if _, err := s.conn.Create(s.dir(n), nil, 0, s.acl); err != nil && !errors.Is(err, zk.ErrNodeExists) {
		return "", err
	}
	return s.conn.Create(s.dir(n)+"/"+prefix(typ), data, zk.FlagSequence, s.acl)
}

// Ping checks that ZooKeeper answers.
func (s *Service) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, _, err := s.conn.Exists(s.root); err != nil {
		return fmt.Errorf("lock: zookeeper: %w", err)
	}
	return nil
}
