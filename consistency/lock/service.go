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
}

// Option configures a Service.
type Option func(*Service)

// WithLogger sets the logger (default: none).
func WithLogger(l *zap.Logger) Option { return func(s *Service) { s.log = l } }

// WithDefaultLease sets the lease given to references created without one (default 60s).
func WithDefaultLease(d time.Duration) Option { return func(s *Service) { s.lease = d } }

// New returns a Service keeping its queues under root, which it creates if needed.
func New(conn *zk.Conn, root string, opts ...Option) (*Service, error) {
	s := &Service{conn: conn, root: path.Clean("/" + root), log: zap.NewNop(), lease: time.Minute,
		now: time.Now, acl: zk.WorldACL(zk.PermAll)}
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
	if _, err := s.conn.Create(s.dir(n), nil, 0, s.acl); err != nil && !errors.Is(err, zk.ErrNodeExists) {
		return Ref{}, fmt.Errorf("lock: create %s: %w", name, err)
	}
	prefix := "w-"
	if typ == Read {
		prefix = "r-"
	}
	p, err := s.conn.Create(s.dir(n)+"/"+prefix, l.encode(), zk.FlagSequence, s.acl)
	if err != nil {
		return Ref{}, fmt.Errorf("lock: create reference for %s: %w", name, err)
	}
	e, ok := parseEntry(path.Base(p))
	if !ok {
		return Ref{}, fmt.Errorf("lock: unexpected znode %s", p)
	}
	return Ref{Name: n, Seq: e.seq}, nil
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
