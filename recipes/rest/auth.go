package rest

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// User is an API user. PasswordHash is a bcrypt hash ("$2a$...") or "sha256:<hex>".
// Namespaces lists the namespaces the user may act in ("*" for all).
type User struct {
	Name         string   `yaml:"name"`
	PasswordHash string   `yaml:"password_hash"`
	Namespaces   []string `yaml:"namespaces"`
}

// Validate names the field that is wrong.
func (u User) Validate() error {
	switch {
	case u.Name == "":
		return fmt.Errorf("users: a user has no name")
	case !strings.HasPrefix(u.PasswordHash, "$2") && !strings.HasPrefix(u.PasswordHash, "sha256:"):
		return fmt.Errorf("users.%s.password_hash: must be a bcrypt hash or sha256:<hex>", u.Name)
	case len(u.Namespaces) == 0:
		return fmt.Errorf("users.%s.namespaces: must name at least one namespace", u.Name)
	}
	return nil
}

// HashSHA256 returns the "sha256:<hex>" form of a password, for configuration files.
func HashSHA256(password string) string {
	sum := sha256.Sum256([]byte(password))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// authenticator checks credentials, caching successful bcrypt checks in memory.
type authenticator struct {
	users map[string]User
	ok    sync.Map // sha256(name \x00 password) -> struct{}
}

func newAuthenticator(users []User) *authenticator {
	a := &authenticator{users: map[string]User{}}
	for _, u := range users {
		a.users[u.Name] = u
	}
	return a
}

// credentials come from Basic auth or ONAP's userId/password headers.
func credentials(r *http.Request) (string, string, bool) {
	if u, p, ok := r.BasicAuth(); ok {
		return u, p, true
	}
	u, p := r.Header.Get("userId"), r.Header.Get("password")
	return u, p, u != ""
}

func (a *authenticator) check(name, password string) (User, bool) {
	u, ok := a.users[name]
	if !ok {
		return User{}, false
	}
	key := sha256.Sum256([]byte(name + "\x00" + password))
	if _, hit := a.ok.Load(key); hit {
		return u, true
	}
	var good bool
	if hexSum, isSHA := strings.CutPrefix(u.PasswordHash, "sha256:"); isSHA {
		sum := sha256.Sum256([]byte(password))
		good = subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum[:])), []byte(strings.ToLower(hexSum))) == 1
	} else {
		good = bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)) == nil
	}
	if good {
		a.ok.Store(key, struct{}{})
	}
	return u, good
}

// namespace picks the request's namespace: the ns header, or the user's only one.
func namespace(r *http.Request, u User) (string, error) {
	ns := r.Header.Get("ns")
	if ns == "" && len(u.Namespaces) == 1 && u.Namespaces[0] != "*" {
		ns = u.Namespaces[0]
	}
	if ns == "" {
		return "", fmt.Errorf("the ns header is required")
	}
	if !slices.Contains(u.Namespaces, ns) && !slices.Contains(u.Namespaces, "*") {
		return "", fmt.Errorf("user %s may not use namespace %s", u.Name, ns)
	}
	return ns, nil
}

// ownsKeyspace reports whether the patterns (names, "prefix*" or "*") cover keyspace.
func ownsKeyspace(patterns []string, keyspace string) bool {
	keyspace = strings.ToLower(keyspace)
	for _, p := range patterns {
		p = strings.ToLower(p)
		if p == "*" || p == keyspace || strings.HasSuffix(p, "*") && strings.HasPrefix(keyspace, strings.TrimSuffix(p, "*")) {
			return true
		}
	}
	return false
}
