package rest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"golang.org/x/crypto/bcrypt"

	"github.com/music-coord/music/consistency/lock"
	"github.com/music-coord/music/internal/testenv"
	"github.com/music-coord/music/recipes/store"
)

// env is an API on the real Cassandra and ZooKeeper, with a fresh keyspace.
type env struct {
	t     testing.TB
	srv   *httptest.Server
	ks    string
	sess  *gocql.Session
	locks *lock.Service
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ks, _ := testenv.NewKeyspace(t)
	sess := tunedSession(t, ks)
	locks, err := lock.New(testenv.ZKConnect(t), testenv.ZKRoot(t)+"/locks")
	if err != nil {
		t.Fatal(err)
	}
	bobHash, _ := bcrypt.GenerateFromPassword([]byte("bobpw"), bcrypt.MinCost)
	cfg := Config{
		BodyLimit: 64 << 10,
		Users: []User{
			{Name: "alice", PasswordHash: HashSHA256("secret"), Namespaces: []string{"app"}},
			{Name: "bob", PasswordHash: string(bobHash), Namespaces: []string{"other"}},
		},
		Namespaces: map[string][]string{"app": {"t_*"}, "other": {"other_*"}},
	}
	api, err := New(cfg, store.New(sess, locks, nil), locks, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, ks: ks, sess: sess, locks: locks}
}

// tunedSession is a session on keyspace ks configured as the server configures its own
// (store.Tune); the API and the benchmarks' raw twins share it.
func tunedSession(t testing.TB, ks string) *gocql.Session {
	t.Helper()
	c := testenv.CassandraCluster(t)
	c.Keyspace = ks
	store.Tune(c)
	sess, err := c.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sess.Close)
	return sess
}

// call sends a request as alice and returns the status code and decoded body.
func (e *env) call(method, path string, body any, hdr ...string) (int, map[string]any) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, rd)
	req.SetBasicAuth("alice", "secret")
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Authorization" && hdr[i+1] == "" {
			req.Header.Del("Authorization")
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(res.Body)
	_ = json.Unmarshal(raw, &out)
	if out == nil {
		out = map[string]any{"raw": string(raw)}
	}
	return res.StatusCode, out
}

// must calls and fails the test unless the status is want.
func (e *env) must(want int, method, path string, body any, hdr ...string) map[string]any {
	e.t.Helper()
	code, out := e.call(method, path, body, hdr...)
	if code != want {
		e.t.Fatalf("%s %s = %d %v, want %d", method, path, code, out, want)
	}
	return out
}

func (e *env) table(name string) string { return Prefix + "/keyspaces/" + e.ks + "/tables/" + name }

func (e *env) createKV(name string) {
	e.t.Helper()
	e.must(200, "POST", e.table(name), map[string]any{
		"fields": map[string]string{"k": "text", "v": "int", "PRIMARY KEY": "(k)"}})
}

// lockRef creates a lock reference for name and waits until it holds it.
func (e *env) lockRef(name string, hdr ...string) string {
	e.t.Helper()
	out := e.must(200, "POST", Prefix+"/locks/create/"+name, nil, hdr...)
	ref := out["lock"].(map[string]any)["lock"].(string)
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _ := e.call("GET", Prefix+"/locks/acquire/"+ref, nil)
		if code == 200 {
			return ref
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("lock %s not acquired in 30s", ref)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
