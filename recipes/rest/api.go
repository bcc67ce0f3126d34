package rest

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/music-coord/music/consistency/lock"
	"github.com/music-coord/music/recipes/cas"
	"github.com/music-coord/music/recipes/store"
)

// Prefix is the root of the API.
const Prefix = "/MUSIC/rest/v2"

//go:embed openapi.yaml
var openAPI []byte

// Config configures the API.
type Config struct {
	BodyLimit  int64               `yaml:"body_limit"` // bytes; default 1 MiB
	Users      []User              `yaml:"users"`
	Namespaces map[string][]string `yaml:"namespaces"` // namespace -> keyspaces it owns: names, "prefix*" or "*"
	// Anonymous turns authentication off: every request acts in every namespace. For tests
	// and local use only.
	Anonymous bool `yaml:"anonymous"`
	// LockLease is the lease of locks created without one (default 60s).
	LockLease time.Duration `yaml:"lock_lease"`
	// Version is the API version "2.minor.patch" reported in X-latestVersion and by
	// /version (default DefaultVersion); Build is reported by /version/build.
	Version string `yaml:"version"`
	Build   string `yaml:"build"`
}

// Validate names the field that is wrong.
func (c *Config) Validate() error {
	if c.BodyLimit < 0 {
		return errors.New("body_limit: must not be negative")
	}
	if c.Version != "" && !versionRE.MatchString(c.Version) {
		return fmt.Errorf("version: %q is not 2.<minor>.<patch>", c.Version)
	}
	if len(c.Users) == 0 && !c.Anonymous {
		return errors.New("users: at least one user is needed unless anonymous is true")
	}
	for _, u := range c.Users {
		if err := u.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Locks is what the API needs of the lock service.
type Locks interface {
	store.Locks
	Acquire(ctx context.Context, ref string) (lock.Holding, error)
	AcquireWithLease(ctx context.Context, ref string, d time.Duration) (lock.Holding, error)
	Holders(ctx context.Context, name string) ([]string, error)
	Enquire(ctx context.Context, name string) (string, error)
	Ping(ctx context.Context) error
}

var _ Locks = (*lock.Service)(nil)

// API is the HTTP handler of the MUSIC v2 REST API.
type API struct {
	cfg     Config
	store   *store.Store
	locks   Locks
	cas     *cas.CAS
	log     *zap.Logger
	auth    *authenticator
	mux     *http.ServeMux
	metrics *metrics
}

// New returns the API. reg may be nil (no metrics registered).
func New(cfg Config, st *store.Store, locks Locks, log *zap.Logger, reg prometheus.Registerer) (*API, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.BodyLimit == 0 {
		cfg.BodyLimit = 1 << 20
	}
	if cfg.Version == "" {
		cfg.Version = DefaultVersion
	}
	if cfg.Build == "" {
		cfg.Build = cfg.Version
	}
	if log == nil {
		log = zap.NewNop()
	}
	a := &API{cfg: cfg, store: st, locks: locks, log: log, auth: newAuthenticator(cfg.Users),
		cas: cas.New(st, locks, cas.Config{}, log.Named("cas")), mux: http.NewServeMux(), metrics: newMetrics(reg)}
	a.routes()
	return a, nil
}

// ServeHTTP serves the API.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// caller is an authenticated request's identity.
type caller struct{ user, ns string }

type handler func(w http.ResponseWriter, r *http.Request, c caller)

// handle registers h behind version headers, body limit, authentication and metrics.
func (a *API) handle(pattern, route string, public bool, h handler) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		a.versionHeaders(rec.Header(), r.Header)
		r.Body = http.MaxBytesReader(rec, r.Body, a.cfg.BodyLimit)
		c, ok := caller{}, true
		if !public {
			c, ok = a.authenticate(rec, r)
		}
		if ok {
			h(rec, r, c)
		}
		a.metrics.observe(route, r.Method, rec.code, time.Since(start))
		if rec.code >= 500 {
			a.log.Warn("request failed", zap.String("route", route), zap.String("method", r.Method),
				zap.Int("code", rec.code), zap.String("user", c.user))
		}
	})
}

var versionRE = regexp.MustCompile(`^2\.[0-9]+\.[0-9]+$`)

// versionHeaders echoes the request's X-minorVersion and X-patchVersion, or gives this
// API's, and X-latestVersion, as ONAP does. Only numbers are echoed.
func (a *API) versionHeaders(out, in http.Header) {
	parts := strings.SplitN(a.cfg.Version, ".", 3)
	for i, h := range []string{"X-minorVersion", "X-patchVersion"} {
		v := in.Get(h)
		if v == "" || len(v) > 9 || strings.Trim(v, "0123456789") != "" {
			v = parts[i+1]
		}
		out.Set(h, v)
	}
	out.Set("X-latestVersion", a.cfg.Version)
}

func (a *API) authenticate(w http.ResponseWriter, r *http.Request) (caller, bool) {
	if a.cfg.Anonymous {
		return caller{user: "anonymous", ns: "*"}, true
	}
	name, pw, ok := credentials(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="MUSIC"`)
		failure(w, http.StatusUnauthorized, "authentication required (Basic or userId/password headers)")
		return caller{}, false
	}
	u, ok := a.auth.check(name, pw)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="MUSIC"`)
		failure(w, http.StatusUnauthorized, "wrong user name or password")
		return caller{}, false
	}
	ns, err := namespace(r, u)
	if err != nil {
		failure(w, http.StatusForbidden, err.Error())
		return caller{}, false
	}
	return caller{user: u.Name, ns: ns}, true
}

// allowed writes 403 and returns false unless c's namespace owns keyspace.
func (a *API) allowed(w http.ResponseWriter, c caller, keyspace string) bool {
	if c.ns == "*" || ownsKeyspace(a.cfg.Namespaces[c.ns], keyspace) {
		return true
	}
	failure(w, http.StatusForbidden, fmt.Sprintf("namespace %s may not use keyspace %s", c.ns, keyspace))
	return false
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) { s.code = code; s.ResponseWriter.WriteHeader(code) }

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "music_rest_requests_total", Help: "REST requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "music_rest_request_duration_seconds", Help: "REST request latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"route"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration)
	}
	return m
}

func (m *metrics) observe(route, method string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}
